# Two commands on a fresh clone: `make run` (the whole system) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
INSTALL_INPUTS := constraints.txt requirements.txt requirements-dev.txt \
	$(wildcard services/*/pyproject.toml) gateway/pyproject.toml devtools/pyproject.toml

.PHONY: install run test lint format bench reliability clean

install: $(STAMP)

$(STAMP): $(INSTALL_INPUTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt -r requirements-dev.txt
	touch $(STAMP)

run: install
	$(PY) -m devtools.run

test: install
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: install
	$(PY) -m bench

# Slow: faults injected into the whole system, then the ledger check (docs/reliability.md).
reliability: install
	$(PY) -m reliability

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
