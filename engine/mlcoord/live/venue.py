"""The exchange as a venue of the trading loop (:class:`mlcoord.loop.Venue`).

The loop's intents are queued while a bar is stepped and carried out after it by the live
trader's order management (:mod:`mlcoord.live.trader` and its parts): a journaled plan and its
orders, moved stops, closes, hedge legs. What the exchange filled reaches the one
:class:`~mlcoord.ledger.Ledger` as :class:`~mlcoord.model.Fill` events, in the order they
happened, before the next bar is stepped: positions, hedge legs, closed trades and the learning
feedback are then folded exactly as in a backtest. What only an exchange reports is booked too:
its fees (from its trade list, once an order is done), funding (split between a symbol's
position and hedge leg by their signed quantities, as each would have paid it) and liquidation
prices.

A fill's tag says why it happened in the backtest's words (``stop_loss``, ``trailing_stop`` for
a moved stop, ``take_profit``, ``partial_take_profit``, ``hedge resized``, the reason the bot
closed a plan for), so a trade's ``exit_reason`` is the same in both. What a plan still holds
when it closes without an order for it (dust below the exchange's minimum, or a position the
exchange closed by itself) is written off at the last close with the plan's reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Optional

import attrs
import structlog

from mlcoord.coordinator import decisive_reason
from mlcoord.ledger import Ledger, Position
from mlcoord.live.futures_marks import GONE_REASON
from mlcoord.live.plan_orders import (
    CLOSE,
    ENTRY,
    EPS,
    HEDGE_ADJUST,
    HEDGE_CLOSE,
    PARTIAL_TP,
    STOP,
    TAKE_PROFIT,
    TRAILING,
    Tally,
)
from mlcoord.live.records import FillRecord, OrderRecord, PlanRecord, PlanStatus
from mlcoord.model import (
    Action,
    CancelEntries,
    CloseHedge,
    ClosePosition,
    ExitReason,
    Fill,
    Intent,
    OpenHedge,
    PlaceEntryPlan,
    SetLevels,
    Side,
    Signal,
)

if TYPE_CHECKING:
    from mlcoord.live.trader import LiveTrader
    from mlcoord.loop import TradingLoop

log = structlog.get_logger("mlcoord.live.venue")

#: why a plan's remaining position left the ledger without an order of its own
WRITTEN_OFF = "written off"


def loop_plan_id(plan: PlanRecord) -> str:
    """The trading loop's id of a journaled plan (the loop names plans ``symbol:decision time``)."""
    return f"{plan.symbol}:{plan.decision_time}"


