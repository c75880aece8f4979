# The two commands a new user needs: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast check bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/itnio-exporter --demo

test: $(STAMP)
	$(BIN)/python -m pytest

# The unit tests only (everything but tests/integration and tests/deploy): seconds, not minutes.
test-fast: $(STAMP)
	$(BIN)/python -m pytest --ignore=tests/integration --ignore=tests/deploy

# Not part of `make test` or CI: a few minutes of load; prints one table (docs/scaling.md, "Benchmark").
bench: $(STAMP)
	$(BIN)/python benchmarks/bench.py

# Lint, types, and the example config: what CI checks before the tests.
check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/itnio-exporter --config.check --config.file config.example.yaml

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
