# The two commands a new user needs: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast check bench lock clean

install: $(STAMP)

# The tests run the versions the image ships: the lock's pins, without their hashes, constrain the install.
$(STAMP): pyproject.toml deploy/requirements.lock
	$(PYTHON) -m venv $(VENV)
	sed -n 's/^\([A-Za-z0-9._-]*==[^ ]*\).*/\1/p' deploy/requirements.lock > $(VENV)/constraints.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c $(VENV)/constraints.txt -e '.[test]'
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

# The container image's dependency pins, with hashes, resolved by pip-tools from pyproject.toml for the
# image's Python (3.11 on Linux) and from PyPI alone: deploy/requirements.lock (the runtime closure)
# and deploy/build-requirements.lock (the build backend that turns the source into a wheel).
# tests/deploy/test_lock.py checks that the first matches pyproject.toml.
LOCK_PYTHON ?= python3.11
LOCK_VENV := build/lock-venv
PIP_COMPILE := PIP_CONFIG_FILE=/dev/null $(LOCK_VENV)/bin/pip-compile --quiet --generate-hashes --strip-extras \
	--allow-unsafe --newline=lf --no-emit-index-url --no-emit-find-links --index-url=https://pypi.org/simple
lock:
	$(LOCK_PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "LOCK_PYTHON must be Python 3.11, as in the image"'
	$(LOCK_PYTHON) -m venv $(LOCK_VENV)
	PIP_CONFIG_FILE=/dev/null $(LOCK_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip 'pip-tools>=7.5,<8'
	CUSTOM_COMPILE_COMMAND='make lock' $(PIP_COMPILE) --output-file=deploy/requirements.lock pyproject.toml
	CUSTOM_COMPILE_COMMAND='make lock' $(PIP_COMPILE) --only-build-deps --all-build-deps --output-file=deploy/build-requirements.lock pyproject.toml

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
