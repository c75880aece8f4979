# The two commands a new user needs: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test check bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/itnio-exporter --demo

test: $(STAMP)
	$(BIN)/python -m pytest

# Not part of `make test` or CI: a few minutes of load; prints one table (README.md, "Running at scale").
bench: $(STAMP)
	$(BIN)/python benchmarks/bench.py

check: $(STAMP)
	$(BIN)/itnio-exporter --config.check --config.file config.example.yaml

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
