"""Implausible bars: a bar whose high, low or close lies further from its neighbours than a market
moves in one bar.

A bar can pass every check of :mod:`mlcoord.candles` (positive finite prices, high above low)
and still be a bad tick: a high of ``1e300``, a close ten times the last. A backtest on it trades
differently without a word; a live bot on it moves its stop to nowhere. The check is causal, so a
live loop judges each bar as it closes: bar ``j`` is compared with the *last plausible bar* before
it (its close is the reference) and with the average true range of the last :data:`ATR_PERIOD`
plausible bars. It is implausible when its high, low or close lies more than ``max_jump_atr`` of
those ATRs from the reference (times the square root of the bars since the reference, so a bar
after a hole may move further) *and* more than :data:`MIN_JUMP` of the reference price (a market
that barely moved has a tiny ATR: a 3 % move is not a bad tick).

A flagged bar is left out of the reference. A real jump to a new level is accepted on the next
bar: a bar far from the reference but within the same bound of the flagged bar's close confirms
the level (the flagged bar is then marked ``confirmed``: a real move), and the reference moves
there. So a real jump costs a live loop one bar, and a lone bad tick never drags the reference
along.

What real bars do (``benchmarks/bench_jumps.py`` on the shared data: Binance 1h/4h/1d of BTC,
ETH, BNB, SOL, XRP, ADA 2017-2025 and freqtrade's 1m/5m test files): the largest move of a bar
that also moved more than 5 % is 32.5 ATRs, except XRP/USDT on 2023-07-13 15:00 (the SEC
ruling, +37 % in an hour: 96 ATRs), which the next bar confirms; the default
:data:`MAX_JUMP_ATR` = 50 flags no other bar of those files.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Optional

import attrs
import numpy as np

#: bars whose true range makes the ATR a bar is measured with
ATR_PERIOD = 14
#: the default bound, in ATRs (``[data] max_jump_atr``)
MAX_JUMP_ATR = 50.0
#: a move below this share of the reference price is never implausible
MIN_JUMP = 0.05
#: plausible bars needed before any bar is judged (the ATR needs a few)
MIN_BARS = 5


@attrs.frozen
class Jump:
    """One implausible bar: its position and open time (ns), the price furthest from the
    reference (``column`` high, low or close), the reference close, the distance in ATRs, and
    whether the next bar confirmed its level (a real move; known only once that bar is judged)."""

    index: int
    time: int
    column: str
    value: float
    reference: float
    atrs: float
    confirmed: bool = False

    def describe(self) -> str:
        from mlcoord.times import iso

        return (f"{iso(self.time)}: {self.column} {self.value:.10g} is {self.atrs:.3g} ATRs from the "
                f"last plausible close {self.reference:.10g}")


class JumpFilter:
    """The causal state of the check for one series: bars go through :meth:`judge` in time order
    (or a whole series through :meth:`run`). ``timeframe_ns`` scales the bound after a hole (0:
    no scaling)."""

    def __init__(self, max_jump_atr: float = MAX_JUMP_ATR, timeframe_ns: int = 0):
        if not (math.isfinite(max_jump_atr) and max_jump_atr > 0):
            raise ValueError(f"max_jump_atr must be a finite number > 0, got {max_jump_atr!r}")
        self.k, self.tf = float(max_jump_atr), int(timeframe_ns)
        self.ranges: deque[float] = deque(maxlen=ATR_PERIOD)
        self.reference: Optional[float] = None
        self.ref_time = 0
        self.pending: Optional[float] = None      # the close of the last flagged bar
        self.confirmed = False                    # the last bar judged confirmed a flagged bar's level

    def judge(self, index: int, time: int, o: float, h: float, low: float, c: float) -> Optional[Jump]:
        """None when the bar is plausible (it becomes the reference), else the :class:`Jump`."""
        self.confirmed = False
        ref = self.reference
        if ref is None or len(self.ranges) < MIN_BARS:
            self._accept(time, h, low, c)
            return None
        atr = sum(self.ranges) / len(self.ranges)
        bars = (time - self.ref_time) / self.tf if self.tf and time > self.ref_time else 1.0
        bound = max(self.k * atr * math.sqrt(max(bars, 1.0)), MIN_JUMP * ref)
        far = max((abs(h - ref), "high", h), (abs(low - ref), "low", low), (abs(c - ref), "close", c))
        if far[0] <= bound:          # NaN compares false: never reached with checked candles
            self._accept(time, h, low, c)
            return None
        p = self.pending
        if p is not None and max(abs(o - p), abs(h - p), abs(low - p), abs(c - p)) <= bound:
            self.reference, self.confirmed = p, True      # the flagged bar's level held: a real move
            self._accept(time, h, low, c)
            return None
        self.pending = c
        return Jump(index, time, far[1], far[2], ref, far[0] / atr if atr > 0 else math.inf)

    def _accept(self, time: int, h: float, low: float, c: float) -> None:
        ref = self.reference
        self.ranges.append(max(h, ref) - min(low, ref) if ref is not None else h - low)
        self.reference, self.ref_time, self.pending = c, time, None

    def run(self, candles, start: int = 0) -> list[Jump]:
        """Every bar of ``candles`` from ``start`` on judged in order; returns the implausible ones
        (a flagged bar the next one confirms is marked ``confirmed``). Series without a candidate
        (what :func:`_candidates` finds: every bar the exact check could flag) cost one vectorised
        pass: the state then ends as the exact walk would leave it."""
        t = np.asarray(candles.time, np.int64)[start:]
        o, h, low, c = (np.asarray(a, np.float64)[start:] for a in
                        (candles.open, candles.high, candles.low, candles.close))
        first = _candidates(t, h, low, c, self) if self.reference is None else 0
        if first is None:
            first = len(t)
        begin = max(0, first - ATR_PERIOD - 1)        # before the first candidate nothing is flagged
        for k in range(begin, first):
            self.confirmed = False
            self._accept(int(t[k]), float(h[k]), float(low[k]), float(c[k]))
        out: list[Jump] = []
        cols = [a[first:].tolist() for a in (t, o, h, low, c)]
        for k, (tk, ok, hk, lk, ck) in enumerate(zip(*cols), start=first):
            found = self.judge(start + k, tk, ok, hk, lk, ck)
            if found is not None:
                out.append(found)
            elif self.confirmed and out and out[-1].index == start + k - 1:
                out[-1] = attrs.evolve(out[-1], confirmed=True)
        return out


def _candidates(t: np.ndarray, h: np.ndarray, low: np.ndarray, c: np.ndarray, check: JumpFilter) -> Optional[int]:
    """The first bar the exact walk of a fresh ``check`` could flag, or None: the same bound with
    every earlier bar taken as plausible (as long as none is flagged, the walk's reference and ATR
    are exactly these), loosened by 1 % against rounding."""
    n = len(t)
    if n <= MIN_BARS:
        return None
    prev = np.empty(n)
    prev[0] = np.nan
    prev[1:] = c[:-1]
    tr = np.where(np.isnan(prev), h - low, np.maximum(h, prev) - np.minimum(low, prev))
    csum = np.concatenate(([0.0], np.cumsum(tr)))
    idx = np.arange(n)
    lo = np.maximum(idx - ATR_PERIOD, 0)
    count = idx - lo
    with np.errstate(invalid="ignore", divide="ignore"):
        atr = (csum[idx] - csum[lo]) / count
        bars = np.ones(n)
        if check.tf:
            bars[1:] = np.maximum((t[1:] - t[:-1]) / check.tf, 1.0)
        bound = np.maximum(check.k * atr * np.sqrt(bars), MIN_JUMP * prev) * 0.99
        far = np.maximum.reduce([np.abs(h - prev), np.abs(low - prev), np.abs(c - prev)])
        hit = (idx >= MIN_BARS) & ~(far <= bound)
    found = np.flatnonzero(hit)
    return int(found[0]) if len(found) else None


def find_jumps(candles, max_jump_atr: float = MAX_JUMP_ATR) -> list[Jump]:
    """Every implausible bar of ``candles`` (``time``, ``open``, ``high``, ``low``, ``close``
    arrays and ``timeframe_ns``), judged causally from the first bar on."""
    return JumpFilter(max_jump_atr, int(getattr(candles, "timeframe_ns", 0) or 0)).run(candles)
