"""Where independent pieces of work run: in this process, on a local process pool, or on Dask.

Evaluations and sweeps split into tasks (one per window and symbol, one per trial and symbol).
A task is a module-level function ``fn(shared, *args)``; ``shared`` is the run's data (candles,
settings, models), sent to every worker once, not once per task. Three executors run them:

* ``inline``: one after the other in this process (library default, tests, debugging);
* ``local`` (the command line's default): a process pool sized to the cores, one thread per
  worker (OMP/MKL/OpenBLAS/torch limited to one, so two workers do not fight over two cores);
* ``dask``: an existing cluster (``dask scheduler`` plus ``dask worker tcp://HOST:8786``,
  mlcoord installed on each). Only this module imports Dask, and only when asked for.

The choice comes from the command line, else ``MLCOORD_EXECUTOR`` / ``MLCOORD_DASK_ADDRESS``,
else the config's ``[executor]``, else ``local``. Every task is seeded from its key (numpy,
``random``, torch) and workers use one thread, so a job gives the same figures on any executor.

Faults: a task that raises becomes a failed :class:`TaskResult` naming its symbol, window and
parameters, and the others go on; a worker that dies has its tasks re-run elsewhere (Dask does
this itself; the local pool is rebuilt and the unfinished tasks resubmitted, up to
``max_pool_restarts`` times).
"""

from __future__ import annotations

import concurrent.futures as cf
import importlib
import logging
import os
import pickle
import random
import sys
import tempfile
import time
import traceback
import types
import uuid
import zlib
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import attrs
import numpy as np
import structlog

from mlcoord.errors import ConfigError
from mlcoord.executor_config import KINDS, ExecutorConfig  # noqa: F401 (re-exported)

log = structlog.get_logger("mlcoord.executors")

ENV_EXECUTOR = "MLCOORD_EXECUTOR"
ENV_ADDRESS = "MLCOORD_DASK_ADDRESS"
ENV_WORKERS = "MLCOORD_WORKERS"
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS")
#: Dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536 in workers; it made pandas backtests 3x slower here
DASK_CONFIG = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}
#: the same for workers started from a shell: this YAML in ``~/.config/dask/`` (or a folder named
#: by ``DASK_CONFIG``); an environment variable cannot do it (Dask lower-cases the key)
DASK_WORKER_YAML = """distributed:
  nanny:
    pre-spawn-environ:
      MALLOC_TRIM_THRESHOLD_: null
"""


def dask_worker_env(folder: Path) -> dict[str, str]:
    """Environment for ``dask worker`` processes started by mlcoord (tests, benchmarks)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "mlcoord.yaml").write_text(DASK_WORKER_YAML, encoding="utf-8")
    return {"DASK_CONFIG": str(folder)}


def choose_executor(kind: Optional[str] = None, address: Optional[str] = None,
                    config: Optional[ExecutorConfig] = None, env: Optional[Mapping[str, str]] = None
                    ) -> ExecutorConfig:
    """Command line, then environment, then config, then ``local``; an address alone means dask."""
    env = os.environ if env is None else env
    base = config or ExecutorConfig()
    address = address or env.get(ENV_ADDRESS) or base.address
    kind = kind or env.get(ENV_EXECUTOR) or (base.kind if config is not None else None)
    kind = kind or ("dask" if address else "local")
    if kind not in KINDS:
        raise ConfigError(f"unknown executor {kind!r} (known: {', '.join(KINDS)})")
    if kind == "dask" and not address:
        raise ConfigError(f"executor 'dask' needs a scheduler address: --address tcp://HOST:8786 "
                          f"or {ENV_ADDRESS}")
    workers = int(env[ENV_WORKERS]) if env.get(ENV_WORKERS) else base.workers
    return ExecutorConfig(kind, address, workers, base.max_pool_restarts)


@attrs.frozen
class Task:
    """One piece of work: ``fn(shared, *args)``; ``labels`` (symbol, window, params) name it in reports."""

    key: str
    fn: Callable[..., Any]
    args: tuple = ()
    labels: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class TaskResult:
    key: str
    labels: Mapping[str, Any]
    value: Any = None
    error: Optional[str] = None       # "TypeError: ..." when the task failed
    traceback: str = ""
    seconds: float = 0.0
    worker: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None

    def describe(self) -> str:
        where = ", ".join(f"{k}={v}" for k, v in self.labels.items())
        return f"task {self.key} ({where}) failed: {self.error}"


def task_seed(key: str) -> int:
    return zlib.crc32(key.encode("utf-8"))


_THREADS_LIMITED = False


def limit_threads() -> None:
    """One thread per worker process for BLAS, OpenMP and torch (idempotent)."""
    global _THREADS_LIMITED
    if _THREADS_LIMITED:
        return
    for var in THREAD_VARS:
        os.environ[var] = "1"
    if "torch" in sys.modules:      # else torch reads OMP_NUM_THREADS=1 when a plugin imports it
        sys.modules["torch"].set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(1)
    except ImportError:
        pass
    _THREADS_LIMITED = True


def _seed(key: str) -> None:
    seed = task_seed(key)
    random.seed(seed)
    np.random.seed(seed)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)


_LOGS_SET = False


def _worker_logs(level: int) -> None:
    """Workers log at the driver's level (warnings by default), once per process."""
    global _LOGS_SET
    if not _LOGS_SET:
        from mlcoord import logs

        logs.configure(level)
        _LOGS_SET = True


