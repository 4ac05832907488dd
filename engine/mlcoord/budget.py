"""Time budgets for plugin calls that bite: the engine stops waiting when a call runs over.

A check after the call returns (what ``vote_timeout_ms`` was) does not help: a 5 s vote still
held the loop 5 s, and a plugin that hangs stops the bot, its exits and its heartbeat with it.
With a budget, each component's calls run on a worker thread of its own and the engine waits at
most the budget: past it the call counts as failed (:class:`CallTimeout`) and the component is
left out of that decision, as if it had raised.

Python cannot stop a thread. The late call runs on until it returns; its answer is thrown away.
Until then the component is *busy*: every further call to it fails at once without being made
(so a hung plugin costs one budget, not one per bar, and never runs twice at the same time on
two threads). When the late call returns, the component is called again as usual. The worker is
a daemon thread: a call that never returns does not keep the process from exiting; an idle one
ends after a minute.

Budgets are off in backtests unless set (a deadline would make two runs of the same data differ
with the machine's load) and on by default in paper and live trading
(:data:`LIVE_BUDGET_MS`). A budget of 0 turns them off.
"""

from __future__ import annotations

import contextvars
import queue
import threading
from typing import Any, Callable, Optional

from mlcoord.bounds import ComponentFailure

#: the budget of a per-bar plugin call in paper and live trading when the config sets none (ms)
LIVE_BUDGET_MS = 5000.0
#: a component's worker thread ends after this long without a call (seconds)
IDLE_SECONDS = 60.0

Wait = Callable[[threading.Event, float], bool]


def wait_for(done: threading.Event, seconds: float) -> bool:
    """Whether the call finished within ``seconds`` (tests inject their own: no real waiting)."""
    return done.wait(seconds)


class CallTimeout(ComponentFailure):
    """A plugin call ran over its time budget (or its previous call still runs)."""


class _Call:
    __slots__ = ("fn", "args", "kwargs", "context", "done", "result", "error")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]):
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.context = contextvars.copy_context()      # the caller's bound log fields follow the call
        self.done = threading.Event()
        self.result: Any = None
        self.error: Optional[BaseException] = None

    def run(self) -> None:
        try:
            self.result = self.context.run(self.fn, *self.args, **self.kwargs)
        except BaseException as exc:       # handed to the caller, who is waiting for exactly this
            self.error = exc
        finally:
            self.done.set()


class _Worker:
    """One daemon thread running one component's calls, one at a time. It ends after ``idle``
    seconds without a call (a pipeline dropped leaves no thread behind) and starts again on the
    next one."""

    def __init__(self, name: str, idle: float):
        self.name, self.idle = f"mlcoord-plugin-{name}", idle
        self.jobs: queue.SimpleQueue[_Call] = queue.SimpleQueue()
        self.last: Optional[_Call] = None
        self.lock = threading.Lock()
        self.thread: Optional[threading.Thread] = None

    def submit(self, job: _Call) -> None:
        with self.lock:
            self.last = job
            self.jobs.put(job)
            if self.thread is None:
                self.thread = threading.Thread(target=self._serve, name=self.name, daemon=True)
                self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                job = self.jobs.get(timeout=self.idle)
            except queue.Empty:
                with self.lock:           # no call slipped in between: this thread may end
                    if self.jobs.empty():
                        self.thread = None
                        return
                continue
            job.run()

    @property
    def busy(self) -> bool:
        return self.last is not None and not self.last.done.is_set()


class Budget:
    """Runs plugin calls under a deadline of ``ms`` milliseconds (0: plainly, no thread).
    ``workers``: shared with another budget (a component's votes and its other calls), so a
    component whose call under one budget is still running is busy under the other too."""

    def __init__(self, ms: float, wait: Optional[Wait] = None, idle: float = IDLE_SECONDS,
                 workers: Optional[dict[str, _Worker]] = None):
        self.ms = float(ms)
        self.seconds = self.ms / 1000.0
        self.wait = wait
        self.idle = idle
        self._workers: dict[str, _Worker] = {} if workers is None else workers

    def __bool__(self) -> bool:
        return self.seconds > 0

    def timed(self, component: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` itself without a budget; else ``fn`` run on ``component``'s worker under it."""
        if not self.seconds:
            return fn
        return lambda *args, **kwargs: self.call(component, fn, *args, **kwargs)

    def call(self, component: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        worker = self._workers.get(component)
        if worker is None:
            worker = self._workers[component] = _Worker(component, self.idle)
        elif worker.busy:
            raise CallTimeout("skipped: its call that ran over its budget has not returned yet")
        job = _Call(fn, args, kwargs)
        worker.submit(job)
        if not (self.wait or wait_for)(job.done, self.seconds):
            raise CallTimeout(f"ran over its {self.ms:g} ms budget: left out, the call goes on in its thread "
                              "(Python cannot stop it) and the component is skipped until it returns")
        if job.error is not None:
            raise job.error
        return job.result


def budget_ms(configured: Optional[float], live: bool) -> float:
    """The budget a run uses: the configured one, else :data:`LIVE_BUDGET_MS` live and none in backtests."""
    if configured is not None:
        return float(configured)
    return LIVE_BUDGET_MS if live else 0.0


__all__ = ["Budget", "CallTimeout", "LIVE_BUDGET_MS", "budget_ms", "wait_for"]
