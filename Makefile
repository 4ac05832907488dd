# Two commands for a fresh clone (see README):
#   make backtest   set up a venv and run the default backtest on the bundled real data
#   make test       set up a venv (with the test extras), type-check the clean modules, run the tests
#   make typecheck  mypy (the version pinned in pyproject.toml) on the modules listed in [tool.mypy] files
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: setup setup-test setup-typecheck typecheck backtest test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

setup: $(BIN)/python
	$(BIN)/pip install -q -e .

# torch: the local CPU build first (any other torch spec may pull a multi-GB CUDA build)
TORCH ?= torch==2.13.0

# every extra, so the whole suite runs: ML training, ccxt, PostgreSQL, Dask, Optuna, scikit-learn
setup-test: $(BIN)/python
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[test,typecheck,ml,exchange,postgres,dask,sweep,evaluate]'
	$(BIN)/pip install -q -e plugin-template

setup-typecheck: $(BIN)/python
	$(BIN)/pip install -q -e '.[typecheck]'

# the whole package ([tool.mypy] in pyproject.toml): any error fails make test
typecheck: setup-typecheck
	$(BIN)/python -m mypy

# each suite prints its time (ci: <suite> in N s)
test: setup-test
	@t=$$(date +%s); $(BIN)/lint-imports && echo "ci: import contracts in $$(( $$(date +%s) - t )) s"
	@t=$$(date +%s); $(BIN)/python -m mypy && echo "ci: type check in $$(( $$(date +%s) - t )) s"
	@t=$$(date +%s); $(BIN)/python -m pytest && echo "ci: engine tests in $$(( $$(date +%s) - t )) s"
	@t=$$(date +%s); cd plugin-template && ../$(BIN)/python -m pytest -q tests && echo "ci: plugin template tests in $$(( $$(date +%s) - t )) s"
	@t=$$(date +%s); MLCOORD_BIN=$(BIN) bash .ci/plugin-template-check && echo "ci: plugin template check in $$(( $$(date +%s) - t )) s"

backtest: setup
	$(BIN)/mlcoord backtest

bench: setup
	$(BIN)/python benchmarks/bench_backtest.py

clean:
	rm -rf $(VENV) build *.egg-info engine/*.egg-info .mypy_cache
