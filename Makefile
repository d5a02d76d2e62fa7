# The two commands: `make run` serves the API on the embedded database, `make test` checks it all.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint format clean bench bench-smoke bench-compare

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Stamps record which extras are installed; they are redone when pyproject.toml changes.
$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[embedded]"
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev,embedded]"
	touch $@ $(VENV)/.installed-run

$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[bench,embedded]"
	touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run
	ENVIRONMENT=$${ENVIRONMENT:-development} $(BIN)/python -m service serve

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

# The load benchmark (not part of `make test`): see bench/README.md. Options go in BENCH_ARGS,
# e.g. make bench BENCH_ARGS="--note 'quiet machine'". Needs root (or wrk already installed).
BENCH_ARGS ?=
bench: $(VENV)/.installed-bench
	@command -v wrk >/dev/null 2>&1 || { apt-get update && apt-get install -y wrk; }
	timeout --signal=INT --kill-after=60 2400 $(BIN)/python -m bench.run $(BENCH_ARGS)

# Half a minute or two: proves the harness end to end; results go to a scratch directory.
bench-smoke: $(VENV)/.installed-bench
	@command -v wrk >/dev/null 2>&1 || { apt-get update && apt-get install -y wrk; }
	timeout --signal=INT --kill-after=60 600 $(BIN)/python -m bench.run --duration 1 \
		--warmup 0.5 --concurrency 1,8 --readers 10 --writers 4 --big-todos 20000 \
		--out $${TMPDIR:-/tmp}/todo-bench-smoke --name smoke --note "smoke run" $(BENCH_ARGS)

# Issue 13's targets in one run (~10 minutes): the bare app, the previous main (a git worktree of
# BEFORE_COMMIT, made in BEFORE if missing), this checkout, the tutorial stack and 2 workers.
# Options go in COMPARE_ARGS, e.g. make bench-compare COMPARE_ARGS="--rounds 5 --note quiet".
BEFORE_COMMIT ?= 99c0a1b
BEFORE ?= $${TMPDIR:-/tmp}/todo-service-before-$(BEFORE_COMMIT)
COMPARE_ARGS ?=
bench-compare: $(VENV)/.installed-bench
	@command -v wrk >/dev/null 2>&1 || { apt-get update && apt-get install -y wrk; }
	@test -d "$(BEFORE)" || git worktree add --detach "$(BEFORE)" $(BEFORE_COMMIT)
	timeout --signal=INT --kill-after=60 1500 $(BIN)/python -m bench.compare \
		--before "$(BEFORE)" $(COMPARE_ARGS)

format: $(VENV)/.installed-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
