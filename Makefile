# Two commands for a fresh clone: `make demo` and `make test`. Everything else is a convenience.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

.PHONY: venv demo test compat unit integration chaos e2e lint fmt ui services services-down services-status clean bench bench-smoke audit

venv: $(VENV)/.installed

# constraints.txt pins the whole tree (Dagster family in lockstep: dagster 1.13.N ↔ dagster-* 0.29.N)
$(VENV)/.installed: pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (set PYTHON=...)"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	@# the dev install only: the checkout's root on the venv's path, for the dev harness
	@# (sync_pipeline_devtools: local services, demo, --local; not in the wheel), bench and the tests
	$(BIN)/python -c 'import pathlib, sys, sysconfig; pathlib.Path(sysconfig.get_path("purelib"), "sync_pipeline_checkout.pth").write_text(sys.argv[1] + "\n")' '$(CURDIR)'
	@touch $@

# the checkout's dev harness (not in the wheel): `sync-pipeline` plus services, demo and --local
DEVTOOL := $(BIN)/python -m sync_pipeline_devtools
DEV_DIRS := sync_pipeline sync_pipeline_devtools sync_pipeline_tests

## make demo: local services if none configured, demo data, a full sync, a summary, verify
demo: venv
	$(DEVTOOL) --local demo

## make test: the whole suite against Elasticsearch 9 (the unit tests first, no server needed; then
## integration, chaos and e2e), then the compatibility subset against the other supported servers
## (starts local PostgreSQL + search nodes unless SYNC_PG_URL/SYNC_ES_URL are set).
## Tests sit in a folder per kind (docs/testing.md); pytest's exit 5 (nothing collected) fails too.
TESTS := sync_pipeline_tests
test: venv
	$(BIN)/ruff check $(DEV_DIRS)
	$(BIN)/python -m pytest $(TESTS)/unit
	$(BIN)/python -m pytest $(TESTS)/integration $(TESTS)/chaos $(TESTS)/e2e
	$(MAKE) --no-print-directory compat

## make compat: the compatibility subset (marker `compat`) on Elasticsearch 8.19, OpenSearch 2.19 and 3.3,
## each a local node of its own; each node is stopped after its pass (memory). Against a server of
## your own (SYNC_ES_URL set) there is nothing to switch, so the subset runs once, against it.
COMPAT_TARGETS ?= elasticsearch8 opensearch2 opensearch
compat: venv
	@if [ -n "$$SYNC_ES_URL" ]; then \
	  $(BIN)/python -m pytest -m compat -p no:randomly -q || exit $$?; \
	else for target in $(COMPAT_TARGETS); do \
	  echo "== compatibility subset on $$target"; \
	  SYNC_LOCAL_SEARCH=$$target $(BIN)/python -m pytest -m compat -p no:randomly -q; status=$$?; \
	  $(DEVTOOL) services down --target $$target >/dev/null 2>&1 || true; \
	  [ $$status -eq 0 ] || exit $$status; \
	done; fi

## make audit: known vulnerabilities in the locked tree (constraints.txt), from PyPI's advisory data
audit:
	python3 .ci/audit_deps.py constraints.txt

## make unit: sync_pipeline_tests/unit, no server and no network (a unit test that connects to a
## server, or asks for the servers' fixtures, fails)
unit: venv
	$(BIN)/python -m pytest $(TESTS)/unit

## make integration: sync_pipeline_tests/integration, against the real servers, no fault injected
integration: venv
	$(BIN)/python -m pytest $(TESTS)/integration

## make chaos: every fault-injection scenario (sync_pipeline_tests/chaos) in sequence, then a table
## of drift after each (all 0)
chaos: venv
	$(BIN)/python -m pytest $(TESTS)/chaos -p no:randomly

## make e2e: sync_pipeline_tests/e2e, the product driven from the outside (demo, browser UI, wheel, Celery)
e2e: venv
	$(BIN)/python -m pytest $(TESTS)/e2e

lint: venv
	$(BIN)/ruff check $(DEV_DIRS)
	$(BIN)/ruff format --check $(DEV_DIRS)

fmt: venv
	$(BIN)/ruff format $(DEV_DIRS)
	$(BIN)/ruff check --fix $(DEV_DIRS)

## make ui: Dagster webserver + daemon on this code location, http://127.0.0.1:3000
ui: venv
	$(DEVTOOL) --local ui

services: venv
	$(DEVTOOL) services up

services-down: venv
	$(DEVTOOL) services down

services-status: venv
	$(DEVTOOL) services status

clean:
	-$(DEVTOOL) services down
	rm -rf .staging .dagster_home .pytest_cache .ruff_cache

## make bench: the performance benchmark (docs/benchmarks.md), every figure of issue 16 in one run:
## 1M rows x 3 (1 KB and ~250 B documents, ceilings, naive, CLI, drains per capture mode), PGSync,
## pgbench write-path cost, freshness per capture mode, a 10-minute soak, the 100k/1M/10M scale
## curve, a 10M-row single-timestamp window synced by key ranges, killed halfway and resumed
## (--ranges-rows), a 100k-document fan-out drain; about 1.5 h on 2 cores (65 min without PGSync; the
## 10M point ~15 min); plus joined documents (bench/joined.py: 2 shapes at 1M roots × 3, ~2.5-3 h
## estimated; peak RSS at 10M, 2-3 h more: --joined-scale 1000000 leaves it out). BENCH_ARGS="..." to change it,
## e.g. make bench BENCH_ARGS="--rows 200000 --repeat 1 --scale 100000,1000000 --freshness --no-pgsync"
BENCH_ARGS ?= --scale 100000,1000000,10000000 --freshness --soak 10 --joined-scale 1000000,10000000
BENCH_CHECK_ARGS ?= --min-freshness-changes 200 --require-soak
BENCH_OUTPUT ?= bench/results/$(shell date -u +%Y-%m-%d).json
bench: venv
	$(BIN)/python -m bench.run $(BENCH_ARGS) --output $(BENCH_OUTPUT)
	$(BIN)/python -m bench.check $(BENCH_OUTPUT) $(BENCH_CHECK_ARGS)

## make bench-smoke: every section small (20k rows once, no 1 KB CLI/incremental/PGSync, pgbench 10 s per
## mode, 40 freshness changes per capture mode at the spec's defaults, joined documents at 20k roots,
## key ranges at 20k rows, a 5k fan-out, no 10M, no soak), then the check
## that the JSON carries every figure with sane values; a few minutes
BENCH_SMOKE_ARGS ?= --rows 20000 --repeat 1 --no-pgsync --scale 10000,20000 --cli-cost-repeat 3 \
	--only ceiling,naive,pipeline,pipeline_pandas_identity,pipeline_pandas_realistic,ceiling_small,pipeline_small,cli_small \
	--pgbench-rows 20000 --pgbench-seconds 10 --pgbench-repeat 1 \
	--freshness --freshness-changes 40 --ranges-rows 20000 --fanout-products 5000 --joined-rows 20000
bench-smoke: venv
	$(BIN)/python -m bench.run $(BENCH_SMOKE_ARGS) --output bench/results/smoke.json
	$(BIN)/python -m bench.check bench/results/smoke.json
