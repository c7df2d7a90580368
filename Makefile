# One entry point for every chore; CI uses the same targets.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint format bench clean

install: $(STAMP)  ## create .venv and install Keel with its development tools

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: install  ## run the example support agent end to end, offline, on ./keel.db
	$(BIN)/keel run examples/support.py:agent "Where is order 1042?" --thread customer-42
	$(BIN)/keel run examples/support.py:agent "What is your return policy?" --thread customer-42
	$(BIN)/keel runs list --thread customer-42

test: install  ## run the whole test suite, with branch coverage (floor: 90%)
	$(BIN)/pytest --cov=keel --cov-branch --cov-report=term:skip-covered --cov-fail-under=90

lint: install  ## ruff (lint and format check) and mypy (strict)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install  ## the benchmarks recorded in docs/benchmarks.md
	$(BIN)/python bench/step_overhead.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache keel.db keel.db-wal keel.db-shm
