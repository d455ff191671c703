# Common commands. Each target sets up what it needs in .venv on first use.
#   make demo   - install torchwork and run the tutorial (writes demo-out/)
#   make test   - install torchwork with its test dependencies and run the fast tests (about 5 minutes)
#   make test-slow - the slow tests: torchrun, kills and resumes, a browser, one interpreter per case
#   make lint   - ruff (lint + format check), mypy, and the layer contracts (import-linter)
#   make bench  - the quick benchmark table (see benchmarks/)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONSTRAINTS := requirements/constraints.txt
# torch first, pinned: the CPU build lies on this project's machines; an unpinned torch pulls a
# several-GB CUDA build (DEVELOPERS.md).
TORCH := torch==2.13.0

.PHONY: demo test test-slow lint bench lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)

$(VENV)/.runtime: $(BIN)/python pyproject.toml $(CONSTRAINTS)
	$(BIN)/python -m pip install -q -c $(CONSTRAINTS) -e .
	touch $@

$(VENV)/.dev: $(VENV)/.runtime
	$(BIN)/python -m pip install -q -c $(CONSTRAINTS) -e '.[dev]'
	touch $@

demo: $(VENV)/.runtime
	$(BIN)/torchwork demo --out demo-out

test: $(VENV)/.dev
	$(BIN)/python -m pytest -m "not slow"

test-slow: $(VENV)/.dev
	$(BIN)/python -m pytest -m slow

lint: $(VENV)/.dev
	$(BIN)/ruff check src tests $(wildcard benchmarks) examples
	$(BIN)/ruff format --check src tests $(wildcard benchmarks) examples
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(VENV)/.runtime
	$(BIN)/python -m benchmarks.speed --quick

lock: $(VENV)/.dev
	{ sed -n '1,3p' $(CONSTRAINTS); echo "$(TORCH)"; $(BIN)/python -m pip freeze --exclude-editable | grep -v '^torch=='; } > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)

clean:
	rm -rf $(VENV) demo-out .pytest_cache .mypy_cache .ruff_cache
