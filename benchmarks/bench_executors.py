"""What going parallel costs and gains: speed-up from 1 to 2 workers, and the per-task overhead.

    python benchmarks/bench_executors.py [--tasks 8] [--bars 10000] [--no-dask]

CPU-bound tasks: technical-only backtests of slices of the bundled BTC/ETH data (one task each),
on the local process pool and on a Dask cluster on this machine (scheduler and workers in
processes, Dask's MALLOC_TRIM_THRESHOLD_ trap switched off), each timed warm (workers started
and data shared before the clock starts). The overhead is the mean time per no-op task.
"""

from __future__ import annotations

import argparse
import time

from mlcoord.candles import load_candles
from mlcoord.datasets import bundled_path
from mlcoord.executors import DASK_CONFIG, Executor, LocalExecutor, Task
from mlcoord.registry import load_plugins
from mlcoord.sweep import SweepJob, backtest_task


def noop(shared, i):
    return i


def timed(executor: Executor, tasks, shared) -> float:
    handle = executor.share(shared)
    executor.run(tasks, handle)          # warm every worker: imports, plugins, shared data
    t0 = time.perf_counter()
    results = executor.run(tasks, handle)
    elapsed = time.perf_counter() - t0
    executor.unshare(handle)
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    return elapsed


def measure(make, tasks, shared, noops) -> dict[str, float]:
    out = {}
    for workers in (1, 2):
        with make(workers) as ex:
            out[workers] = timed(ex, tasks, shared)
            if workers == 2:
                out["overhead_ms"] = timed(ex, noops, {"x": 0}) / len(noops) * 1e3
    out["speedup"] = out[1] / out[2]
    return out


class _LocalDask:
    """A LocalCluster of process workers, for the benchmark only (hence the __main__ guard below)."""

    def __init__(self, workers: int):
        import dask
        from distributed import LocalCluster

        from mlcoord.executors import DaskExecutor

        dask.config.set(DASK_CONFIG)
        self.cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                    host="127.0.0.1", dashboard_address=None)
        self.executor = DaskExecutor(self.cluster.scheduler_address)

    def __enter__(self):
        return self.executor

    def __exit__(self, *exc):
        self.executor.close()
        self.cluster.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=8)
    ap.add_argument("--bars", type=int, default=10_000)
    ap.add_argument("--noops", type=int, default=200)
    ap.add_argument("--no-dask", action="store_true")
    args = ap.parse_args()
    full = [load_candles(bundled_path(s)) for s in ("BTC/USDT", "ETH/USDT")]
    parts = [full[i % 2].slice((i // 2) * args.bars, (i // 2 + 1) * args.bars) for i in range(args.tasks)]
    raw = {"pipeline": {"ml_components": []}}
    from mlcoord.executors import PluginRecipe

    recipe = PluginRecipe.of(load_plugins())
    tasks = [Task(f"bt{j}", backtest_task, ({}, j), {"symbol": c.symbol}) for j, c in enumerate(parts)]
    noops = [Task(f"n{i}", noop, (i,)) for i in range(args.noops)]
    shared = SweepJob(raw, recipe, tuple(parts))    # a sweep's task: returns the Sharpe ratio only
    print(f"{args.tasks} backtests of {args.bars} bars (technical only), {args.noops} no-op tasks")
    kinds = {"local pool": lambda n: LocalExecutor(n)}
    if not args.no_dask:
        kinds["dask (local cluster)"] = _LocalDask
    for name, make in kinds.items():
        m = measure(make, tasks, shared, noops)
        print(f"{name:<22} 1 worker {m[1]:6.2f} s   2 workers {m[2]:6.2f} s   speed-up {m['speedup']:.2f}x   "
              f"overhead {m['overhead_ms']:.2f} ms/task")


if __name__ == "__main__":   # a LocalCluster started at import time would start again in every worker
    main()
