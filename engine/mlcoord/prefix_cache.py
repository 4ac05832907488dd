"""Results of causal computations, kept so the next bar costs one bar.

A live session re-prepares every symbol when a bar closes: the same indicators over the same
bars plus the new one. A causal result (the value at bar ``i`` depends on bars ``<= i`` only)
of the bars seen before is still right, so only the new bars need computing. :class:`PrefixCache`
keeps recent results by their exact inputs (compared byte for byte: a near match is a miss,
never a wrong answer) and finds the one whose inputs a new call extends by a few bars, or
equals (several components smooth the same series).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Hashable, NamedTuple, Optional, Sequence

import numpy as np


class Found(NamedTuple):
    """A kept result: ``n`` bars of inputs (``inputs``, as bytes) gave ``result``."""

    n: int
    result: Any
    key: tuple
    inputs: tuple[bytes, ...]


class PrefixCache:
    """Recent ``(inputs, result)`` pairs per kind of computation, at most ``max_bytes`` of them
    (least recently used first out); calls longer than ``max_bars`` are not kept."""

    def __init__(self, max_bytes: int, *, max_extension: int = 8, max_bars: int = 100_000):
        self.max_bytes, self.max_extension, self.max_bars = max_bytes, max_extension, max_bars
        # (kind, length, fingerprint) -> [(inputs as bytes, result, size)]
        self._entries: OrderedDict[tuple, list[tuple[tuple[bytes, ...], Any, int]]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @staticmethod
    def _fingerprint(inputs: Sequence[np.ndarray], n: int) -> tuple[bytes, ...]:
        return tuple(x[n - 1 : n].tobytes() for x in inputs)

    def find(self, kind: Hashable, inputs: Sequence[np.ndarray], *, extensions: bool = True
             ) -> Optional[Found]:
        """The result kept for inputs equal to the first ``n`` values of ``inputs`` (all of the
        same length), the longest such ``n`` within ``max_extension`` bars of their end
        (``extensions=False``: only the same inputs)."""
        length = len(inputs[0])
        if not 0 < length <= self.max_bars:
            return None
        shortest = max(length - self.max_extension, 1) if extensions else length
        with self._lock:
            for n in range(length, shortest - 1, -1):
                key = (kind, n, self._fingerprint(inputs, n))
                candidates = self._entries.get(key)
                if not candidates:
                    continue
                seen = tuple(x[:n].tobytes() for x in inputs)
                for kept, result, _ in candidates:
                    if kept == seen:
                        self._entries.move_to_end(key)
                        return Found(n, result, key, seen)
        return None

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
        with self._lock:
            if replaces is not None:
                self._drop(replaces)
            key = (kind, length, self._fingerprint(inputs, length))
            bucket = self._entries.setdefault(key, [])
            if any(k == kept for k, _, _ in bucket):
                return
            bucket.append((kept, result, size))
            self._entries.move_to_end(key)
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, gone = self._entries.popitem(last=False)
                self._bytes -= sum(s for _, _, s in gone)

    def _drop(self, found: Found) -> None:
        bucket = self._entries.get(found.key)
        if not bucket:
            return
        for k, entry in enumerate(bucket):
            if entry[0] == found.inputs:
                self._bytes -= entry[2]
                del bucket[k]
                break
        if not bucket:
            del self._entries[found.key]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    @property
    def nbytes(self) -> int:
        return self._bytes
