"""A perpetual's funding history: what the cost model charges and what the funding features read.

Its own module (not :mod:`mlcoord.costs`, which reads the config) so that :class:`MarketData`
can carry it to plugins without importing the engine's configuration.
"""

from __future__ import annotations

from typing import Optional

import attrs
import numpy as np

SECOND_NS = 1_000_000_000


def _times(t) -> np.ndarray:
    out = (np.asarray(t, np.int64) + SECOND_NS // 2) // SECOND_NS * SECOND_NS
    out.flags.writeable = False
    return out


def _rates(r) -> np.ndarray:
    out = np.array(r, np.float64)
    out.flags.writeable = False
    return out


@attrs.frozen(eq=False)
class FundingSeries:
    """A perpetual's funding history: ``time`` (int64 ns, increasing) and ``rate`` per event
    (read-only arrays: plugins are handed it).

    Exchanges stamp funding a few ms after the hour; times are rounded to the second so a
    payment at 08:00:00.003 falls on the 08:00 bar. Outside ``[time[0], time[-1]]`` the series
    says nothing and the constant rate applies."""

    time: np.ndarray = attrs.field(converter=_times)
    rate: np.ndarray = attrs.field(converter=_rates)
    _cum: np.ndarray = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.time.shape != self.rate.shape or self.time.ndim != 1 or not len(self.time):
            raise ValueError("funding series needs equally long, non-empty time and rate arrays")
        if (np.diff(self.time) <= 0).any() or not np.isfinite(self.rate).all():
            raise ValueError("funding series times must increase and rates be finite")
        cum = np.concatenate([[0.0], np.cumsum(self.rate)])
        cum.flags.writeable = False
        object.__setattr__(self, "_cum", cum)

    def __len__(self) -> int:
        return len(self.time)

    def total(self, start: int, end: int) -> float:
        """Sum of the rates of funding events in ``(start, end]``."""
        a, b = np.searchsorted(self.time, (start, end), side="right")
        return float(self._cum[b] - self._cum[a])

    def totals(self, start: np.ndarray, end: np.ndarray) -> np.ndarray:
        """:meth:`total` of every ``(start[i], end[i]]``, vectorised. A sum is a difference of
        running sums taken from the first event, so events after ``end`` never change it."""
        a = np.searchsorted(self.time, start, side="right")
        b = np.searchsorted(self.time, end, side="right")
        return self._cum[b] - self._cum[a]

    def until(self, end: int) -> Optional["FundingSeries"]:
        """The events at or before ``end`` (ns), as a live bot knew them then; None if none."""
        k = int(np.searchsorted(self.time, end, side="right"))
        if k == len(self.time):
            return self
        return FundingSeries(self.time[:k], self.rate[:k]) if k else None
