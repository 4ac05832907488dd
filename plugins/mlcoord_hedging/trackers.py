"""Incremental statistics the hedging guard needs, O(1) (or O(symbols^2)) per bar.

Running sums over ring buffers, recomputed exactly from the buffer every ``window`` updates so
floating-point drift cannot accumulate over a long run.
"""

from __future__ import annotations

import collections
import math
import statistics
from typing import Optional, Sequence

import numpy as np


class EquityVolatility:
    """Realised volatility of per-bar equity returns and its sparse rolling median (the baseline).

    ``vol`` is the sample standard deviation of the last ``window`` simple returns. ``baseline``
    is the median of the ``vol`` values of the last ``baseline`` bars, recomputed every
    ``refresh`` bars, available once ``baseline / 2`` vol values exist.
    """

    def __init__(self, window: int, baseline: int, refresh: int):
        self.window, self.baseline_bars, self.refresh = window, baseline, refresh
        self._rets: collections.deque[float] = collections.deque(maxlen=window)
        self._sum = self._sumsq = 0.0
        self._updates = 0
        self._vols: collections.deque[float] = collections.deque(maxlen=baseline)
        self._since_median = 0
        self._prev: Optional[float] = None
        self.vol: Optional[float] = None
        self.baseline: Optional[float] = None

    def update(self, equity: float) -> None:
        prev, self._prev = self._prev, equity
        if prev is None or not (prev > 0 and math.isfinite(equity) and math.isfinite(prev)):
            return
        r = equity / prev - 1.0
        if len(self._rets) == self.window:
            old = self._rets[0]
            self._sum -= old
            self._sumsq -= old * old
        self._rets.append(r)
        self._sum += r
        self._sumsq += r * r
        self._updates += 1
        if self._updates % self.window == 0:
            self._sum = math.fsum(self._rets)
            self._sumsq = math.fsum(x * x for x in self._rets)
        n = len(self._rets)
        if n < self.window:
            return
        var = (self._sumsq - self._sum * self._sum / n) / (n - 1)
        self.vol = math.sqrt(var) if var > 0 else 0.0
        self._vols.append(self.vol)
        self._since_median += 1
        due = self._since_median >= self.refresh or self.baseline is None
        if due and 2 * len(self._vols) >= self.baseline_bars:
            self.baseline = statistics.median(self._vols)
            self._since_median = 0


class PriceCorrelation:
    """Rolling Pearson correlation of per-bar price returns between the portfolio's symbols.

    Keeps a ``window x symbols`` ring of returns with running column sums and the running
    cross-product matrix: a bar costs a handful of numpy operations, a pair's correlation O(1).
    """

    def __init__(self, window: int):
        self.window = window
        self.symbols: tuple[str, ...] = ()
        self._index: dict[str, int] = {}
        self._ring = np.zeros((window, 0))
        self._sums = np.zeros(0)
        self._cross = np.zeros((0, 0))
        self._count: list[int] = []        # valid returns seen per symbol
        self._prev: list[float] = []       # last valid price per symbol (nan before the first)
        self._pos = 0
        self._updates = 0
        self._snapshot: Optional[tuple[list[float], list[float], list[list[float]]]] = None

    def _resize(self, symbols: tuple[str, ...]) -> None:
        """The symbol set changed: keep the history of symbols still present."""
        n = len(symbols)
        ring, count, prev = np.zeros((self.window, n)), [0] * n, [math.nan] * n
        for j, s in enumerate(symbols):
            i = self._index.get(s)
            if i is not None:
                ring[:, j], count[j], prev[j] = self._ring[:, i], self._count[i], self._prev[i]
        self.symbols, self._index = symbols, {s: j for j, s in enumerate(symbols)}
        self._ring, self._count, self._prev = ring, count, prev
        self._recompute()

    def _recompute(self) -> None:
        self._sums = self._ring.sum(axis=0)
        self._cross = self._ring.T @ self._ring

    def update(self, symbols: Sequence[str], prices: Sequence[float]) -> None:
        symbols = tuple(symbols)
        if symbols != self.symbols:
            self._resize(symbols)
        row = []
        for j, (p, q) in enumerate(zip(prices, self._prev)):
            p = float(p)
            if p > 0 and math.isfinite(p):     # False for nan
                if q > 0:
                    row.append(p / q - 1.0)
                    self._count[j] += 1
                else:
                    row.append(0.0)
                self._prev[j] = p
            else:
                row.append(0.0)
        ret = np.array(row)
        old = self._ring[self._pos].copy()
        self._ring[self._pos] = ret
        self._pos = (self._pos + 1) % self.window
        self._updates += 1
        self._snapshot = None
        if self._updates % self.window == 0:
            self._recompute()
        else:
            self._sums += ret - old
            self._cross += ret[:, None] * ret - old[:, None] * old

    def _moments(self) -> tuple[list[float], list[float], list[list[float]]]:
        """(means, standard deviations, cross-products / n) as plain floats, once per bar
        (a few list operations beat numpy on a handful of symbols)."""
        if self._snapshot is None:
            n = self.window
            mean = [x / n for x in self._sums.tolist()]
            cross = [[x / n for x in row] for row in self._cross.tolist()]
            var = [cross[i][i] - m * m for i, m in enumerate(mean)]
            std = [math.sqrt(v) if v > 1e-18 else 0.0 for v in var]
            self._snapshot = (mean, std, cross)
        return self._snapshot

    def _corr(self, i: int, j: int) -> float:
        mean, std, cross = self._moments()
        if not (std[i] and std[j]):      # a price that did not move: no defined correlation, 0
            return 0.0
        return max(-1.0, min(1.0, (cross[i][j] - mean[i] * mean[j]) / (std[i] * std[j])))

    def pair(self, a: str, b: str) -> Optional[float]:
        """Correlation of two symbols over the window, None until both have a full window."""
        i, j = self._index.get(a), self._index.get(b)
        if i is None or j is None or min(self._count[i], self._count[j]) < self.window:
            return None
        return self._corr(i, j)

    def mean_pairwise(self, symbols: Sequence[str]) -> Optional[float]:
        """Mean correlation over every pair of ``symbols`` (None if any lacks a full window)."""
        idx = [self._index.get(s) for s in symbols]
        if len(idx) < 2 or any(i is None or self._count[i] < self.window for i in idx):
            return None
        total = sum(self._corr(i, j) for k, i in enumerate(idx) for j in idx[k + 1:])
        return total / (len(idx) * (len(idx) - 1) / 2)
