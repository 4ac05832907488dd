"""A backtest: the trading loop over historical bars, on the simulated venue, into one ledger.

The backtest owns nothing of trading itself: :class:`mlcoord.loop.TradingLoop` decides per bar,
:class:`mlcoord.simulated.SimulatedVenue` fills, :class:`mlcoord.ledger.Ledger` accounts. This
module walks the timestamps, warms the guards up before a start date, and collects the result.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
from typing import Callable, Iterable, Iterator, Mapping, Optional, Sequence

import attrs
import numpy as np

from mlcoord.config import Settings
from mlcoord.costs import CostModel, FundingSeries
from mlcoord.journal import Journal
from mlcoord.ledger import Ledger
from mlcoord.loop import SymbolSeries, TradingLoop
from mlcoord.model import Decision, Fill, Trade
from mlcoord.pipeline import Pipeline, PreparedSymbol
from mlcoord.simulated import SimulatedVenue


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


@attrs.frozen
class RawResult:
    """What the loop produced; :mod:`mlcoord.backtest.stats` turns it into figures."""

    times: np.ndarray
    equity: np.ndarray
    exposure: np.ndarray            # gross notional per timestamp
    trades: tuple[Trade, ...]
    fills: tuple[Fill, ...]
    decisions: tuple[Decision, ...]
    plans: tuple[dict, ...]         # per entered plan: band, legs planned, legs filled
    initial_equity: float
    cost_model: CostModel
    errors: dict
    level_paths: tuple[dict, ...] = ()   # per closed position: trade id and its (time, stop, tp) path


class Backtest:
    """One account over historical bars: ``run`` once, or ``begin``/``step``/``finish`` bar by bar
    (a paper session steps it as candles close)."""

    series_class = SymbolSeries

    def __init__(self, pipeline: Pipeline, settings: Settings, journal: Optional[Journal] = None,
                 funding: Optional[Mapping[str, FundingSeries]] = None):
        self.pipeline = pipeline
        self.settings = settings
        bt = settings.backtest
        self.costs = CostModel.from_config(bt, funding)
        self.ledger = Ledger(bt.initial_equity, leverage=bt.leverage, maintenance_margin=bt.maintenance_margin)
        self.venue = SimulatedVenue(self.costs, self.ledger)
        self.loop = TradingLoop(pipeline, self.ledger, self.venue, journal, market=self.costs.market,
                                leverage=self.costs.leverage, fee_rate=self.costs.fee_taker,
                                slippage=self.costs.slippage, horizon=settings.learning.horizon)
        self.journal = self.loop.journal

    @property
    def portfolio(self):
        """The portfolio as plugins see it."""
        return self.loop.portfolio

    @property
    def account(self) -> Ledger:
        """The account's figures and positions (the ledger)."""
        return self.ledger

    @property
    def trades(self) -> list[Trade]:
        return self.ledger.trades

    @property
    def fills(self) -> list[Fill]:
        return self.ledger.fills

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
            for k, (t, slot) in enumerate(zip(times.tolist(), slots)):
                step(t, slot)
                if progress is not None and k % 2048 == 2047:
                    progress(2048)
        if progress is not None:
            progress(len(times) % 2048)
        return self.finish()

    def begin(self, series: Sequence[SymbolSeries]) -> None:
        """Start a run over ``series``; then :meth:`step` per timestamp and :meth:`finish` once."""
        self.loop.begin(series)

    def add_series(self, series: SymbolSeries) -> None:
        """A symbol joining a running session (a paper session's scanner pick)."""
        self.loop.series.append(series)

    def warm_up_guards(self, series: Sequence[SymbolSeries], until: Optional[int] = None) -> int:
        return self.loop.warm_up_guards(series, until)

    def step(self, t: int, slot: Sequence[tuple[SymbolSeries, int]]) -> None:
        self.loop.step(t, slot)

    def finish(self, close: bool = True) -> RawResult:
        """The run's result; ``close`` first closes what is still open at the last close."""
        loop = self.loop
        if close:
            for s in loop.series:
                if s.t:
                    self.venue.close_everything(s.symbol, len(s.t) - 1, s.t[-1], s.c[-1])
            if loop.times:
                loop.equity_curve[-1] = self.ledger.cash
        return RawResult(np.asarray(loop.times, dtype=np.int64), np.asarray(loop.equity_curve, dtype=float),
                         np.asarray(loop.exposure_curve, dtype=float), tuple(self.ledger.trades),
                         tuple(self.ledger.fills), tuple(self.journal.decisions), tuple(loop.plans),
                         self.settings.backtest.initial_equity, self.costs, dict(self.pipeline.errors.counts),
                         tuple(loop.level_paths))

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
