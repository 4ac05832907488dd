"""The per-bar trading loop: closed bars in, intents out. The same for backtest, paper and live.

Per timestamp: (1) the venue executes what earlier bars asked for, on this bar (fills and funding
go to the ledger); (2) the ledger is marked to the close; (3) portfolio guards see the portfolio
(hedge and close intents); (4) per symbol: learning feedback whose horizon closed, exit-level
updates (:class:`~mlcoord.model.SetLevels`), and the entry decision
(:class:`~mlcoord.model.PlaceEntryPlan`). Intents reach the venue at once and take effect from
the symbol's next bar, so no decision can see the bar it trades on.

The loop changes no fill and no balance: only venues fill, only the ledger accounts. Same data,
config and plugins give the same run.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from types import MappingProxyType
from typing import Callable, Iterable, Mapping, Optional, Protocol, Sequence

import numpy as np

from mlcoord.coordinator import decisive_reason
from mlcoord.costs import DAY_NS, CostModel
from mlcoord.journal import Journal
from mlcoord.ledger import Ledger, Position
from mlcoord.model import (
    CancelEntries,
    CloseHedge,
    ClosePosition,
    Decision,
    EntryOrder,
    ExitLevels,
    ExitReason,
    GuardActionKind,
    Intent,
    OpenHedge,
    PlaceEntryPlan,
    PositionExit,
    SetLevels,
    Side,
    Trade,
)
from mlcoord.model.intents import STOP_PASSED
from mlcoord.pipeline import FORCE_ENTER_REASON, Pipeline, PreparedSymbol
from mlcoord.protocols import SkipsFlatBars
from mlcoord.trade_label import decision_trade_labels
from mlcoord.views import PendingEntry, PortfolioMath, PositionProxy, _Frozen


class Venue(Protocol):
    """Where intents are executed (:mod:`mlcoord.simulated`, an exchange). Fills go to the ledger."""

    def submit(self, intent: Intent) -> None: ...
    def has_entries(self, symbol: str) -> bool: ...
    def hedge_pending(self, symbol: str) -> bool: ...
    def working_entries(self) -> Iterable[tuple[str, int, float, float]]: ...
    def on_bar(self, symbol: str, i: int, t: int, o: float, h: float, l: float) -> None: ...

    #: symbols whose next bar may fill something besides what the ledger holds
    busy: set[str]
    #: changes when working orders change other than by an intent or a fill (an exchange's expiry)
    version: int


#: a decision waiting for its outcome: (due index, decision index, decision, the long and short
#: trade labels' levels)
Pending = tuple[int, int, Decision, tuple[Optional[ExitLevels], Optional[ExitLevels]]]


class SymbolSeries:
    """One symbol's bars as flat typed arrays (scalar access a few ns slower than a list's, which
    the 50,000-bar loop does not show, at 8 bytes per value instead of a list slot and a float
    object, ~32), its prepared series
    and its pending learning. Bar indices count from the series' first bar and never change;
    ``prepared`` may cover only the latest bars (a live session prepares a bounded window): its bar
    ``k`` is the series' bar ``offset + k``."""

    __slots__ = ("prepared", "symbol", "t", "o", "h", "l", "c", "action", "pending", "next_due", "offset")

    def __init__(self, prepared: PreparedSymbol):
        self.prepared = prepared
        self.symbol = prepared.data.candles.symbol
        self.pending: list[Pending] = []     # (due index, decision index, decision, label levels)
        self.next_due = 1 << 62
        self.t: array[int] = array("q")
        self.o: array[float] = array("d")
        self.h: array[float] = array("d")
        self.l: array[float] = array("d")
        self.c: array[float] = array("d")
        self.action: array[int] = array("b")
        self.offset = 0
        self.load(prepared)

    def load(self, prepared: PreparedSymbol, offset: int = 0, changed: Optional[int] = None) -> None:
        """Point at ``prepared``, whose bars are the series' bars from ``offset`` on (earlier bars
        are kept; later ones are replaced or added). ``changed``: only the last ``changed`` bars
        are new, the series holds the others already (a live bar: its actions before the new
        bars are never read again)."""
        if offset > len(self.t):
            raise ValueError(f"{self.symbol}: prepared bars start at {offset}, the series has {len(self.t)}")
        candles = prepared.data.candles
        self.prepared, self.offset = prepared, offset
        start = offset if changed is None else max(offset, offset + len(candles) - changed)
        columns: tuple[tuple[array, np.ndarray, type], ...] = (
            (self.t, candles.time, np.int64), (self.o, candles.open, np.float64), (self.h, candles.high, np.float64),
            (self.l, candles.low, np.float64), (self.c, candles.close, np.float64),
            (self.action, prepared.action, np.int8))
        for mine, theirs, dtype in columns:
            mine[start:] = array(mine.typecode, np.ascontiguousarray(theirs[start - offset :], dtype=dtype).tobytes())


