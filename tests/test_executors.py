"""Executors: the same evaluation on every executor, failures reported, dead workers survived.

A real Dask cluster runs here: a ``dask scheduler`` and two ``dask worker`` processes on
127.0.0.1, started by a fixture and stopped at the end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlcoord.candles import load_candles
from mlcoord.config import Settings, structure
from mlcoord.datasets import bundled_path
from mlcoord.errors import ConfigError
from mlcoord.evaluate import WalkForward, evaluate
from mlcoord.executors import (dask_worker_env, ExecutorConfig, InlineExecutor, LocalExecutor, Task,
                               choose_executor, failures)
from mlcoord.registry import discover_entry_points, load_plugins

distributed = pytest.importorskip("distributed")
ROOT = Path(__file__).resolve().parents[1]


def square(shared, x):
    """A task: shared offset plus x squared (returns where it ran, to kill that worker)."""
    time.sleep(shared["sleep"])
    if x == shared.get("fail"):
        raise ValueError(f"bad input {x}")
    return {"value": shared["offset"] + x * x, "pid": os.getpid()}


def _tasks(n):
    return [Task(f"sq{x}", square, (x,), {"symbol": f"S{x}", "window": x % 3, "params": {"x": x}}) for x in range(n)]


@pytest.fixture(scope="module")
def dask_address(tmp_path_factory):
    """A scheduler and two single-thread workers, as a user would start them."""
    folder = tmp_path_factory.mktemp("dask")
    env = {**os.environ, **dask_worker_env(folder / "config"),
           "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in ("engine", "plugins", "tests"))}
    bin_dir = Path(sys.executable).parent
    scheduler_file = folder / "scheduler.json"
    procs = [subprocess.Popen([str(bin_dir / "dask"), "scheduler", "--host", "127.0.0.1", "--port", "0",
                               "--no-dashboard", "--scheduler-file", str(scheduler_file)],
                              env=env, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)]
    try:
        deadline = time.monotonic() + 30
        while not scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        address = json.loads(scheduler_file.read_text())["address"]
        for _ in range(2):
            procs.append(subprocess.Popen([str(bin_dir / "dask"), "worker", address, "--nthreads", "1",
                                           "--no-dashboard", "--host", "127.0.0.1"],
                                          env=env, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                          start_new_session=True))
        with distributed.Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
            trims = client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_"))
            assert set(trims.values()) == {None}, trims     # the nanny's 3x slowdown is off
        yield address
    finally:   # each process leads its own group (nanny and worker): end exactly those
        for p in reversed(procs):
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=10)


@pytest.fixture(scope="module")
def local():
    with LocalExecutor(2) as ex:
        yield ex


@pytest.fixture
def dask_executor(dask_address):
    from mlcoord.executors import DaskExecutor

    ex = DaskExecutor(dask_address)
    yield ex
    ex.close()


def _strip_timings(result):
    for report in result["training"]:
        for value in report.values():
            if isinstance(value, dict):
                for k in ("seconds", "seconds_per_epoch", "path"):
                    value.pop(k, None)
    return json.dumps(result, sort_keys=True, default=str)


def test_same_evaluation_on_inline_local_and_dask(local, dask_executor):
    candles = [load_candles(bundled_path(s)).slice(0, 3200) for s in ("BTC/USDT", "ETH/USDT")]
    eps = {n: ep for n, ep in discover_entry_points().items() if getattr(ep.dist, "name", "") == "mlcoord"}
    plugins = load_plugins({}, entry_points=eps)
    settings = structure({"pipeline": {"ml_components": ["mtf", "rl_selector"]}}, Settings)
    wf = WalkForward(train_bars=800, fit_bars=800, test_bars=700, windows=2, retrain=False)
    results = [evaluate(settings, plugins, candles, wf, executor=ex)
               for ex in (InlineExecutor(), local, dask_executor)]
    assert results[0]["trading"] and results[0]["scores"]["signals"]["n"] > 20
    assert [r["failures"] for r in results] == [[], [], []]
    inline, on_pool, on_dask = (_strip_timings(r) for r in results)
    assert inline == on_pool
    assert inline == on_dask


@pytest.mark.parametrize("kind", ["local", "dask"])
def test_failing_task_is_reported_and_the_rest_complete(kind, local, request):
    ex = local if kind == "local" else request.getfixturevalue("dask_executor")
    results = ex.run(_tasks(6), {"offset": 1, "sleep": 0.0, "fail": 4})
    assert [r.ok for r in results] == [True, True, True, True, False, True]
    assert [r.value["value"] for r in results if r.ok] == [1, 2, 5, 10, 26]
    (line,) = failures(results)
    assert "symbol=S4" in line and "window=1" in line and "'x': 4" in line and "ValueError: bad input 4" in line


def test_local_pool_survives_a_killed_worker(local):
    killed = []

    def kill_first(result):
        if not killed:
            killed.append(result.value["pid"])
            os.kill(result.value["pid"], signal.SIGKILL)
    results = local.run(_tasks(8), {"offset": 0, "sleep": 0.3}, on_result=kill_first)
    assert all(r.ok for r in results), failures(results)
    assert [r.value["value"] for r in results] == [x * x for x in range(8)]
    assert local.restarts >= 1


def test_dask_survives_a_worker_killed_mid_run(dask_executor):
    pids = dask_executor.client.run(os.getpid)
    killed = []

    def kill_one(result):
        if not killed:
            victim = next(p for p in pids.values() if p != result.value["pid"]) if len(pids) > 1 else result.value["pid"]
            killed.append(victim)
            os.kill(victim, signal.SIGKILL)
    results = dask_executor.run(_tasks(10), {"offset": 0, "sleep": 0.4}, on_result=kill_one)
    assert killed
    assert all(r.ok for r in results), failures(results)
    assert [r.value["value"] for r in results] == [x * x for x in range(10)]


def test_executor_choice_cli_then_env_then_config():
    cfg = ExecutorConfig(kind="dask", address="tcp://10.0.0.1:8786")
    assert choose_executor(env={}).kind == "local"
    assert choose_executor(config=cfg, env={}).kind == "dask"
    assert choose_executor("local", config=cfg, env={}).kind == "local"
    env = {"MLCOORD_EXECUTOR": "inline", "MLCOORD_WORKERS": "3"}
    chosen = choose_executor(config=cfg, env=env)
    assert (chosen.kind, chosen.workers) == ("inline", 3)
    assert choose_executor(address="tcp://127.0.0.1:1", env={}).kind == "dask"
    with pytest.raises(ConfigError, match="needs a scheduler address"):
        choose_executor("dask", env={})
    with pytest.raises(ConfigError, match="unknown executor"):
        choose_executor(env={"MLCOORD_EXECUTOR": "ray"})


def test_only_the_executor_module_imports_dask():
    engine = ROOT / "engine" / "mlcoord"
    importers = sorted(str(p.relative_to(engine)) for p in engine.rglob("*.py")
                       if "import dask" in p.read_text() or "from distributed" in p.read_text()
                       or "import distributed" in p.read_text())
    assert importers == ["executors.py"]


def test_same_walk_forward_sweep_table_on_inline_local_and_dask(local, dask_executor, tmp_path):
    """``sweep --walk-forward``: batches are a setting, seeds per window, so every executor agrees."""
    pytest.importorskip("optuna")
    from mlcoord.backtest.run import load_market
    from mlcoord.config import structure as structure_as
    from mlcoord.sweep import load_sweep
    from mlcoord.walk_forward_sweep import WalkForwardSpec, run_walk_forward
    from test_walk_forward_sweep import write_config

    spec, settings, raw, _ = load_sweep(write_config(tmp_path))
    wf = structure_as(spec.walk_forward, WalkForwardSpec, "$.sweep.walk_forward")
    eps = {n: ep for n, ep in discover_entry_points().items() if getattr(ep.dist, "name", "") == "mlcoord"}
    plugins = load_plugins({}, entry_points=eps)
    candles = load_market(settings)
    tables = [run_walk_forward(spec, wf, raw, plugins, candles, ex) for ex in (InlineExecutor(), local, dask_executor)]
    assert tables[0]["failures"] == [] and len(tables[0]["windows"]) >= 2
    assert all(r["out_of_sample_sharpe"] is not None for r in tables[0]["windows"])
    inline, on_pool, on_dask = (json.dumps(t, sort_keys=True) for t in tables)
    assert inline == on_pool
    assert inline == on_dask


def test_a_dask_executor_without_an_address_is_a_config_error():
    """A config built in code (not through choose_executor) could reach DaskExecutor(None)."""
    pytest.importorskip("distributed")
    from mlcoord.errors import ConfigError
    from mlcoord.executors import ExecutorConfig, make_executor

    with pytest.raises(ConfigError, match="needs a scheduler address"):
        make_executor(ExecutorConfig(kind="dask"))
