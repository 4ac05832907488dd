"""A backtest: the simulated account walked over historical bars.

:class:`mlcoord.simulation.SimulatedSession` holds the loop, the simulated venue and the ledger;
this module walks the timestamps (every symbol's bars in time order), warms the guards up before
a start date, and keeps the garbage collector out of the hot loop.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
from array import array
from typing import Callable, Iterable, Iterator, Optional, Sequence

import numpy as np

from mlcoord.candles import union_times
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
            times = union_times([p.data.candles.time for p in prepared])
        if start is not None:
            times = times[np.searchsorted(times, start):]
        slots = self._slots(series, times)
        self.begin(series)
        if start is not None and len(times):
            self.loop.warm_up_guards(series, int(times[0]))
        with _fewer_gc_passes():
            if self.skip_flat_bars:
                self._walk_skipping(series, times, slots, progress)
            else:
                self._walk(times, slots, progress)
        return self.finish()

    #: take stretches of flat bars without a signal at once (see ``TradingLoop.skip_flat``); off,
    #: every bar is stepped as in a paper or live session (the tests compare both)
    skip_flat_bars = True
    #: shorter quiet stretches are stepped: asking the watchers costs about as much as a few bars
    MIN_SKIP = 4

    def _walk(self, times: np.ndarray, slots: Iterable, progress: Optional[Callable[[int], None]]) -> None:
        step = self.loop.step
        for k, (t, slot) in enumerate(zip(_as_ints(times), slots)):
            step(t, slot)
            if progress is not None and k % 2048 == 2047:
                progress(2048)
        if progress is not None:
            progress(len(times) % 2048)

    def _walk_skipping(self, series: Sequence[SymbolSeries], times: np.ndarray, slots: Iterable,
                       progress: Optional[Callable[[int], None]]) -> None:
        """Step every bar that may matter; between two of them, hand the quiet stretch (every
        symbol has a bar and none signals) to the loop, which takes it at once when the account is
        flat and steps it otherwise."""
        step, n, min_skip = self.loop.step, len(times), self.MIN_SKIP
        if len(series) == 1:            # one tuple per stepped bar, built when stepped
            only, base = series[0], len(series[0].t) - n
            slot_at: Callable[[int], Sequence] = lambda k: ((only, base + k),)
        else:                           # a list per timestamp already (see _slots)
            slot_at = (slots if isinstance(slots, list) else list(slots)).__getitem__
        # Python ints for the per-bar comparisons and the step's time (a numpy scalar costs ~0.1 us
        # per read); the timeline stays numpy for the stretches handed over at once
        events = self._events(series, times).tolist()       # timeline positions that must be stepped
        stamps = array("q", np.ascontiguousarray(times, dtype=np.int64).tobytes())
        skip_flat = self.loop.skip_flat
        # held, hedged or working: not flat (checked here first: most bars of a busy stretch)
        positions, hedges, busy = self.loop.ledger.positions, self.loop.ledger.hedges, self.loop.venue.busy
        k, e, done, n_events = 0, 0, 0, len(events)
        while k < n:
            step(stamps[k], slot_at(k))
            k += 1
            while e < n_events and events[e] < k:
                e += 1
            end = events[e] if e < n_events else n
            if end - k >= min_skip and not (positions or hedges or busy) and skip_flat(times[k:end], slot_at(k)):
                k = end
            if progress is not None and k - done >= 2048:
                progress(k - done)
                done = k
        if progress is not None and n > done:
            progress(n - done)

    @staticmethod
    def _events(series: Sequence[SymbolSeries], times: np.ndarray) -> np.ndarray:
        """Timeline positions where a symbol signals or a symbol has no bar: never skipped."""
        n = len(times)
        if n == 0:
            return np.array([], np.int64)
        count = np.zeros(n, np.int64)
        signal = np.zeros(n, bool)
        for s in series:
            bar_times = np.frombuffer(s.t, dtype=np.int64)
            first = int(np.searchsorted(bar_times, times[0]))
            mine = bar_times[first:]
            # a symbol with a bar at every time (one symbol always): its bars are the timeline
            where = slice(None) if len(mine) == n and (mine == times).all() else np.searchsorted(times, mine)
            count[where] += 1
            signal[where] |= np.frombuffer(s.action, dtype=np.int8)[first:] != 0
        return np.flatnonzero(signal | (count < len(series)))

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
