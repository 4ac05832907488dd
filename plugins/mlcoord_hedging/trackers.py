"""Per-symbol price-return history the hedging guard reads, well under a microsecond per bar.

Every symbol's simple close-to-close return is written every bar into a ring aligned on one
shared bar counter (so the rings of two symbols line up bar for bar), whether or not the
portfolio holds the symbol: its volatility baseline is then the symbol's normal volatility, not
the portfolio's. Plain floats only (numpy's per-call overhead dominates at this size); the
running sums are recomputed exactly every ``window`` updates so drift cannot accumulate; the
median baseline is computed only when someone asks for it, at most once per ``refresh`` bars.
"""

from __future__ import annotations

import math
from operator import mul
from typing import Optional, Sequence

import numpy as np

_INF = math.inf


class SymbolReturns:
    """One symbol's ring of returns, its running ``window``-bar volatility and vol history."""

    __slots__ = ("ring", "count", "prev", "last_bar", "sum", "sumsq", "vol", "vols", "n_vols",
                 "baseline", "baseline_bar")

    def __init__(self, keep: int, baseline: int):
        self.ring = [0.0] * keep
        self.count = 0                       # returns written since the first price
        self.prev = 0.0                      # last valid price (0: none yet)
        self.last_bar = -2
        self.sum = self.sumsq = 0.0
        self.vol: Optional[float] = None     # sample std of the last ``window`` returns
        self.vols = np.zeros(baseline)       # ring of the last ``baseline`` vols (numpy: fast median)
        self.n_vols = 0
        self.baseline: Optional[float] = None
        self.baseline_bar = -(1 << 62)


class MarketReturns:
    """Returns of every symbol the portfolio prices, their realised vol and its median baseline.

    * ``vol(s)``: sample standard deviation of the last ``window`` simple returns of ``s``.
    * ``baseline(s)``: median of ``vol(s)`` over the last ``baseline`` bars, available once
      ``baseline / 2`` vol values exist, recomputed lazily at most every ``refresh`` bars.
    * ``window_returns(s, n)``: the last ``n`` returns, aligned across symbols.
    * ``pair`` / ``mean_pairwise``: Pearson correlation over the last ``corr_window`` returns.
    * ``window_correlation(a, b)``: the same over the last ``window`` returns.

    A bar in which a symbol has no valid price (nan, <= 0) counts as a zero return. A symbol the
    portfolio stops pricing for a bar loses its history (its returns would no longer line up).
    """

    def __init__(self, window: int, baseline: int, refresh: int, corr_window: int = 0,
                 track_vol: bool = True):
        self.window, self.baseline_bars, self.refresh = window, baseline, refresh
        self.corr_window = corr_window
        self.keep = max(window, corr_window)
        self.track_vol = track_vol
        self.bar = -1
        self.slot = -1
        self.series: dict[str, SymbolReturns] = {}

    def advance(self) -> int:
        """Start a new bar; returns its ring slot."""
        self.bar += 1
        self.slot = s = self.bar % self.keep
        return s

    def push(self, symbol: str, price: float) -> None:
        """Record ``symbol``'s price at the current bar (call once per symbol after ``advance``)."""
        x = self.series.get(symbol)
        bar = self.bar
        if x is None or x.last_bar != bar - 1:
            x = self.series[symbol] = SymbolReturns(self.keep, self.baseline_bars)
        x.last_bar = bar
        prev = x.prev
        if price > 0.0 and price < _INF:     # False for nan
            x.prev = price
            if prev <= 0.0:
                return                       # the first price: no return yet
            r = price / prev - 1.0
        elif prev <= 0.0:
            return
        else:
            r = 0.0
        ring, slot, w = x.ring, self.slot, self.window
        old = ring[slot - w]                 # the return leaving the vol window (negative index wraps)
        ring[slot] = r
        x.count = n = x.count + 1
        if not self.track_vol:
            return
        if n <= w:
            x.sum += r
            x.sumsq += r * r
            if n < w:
                return
        elif n % w:
            x.sum += r - old
            x.sumsq += r * r - old * old
        else:                                # exact recomputation every ``window`` updates
            last = self.window_returns(symbol, w)
            x.sum = math.fsum(last)
            x.sumsq = math.fsum([v * v for v in last])
        s = x.sum
        var = (x.sumsq - s * s / w) / (w - 1)
        x.vol = v = math.sqrt(var) if var > 0.0 else 0.0
        k = x.n_vols
        x.vols[k % self.baseline_bars] = v
        x.n_vols = k + 1

    # -- reads ------------------------------------------------------------------------------
    def vol(self, symbol: str) -> Optional[float]:
        x = self.series.get(symbol)
        return None if x is None else x.vol

    def baseline(self, symbol: str) -> Optional[float]:
        """Median of the symbol's vol over the last ``baseline`` bars (None while too short)."""
        x = self.series.get(symbol)
        if x is None:
            return None
        if self.bar - x.baseline_bar >= self.refresh or x.baseline is None:
            n = min(x.n_vols, self.baseline_bars)
            if 2 * n < self.baseline_bars:
                return None
            h = n // 2
            if n % 2:
                x.baseline = float(np.partition(x.vols[:n], h)[h])
            else:
                lo, hi = np.partition(x.vols[:n], (h - 1, h))[h - 1:h + 1]
                x.baseline = float(0.5 * (lo + hi))
            x.baseline_bar = self.bar
        return x.baseline

    def window_returns(self, symbol: str, n: int) -> list[float]:
        """The last ``n`` (<= ``keep``) returns of ``symbol`` in bar order (zeros before its
        history starts)."""
        ring, end = self.series[symbol].ring, self.slot + 1
        return ring[end - n:end] if end >= n else ring[end - n:] + ring[:end]

    def pair(self, a: str, b: str) -> Optional[float]:
        """Correlation of two symbols over ``corr_window``, None until both have a full window."""
        return self.mean_pairwise((a, b))

    def mean_pairwise(self, symbols: Sequence[str]) -> Optional[float]:
        """Mean correlation over every pair of ``symbols`` (None if any lacks a full window).
        A price that did not move has no defined correlation: its pairs count as 0."""
        n = self.corr_window
        if len(symbols) < 2 or n < 2:
            return None
        cols = []
        for s in symbols:
            x = self.series.get(s)
            if x is None or x.count < n:
                return None
            col = self.window_returns(s, n)
            m = sum(col) / n
            col = [v - m for v in col]
            ss = sum(map(mul, col, col))
            cols.append((col, math.sqrt(ss) if ss > 1e-30 else 0.0))
        total = 0.0
        for k, (ci, si) in enumerate(cols):
            for cj, sj in cols[k + 1:]:
                if si and sj:
                    total += max(-1.0, min(1.0, sum(map(mul, ci, cj)) / (si * sj)))
        return total / (len(cols) * (len(cols) - 1) / 2)


    def window_correlation(self, a: str, b: str) -> float:
        """Correlation of two symbols' last ``window`` returns from the running sums and one dot
        product (0 when either did not move); both need a full window."""
        x, y, n = self.series[a], self.series[b], self.window
        if not (x.vol and y.vol):
            return 0.0
        dot = sum(map(mul, self.window_returns(a, n), self.window_returns(b, n)))
        cov = (dot - x.sum * y.sum / n) / (n - 1)
        return max(-1.0, min(1.0, cov / (x.vol * y.vol)))