def replay_flat_bars(series: Sequence, until: Optional[int], account, view, guards, errors) -> int:
    """Bars before the first stepped one reach the portfolio watchers as flat bars: nothing is held
    and their actions are ignored, but price statistics (the hedging guard's volatility baseline
    needs weeks of bars) are ready when trading starts, in a backtest with a start date and in a
    paper or live session alike. ``series`` have ``symbol``, ``t`` and ``c``; ``account`` gets the
    prices and the time (a ledger). Returns the bars replayed."""
    if not guards:
        return 0
    bars = []
    for s in series:
        n = len(s.t) if until is None else int(np.searchsorted(s.t, until))
        bars.append((s.symbol, s.t, s.c, n))
    times = sorted({t for _, ts, _, n in bars for t in ts[:n]})
    where = [0] * len(bars)
    for t in times:
        for k, (sym, ts, cs, n) in enumerate(bars):
            j = where[k]
            if j < n and ts[j] == t:
                account.prices[sym] = cs[j]
                where[k] = j + 1
        account.time = t
        for name, on_bar in guards:
            try:
                on_bar(view)
            except Exception as exc:
                errors.failed(name, "on_bar (warm-up)", exc)
    return len(times)


def feed_due_outcomes(pipeline: Pipeline, s, i: int, horizon: int, costs: CostModel) -> None:
    """Outcomes whose horizon closed at bar ``i`` of series ``s`` (``pending``/``next_due`` and the
    bars ``o``/``h``/``l``/``c``): known now, fed to the learners now, never earlier. The trade
    labels are computed here, from the bars up to the due one, with the venue's fill rules."""
    due: list[Pending] = []
    keep: list[Pending] = []
    for item in s.pending:
        (due if item[0] <= i else keep).append(item)
    s.pending = keep
    s.next_due = min((item[0] for item in keep), default=1 << 62)
    c = s.c
    for _, index, decision, levels in due:
        labels = decision_trade_labels(s.o, s.h, s.l, c, index, horizon, levels, costs)
        pipeline.learn(s.symbol, index, decision, c[index + horizon] / c[index] - 1.0, labels)


def hedge_fraction(triggers: Mapping[tuple[str, Optional[str]], float], symbol: str) -> Optional[float]:
    """The largest fraction any active trigger wants hedged of ``symbol`` (None: none applies)."""
    fractions = [f for (_, sym), f in triggers.items() if sym is None or sym == symbol]
    return max(fractions) if fractions else None


