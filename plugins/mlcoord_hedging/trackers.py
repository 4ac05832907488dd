"""Per-symbol price history the hedging guard reads: recording is one append per symbol.

Most bars the portfolio is flat and the guard needs nothing, so every bar only appends each
symbol's price to a list (an ``array('d')``: nearly as cheap to append to as a list, and numpy reads it
without converting every float) aligned on one shared bar counter (the last element is the current bar
for every symbol, so two symbols' histories line up bar for bar); a bar without a valid price
repeats the previous price (a zero return). The statistics are computed lazily, from the last
prices, only when the guard asks for them (while the portfolio is exposed): the realised vol is
kept as running sums while it is asked on consecutive bars (recomputed exactly from the prices
every ``window`` bars and after any gap, so drift cannot accumulate), the median baseline is
vectorised with numpy and recomputed at most once per ``refresh`` bars, and correlations are
computed from the last ``corr_window + 1`` prices. Lists are trimmed in chunks to the prices
these need, so memory is bounded and trimming is O(1) amortised.
"""

from __future__ import annotations

import math
from array import array
from operator import mul
from typing import Callable, Mapping, Optional, Sequence

import numpy as np

_INF = math.inf


class SymbolPrices:
    """One symbol's recent prices and its lazily computed statistics."""

    __slots__ = ("prices", "vol", "sum", "sumsq", "vol_bar", "vol_age", "baseline", "baseline_bar",
                 "sq_dev", "sq_dev_bar")

    def __init__(self):
        self.prices = array("d")             # one per bar since its first valid price
        self.vol: Optional[float] = None     # cached ``window`` vol, valid at ``vol_bar``
        self.sum = self.sumsq = 0.0          # running sums of the last ``window`` returns
        self.vol_bar = -2
        self.vol_age = 0                     # incremental updates since the exact recomputation
        self.baseline: Optional[float] = None
        self.baseline_bar = -(1 << 62)
        self.sq_dev: Optional[np.ndarray] = None   # the windows' squared deviations last computed
        self.sq_dev_bar = 0


