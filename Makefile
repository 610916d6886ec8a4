# Two commands for a fresh clone: `make demo` and `make test`. Everything else is a convenience.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

.PHONY: venv demo test unit chaos lint fmt ui services services-down services-status clean bench bench-smoke

venv: $(VENV)/.installed

# constraints.txt pins the whole tree (Dagster family in lockstep: dagster 1.13.N ↔ dagster-* 0.29.N)
$(VENV)/.installed: pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (set PYTHON=...)"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	@touch $@

## make demo: local services if none configured, demo data, a full sync, a summary, verify
demo: venv
	$(BIN)/sync-pipeline demo

## make test: the whole suite (starts local PostgreSQL + Elasticsearch unless SYNC_PG_URL/SYNC_ES_URL are set)
test: venv
	$(BIN)/ruff check sync_pipeline sync_pipeline_tests
	$(BIN)/python -m pytest

unit: venv
	$(BIN)/python -m pytest -m "not integration"

## make chaos: every fault-injection scenario in sequence, then a table of drift after each (all 0)
chaos: venv
	$(BIN)/python -m pytest -m chaos -p no:randomly

lint: venv
	$(BIN)/ruff check sync_pipeline sync_pipeline_tests
	$(BIN)/ruff format --check sync_pipeline sync_pipeline_tests

fmt: venv
	$(BIN)/ruff format sync_pipeline sync_pipeline_tests
	$(BIN)/ruff check --fix sync_pipeline sync_pipeline_tests

## make ui: Dagster webserver + daemon on this code location, http://127.0.0.1:3000
ui: venv
	$(BIN)/sync-pipeline ui

services: venv
	$(BIN)/sync-pipeline services up

services-down: venv
	$(BIN)/sync-pipeline services down

services-status: venv
	$(BIN)/sync-pipeline services status

clean:
	-$(BIN)/sync-pipeline services down
	rm -rf .staging .dagster_home .pytest_cache .ruff_cache

## make bench: the performance benchmark (docs/benchmarks.md): 1M rows x 3, PGSync, the 100k/1M/3M scale
## curve and freshness, about 75 minutes on 2 cores; BENCH_ARGS="--rows 200000 --scale ..." to change it
BENCH_ARGS ?= --scale 100000,1000000,3000000 --freshness
bench: venv
	$(BIN)/python -m bench.run $(BENCH_ARGS)

## make bench-smoke: a small benchmark run (20k rows, once) and a check that its JSON is well-formed
bench-smoke: venv
	$(BIN)/python -m bench.run --rows 20000 --repeat 1 --output bench/results/smoke.json
	$(BIN)/python -m bench.check bench/results/smoke.json
