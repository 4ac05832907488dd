"""A backtest: the simulated account walked over historical bars.

:class:`mlcoord.simulation.SimulatedSession` holds the loop, the simulated venue and the ledger;
this module walks the timestamps (every symbol's bars in time order), warms the guards up before
a start date, and keeps the garbage collector out of the hot loop.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
from typing import Callable, Iterable, Iterator, Optional, Sequence

import numpy as np

from mlcoord.loop import SymbolSeries
from mlcoord.pipeline import PreparedSymbol
from mlcoord.results import RawResult
from mlcoord.simulation import SimulatedSession

__all__ = ["Backtest", "RawResult"]


@contextlib.contextmanager
def _fewer_gc_passes() -> Iterator[None]:
    """The loop allocates many small, mostly acyclic objects (fills, decisions); CPython's default
    collector would then traverse the prepared arrays and every decision so far again and again
    (about a fifth of the loop's time). Objects from before the loop are frozen out of collection
    and young-generation passes are made rarer; cyclic garbage is still collected, just less
    often. Both settings are restored afterwards."""
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(max(threshold[0], 100_000), *threshold[1:])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


def _as_ints(times: np.ndarray, chunk: int = 1 << 16) -> Iterator[int]:
    """The times as Python ints, converted a chunk at a time: ``times.tolist()`` at once would hold
    an int object and a list slot per bar (~40 bytes) for the whole loop."""
    return itertools.chain.from_iterable(times[a:a + chunk].tolist() for a in range(0, len(times), chunk))


class Backtest(SimulatedSession):
    """One account over historical bars: :meth:`run` walks them all."""

    def run(self, prepared: Sequence[PreparedSymbol], progress: Optional[Callable[[int], None]] = None,
            start: Optional[int] = None) -> RawResult:
        """Walk the bars of ``prepared`` symbols; bars before ``start`` (ns) only warm indicators up."""
        series = [SymbolSeries(p) for p in prepared]
        if len(prepared) == 1:          # validated candles: already sorted and unique
            times = np.asarray(prepared[0].data.candles.time)
        else:
            times = np.unique(np.concatenate([p.data.candles.time for p in prepared])) if prepared \
                else np.array([], np.int64)
        if start is not None:
            times = times[np.searchsorted(times, start):]
        slots = self._slots(series, times)
        self.begin(series)
        if start is not None and len(times):
            self.loop.warm_up_guards(series, int(times[0]))
        step = self.loop.step
        with _fewer_gc_passes():
            for k, (t, slot) in enumerate(zip(_as_ints(times), slots)):
                step(t, slot)
                if progress is not None and k % 2048 == 2047:
                    progress(2048)
        if progress is not None:
            progress(len(times) % 2048)
        return self.finish()

    @staticmethod
    def _slots(series: Sequence[SymbolSeries], times: np.ndarray) -> Iterable:
        """For every timestamp, the (series, bar index) pairs that have a bar then."""
        if len(series) == 1:            # lazily: one tuple per bar, not a list of them up front
            s = series[0]
            return zip(zip(itertools.repeat(s), range(len(s.t) - len(times), len(s.t))))
        slots: list[list[tuple[SymbolSeries, int]]] = [[] for _ in range(len(times))]
        for s in series:
            bar_times = np.asarray(s.t)
            first = int(np.searchsorted(bar_times, times[0])) if len(times) else len(bar_times)
            for i, k in enumerate(np.searchsorted(times, bar_times[first:]).tolist(), start=first):
                slots[k].append((s, i))
        return slots
