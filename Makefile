# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export MLOPS_STATE_DIR ?= $(CURDIR)/.mlops

.PHONY: install demo test test-fast dev mlflow-ui serve lint clean bench

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	$(BIN)/python -m pip check
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/python -m mlops_assets.demo

test: install
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m "not slow"

dev: install
	$(BIN)/python -c "from mlops_assets.instance import prepare_dagster_home; from mlops_assets.settings import StatePaths; prepare_dagster_home(StatePaths.from_env())"
	DAGSTER_HOME=$(MLOPS_STATE_DIR)/dagster $(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

mlflow-ui: install
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(MLOPS_STATE_DIR)/mlflow.db --host 127.0.0.1 --port 5000

# Serve the current champion's bento (exported and rebuilt first) on http://$(HOST):$(PORT).
HOST ?= 127.0.0.1
PORT ?= 3001
serve: install
	$(BIN)/python -m mlops_assets.serving serve --host $(HOST) --port $(PORT)

# Benchmarks (not tests; not in CI): each figure against its baseline, results in bench/results/.
BENCH_FIGURES := fig1_ingestion fig2_incremental fig3_orchestration fig4_serving fig5_drift

bench: install
	for figure in $(BENCH_FIGURES); do $(BIN)/python -m bench.$$figure || exit 1; done

lint: install
	$(BIN)/ruff check mlops_assets tests bentos

clean:
	rm -rf $(MLOPS_STATE_DIR)