def execute(fn: Callable[..., Any], shared: Any, args: tuple, key: str, labels: Mapping[str, Any],
            in_worker: bool = True, log_level: int = logging.WARNING) -> TaskResult:
    """Run one task where it landed; an exception becomes a failed result, never a lost one."""
    if in_worker:
        limit_threads()
        _worker_logs(log_level)
    _seed(key)
    t0 = time.perf_counter()
    worker = f"{os.uname().nodename}:{os.getpid()}"
    try:
        value = fn(shared, *args)
    except Exception as exc:
        return TaskResult(key, dict(labels), None, f"{type(exc).__name__}: {exc}", traceback.format_exc(),
                          time.perf_counter() - t0, worker)
    return TaskResult(key, dict(labels), value, None, "", time.perf_counter() - t0, worker)


# ---- shipping plugins to workers -------------------------------------------------------------

@attrs.frozen
class PluginRecipe:
    """How a worker rebuilds the driver's plugin set: enabled plugin name -> importable module
    (or the plugin object itself when it is not a module). Pluggy managers do not pickle."""

    plugins: tuple[tuple[str, Any], ...]

    @classmethod
    def of(cls, plugin_set: Any) -> "PluginRecipe":
        out: list[tuple[str, Any]] = []
        for name, status in sorted(plugin_set.statuses.items()):
            if not status.enabled:
                continue
            obj = plugin_set.manager.get_plugin(name)
            if isinstance(obj, types.ModuleType) and obj.__name__.startswith(PLUGIN_FILE_PACKAGE + "."):
                out.append((name, ("file", obj.__file__)))     # a --plugins-dir file: re-imported by path
            else:
                out.append((name, obj.__name__ if isinstance(obj, types.ModuleType) else obj))
        return cls(tuple(out))


_PLUGIN_CACHE: dict[PluginRecipe, Any] = {}
#: the package ``--plugins-dir`` files are imported under (see mlcoord.registry)
PLUGIN_FILE_PACKAGE = "mlcoord_plugins_dir"


def plugins_from(recipe: PluginRecipe):
    """The plugin set of ``recipe``, loaded once per process."""
    cached = _PLUGIN_CACHE.get(recipe)
    if cached is None:
        from mlcoord.registry import load_plugin_file, load_plugins

        def load(name: str, how: Any) -> Any:
            if isinstance(how, str):
                return importlib.import_module(how)
            if isinstance(how, tuple) and how[:1] == ("file",):
                return load_plugin_file(name, Path(how[1]))
            return how

        extra = {n: load(n, m) for n, m in recipe.plugins}
        cached = _PLUGIN_CACHE[recipe] = load_plugins({}, entry_points={}, extra_plugins=extra)
    return cached


