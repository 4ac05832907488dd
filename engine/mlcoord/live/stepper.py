"""The previous bar stepper, kept only for the live order loop until its exchange venue lands.

Backtests and paper trading use :mod:`mlcoord.loop` with :mod:`mlcoord.simulated`; this copy of
the old backtest loop is what :class:`mlcoord.live.trader.LiveEngine` still overrides. It goes
when the live trader becomes a venue of the shared loop.

Per timestamp: (1) the live engine brings positions from the exchange's fills; (2) marking to
the close; (3) portfolio watchers; (4) per symbol: exit-level updates and entry decisions with
data closed at this bar, left on the books for the live trader to turn into orders. The shared
pieces (warm-up replay, learning feedback, hedge fractions) are :mod:`mlcoord.loop`'s own.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import numpy as np

from mlcoord.costs import DAY_NS, CostModel, FundingSeries
from mlcoord.live.legacy_portfolio import Portfolio
from mlcoord.config import Settings
from mlcoord.journal import Journal
from mlcoord.model import Fill, GuardActionKind, PositionExit, Side, Trade
from mlcoord.loop import SymbolSeries, feed_due_outcomes, hedge_fraction, replay_flat_bars
from mlcoord.results import RawResult
from mlcoord.pipeline import Pipeline, PreparedSymbol


class Leg:
    """A pending entry order of a plan."""

    __slots__ = ("price", "quantity", "market", "expires", "tag", "order_id")

    def __init__(self, price, quantity, market, expires, tag, order_id):
        self.price, self.quantity, self.market = price, quantity, market
        self.expires, self.tag, self.order_id = expires, tag, order_id


class Book(SymbolSeries):
    """A symbol's series (:class:`mlcoord.loop.SymbolSeries`) plus what the live trader reads and
    writes per bar: working entry legs, and the closes and hedge changes the stepper asks for."""

    __slots__ = ("legs", "exit_reason", "hedge_open", "hedge_close", "partial_close")

    def __init__(self, prepared: PreparedSymbol):
        super().__init__(prepared)
        self.legs: list = []                     # Leg, or the exchange's OrderRecord (the trader syncs them)
        self.exit_reason: Optional[str] = None
        self.hedge_open = 0.0                    # hedge quantity to hold from the next open
        self.hedge_close: Optional[str] = None
        self.partial_close: Optional[tuple[str, float]] = None   # an exit manager's (reason, fraction)




class Stepper:
    series_class = Book

    @property
    def account(self):
        return self.portfolio

    def add_series(self, book: Book) -> None:
        self.books.append(book)
    def __init__(self, pipeline: Pipeline, settings: Settings, journal: Optional[Journal] = None,
                 funding: Optional[Mapping[str, FundingSeries]] = None):
        self.pipeline = pipeline
        self.settings = settings
        self.costs = CostModel.from_config(settings.backtest, funding)
        self.portfolio = Portfolio(settings.backtest.initial_equity)
        self.journal = journal or Journal()
        self.trades: list[Trade] = []
        self.fills: list[Fill] = []
        self.plans: list[dict] = []
        self.level_paths: list[dict] = []
        self.horizon = settings.learning.horizon
        components = pipeline.components
        self.learning = bool(components.ml_components) or components.calibrator is not None

    # -- the loop --------------------------------------------------------------------------
    def begin(self, books: Sequence[Book]) -> None:
        """Start a run over ``books``; then :meth:`step` per timestamp and :meth:`finish` once.

        Paper trading drives these three itself, bar by bar as candles close, so that it trades
        with exactly the backtest's per-bar code."""
        self.books = list(books)
        self.portfolio.books = self.books
        self._guards = [(g.name, g.obj.on_bar) for g in self.pipeline.components.portfolio_watchers]
        self._times: list[int] = []
        self._equity_curve: list[float] = []
        self._exposure_curve: list[float] = []
        self._day: Optional[int] = None

    @property
    def current_day(self) -> Optional[int]:
        """The UTC day (days since the epoch) of the latest stepped bar."""
        return self._day

    def continue_day(self, day: int, day_start_equity: float) -> None:
        """A live session restarted within the same UTC day keeps that day's starting equity (the
        daily-loss limit's base) instead of starting the day afresh at the next bar."""
        self._day = day
        self.portfolio.day_start_equity = day_start_equity

    def warm_up_guards(self, books: Sequence[Book], until: Optional[int] = None) -> int:
        """See :func:`mlcoord.loop.replay_flat_bars`."""
        return replay_flat_bars(books, until, self.portfolio, self.portfolio, self._guards, self.pipeline.errors)

    def step(self, t: int, slot: Sequence[tuple[Book, int]]) -> None:
        """One timestamp: fills, marking, guards, exit updates and entry decisions.

        ``slot`` lists the (book, bar index) pairs that have a closed bar at ``t``."""
        portfolio = self.portfolio
        positions, hedges = portfolio.positions, portfolio.hedges
        pipeline = self.pipeline
        self._times.append(t)
        portfolio.time = t
        today = t // DAY_NS
        if today != self._day:
            self._day = today
            portfolio.day_start_equity = portfolio.equity
        for book, i in slot:
            sym = book.symbol
            if book.legs or sym in positions or sym in hedges or book.exit_reason or book.hedge_open \
                    or book.hedge_close:
                self._fill_bar(book, i, t)
            portfolio.prices[sym] = book.c[i]
        if positions or hedges:
            self._equity_curve.append(portfolio.mark())
            self._exposure_curve.append(portfolio.marked_exposure)
        else:
            self._equity_curve.append(portfolio.mark_flat())
            self._exposure_curve.append(0.0)
        for guard_name, on_bar in self._guards:
            try:
                actions = on_bar(portfolio)
            except Exception as exc:
                pipeline.errors.failed(guard_name, "on_bar", exc)
                continue
            if actions:
                for action in pipeline.checked_guard_actions(guard_name, actions):
                    self._guard_action(guard_name, action, self.books)
        if portfolio.hedge_mode:
            self._cover_hedges(self.books)
        for book, i in slot:
            if i >= book.next_due:
                feed_due_outcomes(pipeline, book, i, self.horizon)
            sym = book.symbol
            position: Any = positions.get(sym)      # the live trader's legacy Position (levels, path)
            if position is not None:
                old = position.levels
                new = pipeline.update_levels(book.prepared, i, position, old)
                if isinstance(new, PositionExit):
                    if new.fraction >= 1.0:
                        book.exit_reason = new.reason     # the live trader flattens the plan at market
                    else:
                        book.partial_close = (new.reason, new.fraction)   # a reduce-only market order
                    new = old
                position.levels = new
            a = book.action[i]
            if not a:
                continue
            if position is not None or book.legs:
                if (a < 0 and position is not None and position.side == Side.LONG
                        and self.costs.market == "spot"):
                    book.exit_reason = "sell_signal"
                continue
            self._decide(book, i, t)

    def _fill_bar(self, book: Book, i: int, t: int) -> None:
        """Fills come from the exchange: the live engine (:class:`mlcoord.live.trader.LiveEngine`)
        supplies positions; this stepper has no fill model of its own."""
        raise NotImplementedError("the live stepper has no fill model: LiveEngine supplies positions")

    def finish(self, close: bool = False) -> RawResult:
        """What the session did so far (a live account is never closed by the stepper)."""
        if close:
            raise ValueError("a live session's positions are closed by orders, not by finish(close=True)")
        return RawResult(np.asarray(self._times, dtype=np.int64), np.asarray(self._equity_curve, dtype=float),
                         np.asarray(self._exposure_curve, dtype=float), tuple(self.trades), tuple(self.fills),
                         tuple(self.journal.decisions), tuple(self.plans), self.settings.backtest.initial_equity,
                         self.costs, dict(self.pipeline.errors.counts), tuple(self.level_paths))

    def _decide(self, book: Book, i: int, t: int) -> None:
        costs = self.costs
        decision = self.pipeline.decide(book.prepared, i, self.portfolio, time=t, leverage=costs.leverage,
                                        fee_rate=costs.fee_taker, slippage=costs.slippage)
        self.journal.record(decision)
        if self.learning:
            due = i + self.horizon
            book.pending.append((due, i, decision))
            book.next_due = min(book.next_due, due)
        if decision.outcome != "entered":
            return
        plan, sizing = decision.plan, decision.sizing
        assert plan is not None and sizing is not None, "an entered decision has a plan and a size"
        qty = sizing.quantity
        n = len(plan.legs)
        expires = i + max(plan.expires_after_bars, 1)
        book.legs = [Leg(leg.price, qty * leg.fraction, leg.market, expires, f"entry:{j + 1}/{n}",
                         f"{book.symbol}:{t}:entry:{j + 1}") for j, leg in enumerate(plan.legs)]
        self.plans.append({"symbol": book.symbol, "time": t, "band": f"{n} entries", "planned": n, "filled": 0,
                           "confidence": decision.confidence})

    # -- fills -----------------------------------------------------------------------------
    def _guard_action(self, guard: str, action, books: Sequence[Book]) -> None:
        """As :meth:`mlcoord.loop.TradingLoop._guard_action`: triggers keyed by (guard, symbol)."""
        portfolio = self.portfolio
        self.journal.guard(guard, action, portfolio)
        if action.kind == GuardActionKind.OPEN_HEDGE:
            portfolio.hedge_mode[(guard, action.symbol)] = action.fraction
        elif action.kind == GuardActionKind.CLOSE_HEDGE:
            for key in [k for k in portfolio.hedge_mode if k[0] == guard and action.symbol in (None, k[1])]:
                del portfolio.hedge_mode[key]
            for book in books:
                if book.symbol in portfolio.hedges and self.hedge_fraction(book.symbol) is None:
                    book.hedge_close = f"hedge released ({guard}: {action.reason})"
        elif action.kind == GuardActionKind.CLOSE_ALL:
            for book in books:
                book.legs = []
                if book.symbol in portfolio.positions:
                    book.exit_reason = f"guard:{guard}"

    def hedge_fraction(self, symbol: str) -> Optional[float]:
        return hedge_fraction(self.portfolio.hedge_mode, symbol)

    def _cover_hedges(self, books: Sequence[Book]) -> None:
        """As the loop: while a trigger covers a position, its hedge leg holds the trigger's fraction
        of what the position holds now (the live trader opens the leg, or resizes it when the held
        quantity moved by at least a lot)."""
        if self.costs.market != "futures":
            return
        for book in books:
            position = self.portfolio.positions.get(book.symbol)
            fraction = self.hedge_fraction(book.symbol)
            if position is None or fraction is None or book.hedge_open:
                continue
            target = position.quantity * fraction
            hedge = self.portfolio.hedges.get(book.symbol)
            if hedge is None or abs(hedge.quantity - target) > 1e-9 * target:
                book.hedge_open = target
