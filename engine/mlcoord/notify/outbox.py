"""A channel's bounded queue and the worker thread that empties it, with retries and backoff.

:meth:`Outbox.put` is what the trading thread calls: an append under a lock held only for
appends and pops, never while sending, so it costs the same whether the channel is up, down or
hanging. A full queue drops its *oldest* item (the newest news is worth more) and counts it, with a
warning at the first drop and every :data:`WARN_EVERY` after. The worker sends one item at a
time; a :class:`SendError` is retried after ``backoff`` seconds, doubled per attempt up to
``backoff_max`` (or after the server's ``retry_after``), a :class:`Refused` is not retried. The
waits go through ``wait(seconds)`` (an injectable sleeper; the default returns early when the
outbox stops), so tests never sleep.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Any, Callable, Optional, Protocol, runtime_checkable

import attrs
import structlog

from mlcoord.logs import redact

log = structlog.get_logger("mlcoord.notify")

#: a full queue warns at its first drop and then every this many
WARN_EVERY = 100
#: the longest a server's retry-after is honoured (seconds)
MAX_RETRY_AFTER = 3600.0


class SendError(Exception):
    """A send that failed and may succeed later (network error, 5xx, 429); ``retry_after``:
    seconds the server asked to wait (None: the outbox's backoff)."""

    def __init__(self, text: str, retry_after: Optional[float] = None):
        super().__init__(text)
        self.retry_after = retry_after


class Refused(Exception):
    """A send the server refused for good (4xx other than 429: a bad token, a deleted webhook)."""


@runtime_checkable
class Sender(Protocol):
    """A channel: ``send(item)`` delivers one item or raises :class:`SendError` / :class:`Refused`;
    ``verbosity``: on, silent or off per notification kind."""

    name: str
    verbosity: dict[str, str]

    def send(self, item: Any) -> None: ...


@attrs.define
class Stats:
    sent: int = 0
    failed: int = 0
    dropped: int = 0
    retries: int = 0
    failing: bool = False
    last_error: str = ""
    last_error_at: Optional[float] = None
    last_sent_at: Optional[float] = None


class Outbox:
    """One channel's queue and worker (:meth:`start` starts the thread; :meth:`run_pending` sends
    what is queued in the calling thread instead, for tests)."""

    def __init__(self, sender: Sender, *, size: int, max_attempts: int, backoff: float, backoff_max: float,
                 clock: Callable[[], float] = time.time, wait: Optional[Callable[[float], bool]] = None):
        self.sender, self.size, self.max_attempts = sender, size, max_attempts
        self.backoff, self.backoff_max, self.clock = backoff, backoff_max, clock
        self.stats = Stats()
        self._items: collections.deque[Any] = collections.deque()
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self.wait = wait if wait is not None else self._stopping.wait
        self._thread: Optional[threading.Thread] = None

    @property
    def name(self) -> str:
        return self.sender.name

    def put(self, item: Any) -> None:
        """Queue ``item`` (any thread, O(1), never blocks on the channel)."""
        with self._cond:
            full = len(self._items) >= self.size
            if full:
                self._items.popleft()
                self.stats.dropped += 1
            self._items.append(item)
            self._cond.notify()
        if full and (self.stats.dropped == 1 or self.stats.dropped % WARN_EVERY == 0):
            log.warning("notify_dropped", channel=self.name, dropped=self.stats.dropped, queue_size=self.size,
                        note="the channel's queue is full: its oldest notification was dropped")

    def depth(self) -> int:
        return len(self._items)

    def take_pending(self) -> list[Any]:
        """Empty the queue and return what it held (a reload hands it to the new outbox)."""
        with self._cond:
            items = list(self._items)
            self._items.clear()
        return items

    def start(self) -> "Outbox":
        self._thread = threading.Thread(target=self._run, name=f"mlcoord-notify-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 1.0) -> None:
        """Stop the worker (a send in progress ends on its own time-out; the thread is a daemon)."""
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._items and not self._stopping.is_set():
                    self._cond.wait()
                if self._stopping.is_set():
                    return
                item = self._items.popleft()
            self.deliver(item)

    def run_pending(self) -> None:
        """Send everything queued, in this thread."""
        while True:
            with self._cond:
                if not self._items:
                    return
                item = self._items.popleft()
            self.deliver(item)

    def deliver(self, item: Any) -> bool:
        """Send ``item``, retrying a :class:`SendError` up to ``max_attempts``; True when sent."""
        delay, stats = self.backoff, self.stats
        for attempt in range(1, self.max_attempts + 1):
            try:
                self.sender.send(item)
            except SendError as exc:
                self._error(exc)
                if attempt == self.max_attempts:
                    break
                pause = delay if exc.retry_after is None else min(max(exc.retry_after, 0.0), MAX_RETRY_AFTER)
                stats.retries += 1
                if self.wait(pause):        # stopping
                    return False
                delay = min(delay * 2, self.backoff_max)
            except Exception as exc:        # Refused, or a bug formatting the item: never retried
                self._error(exc)
                break
            else:
                stats.sent += 1
                stats.failing = False
                stats.last_sent_at = self.clock()
                return True
        stats.failed += 1
        log.warning("notify_failed", channel=self.name, attempts=attempt, error=stats.last_error)
        return False

    def _error(self, exc: Exception) -> None:
        self.stats.failing = True
        self.stats.last_error = redact(f"{type(exc).__name__}: {exc}")[:300]
        self.stats.last_error_at = self.clock()

    def health(self) -> dict[str, Any]:
        s = self.stats
        return {"state": "failing" if s.failing else "ok", "sent": s.sent, "failed": s.failed, "dropped": s.dropped,
                "retries": s.retries, "queued": self.depth(), "last_error": s.last_error or None,
                "last_error_at": s.last_error_at, "last_sent_at": s.last_sent_at}
