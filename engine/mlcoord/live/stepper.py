"""The previous bar stepper, kept only for the live order loop until its exchange venue lands.

Backtests and paper trading use :mod:`mlcoord.loop` with :mod:`mlcoord.simulated`; this copy of
the old backtest loop is what :class:`mlcoord.live.trader.LiveEngine` still overrides. It goes
when the live trader becomes a venue of the shared loop.

Per timestamp: (1) fills of orders placed at the previous close, using only this bar's OHLC;
(2) marking to the close; (3) portfolio guards; (4) per symbol: exit-level updates and entry
decisions with data closed at this bar. Orders from (3) and (4) fill from the next bar, so no
decision can see the bar it trades on. Same data, config and plugins give the same run.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
from typing import Callable, Iterable, Iterator, Mapping, Optional, Sequence

import attrs
import numpy as np

from mlcoord.costs import DAY_NS, CostModel, FundingSeries
from mlcoord.live.legacy_portfolio import Portfolio, Position
from mlcoord.config import Settings
from mlcoord.journal import Journal
from mlcoord.model import Decision, Fill, PositionExit, Side, Trade
from mlcoord.pipeline import Pipeline, PreparedSymbol


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


class Leg:
    """A pending entry order of a plan."""

    __slots__ = ("price", "quantity", "market", "expires", "tag", "order_id")

    def __init__(self, price, quantity, market, expires, tag, order_id):
        self.price, self.quantity, self.market = price, quantity, market
        self.expires, self.tag, self.order_id = expires, tag, order_id


class Book:
    """Per-symbol state: arrays as Python lists (fast scalar access) and pending orders."""

    __slots__ = ("prepared", "symbol", "t", "o", "h", "l", "c", "action", "legs", "plan_side",
                 "plan_decision", "plan_levels", "plan_count", "plan_filled", "exit_reason",
                 "hedge_open", "hedge_close", "prev_time", "record", "pending", "next_due")

    def __init__(self, prepared: PreparedSymbol):
        candles = prepared.data.candles
        self.prepared = prepared
        self.symbol = candles.symbol
        self.t = candles.time.tolist()
        self.o, self.h, self.l, self.c = (candles.open.tolist(), candles.high.tolist(),
                                          candles.low.tolist(), candles.close.tolist())
        self.action = prepared.action.tolist()
        self.legs: list[Leg] = []
        self.plan_side = 0
        self.plan_decision: Optional[Decision] = None
        self.plan_levels = None
        self.plan_count = 0
        self.plan_filled = 0
        self.exit_reason: Optional[str] = None
        self.hedge_open = 0.0          # quantity of hedge to open at the next open
        self.hedge_close: Optional[str] = None
        self.prev_time: Optional[int] = None
        self.record: dict = {}
        self.pending: list[tuple[int, int, Decision]] = []   # (due index, decision index, decision)
        self.next_due = 1 << 62

    @property
    def busy(self) -> bool:
        return bool(self.legs)

    def load(self, prepared: PreparedSymbol) -> None:
        """Point at a re-prepared, longer series; orders and plan state stay."""
        fresh = Book(prepared)
        for name in ("prepared", "t", "o", "h", "l", "c", "action"):
            setattr(self, name, getattr(fresh, name))


from mlcoord.results import RawResult  # noqa: E402


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
        self._trade_seq = 0
        self._hedges_dirty = False
        self._funding_step = self.costs.funding_interval_ns if self.costs.funding_events(0, 1 << 62) else 0
        self.horizon = settings.learning.horizon
        components = pipeline.components
        self.learning = bool(components.ml_components) or components.calibrator is not None

    # -- the loop --------------------------------------------------------------------------
    def run(self, prepared: Sequence[PreparedSymbol], progress: Optional[Callable[[int], None]] = None,
            start: Optional[int] = None) -> RawResult:
        """Walk the bars of ``prepared`` symbols; bars before ``start`` (ns) only warm indicators up."""
        books = [Book(p) for p in prepared]
        if len(prepared) == 1:          # validated candles: already sorted and unique
            times = np.asarray(prepared[0].data.candles.time)
        else:
            times = np.unique(np.concatenate([p.data.candles.time for p in prepared])) if prepared \
                else np.array([], np.int64)
        if start is not None:
            times = times[np.searchsorted(times, start):]
        slots = self._slots(books, times)
        self.begin(books)
        if start is not None and len(times):
            self.warm_up_guards(books, int(times[0]))
        step = self.step
        with _fewer_gc_passes():
            for k, (t, slot) in enumerate(zip(times.tolist(), slots)):
                step(t, slot)
                if progress is not None and k % 2048 == 2047:
                    progress(2048)
        if progress is not None:
            progress(len(times) % 2048)
        return self.finish()

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
        """Bars before the first stepped one (the indicators' warm-up, or a live session's history)
        reach the portfolio guards as flat bars: nothing is held and their actions are ignored, but
        price statistics (the hedging guard's volatility baseline needs weeks of bars) are ready
        when trading starts, in a backtest with a start date and in paper or live trading alike.
        Returns the bars replayed."""
        if not self._guards:
            return 0
        portfolio, errors = self.portfolio, self.pipeline.errors
        bars = []
        for book in books:
            n = len(book.t) if until is None else int(np.searchsorted(book.t, until))
            bars.append((book.symbol, book.t, book.c, n))
        times = sorted({t for _, ts, _, n in bars for t in ts[:n]})
        where = [0] * len(bars)
        for t in times:
            for k, (sym, ts, cs, n) in enumerate(bars):
                j = where[k]
                if j < n and ts[j] == t:
                    portfolio.prices[sym] = cs[j]
                    where[k] = j + 1
            portfolio.time = t
            for name, on_bar in self._guards:
                try:
                    on_bar(portfolio)
                except Exception as exc:
                    errors.failed(name, "on_bar (warm-up)", exc)
        return len(times)

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
            equity = portfolio.equity = portfolio.cash
            if equity > portfolio.peak_equity:
                portfolio.peak_equity = equity
            self._equity_curve.append(equity)
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
                self._learn(book, i)
            sym = book.symbol
            position = positions.get(sym)
            if position is not None:
                old = position.levels
                new = pipeline.update_levels(book.prepared, i, position, old)
                if isinstance(new, PositionExit):
                    if new.fraction >= 1.0:
                        book.exit_reason = new.reason     # the live trader flattens the plan at market
                    else:
                        pipeline.errors.failed(pipeline.components.exit_manager.name, "update", "a partial "
                                               "close (PositionExit fraction < 1) is not yet supported live",
                                               symbol=sym)
                    new = old
                position.levels = new
                if new is not old and (new.stop != old.stop or new.take_profit != old.take_profit):
                    position.level_path.append((t, new.stop, new.take_profit))
            a = book.action[i]
            if not a:
                continue
            if position is not None or book.legs:
                if (a < 0 and position is not None and position.side == Side.LONG
                        and self.costs.market == "spot"):
                    book.exit_reason = "sell_signal"
                continue
            self._decide(book, i, t)

    def finish(self, close: bool = True) -> RawResult:
        """The run's result; ``close`` first closes what is still open at the last close."""
        if close:
            self._close_everything(self.books)
            if self._times:
                self._equity_curve[-1] = self.portfolio.cash
        return RawResult(np.asarray(self._times, dtype=np.int64), np.asarray(self._equity_curve, dtype=float),
                         np.asarray(self._exposure_curve, dtype=float), tuple(self.trades), tuple(self.fills),
                         tuple(self.journal.decisions), tuple(self.plans), self.settings.backtest.initial_equity,
                         self.costs, dict(self.pipeline.errors.counts), tuple(self.level_paths))

    @staticmethod
    def _slots(books: Sequence[Book], times: np.ndarray) -> Iterable:
        """For every timestamp, the (book, bar index) pairs that have a bar then."""
        if len(books) == 1:             # lazily: one tuple per bar, not a list of them up front
            book = books[0]
            return zip(zip(itertools.repeat(book), range(len(book.t) - len(times), len(book.t))))
        slots: list[list[tuple[Book, int]]] = [[] for _ in range(len(times))]
        for book in books:
            bar_times = np.asarray(book.t)
            first = int(np.searchsorted(bar_times, times[0])) if len(times) else len(bar_times)
            for i, k in enumerate(np.searchsorted(times, bar_times[first:]).tolist(), start=first):
                slots[k].append((book, i))
        return slots

    # -- entries ---------------------------------------------------------------------------
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
        plan, qty = decision.plan, decision.sizing.quantity
        n = len(plan.legs)
        expires = i + max(plan.expires_after_bars, 1)
        book.legs = [Leg(leg.price, qty * leg.fraction, leg.market, expires, f"entry:{j + 1}/{n}",
                         f"{book.symbol}:{t}:entry:{j + 1}") for j, leg in enumerate(plan.legs)]
        book.plan_side = int(plan.side)
        book.plan_decision = decision
        book.plan_levels = decision.levels
        book.plan_count = n
        book.plan_filled = 0
        book.record = {"symbol": book.symbol, "time": t, "band": f"{n} entries", "planned": n, "filled": 0,
                       "confidence": decision.confidence}
        self.plans.append(book.record)

    def _learn(self, book: Book, i: int) -> None:
        """Outcomes whose horizon closed at this bar: known now, fed to the learners now."""
        due, keep = [], []
        for item in book.pending:
            (due if item[0] <= i else keep).append(item)
        book.pending = keep
        book.next_due = min((item[0] for item in keep), default=1 << 62)
        c = book.c
        for _, index, decision in due:
            self.pipeline.learn(book.symbol, index, decision, c[index + self.horizon] / c[index] - 1.0)

    # -- fills -----------------------------------------------------------------------------
    def _fill_bar(self, book: Book, i: int, t: int) -> None:
        costs, portfolio = self.costs, self.portfolio
        sym = book.symbol
        o, h, l = book.o[i], book.h[i], book.l[i]
        position = portfolio.positions.get(sym)
        hedge = portfolio.hedges.get(sym)
        previous = book.prev_time
        if previous is not None and (position is not None or hedge is not None) and self._funding_step:
            rate = costs.funding_between(sym, previous, t)
            if rate:
                for p in (position, hedge):
                    if p is not None:
                        payment = rate * p.quantity * o * p.side
                        p.funding += payment
                        portfolio.cash -= payment
        book.prev_time = t
        if book.exit_reason and position is not None:
            self._exit(position, costs.market_exit(o, position.side), position.quantity, t, book.exit_reason,
                       costs.fee_taker, i)
            position = None
            book.legs = []
        book.exit_reason = None
        if book.hedge_close and hedge is not None:
            self._exit(hedge, costs.market_exit(o, hedge.side), hedge.quantity, t, book.hedge_close,
                       costs.fee_taker, i)
            hedge = None
        book.hedge_close = None
        if book.hedge_open and hedge is None and position is not None:
            side = Side(-position.side)
            hedge = Position(sym, side, i, t, hedge=True)
            price = costs.market_entry(o, side)
            self._enter(hedge, price, book.hedge_open, t, "hedge", costs.fee_taker, f"{sym}:{t}:hedge")
            portfolio.hedges[sym] = hedge
        book.hedge_open = 0.0
        if book.legs:
            position = self._fill_legs(book, i, t, o, h, l, position)
        if position is not None:
            self._protect(book, position, i, t, o, h, l)
        if hedge is not None and sym in portfolio.hedges:
            if (hedge.side > 0 and l <= hedge.liquidation_price) or (hedge.side < 0 and h >= hedge.liquidation_price):
                self._exit(hedge, hedge.liquidation_price, hedge.quantity, t, "liquidation", costs.fee_taker, i)

    def _fill_legs(self, book: Book, i: int, t: int, o: float, h: float, l: float,
                   position: Optional[Position]) -> Optional[Position]:
        costs = self.costs
        side = book.plan_side
        remaining = []
        for leg in book.legs:
            if leg.market:
                price, fee = costs.market_entry(o, side), costs.fee_taker
            elif (side > 0 and l <= leg.price) or (side < 0 and h >= leg.price):
                price, fee = costs.limit_entry(leg.price, o, side), costs.fee_maker
            elif i >= leg.expires:
                continue
            else:
                remaining.append(leg)
                continue
            if position is None:
                position = Position(book.symbol, Side(side), i, t, decision=book.plan_decision,
                                    levels=book.plan_levels, entries_planned=book.plan_count)
                self.portfolio.positions[book.symbol] = position
                self._hedges_dirty = True
            self._enter(position, price, leg.quantity, t, leg.tag, fee, leg.order_id)
            book.plan_filled += 1
            book.record["filled"] = book.plan_filled
        book.legs = remaining
        return position

    def _protect(self, book: Book, position: Position, i: int, t: int, o: float, h: float, l: float) -> None:
        costs = self.costs
        levels = position.levels
        side = position.side
        liq = position.liquidation_price
        if (side > 0 and l <= liq) or (side < 0 and h >= liq):
            if (side > 0 and levels.stop <= liq) or (side < 0 and levels.stop >= liq):
                self._exit(position, liq, position.quantity, t, "liquidation", costs.fee_taker, i)
                book.legs = []
                return
        stop = levels.stop
        if (side > 0 and l <= stop) or (side < 0 and h >= stop):
            initial = position.decision.levels.stop if position.decision and position.decision.levels else stop
            reason = "stop_loss" if stop == initial else "trailing_stop"
            self._exit(position, costs.stop_exit(stop, o, side), position.quantity, t, reason, costs.fee_taker, i)
            book.legs = []
            return
        partial = levels.partial_take_profit
        if partial is not None and not position.partial_done and \
                ((side > 0 and h >= partial) or (side < 0 and l <= partial)):
            position.partial_done = True
            qty = position.quantity * levels.partial_fraction
            if qty > 0:
                self._exit(position, costs.limit_exit(partial, o, side), qty, t, "partial_take_profit",
                           costs.fee_maker, i)
        tp = levels.take_profit
        if tp is not None and position.quantity > 0 and ((side > 0 and h >= tp) or (side < 0 and l <= tp)):
            self._exit(position, costs.limit_exit(tp, o, side), position.quantity, t, "take_profit",
                       costs.fee_maker, i)
            book.legs = []
            return
        if side > 0:
            if h > position.best_price:
                position.best_price = h
        elif l < position.best_price:
            position.best_price = l

    def _enter(self, position: Position, price: float, qty: float, t: int, tag: str, fee_rate: float,
               order_id: str) -> None:
        fee = price * qty * fee_rate
        fill = Fill(order_id, position.symbol, position.side, t, price, qty, fee, False, tag, position.hedge)
        position.add(fill, self.costs.leverage, self.costs.maintenance_margin)
        self.portfolio.cash -= fee
        self.fills.append(fill)

    def _exit(self, position: Position, price: float, qty: float, t: int, reason: str, fee_rate: float,
              i: int) -> None:
        portfolio = self.portfolio
        fee = price * qty * fee_rate
        fill = Fill(f"{position.symbol}:{t}:{reason}", position.symbol, position.side, t, price, qty, fee, True,
                    reason, position.hedge)
        pnl = position.reduce(fill)
        portfolio.cash += pnl - fee
        self.fills.append(fill)
        if position.quantity > 0:
            return
        self._trade_seq += 1
        trade = position.to_trade(f"T{self._trade_seq:05d}", t, reason)
        self.trades.append(trade)
        if position.level_path:
            self.level_paths.append({"trade": trade.id, "symbol": position.symbol, "path": position.level_path})
        book_of = portfolio.hedges if position.hedge else portfolio.positions
        book_of.pop(position.symbol, None)
        if not position.hedge:
            self.pipeline.trade_closed(trade, position.decision)
            hedge = portfolio.hedges.get(position.symbol)
            if hedge is not None:   # a hedge never outlives the position it protects
                self._exit(hedge, price * (1.0 - self.costs.slippage * hedge.side), hedge.quantity, t,
                           "hedged position closed", fee_rate, i)

    # -- guards ----------------------------------------------------------------------------
    def _guard_action(self, guard: str, action, books: Sequence[Book]) -> None:
        """As :meth:`mlcoord.loop.TradingLoop._guard_action`: triggers keyed by (guard, symbol)."""
        portfolio = self.portfolio
        self.journal.guard(guard, action, portfolio)
        if action.kind == "open_hedge":
            portfolio.hedge_mode[(guard, action.symbol)] = action.fraction
            self._hedges_dirty = True
        elif action.kind == "close_hedge":
            for key in [k for k in portfolio.hedge_mode if k[0] == guard and action.symbol in (None, k[1])]:
                del portfolio.hedge_mode[key]
            for book in books:
                if book.symbol in portfolio.hedges and self.hedge_fraction(book.symbol) is None:
                    book.hedge_close = f"hedge released ({guard}: {action.reason})"
        elif action.kind == "close_all":
            for book in books:
                book.legs = []
                if book.symbol in portfolio.positions:
                    book.exit_reason = f"guard:{guard}"

    def hedge_fraction(self, symbol: str) -> Optional[float]:
        fractions = [f for (_, sym), f in self.portfolio.hedge_mode.items() if sym is None or sym == symbol]
        return max(fractions) if fractions else None

    def _cover_hedges(self, books: Sequence[Book]) -> None:
        """As the loop: while a trigger covers a position, its hedge leg holds the trigger's fraction
        of what the position holds now (the live trader opens the leg, or resizes it when the held
        quantity moved by at least a lot)."""
        self._hedges_dirty = False
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

    def _close_everything(self, books: Sequence[Book]) -> None:
        """Positions still open at the end are closed at the last close (as a market order)."""
        for book in books:
            book.legs = []
            if not book.t:
                continue
            t, c = book.t[-1], book.c[-1]
            for store in (self.portfolio.positions, self.portfolio.hedges):
                position = store.get(book.symbol)
                if position is not None:
                    self._exit(position, self.costs.market_exit(c, position.side), position.quantity, t,
                               "end_of_data", self.costs.fee_taker, len(book.t) - 1)
