"""Results of causal computations, kept so the next bar costs one bar.

A live session re-prepares every symbol when a bar closes: the same indicators over the same
bars plus the new one (or several: components asked only on signal bars see a longer stretch).
A causal result (the value at bar ``i`` depends on bars ``<= i`` only) of the bars seen before is
still right, so only the new bars need computing. :class:`PrefixCache` keeps recent results by
their exact inputs (compared byte for byte: a near match is a miss, never a wrong answer) and
finds the one whose inputs a new call extends, or equals (several components smooth the same
series).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Hashable, NamedTuple, Optional, Sequence

import numpy as np


#: the bars whose values (with the kind) say which series a call is a version of
_SAMPLES = (0, 63, 511, 2047)


class Found(NamedTuple):
    """A kept result: ``n`` bars of inputs (``inputs``, as bytes) gave ``result``."""

    n: int
    result: Any
    key: tuple
    inputs: tuple[bytes, ...]


class _Entry(NamedTuple):
    n: int
    last: tuple[bytes, ...]          # every input's value at bar n - 1: a cheap first test
    inputs: tuple[bytes, ...]
    result: Any
    size: int


class PrefixCache:
    """Recent ``(inputs, result)`` pairs per kind of computation and series, at most
    ``max_bytes`` of them (least recently used first out) and ``per_series`` per series (a
    longer version of a series replaces the shorter ones); calls longer than ``max_bars`` are
    not kept, and a kept result is extended by at most ``max_extension`` bars."""

    def __init__(self, max_bytes: int, *, max_extension: int = 5_000, max_bars: int = 100_000,
                 per_series: int = 8):
        self.max_bytes, self.max_extension, self.max_bars = max_bytes, max_extension, max_bars
        self.per_series = per_series
        # (kind, the inputs' values at the sample bars) -> entries of that series at several lengths
        self._entries: OrderedDict[tuple, list[_Entry]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @staticmethod
    def _at(inputs: Sequence[np.ndarray], i: int) -> tuple[bytes, ...]:
        return tuple(x[i : i + 1].tobytes() for x in inputs)

    @staticmethod
    def _series_key(kind: Hashable, inputs: Sequence[np.ndarray]) -> tuple:
        """``kind`` and the inputs' values at a few early bars: the same for every version of a
        series from the fourth sample on (a version shorter than a sample misses once), and
        different for series that merely start alike (derived series start with the same NaNs)."""
        n = len(inputs[0])
        return (kind, tuple(x[i : i + 1].tobytes() for x in inputs for i in _SAMPLES if i < n))

    def find(self, kind: Hashable, inputs: Sequence[np.ndarray], *, extensions: bool = True
             ) -> Optional[Found]:
        """The result kept for inputs equal to the first ``n`` values of ``inputs`` (all of the
        same length), the longest such ``n`` within ``max_extension`` bars of their end
        (``extensions=False``: only the same inputs)."""
        length = len(inputs[0])
        if not 0 < length <= self.max_bars:
            return None
        key = self._series_key(kind, inputs)
        shortest = max(length - self.max_extension, 1) if extensions else length
        with self._lock:
            bucket = self._entries.get(key)
            if not bucket:
                return None
            best = None
            for entry in bucket:
                if shortest <= entry.n <= length and (best is None or entry.n > best.n) \
                        and entry.last == self._at(inputs, entry.n - 1) \
                        and entry.inputs == tuple(x[: entry.n].tobytes() for x in inputs):
                    best = entry
            if best is None:
                return None
            self._entries.move_to_end(key)
            return Found(best.n, best.result, key, best.inputs)

    def keep(self, kind: Hashable, inputs: Sequence[np.ndarray], result: Any, result_bytes: int,
             replaces: Optional[Found] = None) -> None:
        """Keep ``result`` of ``inputs``; ``replaces``: a kept entry these inputs extend (dropped:
        the next bar extends the newer one)."""
        length = len(inputs[0])
        if not 0 < length <= self.max_bars:
            return
        kept = tuple(x.tobytes() for x in inputs)
        size = sum(len(b) for b in kept) + result_bytes
        if size > self.max_bytes:
            return
        key = self._series_key(kind, inputs)
        entry = _Entry(length, self._at(inputs, length - 1), kept, result, size)
        with self._lock:
            bucket = self._entries.setdefault(key, [])
            if any(e.n == length and e.inputs == kept for e in bucket):
                return
            # a series only grows: results of its shorter versions are not asked for again
            shorter = [e for e in bucket if e.n < length and (
                (replaces is not None and e.n == replaces.n and e.inputs == replaces.inputs)
                or all(k[: len(i)] == i for k, i in zip(kept, e.inputs)))]
            for e in shorter:
                bucket.remove(e)
                self._bytes -= e.size
            if len(bucket) >= self.per_series:
                self._bytes -= bucket.pop(0).size
            bucket.append(entry)
            self._entries.move_to_end(key)
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, gone = self._entries.popitem(last=False)
                self._bytes -= sum(e.size for e in gone)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    @property
    def nbytes(self) -> int:
        return self._bytes
