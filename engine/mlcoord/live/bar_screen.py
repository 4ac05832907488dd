"""Bad live bars never stop risk management: they are left out, counted and said out loud.

An exchange's candle answer can hold a bar no validation accepts (high below low, a zero price, a
timestamp twice) or one that passes and is still impossible (a high of ``1e300``:
:mod:`mlcoord.jumps`). Refusing the whole answer stopped a live bot: a poll never got past the
bad bar, and every restart failed while it lay inside ``[live] history_bars``. Here:

* :func:`screen_rows` keeps the sound rows of an answer and names the others (:class:`BadRow`);
  :func:`mlcoord.live.feed.closed_candles` raises :class:`~mlcoord.live.retry.MalformedAnswer`
  with the sound part attached, so a glitch is retried as before, and once the retries are spent
  the caller trades on the sound part (:func:`salvage`);
* :class:`BarScreen` (one per session) remembers each dropped bar (so a bar the exchange keeps
  sending is reported and retried once, not every poll), runs the jump filter on every bar as it
  closes (and over the history at start), counts what it left out (``dropped``: the heartbeat
  shows it, ``bad_bars``) and pauses a symbol's *entries* from a bad bar until a sound bar after
  it is admitted (``entries_paused`` / ``entries_resumed``). Stops and exits go on: the
  exchange-side stop stays, and the loop steps its exit updates on every sound bar.

A dropped bar is a hole in the symbol's history (the loop does not step at that time; a bar with
the same time arriving sound later is taken). Rows at the still-open bar are never judged.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import TYPE_CHECKING, Any, Iterable, Optional, Sequence

import attrs
import numpy as np
import structlog

from mlcoord.candles import Candles
from mlcoord.jumps import MAX_JUMP_ATR, Jump, JumpFilter

if TYPE_CHECKING:
    from mlcoord.live.retry import MalformedAnswer

log = structlog.get_logger("mlcoord.live.bar_screen")


@attrs.frozen
class BadRow:
    """A row left out of a candle answer: its open time in ms (None when it has no usable one)
    and why."""

    time_ms: Optional[int]
    reason: str


def _row_time(row: Any) -> Optional[int]:
    try:
        t = row[0]
        return int(t) if isinstance(t, (int, float, np.integer, np.floating)) and not isinstance(t, bool) \
            and float(t).is_integer() and t >= 0 else None
    except (TypeError, IndexError, KeyError, OverflowError, ValueError):
        return None


def screen_rows(rows: Any, where: str, tf_ms: int,
                skip: frozenset = frozenset()) -> tuple[np.ndarray, np.ndarray, list[BadRow]]:
    """The sound rows of an OHLCV answer ``[[ms, o, h, l, c, v], ...]`` as (int64 ms, float (n, 5)),
    and the rows left out: a malformed row (:func:`mlcoord.live.data.ohlcv_row_problem`), high
    below open/close/low or low above them, a timestamp off the answer's timeframe grid (the
    offset most rows share), a timestamp at or before the previous sound row's (a duplicate
    keeps its first row). A bad row whose time is in ``skip`` (already reported) is left out
    without being named. An answer that is not a list raises MalformedAnswer."""
    from mlcoord.live.data import ohlcv_row_problem
    from mlcoord.live.retry import MalformedAnswer

    if not isinstance(rows, (list, tuple)):
        raise MalformedAnswer(f"{where}: malformed OHLCV response: expected a list of rows, got {type(rows).__name__}")
    problems = [ohlcv_row_problem(r) for r in rows]
    offsets = Counter(int(r[0]) % tf_ms for r, p in zip(rows, problems) if p is None)
    grid = offsets.most_common(1)[0][0] if offsets else 0
    times: list[int] = []
    values: list[list[float]] = []
    bad: list[BadRow] = []
    for row, problem in zip(rows, problems):
        if problem is None:
            t, (o, h, low, c) = int(row[0]), row[1:5]
            if h < max(o, c, low):
                problem = f"high {h!r} below open/close/low"
            elif low > min(o, c, h):
                problem = f"low {low!r} above open/close/high"
            elif t % tf_ms != grid:
                problem = "timestamp off the timeframe's grid"
            elif times and t == times[-1]:
                problem = "duplicate timestamp (the first row is kept)"
            elif times and t < times[-1]:
                problem = f"timestamp out of order (after {times[-1]})"
        if problem is None:
            times.append(int(row[0]))
            values.append([float(x) for x in row[1:6]])
            continue
        when = _row_time(row)
        if when is None or when not in skip:
            bad.append(BadRow(when, f"{problem}: {row!r:.120}"))
    return (np.asarray(times, np.int64), np.asarray(values, np.float64).reshape(-1, 5), bad)


def salvage(exc: MalformedAnswer) -> tuple[Optional[Candles], tuple[BadRow, ...]]:
    """The sound part of an answer that stayed malformed through the retries (None when nothing
    is usable) and its bad rows."""
    usable = exc.usable if isinstance(exc.usable, Candles) and len(exc.usable) else None
    return usable, exc.bad


class BarScreen:
    """What a paper or live session left out of its bars, per symbol; its jump filters; which
    symbols' entries wait for a sound bar. Thread-safe (the scanner fetches from threads).
    ``max_jump_atr`` 0 turns the jump filter off."""

    def __init__(self, max_jump_atr: float = MAX_JUMP_ATR, timeframe_ns: int = 0):
        self.max_jump_atr, self.timeframe_ns = float(max_jump_atr), int(timeframe_ns)
        self.dropped = 0                                  # bars left out in this session
        self.by_symbol: Counter = Counter()
        self._known: dict[str, set[int]] = {}             # symbol -> open times (ms) already reported
        self._paused: dict[str, int] = {}                 # symbol -> open time (ns) of its newest bad bar
        self._filters: dict[str, JumpFilter] = {}
        self._lock = threading.Lock()

    # -- rows the exchange sent malformed --------------------------------------------------------
    def known(self, symbol: str) -> frozenset:
        """Open times (ms) of ``symbol``'s bars already reported: left out quietly next time."""
        with self._lock:
            return frozenset(self._known.get(symbol, ()))

    def at_hand(self, known: Optional[dict]) -> Optional[dict]:
        """``known`` (symbol -> open time in ns of its newest bar at hand) with each symbol's newest
        dropped bar counted as at hand: a poll does not ask for a bar it has already left out."""
        if known is None:
            return None
        with self._lock:
            return {s: max(t, max(self._known.get(s) or (0,)) * 1_000_000) for s, t in known.items()}

    def report(self, symbol: str, bad: Iterable[BadRow], sound: Optional[Candles] = None) -> None:
        """Rows of ``symbol`` left out of an answer: each new one logged (``candle_dropped``) and
        counted; its symbol's entries pause unless ``sound`` (the answer's sound rows) has a bar
        after it."""
        from mlcoord.times import iso

        for row in bad:
            with self._lock:
                seen = self._known.setdefault(symbol, set())
                if row.time_ms is not None:
                    if row.time_ms in seen:
                        continue
                    seen.add(row.time_ms)
                self.dropped += 1
                self.by_symbol[symbol] += 1
            when = iso(row.time_ms * 1_000_000) if row.time_ms is not None else None
            log.warning("candle_dropped", symbol=symbol, bar_time=when, reason=row.reason, dropped=self.dropped,
                        note=f"{symbol}: a malformed bar from the exchange is left out; stops and exits go on, "
                             "entries wait for a sound bar")
            after = sound is not None and len(sound) and int(sound.time[-1]) > (row.time_ms or 0) * 1_000_000
            if row.time_ms is not None and not after:
                self._pause(symbol, row.time_ms * 1_000_000, "malformed bar")

    # -- implausible bars ------------------------------------------------------------------------
    def _filter(self, symbol: str) -> Optional[JumpFilter]:
        if self.max_jump_atr <= 0:
            return None
        if symbol not in self._filters:
            self._filters[symbol] = JumpFilter(self.max_jump_atr, self.timeframe_ns)
        return self._filters[symbol]

    def clean_history(self, candles: Candles) -> Candles:
        """A symbol's history at start (or when it joins a session): its implausible bars left out,
        except one the next bar confirmed (a real move); the jump filter is then primed with it."""
        check = self._filter(candles.symbol)
        jumps = [j for j in check.run(candles) if not j.confirmed] if check is not None and len(candles) else []
        kept = self._drop(candles, jumps)
        if len(kept):
            self._resume(candles.symbol, int(kept.time[-1]))    # a bad bar the history has put behind it
        return kept

    def admit(self, candles: Candles, history: Optional[Candles]) -> Candles:
        """The bars of ``candles`` newer than ``history`` judged as they close: an implausible one is
        left out (``candles_implausible``) and pauses the symbol's entries; a sound one after the
        symbol's newest bad bar resumes them. Bars at or before the history's last pass as they are
        (already judged)."""
        last = int(history.time[-1]) if history is not None and len(history) else None
        start = int(np.searchsorted(candles.time, last, side="right")) if last is not None else 0
        left_out = self.known(candles.symbol)
        if left_out and start < len(candles):     # bars dropped before: never judged (or counted) twice
            again = [k for k in range(start, len(candles)) if int(candles.time[k]) // 1_000_000 in left_out]
            candles = candles.dropping(again) if again else candles
        check = self._filter(candles.symbol)
        jumps: list[Jump] = []
        if check is not None and start < len(candles):
            jumps = [j for j in check.run(candles, start) if j.index >= start]
        kept = self._drop(candles, jumps)
        sound = [int(t) for t in kept.time[int(np.searchsorted(kept.time, last, side="right")) if last is not None
                                           else 0:]]
        if sound:
            self._resume(candles.symbol, sound[-1])
        return kept

    def _drop(self, candles: Candles, jumps: Sequence[Jump]) -> Candles:
        if not jumps:
            return candles
        from mlcoord.times import iso

        for j in jumps:
            with self._lock:
                self._known.setdefault(candles.symbol, set()).add(j.time // 1_000_000)
                self.dropped += 1
                self.by_symbol[candles.symbol] += 1
            log.warning("candles_implausible", symbol=candles.symbol, bar_time=iso(j.time), column=j.column,
                        value=j.value, reference=j.reference, atrs=round(j.atrs, 1), max_jump_atr=self.max_jump_atr,
                        action="dropped", dropped=self.dropped,
                        note=f"{candles.symbol}: {j.describe()}: the bar is left out; stops and exits go on, "
                             "entries wait for a sound bar")
        newest = max(j.time for j in jumps)
        if newest >= int(candles.time[-1]):
            self._pause(candles.symbol, newest, "implausible bar")
        return candles.dropping([j.index for j in jumps])

    # -- entries -----------------------------------------------------------------------------------
    def paused(self, symbol: str) -> bool:
        """Whether ``symbol``'s entries wait for a sound bar."""
        return symbol in self._paused

    def _pause(self, symbol: str, time_ns: int, why: str) -> None:
        from mlcoord.times import iso

        with self._lock:
            was = self._paused.get(symbol)
            if was is not None and was >= time_ns:
                return
            self._paused[symbol] = time_ns
        if was is None:
            log.warning("entries_paused", symbol=symbol, bar_time=iso(time_ns), reason=why,
                        note=f"{symbol}: no new entry until a sound bar after this one; open positions keep "
                             "their stops and exit updates")

    def _resume(self, symbol: str, time_ns: int) -> None:
        from mlcoord.times import iso

        with self._lock:
            bad = self._paused.get(symbol)
            if bad is None or time_ns <= bad:
                return
            del self._paused[symbol]
        log.warning("entries_resumed", symbol=symbol, bar_time=iso(time_ns), after=iso(bad),
                    note=f"{symbol}: a sound bar after the bad one: entries allowed again")