# ---- executors -------------------------------------------------------------------------------

class Progress:
    """tqdm bar of tasks: done, running, failed and time left; quiet when not a terminal."""

    def __init__(self, total: int, desc: str, enabled: Optional[bool]):
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc=desc, unit="task", dynamic_ncols=True,
                        disable=None if enabled is None else not enabled)
        self.failed = 0

    def update(self, result: Optional[TaskResult], running: int) -> None:
        if result is not None:
            self.failed += not result.ok
            self.bar.update(1)
        self.bar.set_postfix(running=running, failed=self.failed, refresh=result is not None)

    def close(self) -> None:
        self.bar.close()


@attrs.frozen(eq=False)
class Shared:
    """Data already on the workers (a file for the local pool, a scattered future on Dask)."""

    ref: Any


class Executor:
    """Runs tasks; results come back in task order whatever order they finish in.

    ``shared`` is an object (sent for this run only), a :class:`Shared` from :meth:`share`
    (sent once, reused by several runs), or a tuple of those: the task then gets a tuple."""

    kind = "base"

    @property
    def workers(self) -> int:
        """How many tasks run at once (a property: Dask's count changes as workers come and go)."""
        return 1

    def share(self, obj: Any) -> Shared:
        return Shared(obj)

    def unshare(self, shared: Shared) -> None:
        pass

    def run(self, tasks: Sequence[Task], shared: Any = None, *, desc: str = "tasks",
            progress: Optional[bool] = False, on_result: Optional[Callable[[TaskResult], None]] = None
            ) -> list[TaskResult]:
        keys = [t.key for t in tasks]
        if len(set(keys)) != len(keys):
            raise ValueError("task keys must be unique")
        if not tasks:
            return []
        own = []
        if shared is not None:
            parts = shared if isinstance(shared, tuple) else (shared,)
            handles = []
            for part in parts:
                if not isinstance(part, Shared):
                    part = self.share(part)
                    own.append(part)
                handles.append(part)
            shared = tuple(handles) if isinstance(shared, tuple) else handles[0]
        bar = Progress(len(tasks), desc, progress) if progress is not False else None
        done: dict[str, TaskResult] = {}

        def finished(result: TaskResult, running: int) -> None:
            done[result.key] = result
            if not result.ok:
                log.error("task_failed", key=result.key, error=result.error, **result.labels)
            if bar:
                bar.update(result, running)
            if on_result:
                on_result(result)
        try:
            self._run(list(tasks), shared, finished)
        finally:
            if bar:
                bar.close()
            for part in own:
                self.unshare(part)
        return [done[k] for k in keys]

    def _run(self, tasks: list[Task], shared: Any, finished: Callable[[TaskResult, int], None]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def describe(self) -> str:
        return f"{self.kind} ({self.workers} worker{'s' if self.workers != 1 else ''})"


class InlineExecutor(Executor):
    kind = "inline"

    def _run(self, tasks, shared, finished):
        torch = sys.modules.get("torch")
        before = torch.get_num_threads() if torch else None
        if torch:        # the same arithmetic as a one-thread worker; restored afterwards
            torch.set_num_threads(1)
        try:
            value = tuple(h.ref for h in shared) if isinstance(shared, tuple) else getattr(shared, "ref", None)
            for t in tasks:
                finished(execute(t.fn, value, t.args, t.key, t.labels, in_worker=False), 0)
        finally:
            if torch:
                torch.set_num_threads(before)


def _driver_log_level() -> int:
    from mlcoord import logs

    return logs.current_level()


_SHARED: dict[str, Any] = {}
#: imported once by the fork server (an ImportError there is ignored); not torch, which must
#: first see OMP_NUM_THREADS=1 in the worker
PRELOAD = ("numpy", "pandas", "mlcoord.evaluate", "mlcoord.backtest.run", "river", "scipy.stats")


def _pool_init() -> None:
    for var in THREAD_VARS:
        os.environ[var] = "1"
    limit_threads()


def _load_shared(path: str) -> Any:
    """Read a shared file once per worker process (the few most recent are kept)."""
    if path not in _SHARED:
        with open(path, "rb") as fh:
            _SHARED[path] = pickle.load(fh)
        while len(_SHARED) > 4:
            _SHARED.pop(next(iter(_SHARED)))
    return _SHARED[path]


def _pool_task(refs, fn, args, key, labels, log_level) -> TaskResult:
    """Worker side of the local pool."""
    shared = tuple(_load_shared(p) for p in refs) if isinstance(refs, tuple) else \
        (_load_shared(refs) if refs is not None else None)
    return execute(fn, shared, args, key, labels, log_level=log_level)


class LocalExecutor(Executor):
    """A process pool (forkserver: no fork of a driver that already started torch threads).

    The shared data is pickled once to a temporary file and read once by each worker process
    (the pool outlives a run, so an initializer could not carry a new run's data)."""

    kind = "local"

    def __init__(self, workers: Optional[int] = None, max_pool_restarts: int = 3):
        self._workers = workers or os.cpu_count() or 1
        self.max_pool_restarts = max_pool_restarts
        self._pool: Optional[cf.ProcessPoolExecutor] = None
        self._dir = tempfile.TemporaryDirectory(prefix="mlcoord-pool-")
        self.restarts = 0

    @property
    def workers(self) -> int:
        return self._workers

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        import multiprocessing as mp
        from multiprocessing.context import BaseContext

        ctx: BaseContext
        if "forkserver" in mp.get_all_start_methods():
            ctx = mp.get_context("forkserver")
            ctx.set_forkserver_preload(list(PRELOAD))   # a restarted pool forks these, warm
        else:
            ctx = mp.get_context("spawn")
        return cf.ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_pool_init)

    def share(self, obj: Any) -> Shared:
        path = Path(self._dir.name) / f"shared-{uuid.uuid4().hex}.pkl"
        with open(path, "wb") as fh:
            pickle.dump(obj, fh, protocol=pickle.HIGHEST_PROTOCOL)
        return Shared(str(path))

    def unshare(self, shared: Shared) -> None:
        Path(shared.ref).unlink(missing_ok=True)

    def _run(self, tasks, shared, finished):
        path = tuple(h.ref for h in shared) if isinstance(shared, tuple) else getattr(shared, "ref", None)
        remaining = list(tasks)
        restarts = 0
        while remaining:
            if self._pool is None:
                self._pool = self._new_pool()
            broken = self._submit_all(self._pool, remaining, path, finished)
            remaining = broken
            if broken:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None
                restarts += 1
                self.restarts += 1
                if restarts > self.max_pool_restarts:
                    for t in broken:
                        finished(TaskResult(t.key, dict(t.labels), None,
                                            f"WorkerDied: worker process died {restarts} times"), 0)
                    return
                log.warning("worker_died_resubmitting", tasks=len(broken), restart=restarts)

    def _submit_all(self, pool: cf.ProcessPoolExecutor, tasks, path, finished) -> list[Task]:
        """Submit, collect; returns the tasks lost to a dead worker (to run again)."""
        level = _driver_log_level()
        futures = {pool.submit(_pool_task, path, t.fn, t.args, t.key, dict(t.labels), level): t
                   for t in tasks}
        lost = []
        for f in cf.as_completed(futures):
            try:
                result = f.result()
            except cf.process.BrokenProcessPool:
                lost.append(futures[f])
                continue
            except Exception as exc:   # the task's arguments or result could not be pickled
                t = futures[f]
                result = TaskResult(t.key, dict(t.labels), None, f"{type(exc).__name__}: {exc}")
            finished(result, sum(1 for g in futures if g.running()))
        order = {t.key: i for i, t in enumerate(tasks)}
        return sorted(lost, key=lambda t: order[t.key])

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._dir.cleanup()