class ExchangeVenue:
    """Intents to the live trader's orders; the exchange's fills, fees, funding and liquidation
    prices to the ledger."""

    def __init__(self, trader: "LiveTrader", ledger: Ledger):
        self.trader, self.ledger = trader, ledger
        self.loop: Optional["TradingLoop"] = None
        self.busy: set[str] = set()          # on_bar matters only for what the ledger holds
        self.version = 0
        self._queue: list[Intent] = []
        self._booked: set[str] = set()       # keys of the fills already in the ledger
        self._all_booked: dict[str, float] = {}   # client id -> its filled quantity when every fill was booked
        self._fee_done: set[str] = set()     # orders whose trade-list fee is booked
        self._reasons: dict[tuple[str, str], str] = {}     # (plan id, order tag) -> why the bot sent it
        self._working: list[tuple[str, int, float, float]] = []
        self._entries: set[str] = set()      # symbols with working entry orders
        self._hedging: set[str] = set()      # symbols with a hedge order still unresolved
        self._closes: dict[str, str] = {}    # spot: symbol -> why the bot's monitoring closes it
        self.partial_due: set[str] = set()   # spot: symbols whose partial take profit was reached
        self._plan_ids: dict[str, str] = {}  # loop plan id -> journaled plan id
        self._stored: set[str] = set()       # loop plan ids labelled from a stored decision
        self._symbol_plan: dict[str, str] = {}   # symbol -> its latest journaled plan id
        self._initial_stops: dict[str, float] = {}   # loop plan id -> the stop it was decided with
        ledger.trade_id = self._trade_id

    # -- the loop's side -------------------------------------------------------------------
    def submit(self, intent: Intent) -> None:
        """Queued: carried out by :meth:`execute` once the bar is stepped."""
        self._queue.append(intent)

    def has_entries(self, symbol: str) -> bool:
        """Working entry legs on the exchange, or a plan still queued (one an outage kept from
        going out must not be decided a second time)."""
        return symbol in self._entries or any(
            isinstance(i, PlaceEntryPlan) and i.symbol == symbol for i in self._queue)

    def hedge_pending(self, symbol: str) -> bool:
        return symbol in self._hedging or any(isinstance(i, OpenHedge) and i.symbol == symbol for i in self._queue)

    def working_entries(self) -> Iterable[tuple[str, int, float, float]]:
        """Entry orders working on the exchange, and the ones of plans decided in this bar."""
        yield from self._working
        for intent in self._queue:
            if isinstance(intent, PlaceEntryPlan):
                for order in intent.orders:
                    yield intent.symbol, int(intent.side), order.quantity, order.price

    def on_bar(self, symbol: str, i: int, t: int, o: float, h: float, l: float) -> None:
        """Spot: what no exchange order covers is watched on closed bars (the stop order locks the
        coins, so the take profit cannot be an order too): see :meth:`monitor_spot`."""
        if self.trader.spot:
            self.monitor_spot(symbol, i, h)

    def monitor_spot(self, symbol: str, i: int, high: float) -> None:
        """A held long's take profit and partial take profit reached by the bar's high, or a
        ``STOP_LOSS_LIMIT`` that triggered without filling (the bar closed below the stop with
        coins still held): closed at market, or the part sold, once the bar is stepped."""
        position = self.ledger.positions.get(symbol)
        levels = self.loop.levels.get(symbol) if self.loop is not None else None
        if position is None or levels is None or position.side != Side.LONG or position.quantity <= EPS:
            return
        close = self.trader.books[symbol].c[i]
        if close < levels.stop:
            self._closes[symbol] = self.stop_reason(position, levels.stop)
            log.warning("stop_limit_not_filled", symbol=symbol, stop=levels.stop, close=close, held=position.quantity,
                        note="the bar closed below the stop: closing at market")
            return
        partial = levels.partial_take_profit
        if partial is not None and levels.partial_fraction > 0 and high >= partial:
            self.partial_due.add(symbol)       # taken once per plan (the store knows)
        if levels.take_profit is not None and high >= levels.take_profit:
            self._closes[symbol] = ExitReason.TAKE_PROFIT.value
            log.info("take_profit_monitored", symbol=symbol, take_profit=levels.take_profit, high=high,
                     note="stop cancelled, selling at market")

    def stop_reason(self, position, stop: float) -> str:
        """``stop_loss`` at the plan's initial stop, ``trailing_stop`` once it moved (the backtest's rule)."""
        moved = stop != self._initial_stops.get(position.plan_id, stop)
        return (ExitReason.TRAILING_STOP if moved else ExitReason.STOP_LOSS).value

    def catch_up(self, reason: str) -> list[str]:
        """The closes a replayed bar asked for (the loop's, the spot monitor's) carry ``reason``
        before their own (``catch_up:trailing_stop``): decided on a bar of the past, they are sent
        now at market, and a guard still sees why (a stop starts the protections' cooldown).
        Returns what they were asked for (``symbol:reason``) for the log."""
        was = []
        late = reason + ":"
        for k, intent in enumerate(self._queue):
            if isinstance(intent, ClosePosition) and not intent.reason.startswith(late):
                was.append(f"{intent.symbol}:{intent.reason}")
                self._queue[k] = attrs.evolve(intent, reason=late + intent.reason)
        for symbol, why in list(self._closes.items()):
            if not why.startswith(late):
                was.append(f"{symbol}:{why}")
                self._closes[symbol] = late + why
        return was

    # -- carrying intents out ----------------------------------------------------------------
    def execute(self) -> None:
        """The bar's intents as orders, in the order the loop asked for them.

        When the exchange fails midway (the error goes up: the session pauses), the intents not
        yet carried out stay queued for the next :meth:`execute` (the live trader calls it again
        before managing its plans every cycle), the failed one too unless it is a partial close,
        whose order may have gone out: a moved stop or a close is never silently dropped."""
        trader = self.trader
        for symbol, reason in list(self._closes.items()):      # removed once done: an outage keeps them
            plan = self._active(symbol)
            if plan is not None:
                trader.flatten(plan, reason)
            del self._closes[symbol]
            self.partial_due.discard(symbol)
        # cancellations first (legs a moved stop has passed): before any other order of the bar
        self._queue.sort(key=lambda i: not isinstance(i, CancelEntries))
        while self._queue:
            intent = self._queue[0]
            try:
                self._carry_out(intent)
            except Exception:
                partial = isinstance(intent, ClosePosition) and intent.fraction < 1.0
                if partial:
                    self._queue.pop(0)
                log.error("intent_not_carried_out", intent=type(intent).__name__, symbol=intent.symbol,
                          kept=not partial, waiting=len(self._queue),
                          note="carried out next cycle" if not partial else "a partial close is not sent twice")
                raise
            self._queue.pop(0)
        for sym in sorted(self.partial_due):
            plan = self._active(sym)
            if plan is not None:
                trader.take_partial(plan)
            self.partial_due.discard(sym)

    def _carry_out(self, intent: Intent) -> None:
        trader = self.trader
        sym = intent.symbol
        if isinstance(intent, PlaceEntryPlan):
            trader.open_plan(intent)
            return
        plan = self._active(sym)
        if plan is None:
            return
        if isinstance(intent, SetLevels):
            trader.move_levels(plan, intent.levels)
        elif isinstance(intent, ClosePosition):
            if intent.fraction >= 1.0:
                trader.flatten(plan, intent.reason)
                self.partial_due.discard(sym)
            else:
                trader.close_part(plan, intent.reason, intent.fraction)
        elif isinstance(intent, CancelEntries):
            trader.cancel_entries(plan, intent.reason, intent.beyond)
        elif isinstance(intent, OpenHedge):
            trader.want_hedge(plan, intent.quantity)
        elif isinstance(intent, CloseHedge):
            trader.release_hedge(plan, intent.reason)
        else:
            raise TypeError(f"the exchange venue cannot execute {type(intent).__name__}")

    def _active(self, symbol: str) -> Optional[PlanRecord]:
        plan_id = self._symbol_plan.get(symbol)
        plan = self.trader.store.plan(plan_id) if plan_id is not None else None
        return plan if plan is not None and plan.status == PlanStatus.ACTIVE else None

    def _trade_id(self, position: Position, sequence: int) -> str:
        """A trade is named after its journaled plan (a hedge leg's: ``<plan>:hedge:<n>``)."""
        if position.hedge:
            return f"{self._symbol_plan.get(position.symbol, position.symbol)}:hedge:{sequence}"
        return self._plan_ids.get(position.plan_id, f"T{sequence:05d}")

    def live_plan_id(self, position: Position) -> str:
        """The journaled plan id of a ledger position (its loop plan id for a hedge or unknown one)."""
        return self._plan_ids.get(position.plan_id, position.plan_id)

    def stored_decision(self, position: Position) -> bool:
        """Whether the plan of ``position`` was labelled from a stored decision (resumed plans)."""
        return position.plan_id in self._stored

    def expect(self, plan: PlanRecord, decision) -> None:
        """``plan``'s first entry fill opens its position in the ledger (``decision``: the one that
        opened it, or None for a plan resumed after a restart: its stored decision labels it)."""
        reason, confidence = "", None
        if decision is not None:
            reason = decisive_reason(decision.technical)
            if decision.levels is not None:
                self._initial_stops[loop_plan_id(plan)] = decision.levels.stop
        else:
            stored = self.trader.store.decision(plan.symbol, plan.decision_time)
            if stored is None:
                log.warning("trade_feedback_without_decision", plan=plan.plan_id, symbol=plan.symbol,
                            note="the opening decision was not stored; confidence 0 and reason unspecified")
            else:
                self._stored.add(loop_plan_id(plan))
            stored = stored or {}
            stop = (stored.get("levels") or {}).get("stop")
            if stop is not None:
                self._initial_stops[loop_plan_id(plan)] = float(stop)
            reason = decisive_reason(Signal(Action.HOLD, 0.0, tuple(stored.get("reasons", ()))))
            confidence = float(stored.get("confidence", 0.0))
        self._plan_ids[loop_plan_id(plan)] = plan.plan_id
        self._symbol_plan[plan.symbol] = plan.plan_id
        self.ledger.expect_plan(plan.symbol, loop_plan_id(plan), decision, len(plan.entry.legs), reason, confidence)

    def note_reason(self, plan: PlanRecord, tag: str, reason: str) -> None:
        """Why the bot sends the plan's ``tag`` order (a close, a partial close, a hedge close):
        the reason its fill carries into the trade."""
        self._reasons[(plan.plan_id, tag)] = reason

    # -- the exchange's side: fills into the ledger --------------------------------------------
    def sync(self) -> None:
        """Before a bar is stepped: every active plan's orders refreshed from the exchange, their
        new fills booked, the working entries and hedge orders noted for the loop."""
        trader = self.trader
        working: list[tuple[str, int, float, float]] = []
        entries, hedging = set(), set()
        for plan in trader.active_plans():
            tally = trader.tally(plan, refresh=True)
            if tally.exit_filled and tally.live(ENTRY):
                # stopped out (or taken profit): its legs go before anything else this cycle, so
                # none fills after the exit (the plan itself is closed by the trader's manage)
                tally = trader.cancel_legs(plan, tally, "exit filled")
            self.book(plan, tally)
            for r in tally.live(ENTRY):
                price = r.order.price or self.ledger.prices.get(plan.symbol, 0.0)
                working.append((plan.symbol, int(plan.side), r.remaining, price))
                entries.add(plan.symbol)
            if any(r.order.hedge and not r.state.terminal for r in tally.orders):
                hedging.add(plan.symbol)
        if working != self._working:
            self.version += 1
        self._working, self._entries, self._hedging = working, entries, hedging

    def book(self, plan: PlanRecord, tally: Tally, final: bool = False,
             recorded: Optional[dict[str, int]] = None) -> None:
        """The plan's fills not yet in the ledger, entries before exits; an order's last fill
        carries the fee its exchange trade list shows.

        While entry legs still work, an exit fill that would leave the position flat waits: the
        plan is closing (its legs are cancelled and the rest closed in this cycle), and a leg that
        fills meanwhile belongs to the same trade, as in a backtest, where a stop ends the plan's
        legs. ``final``: the plan closed; everything is booked. ``recorded``: fill key -> its rank
        in the store (a restart's replay of whole histories, in the order they happened)."""
        new: list[tuple[FillRecord, OrderRecord]] = []
        keys: dict[str, list[str]] = {}      # client id -> its fills' keys, for the orders read
        for r in tally.orders:
            if r.filled_quantity <= 0 or self._all_booked.get(r.client_order_id) == r.filled_quantity:
                continue      # a new fill raises its order's filled quantity in the same transaction
            found = self.trader.store.fills(r.client_order_id)
            keys[r.client_order_id] = [f.key for f in found]
            for f in found:
                if f.key not in self._booked:
                    new.append((f, r))
        # a fill's time is when the bot saw it, so within one look entries go first (a backtest's
        # bar fills its legs before its stop): legs seen with a stop belong to the stopped trade
        if recorded is not None:    # a restart replays the plan's history in the order it was recorded
            new.sort(key=lambda fr: recorded.get(fr[0].key, 0))
            current = tally.hedge_number       # earlier hedge legs closed, and were fed back, before
            for f, r in new:
                if r.order.hedge and int(r.order.tag.rsplit(":", 1)[1]) < current:
                    self._booked.add(f.key)
            new = [(f, r) for f, r in new if f.key not in self._booked]
        else:
            new.sort(key=lambda fr: (fr[0].fill.reduce_only, fr[0].fill.time, fr[0].sequence))
        pending = {id(r) for _, r in new}
        for r in tally.orders:        # finished since its last fill was booked (a leg filled in part,
            if r.state.terminal and r.filled_quantity > 0 and id(r) not in pending and \
                    r.client_order_id not in self._fee_done:       # then expired): its fee now
                self._fee_done.add(r.client_order_id)
                book = self.ledger.hedges if r.order.hedge else self.ledger.positions
                holder = book.get(plan.symbol)
                delta = self._fee_correction(plan, r)
                if holder is not None and delta:
                    self.ledger.charge_fee(holder, delta)
        position = self.ledger.positions.get(plan.symbol)
        held = position.quantity if position is not None else 0.0
        waiting = not final and bool(tally.live(ENTRY))
        for k, (f, r) in enumerate(new):
            fill = f.fill
            if not r.order.hedge:
                if fill.reduce_only and waiting and held - fill.quantity <= EPS * max(held, 1.0):
                    break
                held += -fill.quantity if fill.reduce_only else fill.quantity
            last_of_order = r.state.terminal and not any(g[1] is r for g in new[k + 1:])
            self._booked.add(f.key)
            self._apply(plan, r, f, last_of_order)
        for r in tally.orders:
            if r.client_order_id in keys and all(key in self._booked for key in keys[r.client_order_id]):
                self._all_booked[r.client_order_id] = r.filled_quantity

    def _apply(self, plan: PlanRecord, record: OrderRecord, f: FillRecord, last_of_order: bool) -> None:
        trader, ledger = self.trader, self.ledger
        fill = f.fill
        hedge = record.order.hedge
        quantity, fee = fill.quantity, fill.fee
        if trader.spot and not fill.reduce_only and f.fee_currency and fill.price > 0 and \
                f.fee_currency == trader.broker.base_asset(plan.symbol):
            quantity -= fill.fee / fill.price        # the coins the exchange kept as its fee
        if last_of_order:
            fee += self._fee_correction(plan, record)
            self._fee_done.add(record.client_order_id)
        book = ledger.hedges if hedge else ledger.positions
        if fill.reduce_only and plan.symbol not in book:
            log.warning("exit_fill_without_position", plan=plan.plan_id, client_id=record.client_order_id,
                        quantity=fill.quantity, note="nothing open in the ledger: not booked")
            return
        tag = self._reason(plan, record) if fill.reduce_only else ("hedge" if hedge else record.order.tag)
        side = plan.side.opposite if hedge else plan.side
        time = self._bar_time(fill.time, plan)
        ledger.apply(Fill(record.client_order_id, plan.symbol, side, time, fill.price, max(quantity, 0.0), fee,
                          fill.reduce_only, tag, hedge), self._bar_index(plan.symbol))

    def _fee_correction(self, plan: PlanRecord, record: OrderRecord) -> float:
        """The exchange's trade list fee of a finished order less what its fills reported (order
        answers often carry no fee); 0 when the list cannot be read (logged by the lookup)."""
        total = self.trader.exchange_fees(plan, [record])
        if total is None:
            return 0.0
        return total - sum(f.fill.fee for f in self.trader.store.fills(record.client_order_id))

    def exit_reason(self, plan: PlanRecord, record: OrderRecord) -> str:
        """Why ``record`` (one of the plan's closing orders) closes, in the backtest's words."""
        return self._reason(plan, record)

    def _reason(self, plan: PlanRecord, record: OrderRecord) -> str:
        tag = record.order.tag
        if tag == STOP:
            initial = self._initial_stops.get(loop_plan_id(plan))
            moved = initial is not None and record.order.price != self.trader.broker.price(plan.symbol, initial)
            return (ExitReason.TRAILING_STOP if moved else ExitReason.STOP_LOSS).value
        if tag == TAKE_PROFIT:
            return ExitReason.TAKE_PROFIT.value
        if tag == TRAILING:
            return ExitReason.TRAILING_STOP.value
        if tag == PARTIAL_TP:
            return ExitReason.PARTIAL_TAKE_PROFIT.value
        if tag.startswith(HEDGE_ADJUST):
            return "hedge resized"
        if tag.startswith(HEDGE_CLOSE):
            return self._reasons.get((plan.plan_id, tag), ExitReason.HEDGED_POSITION_CLOSED.value)
        base = CLOSE + ":part" if tag.startswith(CLOSE + ":part") else CLOSE
        return self._reasons.get((plan.plan_id, base), base)

    def _bar_time(self, time_ns: int, plan: PlanRecord) -> int:
        """A fill's time as the open time of the bar it happened in (what a backtest stamps its
        fills with: a market order sent after bar t closed fills in bar t+1), never before the
        plan's decision bar nor after the bar now in progress (the time is the bot's clock when it
        saw the fill, which may run ahead of or behind the exchange's)."""
        tf = self.trader.timeframe_ns
        bar = time_ns - time_ns % tf if tf else time_ns
        return max(min(bar, self.trader.last_time + tf), plan.decision_time)

    def _bar_index(self, symbol: str) -> int:
        series = self.trader.books.get(symbol)
        return len(series.t) - 1 if series is not None else 0

    def plan_closed(self, plan: PlanRecord, tally: Tally, reason: str) -> None:
        """A plan closed: its last fills booked; what the ledger still holds of it (dust below the
        exchange's minimum, a position the exchange closed by itself) written off at the last close,
        dated as the closing fills are (the bar in progress: a trade never closes before its last
        fill)."""
        self.book(plan, tally, final=True)
        ledger = self.ledger
        now = max(self.trader.last_time + self.trader.timeframe_ns, plan.decision_time)
        for book, hedge in ((ledger.positions, False), (ledger.hedges, True)):
            position = book.get(plan.symbol)
            if position is None:
                continue
            price = self.ledger.prices.get(plan.symbol) or position.entry_price
            if reason == GONE_REASON and position.liquidation_price > 0:
                price = position.liquidation_price       # liquidated, as far as the bot can tell
            log.info("position_written_off", plan=plan.plan_id, symbol=plan.symbol, hedge=hedge,
                     quantity=position.quantity, price=price, reason=reason)
            ledger.apply(Fill(f"{plan.plan_id}:{WRITTEN_OFF}:{int(hedge)}", plan.symbol, position.side,
                              now, price, position.quantity, 0.0, True,
                              reason if not hedge else ExitReason.HEDGED_POSITION_CLOSED.value, hedge),
                         self._bar_index(plan.symbol))

    # -- what only an exchange reports -----------------------------------------------------------
    def book_funding(self, symbol: str, paid: float) -> None:
        """Funding the exchange charged (``paid`` > 0) or paid out for ``symbol``: split between
        its position and hedge leg by signed quantity (what each pays at one rate)."""
        ledger = self.ledger
        held = [p for p in (ledger.positions.get(symbol), ledger.hedges.get(symbol)) if p is not None]
        if not held:
            return
        net = sum(p.side * p.quantity for p in held)
        gross = sum(p.quantity for p in held)
        if abs(net) <= 1e-9 * gross:          # fully hedged: nothing should be paid; keep it on the position
            ledger.pay_funding(held[0], paid)
            return
        for p in held:
            ledger.pay_funding(p, paid * p.side * p.quantity / net)

    def mark_liquidation(self, symbol: str, hedge: bool, price: float) -> None:
        position = (self.ledger.hedges if hedge else self.ledger.positions).get(symbol)
        if position is not None and position.liquidation_price != price:
            self.ledger.mark_liquidation(position, price)
