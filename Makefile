# Two commands for a fresh clone (see README):
#   make backtest   set up .venv and run the default backtest on the bundled real data
#   make test       set up .venv-test (every extra and the plugin template), type-check, run the tests
#   make typecheck  mypy (the version pinned in pyproject.toml) on the modules listed in [tool.mypy] files
# The tests have their own environment: `make test` never installs anything into the one
# `make backtest` (and the user) runs in; its last step checks that.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
TEST_VENV ?= .venv-test
TEST_BIN = $(TEST_VENV)/bin

.PHONY: setup setup-test setup-typecheck typecheck backtest test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(TEST_BIN)/python:
	$(PYTHON) -m venv $(TEST_VENV)

setup: $(BIN)/python
	$(BIN)/pip install -q -e .

# torch: the local CPU build first (any other torch spec may pull a multi-GB CUDA build)
TORCH ?= torch==2.13.0

# every extra, so the whole suite runs: ML training, ccxt, PostgreSQL, Dask, Optuna, scikit-learn
setup-test: $(TEST_BIN)/python
	$(TEST_BIN)/pip install -q $(TORCH)
	$(TEST_BIN)/pip install -q -e '.[test,typecheck,ml,exchange,postgres,dask,sweep,evaluate,api,gbm]'
	$(TEST_BIN)/pip install -q -e plugin-template

setup-typecheck: $(TEST_BIN)/python
	$(TEST_BIN)/pip install -q -e '.[typecheck]'

# the whole package ([tool.mypy] in pyproject.toml): any error fails make test
typecheck: setup-typecheck
	$(TEST_BIN)/python -m mypy

# each suite prints its time (ci: <suite> in N s)
test: setup-test
	@t=$$(date +%s); $(TEST_BIN)/lint-imports && echo "ci: import contracts in $$(( $$(date +%s) - t )) s"
	@t=$$(date +%s); $(TEST_BIN)/python -m mypy && echo "ci: type check in $$(( $$(date +%s) - t )) s"
	@t=$$(date +%s); $(TEST_BIN)/python -m pytest && echo "ci: engine tests in $$(( $$(date +%s) - t )) s"
	@t=$$(date +%s); cd plugin-template && $(abspath $(TEST_BIN))/python -m pytest -q tests && echo "ci: plugin template tests in $$(( $$(date +%s) - t )) s"
	@t=$$(date +%s); MLCOORD_BIN=$(TEST_BIN) bash .ci/plugin-template-check && echo "ci: plugin template check in $$(( $$(date +%s) - t )) s"
	@bash .ci/backtest-venv-untouched $(VENV)

backtest: setup
	$(BIN)/mlcoord backtest

bench: setup
	$(BIN)/python benchmarks/bench_backtest.py

clean:
	rm -rf $(VENV) $(TEST_VENV) build *.egg-info engine/*.egg-info .mypy_cache