class MarketReturns:
    """Returns of every symbol the portfolio prices, their realised vol and its median baseline.

    Call ``record(symbols, price)`` once per bar; then, at that bar:

    * ``vol(s)``: sample standard deviation of the last ``window`` simple returns of ``s``
      (None until it has ``window`` returns).
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
        self.track_vol = track_vol
        # prices kept: the baseline needs baseline + window - 1 returns, the incremental vol
        # window + 1 returns (the one leaving the window), the correlation corr_window.
        self.keep = max(baseline + window if track_vol else 0, window + 1, corr_window) + 1
        self.bar = -1
        self.series: dict[str, SymbolPrices] = {}
        self._symbols: Sequence[str] = ()
        self._cols: list[array] = []
        self._next_trim = self.keep

    def record(self, symbols: Sequence[str], price: Callable[[str], float], inf=_INF) -> None:
        """Start a new bar and record ``price(s)`` for every symbol in ``symbols``."""
        self.bar = bar = self.bar + 1
        if symbols != self._symbols:
            self._rebind(symbols)
        for s, col in zip(symbols, self._cols):
            p = price(s)
            if 0.0 < p < inf:                # False for nan
                col.append(p)
            elif col:                        # no valid price: a zero return
                col.append(col[-1])
        if bar >= self._next_trim:
            self._trim()

    def record_many(self, symbols: Sequence[str], closes: Mapping[str, np.ndarray]) -> None:
        """``record`` for a stretch of bars at once: ``closes[s]`` holds every symbol's prices,
        one per bar; the same histories and bar counter as recording them one by one."""
        n = len(closes[symbols[0]]) if symbols else 0
        if n == 0:
            return
        if symbols != self._symbols:
            self._rebind(symbols)
        for s, col in zip(symbols, self._cols):
            values = np.asarray(closes[s], dtype=np.float64)
            # every price valid: two reductions (a nan makes both comparisons False)
            if col and values.min() > 0.0 and values.max() < _INF:
                col.frombytes(values.tobytes())
            else:                                # an invalid price or no history: as ``record``
                for p in values.tolist():
                    if 0.0 < p < _INF:
                        col.append(p)
                    elif col:
                        col.append(col[-1])
        self.bar += n
        if self.bar >= self._next_trim:
            self._trim()

    def _trim(self) -> None:
        """Drop the prices older than ``keep`` bars (called once every ``keep`` bars or so)."""
        self._next_trim = self.bar + self.keep
        keep = self.keep
        for col in self._cols:
            if len(col) > keep:
                del col[:-keep]

    def _rebind(self, symbols: Sequence[str]) -> None:
        """The priced symbols changed: those priced last bar keep their history, others start."""
        old, series = self.series, {}
        for s in symbols:
            series[s] = old.get(s) or SymbolPrices()
        # a copy: a portfolio may hand out (and later mutate) the same list every bar
        self.series, self._symbols = series, symbols.copy() if isinstance(symbols, list) else tuple(symbols)
        self._cols = [series[s].prices for s in symbols]

    # -- reads ------------------------------------------------------------------------------
    def vol(self, symbol: str) -> Optional[float]:
        x = self.series.get(symbol)
        if x is None or not self.track_vol:
            return None
        bar, w, p = self.bar, self.window, x.prices
        if x.vol_bar == bar:
            return x.vol
        if len(p) <= w:
            return None
        if x.vol_bar == bar - 1 and x.vol_age < w and len(p) > w + 1:
            new = p[-1] / p[-2] - 1.0
            k = -1 - w
            old = p[k] / p[k - 1] - 1.0
            x.sum += new - old
            x.sumsq += new * new - old * old
            x.vol_age += 1
        else:                                # exact recomputation from the last window + 1 prices
            last = self.window_returns(symbol, w)
            x.sum = math.fsum(last)
            x.sumsq = math.fsum([v * v for v in last])
            x.vol_age = 0
        s = x.sum
        var = (x.sumsq - s * s / w) / (w - 1)
        x.vol = math.sqrt(var) if var > 0.0 else 0.0
        x.vol_bar = bar
        return x.vol

    def baseline(self, symbol: str) -> Optional[float]:
        """Median of the symbol's vol over the last ``baseline`` bars (None while too short)."""
        x = self.series.get(symbol)
        if x is None or not self.track_vol:
            return None
        if self.bar - x.baseline_bar >= self.refresh or x.baseline is None:
            w, p = self.window, x.prices
            n = min(len(p) - w, self.baseline_bars)          # vol values available
            if 2 * n < self.baseline_bars:
                return None
            # the median of vol = sqrt(max(q / (w - 1), 0)), a nondecreasing function of q,
            # is that function of q's median elements: select on q, transform two scalars.
            q, new = x.sq_dev, self.bar - x.sq_dev_bar
            if q is not None and new < n:    # only the windows since: keep the older ones
                q = np.concatenate((q[len(q) - (n - new):], _rolling_sq_dev(np.frombuffer(p[-(new + w):]), w)))
            else:
                q = _rolling_sq_dev(np.frombuffer(p[-(n + w):]), w)
            x.sq_dev, x.sq_dev_bar = q, self.bar
            h = n // 2
            # q[h] in place, everything before it <= it (np.partition's copy and method, without
            # its Python wrapper: 805 refreshes a run; the same for the maximum below)
            part = q.copy()
            part.partition(h)
            if n % 2:
                x.baseline = _vol_of(float(part[h]), w)
            else:                            # the other middle element: the largest before it
                x.baseline = 0.5 * (_vol_of(float(np.maximum.reduce(part[:h])), w) + _vol_of(float(part[h]), w))
            x.baseline_bar = self.bar
        return x.baseline

    def window_returns(self, symbol: str, n: int) -> list[float]:
        """The last ``n`` returns of ``symbol`` in bar order (fewer while its history is short)."""
        p = self.series[symbol].prices[-n - 1:]
        return [b / a - 1.0 for a, b in zip(p, p[1:])]

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
            if x is None or len(x.prices) <= n:
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
        """Correlation of two symbols' last ``window`` returns (0 when either did not move or
        lacks a full window)."""
        va, vb, n = self.vol(a), self.vol(b), self.window
        if not (va and vb):
            return 0.0
        dot = sum(map(mul, self.window_returns(a, n), self.window_returns(b, n)))
        cov = (dot - self.series[a].sum * self.series[b].sum / n) / (n - 1)
        return max(-1.0, min(1.0, cov / (va * vb)))


def _vol_of(q: float, w: int) -> float:
    """Sample std of ``w`` returns whose squared deviations sum to ``q`` (as ``vol`` computes it)."""
    var = q / (w - 1)
    return math.sqrt(var) if var > 0.0 else 0.0


def _rolling_sq_dev(prices: np.ndarray, w: int) -> np.ndarray:
    """Sum of squared deviations from the mean, sum(r**2) - sum(r)**2 / w, of every ``w``-return
    window of ``prices`` (len(prices) - w values), from cumulative sums of the returns. The sums
    of r and of r**2 are the two rows of one array (each row summed in order from 0.0, as two
    separate ``cumsum`` would): half the numpy calls, the same floats."""
    m = len(prices)
    c = np.empty((2, m))
    c[:, 0] = 0.0
    r = c[0, 1:]
    np.divide(prices[1:], prices[:-1], out=r)
    r -= 1.0
    np.multiply(r, r, out=c[1, 1:])
    c.cumsum(axis=1, out=c)                  # the method: np.cumsum's wrapper costs more here
    d = c[:, w:] - c[:, :-w]
    s, q = d[0], d[1]
    s *= s
    s /= w
    q -= s
    return q