class LoopPortfolio(_Frozen, PortfolioMath):
    """The portfolio plugins see (guards, sizers): a read-only proxy onto the ledger's figures, its
    positions as snapshots (hedge legs flagged), the venue's working entries and the hedge
    triggers. Any write raises :class:`~mlcoord.views.ReadOnlyViewError`."""

    __slots__ = ("_ledger", "_venue", "_loop", "_triggers", "_cache_key", "_positions", "_pending", "_symbols")
    _ledger: Ledger
    _venue: "Venue"
    _loop: "TradingLoop"
    _triggers: dict[tuple[str, Optional[str]], float]
    _cache_key: Optional[tuple[int, ...]]
    _positions: tuple[PositionProxy, ...]
    _pending: tuple[PendingEntry, ...]
    _symbols: tuple[str, ...]

    def __init__(self, ledger: Ledger, venue: "Venue", loop: "TradingLoop"):
        self._set(_ledger=ledger, _venue=venue, _loop=loop, _triggers={}, _cache_key=None, _positions=(),
                  _pending=(), _symbols=())

    @property
    def equity(self) -> float:
        return self._ledger.equity

    @property
    def peak_equity(self) -> float:
        return self._ledger.peak_equity

    @property
    def cash(self) -> float:
        return self._ledger.cash

    @property
    def day_start_equity(self) -> float:
        return self._ledger.day_start_equity

    @property
    def time(self) -> int:
        return self._ledger.time

    @property
    def drawdown(self) -> float:
        return self._ledger.drawdown

    @property
    def prices(self) -> Mapping[str, float]:
        return MappingProxyType(self._ledger.prices)

    @property
    def hedge_triggers(self) -> Mapping:
        """(guard name, symbol or None for every symbol) -> the fraction it wants hedged."""
        return MappingProxyType(self._triggers)

    def _refresh(self) -> None:
        ledger, loop = self._ledger, self._loop
        # the positions and working orders change with these only
        key = (ledger.version, loop.version, self._venue.version)
        if key == self._cache_key:
            return
        views = loop.views
        positions = tuple(views[(sym, hedge)] for hedge, book in ((False, ledger.positions), (True, ledger.hedges))
                          for sym in book)
        pending = tuple(PendingEntry(*entry) for entry in self._venue.working_entries())
        self._set(_cache_key=key, _positions=positions, _pending=pending)

    @property
    def positions(self) -> tuple[PositionProxy, ...]:
        """Every open position and hedge leg, as read-only proxies (current values on every read)."""
        self._refresh()
        return self._positions

    @property
    def pending_entries(self) -> tuple[PendingEntry, ...]:
        self._refresh()
        return self._pending

    def exposure(self, symbol: Optional[str] = None) -> float:
        return self._ledger.exposure(symbol)

    def last_price(self, symbol: str) -> float:
        return self._ledger.prices[symbol]     # without a read-only proxy per call: read every bar

    def hedged(self, symbol: Optional[str] = None) -> bool:
        if symbol is None:
            return bool(self._triggers) or bool(self._ledger.hedges)
        return symbol in self._ledger.hedges

    def open_positions(self) -> int:
        return len(self._ledger.positions)

    def gross_exposure(self) -> float:
        return self._ledger.gross_exposure()

    def symbols(self) -> tuple[str, ...]:
        """The priced symbols (the same tuple until a new symbol gets its first price)."""
        prices = self._ledger.prices
        if len(self._symbols) != len(prices):
            self._set(_symbols=tuple(prices))
        return self._symbols