def _dask_task(fn, shared, args, key, labels, log_level) -> TaskResult:
    return execute(fn, shared, args, key, labels, log_level=log_level)


class DaskExecutor(Executor):
    """An existing Dask cluster. The shared data is scattered once with ``broadcast=True``.

    A worker that dies has its tasks rescheduled by the scheduler on the others (a task on
    which ``distributed.scheduler.allowed-failures`` workers died is reported failed)."""

    kind = "dask"

    def __init__(self, address: str, timeout: float = 10.0):
        import dask
        from distributed import Client

        dask.config.set(DASK_CONFIG)
        try:
            self.client = Client(address, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise ConfigError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
        self.address = address
        self._warn_malloc_trim()

    @property
    def workers(self) -> int:
        return max(sum(w.get("nthreads", 1) for w in self.client.scheduler_info()["workers"].values()), 1)

    def _warn_malloc_trim(self) -> None:
        try:
            seen = self.client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_"))
        except Exception:   # pragma: no cover - diagnostics only
            return
        slow = [w for w, v in seen.items() if v == "65536"]
        if slow:
            log.warning("dask_malloc_trim_threshold", workers=len(slow),
                        fix="set distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_ to null in the "
                        "workers' Dask config (mlcoord.executors.DASK_WORKER_YAML)")

    def share(self, obj: Any) -> Shared:
        # wrapped in a list: Dask would scatter a dict's values one by one
        return Shared(self.client.scatter([obj], broadcast=True, hash=False)[0])

    def unshare(self, shared: Shared) -> None:
        shared.ref.release()

    def _run(self, tasks, shared, finished):
        from distributed import as_completed

        handle = tuple(h.ref for h in shared) if isinstance(shared, tuple) else getattr(shared, "ref", None)
        run_id = uuid.uuid4().hex[:8]
        futures = {}
        for t in tasks:
            f = self.client.submit(_dask_task, t.fn, handle, t.args, t.key, dict(t.labels), _driver_log_level(),
                                   key=f"mlcoord-{run_id}-{t.key}", pure=False)
            futures[f] = t
        pending = len(futures)
        try:
            for f in as_completed(futures, loop=self.client.loop):
                t = futures[f]
                pending -= 1
                try:
                    result = f.result()
                except Exception as exc:   # KilledWorker: the task took down too many workers
                    result = TaskResult(t.key, dict(t.labels), None, f"{type(exc).__name__}: {exc}")
                finished(result, min(pending, self.workers))
                f.release()
        finally:
            for f in futures:
                f.release()

    def close(self) -> None:
        self.client.close()

    def describe(self) -> str:
        return f"dask at {self.address} ({self.workers} worker threads)"


def make_executor(config: ExecutorConfig) -> Executor:
    if config.kind == "inline":
        return InlineExecutor()
    if config.kind == "local":
        return LocalExecutor(config.workers, config.max_pool_restarts)
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise ConfigError("executor 'dask' needs Dask: pip install 'mlcoord[dask]'") from None
    if not config.address:      # choose_executor refuses this already; a config built in code may not
        raise ConfigError("executor 'dask' needs a scheduler address: [executor] address = \"tcp://HOST:8786\"")
    return DaskExecutor(config.address)


def failures(results: Sequence[TaskResult]) -> list[str]:
    """One line per failed task: its symbol, window and parameters, and the error."""
    return [r.describe() for r in results if not r.ok]


__all__ = ["ExecutorConfig", "choose_executor", "Task", "TaskResult", "Executor", "InlineExecutor",
           "LocalExecutor", "DaskExecutor", "make_executor", "failures", "PluginRecipe", "plugins_from",
           "ENV_EXECUTOR", "ENV_ADDRESS", "ENV_WORKERS", "DASK_CONFIG", "DASK_WORKER_YAML", "dask_worker_env",
           "task_seed"]
