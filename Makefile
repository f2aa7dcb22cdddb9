# The two set-up commands of the README:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.medcolor-installed

.PHONY: demo test test-slow test-slurm lint format clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e ".[dev]"
	touch $(STAMP)

## demo: create .venv, install medcolor, run the built-in demo (baseline vs color-module)
demo: $(STAMP)
	$(BIN)/medcolor demo

## test: create .venv, install medcolor with dev extras, lint, run the test suite
test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks experiments
	$(BIN)/python -m pytest -m "not slow and not slurm"

## test-slow: the end-to-end and kill/resume scenarios (CI runs them after `make test`)
test-slow: $(STAMP)
	$(BIN)/python -m pytest -m "slow and not slurm"

## test-slurm: start a one-node SLURM on this machine (root; SLURM_START) and run the SLURM executor's tests on it
SLURM_START ?= ../shared/slurm/start-slurm.sh
test-slurm: $(STAMP)
	$(if $(filter 0,$(shell id -u)),,sudo) $(SLURM_START)
	MEDCOLOR_REQUIRE_SLURM=1 $(BIN)/python -m pytest -m slurm tests/study/test_slurm_real.py

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks experiments
	$(BIN)/ruff format --check src tests benchmarks experiments

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks experiments

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
