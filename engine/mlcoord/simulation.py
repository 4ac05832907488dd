"""A simulated account: the trading loop on the simulated venue, into one ledger.

Backtests (:mod:`mlcoord.backtest`) walk it over history; paper sessions (:mod:`mlcoord.live.runner`)
step it as candles close. It owns nothing of trading itself: :class:`mlcoord.loop.TradingLoop`
decides per bar, :class:`mlcoord.simulated.SimulatedVenue` fills (rounding and refusing orders by
the :class:`~mlcoord.model.instruments.Instrument` rules), :class:`mlcoord.ledger.Ledger` accounts.
"""

from __future__ import annotations

from typing import Callable, Mapping, Optional, Sequence

import numpy as np
import structlog

from mlcoord.config import Settings
from mlcoord.costs import CostModel, FundingSeries
from mlcoord.journal import Journal
from mlcoord.ledger import Ledger
from mlcoord.loop import SymbolSeries, TradingLoop, Venue
from mlcoord.model import Fill, Trade
from mlcoord.model.instruments import Instrument, Instruments
from mlcoord.pipeline import Pipeline
from mlcoord.results import RawResult
from mlcoord.simulated import SimulatedVenue

log = structlog.get_logger("mlcoord.simulation")


def _unknown_instrument(symbol: str) -> None:
    log.warning("instrument_rules_unknown", symbol=symbol,
                note="no tick, lot or minimum order known: orders are not rounded or refused; set "
                     f'[instruments."{symbol}"] or run mlcoord data download')


def instruments_for(settings: Settings, exchange_rules: Optional[Mapping[str, Instrument]] = None) -> Instruments:
    """Exchange rules (from the data store) first, then ``[instruments]``, else permissive."""
    configured = {sym: Instrument(sym, c.tick_size, c.lot_size, c.min_quantity, c.min_notional, c.max_leverage,
                                  source="config") for sym, c in settings.instruments.items()}
    return Instruments(exchange_rules or {}, configured, warn=_unknown_instrument)


class TradingSession:
    """One account: the trading loop on a venue, into one ledger. ``begin``, then ``step`` per
    closed timestamp, then ``finish``. ``venue`` builds the venue from the cost model and the
    ledger (the simulated venue here; a live session passes its exchange venue)."""

    series_class = SymbolSeries

    def __init__(self, pipeline: Pipeline, settings: Settings, venue: Callable[[CostModel, Ledger], Venue],
                 journal: Optional[Journal] = None, funding: Optional[Mapping[str, FundingSeries]] = None):
        self.pipeline = pipeline
        self.settings = settings
        bt = settings.backtest
        self.costs = CostModel.from_config(bt, funding)
        self.ledger = Ledger(bt.initial_equity, leverage=bt.leverage, maintenance_margin=bt.maintenance_margin)
        self.venue = venue(self.costs, self.ledger)
        self.loop = TradingLoop(pipeline, self.ledger, self.venue, journal, market=self.costs.market,
                                leverage=self.costs.leverage, fee_rate=self.costs.fee_taker,
                                slippage=self.costs.slippage, horizon=settings.learning.horizon, costs=self.costs)
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

    def begin(self, series: Sequence[SymbolSeries]) -> None:
        """Start a run over ``series``; then :meth:`step` per timestamp and :meth:`finish` once."""
        self.loop.begin(series)

    def add_series(self, series: SymbolSeries) -> None:
        """A symbol joining a running session (a scanner's pick)."""
        self.loop.series.append(series)

    def warm_up_guards(self, series: Sequence[SymbolSeries], until: Optional[int] = None) -> int:
        return self.loop.warm_up_guards(series, until)

    def step(self, t: int, slot: Sequence[tuple[SymbolSeries, int]]) -> None:
        self.loop.step(t, slot)

    def finish(self, close: bool = False) -> RawResult:
        """What the session did so far (a live account is closed by orders, never here)."""
        if close:
            raise ValueError("only a simulated account closes its positions at the end of the data")
        return self._result()

    def _result(self) -> RawResult:
        loop = self.loop
        return RawResult(np.asarray(loop.times, dtype=np.int64), np.asarray(loop.equity_curve, dtype=float),
                         np.asarray(loop.exposure_curve, dtype=float), tuple(self.ledger.trades),
                         tuple(self.ledger.fills), tuple(self.journal.decisions), tuple(loop.plans),
                         self.settings.backtest.initial_equity, self.costs, dict(self.pipeline.errors.counts),
                         tuple(loop.level_paths))


class SimulatedSession(TradingSession):
    """A simulated account (backtests, paper sessions): the loop on :class:`SimulatedVenue`."""

    venue: SimulatedVenue

    def __init__(self, pipeline: Pipeline, settings: Settings, journal: Optional[Journal] = None,
                 funding: Optional[Mapping[str, FundingSeries]] = None,
                 instruments: Optional[Instruments] = None):
        rules = instruments or instruments_for(settings)
        super().__init__(pipeline, settings, lambda costs, ledger: SimulatedVenue(costs, ledger, rules), journal,
                         funding)

    def finish(self, close: bool = True) -> RawResult:
        """The run's result; ``close`` first closes what is still open at the last close."""
        loop = self.loop
        if close:
            for s in loop.series:
                if s.t:
                    self.venue.close_everything(s.symbol, len(s.t) - 1, s.t[-1], s.c[-1])
            if loop.times:
                loop.equity_curve[-1] = self.ledger.cash
        return self._result()