class TradingLoop:
    """Drives one account: venue fills per bar, then guards, exit updates and decisions as intents."""

    def __init__(self, pipeline: Pipeline, ledger: Ledger, venue: Venue, journal: Optional[Journal] = None, *,
                 market: str = "futures", leverage: float = 1.0, fee_rate: float = 0.0, slippage: float = 0.0,
                 horizon: int = 1, costs: Optional[CostModel] = None):
        self.pipeline, self.ledger, self.venue = pipeline, ledger, venue
        #: the fill rules the trade labels use (the venue's; by default taker fee and slippage only)
        self.costs = costs or CostModel(fee_rate, fee_rate, slippage, 0.0, DAY_NS, market, leverage, 0.0)
        self.journal = journal or Journal()
        self.market, self.leverage, self.fee_rate, self.slippage = market, leverage, fee_rate, slippage
        self.horizon = horizon
        components = pipeline.components
        self.learning = bool(components.ml_components) or components.calibrator is not None
        self.version = 0                                 # bumped when levels or intents change
        self._trigger_version = 0                        # bumped when a hedge trigger turns on or off
        self._covered: Optional[tuple[int, int]] = None
        self.portfolio = LoopPortfolio(ledger, venue, self)
        self.levels: dict[str, ExitLevels] = {}          # symbol -> the levels protecting its position
        # (symbol, hedge leg?) -> the read-only proxy plugins see of that open position
        self.views: dict[tuple[str, bool], PositionProxy] = {}
        self.level_paths: list[dict] = []                # per closed position: (time, stop, tp) path
        self._paths: dict[str, list[tuple]] = {}
        self.plans: list[dict] = []                      # per entered plan: band, legs planned, legs filled
        self._plan_records: dict[str, dict] = {}
        self.series: list[SymbolSeries] = []
        # per stepped bar, 8 bytes each (a list of Python numbers costs ~32 per value)
        self.times: array[int] = array("q")
        self.equity_curve: array[float] = array("d")
        self.exposure_curve: array[float] = array("d")
        self._day: Optional[int] = None
        self._guards = [(g.name, pipeline.call_budget.timed(g.name, g.obj.on_bar))
                        for g in components.portfolio_watchers]
        # the watchers that take flat stretches at once (a backtest's speed, never timed: a
        # backtest has no budget unless one is set); None when one of them cannot (no skipping)
        watchers = [g.obj for g in components.portfolio_watchers]
        self._skippers: Optional[list[SkipsFlatBars]] = (
            watchers if all(isinstance(w, SkipsFlatBars) for w in watchers) else None)
        #: who may open a new position now (None: every symbol); a live session pauses entries
        #: (kill switch) or keeps them to the scanner's pick; exits are never paused
        self.may_enter: Optional[Callable[[str], bool]] = None
        ledger.on_opened.append(self._opened)
        ledger.on_closed.append(self._closed)
        ledger.on_fill.append(self._filled)

    # -- ledger events ---------------------------------------------------------------------
    def _opened(self, position: Position) -> None:
        sym = position.symbol
        if position.hedge:
            self.views[(sym, True)] = PositionProxy(position)
            return
        self.views[(sym, False)] = PositionProxy(position, lambda: self.levels.get(sym))
        levels = self.levels.get(position.symbol)
        if levels is not None:
            self._paths[position.symbol] = [(position.opened_at, levels.stop, levels.take_profit)]

    def _filled(self, fill) -> None:
        if not fill.hedge:
            position = self.ledger.positions[fill.symbol]
            record = self._plan_records.get(position.plan_id)
            if record is not None:
                record["filled"] = position.entries_filled

    def _closed(self, trade: Trade, position: Position) -> None:
        self.views.pop((position.symbol, position.hedge), None)
        if position.hedge:
            return
        path = self._paths.pop(position.symbol, None)
        if path:
            self.level_paths.append({"trade": trade.id, "symbol": position.symbol, "path": path})
        self.levels.pop(position.symbol, None)
        self._plan_records.pop(position.plan_id, None)
        self.pipeline.trade_closed(trade, position.decision)

    # -- the session -----------------------------------------------------------------------
    def begin(self, series: Sequence[SymbolSeries]) -> None:
        self.series = list(series)

    @property
    def current_day(self) -> Optional[int]:
        """The UTC day (days since the epoch) of the latest stepped bar."""
        return self._day

    def continue_day(self, day: int, day_start_equity: float) -> None:
        """A session restarted within the same UTC day keeps that day's starting equity."""
        self._day = day
        self.ledger.day_start_equity = day_start_equity

    def submit(self, intent: Intent) -> None:
        if not isinstance(intent, SetLevels):     # levels are read live by the views: no cache to drop
            self.version += 1
        self.venue.submit(intent)

    def resume_position(self, symbol: str, levels: ExitLevels) -> None:
        """A position a venue already holds when the session starts (a live bot restarted with an
        open plan): the loop protects it with ``levels`` and lets its exit manager move them."""
        self.levels[symbol] = levels
        self.version += 1

    def warm_up_guards(self, series: Sequence[SymbolSeries], until: Optional[int] = None) -> int:
        """See :func:`replay_flat_bars`."""
        return replay_flat_bars(series, until, self.ledger, self.portfolio, self._guards, self.pipeline.errors)

    def step(self, t: int, slot: Sequence[tuple[SymbolSeries, int]]) -> None:
        """One timestamp. ``slot`` lists the (series, bar index) pairs that have a closed bar at ``t``."""
        ledger, venue, pipeline = self.ledger, self.venue, self.pipeline
        positions, hedges = ledger.positions, ledger.hedges
        self.times.append(t)
        ledger.time = t
        today = t // DAY_NS
        if today != self._day:
            self._day = today
            ledger.day_start_equity = ledger.equity
        busy, prices = venue.busy, ledger.prices
        for s, i in slot:
            sym = s.symbol
            if sym in busy or sym in positions or sym in hedges:
                venue.on_bar(sym, i, t, s.o[i], s.h[i], s.l[i])
                if sym in positions:
                    ledger.observe_range(sym, s.h[i], s.l[i])
            prices[sym] = s.c[i]
        if positions or hedges:
            self.equity_curve.append(ledger.mark())
            self.exposure_curve.append(ledger.marked_exposure)
        else:
            self.equity_curve.append(ledger.mark_flat())
            self.exposure_curve.append(0.0)
        view = self.portfolio
        for guard_name, on_bar in self._guards:
            try:
                actions = on_bar(view)
            except Exception as exc:
                pipeline.errors.failed(guard_name, "on_bar", exc)
                continue
            if actions:
                for action in pipeline.checked_guard_actions(guard_name, actions, [s.symbol for s in self.series]):
                    self._guard_action(guard_name, action)
        # only when something held, wanted or pending changed since the last look
        if view._triggers and (ledger.version, self._trigger_version) != self._covered:
            self._cover_hedges()
        for s, i in slot:
            if i >= s.next_due:
                feed_due_outcomes(pipeline, s, i, self.horizon, self.costs)
            sym = s.symbol
            position = positions.get(sym)
            if position is not None:
                old = self.levels.get(sym)
                if old is not None:
                    new = pipeline.update_levels(s.prepared, i - s.offset, self.views[(sym, False)], old)
                    if isinstance(new, PositionExit):
                        self.submit(ClosePosition(sym, new.reason, new.fraction, cancel_entries=new.fraction >= 1.0))
                    # a moved stop or target differs already: the full comparison only when neither moved
                    elif new is not old and (new.stop != old.stop or new.take_profit != old.take_profit
                                             or new != old):
                        self.levels[sym] = new
                        if new.stop != old.stop:
                            self._cancel_passed(sym, position.side, new.stop)
                        self.submit(SetLevels(sym, new))
                        if new.stop != old.stop or new.take_profit != old.take_profit:
                            path = self._paths.get(sym)
                            if path is not None:
                                path.append((t, new.stop, new.take_profit))
            a = s.action[i]
            if not a:
                continue
            if position is not None or venue.has_entries(sym):
                if a < 0 and position is not None and position.side == Side.LONG and self.market == "spot":
                    self.submit(ClosePosition(sym, ExitReason.SELL_SIGNAL.value))
                continue
            if self.may_enter is None or self.may_enter(sym):
                self._decide(s, i, t)

    def skip_flat(self, times: np.ndarray, bars: Sequence[tuple[SymbolSeries, int]]) -> bool:
        """Take the ``len(times)`` bars from ``bars`` on (every priced symbol's series and the index
        of its bar at ``times[0]``; none of them signals in the stretch) at once, if nothing can
        happen in them: nothing held, working or left to cover, no outcome due, and every
        portfolio watcher able to take them in bulk (:class:`~mlcoord.protocols.SkipsFlatBars`).
        The equity stays as it is, so the curves get the same values bar-by-bar stepping would
        give. False (nothing done) otherwise: the caller steps them one by one."""
        ledger, view, skippers = self.ledger, self.portfolio, self._skippers
        if skippers is None or ledger.positions or ledger.hedges or self.venue.busy:
            return False
        if view._triggers and (ledger.version, self._trigger_version) != self._covered:
            return False
        n, prices = len(times), ledger.prices
        if len(prices) != len(bars):
            return False
        for s, i in bars:
            if s.symbol not in prices or i + n > s.next_due:
                return False
        for w in skippers:
            if not w.can_skip_flat_bars(view):
                return False
        stamps = np.array(times, dtype=np.int64)
        stamps.setflags(write=False)
        at = {s.symbol: (s, i) for s, i in bars}
        closes = {}
        for sym in view.symbols():                                 # the order the watchers know
            s, i = at[sym]
            c = np.frombuffer(s.c[i:i + n], dtype=np.float64)      # a copy: the series may grow later
            c.setflags(write=False)
            closes[sym] = c
        for w in skippers:
            w.skip_flat_bars(view, stamps, MappingProxyType(closes))
        equity = ledger.mark_flat()
        self.times.frombytes(stamps.tobytes())
        self.equity_curve.frombytes(np.full(n, equity).tobytes())
        self.exposure_curve.frombytes(bytes(8 * n))
        t = int(stamps[-1])
        ledger.time = t
        if t // DAY_NS != self._day:
            self._day = t // DAY_NS
            ledger.day_start_equity = equity
        for s, i in bars:
            prices[s.symbol] = s.c[i + n - 1]
        return True

    def _cancel_passed(self, sym: str, side: int, stop: float) -> None:
        """Entry legs the moved stop has passed (a long's buy legs at or below it, a short's sell
        legs at or above it) are cancelled before the stop moves: a leg that filled there would be
        closed by its own stop at once (issue 14). The venue cancels them before anything else."""
        venue = self.venue
        if not venue.has_entries(sym):
            return
        cancel = CancelEntries(sym, STOP_PASSED, beyond=stop)
        if any(s == sym and cancel.covers(side, price) for s, _, _, price in venue.working_entries()):
            self.submit(cancel)

    # -- entries ---------------------------------------------------------------------------
    def _decide(self, s: SymbolSeries, i: int, t: int) -> Optional[Decision]:
        decision = self.pipeline.decide(s.prepared, i - s.offset, self.portfolio, time=t, leverage=self.leverage,
                                        fee_rate=self.fee_rate, slippage=self.slippage)
        self.journal.record(decision)
        if self.learning:
            due = i + self.horizon
            s.pending.append((due, i, decision, self.pipeline.label_levels(s.prepared, i - s.offset)))
            s.next_due = min(s.next_due, due)
        if decision.outcome == "entered":
            self._place(s, i, t, decision, f"{s.symbol}:{t}", decisive_reason(decision.technical))
        return decision

    def force_enter(self, symbol: str, side: Side) -> Decision:
        """An operator's market entry on ``symbol`` at the last bar stepped (the API's force-enter,
        applied between two cycles): decided by :meth:`Pipeline.force_decide` (levels, guards,
        sizer as for any entry), journaled, and placed as a decided entry's plan would be. Not
        learned from: it is no model's decision. ``ValueError``: the symbol cannot take one."""
        s = next((x for x in self.series if x.symbol == symbol), None)
        if s is None:
            raise ValueError(f"symbol {symbol!r} is not traded by this session")
        if symbol in self.ledger.positions or self.venue.has_entries(symbol):
            raise ValueError(f"{symbol} already has a position or working entry orders")
        t = int(self.ledger.time)
        i = bisect_right(s.t, t) - 1
        if i < s.offset or s.t[i] != t:
            raise ValueError(f"{symbol} has no bar at the last step ({t}) to enter on")
        # one decision per symbol and bar: a live store keys decisions by both, and a second one
        # at the same bar would not be stored, leaving its plan without the decision behind it
        for d in reversed(self.journal.decisions):
            if d.time < t:
                break
            if d.symbol == symbol and d.time == t:
                raise ValueError(f"{symbol} was already decided on this bar ({d.outcome}): force-enter after "
                                 "the next bar closes")
        decision = self.pipeline.force_decide(s.prepared, i - s.offset, self.portfolio, side, time=t,
                                              leverage=self.leverage, fee_rate=self.fee_rate, slippage=self.slippage)
        self.journal.record(decision)
        if decision.outcome == "entered":
            self._place(s, i, t, decision, f"{symbol}:{t}:api", FORCE_ENTER_REASON)
        return decision

    def _place(self, s: SymbolSeries, i: int, t: int, decision: Decision, plan_id: str, entry_reason: str) -> None:
        """An entered decision's plan, as orders on the venue."""
        plan, sizing, levels = decision.plan, decision.sizing, decision.levels
        assert plan is not None and sizing is not None and levels is not None, "an entered decision has all three"
        qty = sizing.quantity
        n = len(plan.legs)
        sym = s.symbol
        orders = tuple(EntryOrder(f"{plan_id}:entry:{j + 1}", leg.price, qty * leg.fraction, leg.market,
                                  f"entry:{j + 1}/{n}") for j, leg in enumerate(plan.legs))
        record = {"symbol": sym, "time": t, "band": f"{n} entries", "planned": n, "filled": 0,
                  "confidence": decision.confidence}
        self.plans.append(record)
        self._plan_records[plan_id] = record
        self.levels[sym] = levels
        self.submit(PlaceEntryPlan(sym, plan_id, plan.side, orders, levels, decision, i, t,
                                   plan.expires_after_bars, entry_reason))

    # -- guards ----------------------------------------------------------------------------
    def _guard_action(self, guard: str, action) -> None:
        view, ledger = self.portfolio, self.ledger
        self.journal.guard(guard, action, view)
        kind = action.kind
        self._trigger_version += 1
        if kind == GuardActionKind.OPEN_HEDGE:
            view._triggers[(guard, action.symbol)] = action.fraction
        elif kind == GuardActionKind.CLOSE_HEDGE:
            for key in [k for k in view._triggers if k[0] == guard and action.symbol in (None, k[1])]:
                del view._triggers[key]
            for s in self.series:
                if s.symbol in ledger.hedges and hedge_fraction(view._triggers, s.symbol) is None:
                    self.submit(CloseHedge(s.symbol, f"hedge released ({guard}: {action.reason})"))
        elif kind == GuardActionKind.CLOSE_ALL:
            for s in self.series:
                sym = s.symbol
                if sym in ledger.positions:
                    self.submit(ClosePosition(sym, f"guard:{guard}"))
                elif self.venue.has_entries(sym):
                    self.submit(CancelEntries(sym, f"guard:{guard}"))

    def _cover_hedges(self) -> None:
        """While a hedge trigger is on, each position it covers holds a hedge leg of the trigger's
        fraction of the quantity held *now* (resized when entries fill or a partial take profit
        sells): the fraction asked for is the fraction held."""
        if self.market != "futures":
            return
        # looked at again only once something is filled or a trigger changes: a target the venue
        # rounds to the lot never equals it exactly, and must not be asked for again every bar
        self._covered = (self.ledger.version, self._trigger_version)
        ledger, venue = self.ledger, self.venue
        for s in self.series:
            sym = s.symbol
            position = ledger.positions.get(sym)
            if position is None or venue.hedge_pending(sym):
                continue
            fraction = hedge_fraction(self.portfolio._triggers, sym)
            hedge = ledger.hedges.get(sym)
            if fraction is None:
                continue
            target = position.quantity * fraction
            held = hedge.quantity if hedge is not None else 0.0
            if target > 0 and abs(target - held) > 1e-9 * target:
                self.submit(OpenHedge(sym, target))
