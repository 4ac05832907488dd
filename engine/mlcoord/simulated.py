"""The simulated venue: intents filled on the next bars by the fill and cost model.

Backtests and paper sessions trade here. Each closed bar of a symbol is offered to
:meth:`SimulatedVenue.on_bar` *before* the loop decides on that bar, so what the loop asked for
at bar t fills from bar t+1 (no decision sees the bar it trades on). Within one bar, in order:
funding at its open, a requested close (at the open), a hedge close and a hedge open (at the
open), the entry legs, then the stop (before the take profit: the conservative assumption when
both lie inside one bar's range), the partial take profit, the take profit, and the hedge leg's
liquidation. Rules that keep a simulation from flattering itself:

* quantity filled at a limit inside a bar never exits at that bar's (partial) take profit: the
  order of the low and the high inside the bar is unknown (the stop may still take it); what is
  left after a take profit closes at the next open;
* a hedge leg closed with its position is a market order: taker fee, its own slippage;
* a (partial) take profit pays the taker fee: the live bot takes it with a market order once its
  level is reached (a ``TAKE_PROFIT_MARKET`` on futures, a market sell on spot), never a resting
  limit, so a simulated maker fee would flatter every winning trade;
* isolated margin: a liquidation (the liquidation price crossed with the stop beyond it, or a stop
  that would fill beyond it) loses the position's margin plus the liquidation fee (the taker rate
  on the notional at the liquidation price), never more, even when the bar gaps through both;
  the fill is at the bankruptcy price, where the margin is used up. Fills go to the :class:`~mlcoord.ledger.Ledger`, the only place that accounts them;
the venue reads positions back from it as an exchange knows its own.

The prices and fees are :class:`~mlcoord.costs.CostModel`'s (see its module). Orders follow the
symbol's :class:`~mlcoord.model.instruments.Instrument` as an exchange applies it: entry and hedge
quantities rounded down to the lot, limit and trigger prices to the tick, and an order below the
minimum quantity or notional refused (logged, and kept in :attr:`SimulatedVenue.refused`).
"""

from __future__ import annotations

from typing import Optional

import attrs
import structlog

from mlcoord.costs import CostModel
from mlcoord.ledger import Ledger, Position
from mlcoord.model.values import side_of
from mlcoord.model import (
    CancelEntries,
    CloseHedge,
    ClosePosition,
    EntryOrder,
    ExitLevels,
    ExitReason,
    Fill,
    Intent,
    OpenHedge,
    PlaceEntryPlan,
    SetLevels,
)
from mlcoord.model.instruments import Instrument, Instruments

log = structlog.get_logger("mlcoord.simulated")


class _Leg:
    """A working entry order of a plan."""

    __slots__ = ("price", "quantity", "market", "expires", "tag", "order_id")

    def __init__(self, order: EntryOrder, expires: int):
        self.price, self.quantity, self.market = order.price, order.quantity, order.market
        self.expires, self.tag, self.order_id = expires, order.tag, order.order_id


class _Working:
    """What the venue holds for one symbol: the plan's working legs and protective levels, and
    the closes and hedge changes to execute at the next open."""

    __slots__ = ("legs", "side", "levels", "initial_stop", "partial_done", "close_reason",
                 "close_fraction", "hedge_open", "hedge_close", "prev_time", "fresh")

    def __init__(self) -> None:
        self.legs: list[_Leg] = []
        self.side = 0
        self.levels: Optional[ExitLevels] = None
        self.initial_stop: Optional[float] = None
        self.partial_done = False
        self.close_reason: Optional[str] = None
        self.close_fraction = 1.0
        self.hedge_open = 0.0            # hedge quantity to hold from the next open (open or resize)
        self.fresh = 0.0                 # quantity filled at a limit in the current bar
        self.hedge_close: Optional[str] = None
        self.prev_time: Optional[int] = None


class SimulatedVenue:
    """Executes intents against candles with :class:`CostModel` prices; books fills in ``ledger``."""

    def __init__(self, costs: CostModel, ledger: Ledger, instruments: Optional[Instruments] = None):
        self.costs, self.ledger = costs, ledger
        self.instruments = instruments if instruments is not None else Instruments()
        self.refused: list[tuple[str, str, str]] = []       # (symbol, order id, why) of refused orders
        self._working: dict[str, _Working] = {}
        #: symbols with orders working or changes due at the next open (held ones are busy anyway)
        self.busy: set[str] = set()
        self.version = 0        # working orders change only by intents and fills here
        self._funding_step = costs.funding_interval_ns if costs.funding_events(0, 1 << 62) else 0

    def _of(self, symbol: str) -> _Working:
        w = self._working.get(symbol)
        if w is None:
            w = self._working[symbol] = _Working()
        return w

    # -- intents ---------------------------------------------------------------------------
    def submit(self, intent: Intent) -> None:
        """Take ``intent`` into effect from the next bar of its symbol."""
        w = self._of(intent.symbol)
        inst = self.instruments[intent.symbol]
        self.busy.add(intent.symbol)
        if isinstance(intent, SetLevels):
            w.levels = _rounded_levels(inst, intent.levels)
        elif isinstance(intent, PlaceEntryPlan):
            expires = intent.bar_index + max(intent.expires_after_bars, 1)
            w.legs = [_Leg(order, expires) for order in self._accepted(inst, intent)]
            w.side = int(intent.side)
            w.levels = _rounded_levels(inst, intent.levels)
            w.initial_stop = w.levels.stop
            w.partial_done = False
            self.ledger.expect_plan(intent.symbol, intent.plan_id, intent.decision, len(intent.orders),
                                    intent.entry_reason)
        elif isinstance(intent, CancelEntries):
            w.legs = [leg for leg in w.legs if not intent.covers(w.side, leg.price, leg.market)]
        elif isinstance(intent, ClosePosition):
            w.close_reason, w.close_fraction = intent.reason, intent.fraction
            if intent.cancel_entries:
                w.legs = []
        elif isinstance(intent, OpenHedge):
            w.hedge_open = inst.round_quantity(intent.quantity)
        elif isinstance(intent, CloseHedge):
            w.hedge_close = intent.reason
        else:
            raise TypeError(f"the simulated venue cannot execute {type(intent).__name__}")

    def _accepted(self, inst: Instrument, intent: PlaceEntryPlan) -> list[EntryOrder]:
        """The plan's orders as the exchange takes them: rounded, the ones it would refuse left out."""
        if inst.permissive:
            return list(intent.orders)
        out = []
        for order in intent.orders:
            qty = inst.round_quantity(order.quantity)
            price = order.price if order.market else inst.round_price(order.price)
            why = inst.refusal(qty, price)
            if why is not None:
                self.refused.append((intent.symbol, order.order_id, why))
                log.warning("order_refused", symbol=intent.symbol, order=order.order_id, reason=why)
                continue
            out.append(attrs.evolve(order, quantity=qty, price=price))
        return out

    def has_entries(self, symbol: str) -> bool:
        """Working entry legs for ``symbol`` (a plan not fully filled, not expired)."""
        w = self._working.get(symbol)
        return bool(w is not None and w.legs)

    def working_entries(self):
        """(symbol, side, quantity, price) of every unfilled entry order (market legs at the
        decision bar's price): commitments the risk caps count."""
        for symbol, w in self._working.items():
            for leg in w.legs:
                yield symbol, w.side, leg.quantity, leg.price

    def working_orders(self):
        """(order id, symbol, side, quantity, price, market, tag) of every unfilled entry order: what
        a paper session's API reports as placed, and later as filled or cancelled."""
        for symbol, w in self._working.items():
            for leg in w.legs:
                yield leg.order_id, symbol, w.side, leg.quantity, leg.price, leg.market, leg.tag

    def hedge_pending(self, symbol: str) -> bool:
        w = self._working.get(symbol)
        return bool(w is not None and w.hedge_open)

    # -- one bar -----------------------------------------------------------------------------
    def on_bar(self, symbol: str, i: int, t: int, o: float, h: float, l: float) -> None:
        """Fill what bar ``i`` (time ``t``, open/high/low) of ``symbol`` reaches."""
        costs, ledger = self.costs, self.ledger
        w = self._of(symbol)
        position = ledger.positions.get(symbol)
        hedge = ledger.hedges.get(symbol)
        previous = w.prev_time
        if previous is not None and (position is not None or hedge is not None) and self._funding_step:
            rate = costs.funding_between(symbol, previous, t)
            if rate:
                for p in (position, hedge):
                    if p is not None:
                        ledger.pay_funding(p, rate * p.quantity * o * p.side)
        w.prev_time = t
        if w.close_reason and position is not None:
            qty = position.quantity if w.close_fraction >= 1.0 else \
                min(self.instruments[symbol].round_quantity(position.quantity * w.close_fraction), position.quantity)
            if qty > 0:
                self._exit(position, costs.market_exit(o, position.side), qty, t, w.close_reason, costs.fee_taker,
                           i, reference=o)
            if position.quantity <= 0:
                position = None
                w.legs = []
        w.close_reason = None
        w.close_fraction = 1.0
        hedge = ledger.hedges.get(symbol)
        if w.hedge_close and hedge is not None:
            self._exit(hedge, costs.market_exit(o, hedge.side), hedge.quantity, t, w.hedge_close, costs.fee_taker, i)
            hedge = None
        w.hedge_close = None
        if w.hedge_open and position is not None:
            self._hedge_to(symbol, position, hedge, w.hedge_open, i, t, o)
        w.hedge_open = 0.0
        w.fresh = 0.0
        if w.legs:
            position = self._fill_legs(w, symbol, i, t, o, h, l)
        if position is not None and position.quantity > 0:
            self._protect(w, position, i, t, o, h, l)
        hedge = ledger.hedges.get(symbol)
        if hedge is not None:
            if (hedge.side > 0 and l <= hedge.liquidation_price) or (hedge.side < 0 and h >= hedge.liquidation_price):
                self._liquidate(hedge, t, i)
        if not (w.legs or w.close_reason or w.hedge_open or w.hedge_close):
            self.busy.discard(symbol)

    def _hedge_to(self, symbol: str, position: Position, hedge: Optional[Position], quantity: float, i: int,
                  t: int, o: float) -> None:
        """Hold a hedge leg of ``quantity`` against ``position``: open it, or resize it at market."""
        costs = self.costs
        side = side_of(-position.side)
        held = hedge.quantity if hedge is not None else 0.0
        if quantity > held:
            price = costs.market_entry(o, side)
            inst = self.instruments[symbol]
            qty = inst.round_quantity(quantity - held)
            why = inst.refusal(qty, price) if qty > 0 else None
            if why is not None:                  # the exchange would refuse it: no (more) hedge
                self.refused.append((symbol, f"{symbol}:{t}:hedge", why))
                log.warning("order_refused", symbol=symbol, order=f"{symbol}:{t}:hedge", reason=why)
                return
            if qty <= 0:
                return
            self.ledger.apply(Fill(f"{symbol}:{t}:hedge", symbol, side, t, price, qty,
                                   price * qty * costs.fee_taker, False, "hedge", True), i)
        elif quantity < held and hedge is not None:
            self._exit(hedge, costs.market_exit(o, side), held - quantity, t, "hedge resized", costs.fee_taker, i)

    def _liquidate(self, position: Position, t: int, i: int) -> None:
        """Isolated margin: the margin is lost (the fill is at the bankruptcy price) plus the
        liquidation fee on the notional at the liquidation price; never more."""
        side = position.side
        bankrupt = max(position.entry_price * (1.0 - side / self.costs.leverage), 0.0)
        fee = position.liquidation_price * position.quantity * self.costs.fee_taker
        self._exit(position, bankrupt, position.quantity, t, ExitReason.LIQUIDATION.value, 0.0, i,
                   reference=position.liquidation_price, fee=fee)

    def _fill_legs(self, w: _Working, symbol: str, i: int, t: int, o: float, h: float, l: float
                   ) -> Optional[Position]:
        costs, ledger = self.costs, self.ledger
        side = w.side
        remaining = []
        for leg in w.legs:
            if leg.market:
                price, fee = costs.market_entry(o, side), costs.fee_taker
            elif (side > 0 and l <= leg.price) or (side < 0 and h >= leg.price):
                price, fee = costs.limit_entry(leg.price, o, side), costs.fee_maker
                if price != o:              # filled inside the bar, not at its open
                    w.fresh += leg.quantity
            elif i >= leg.expires:
                self.version += 1       # a commitment gone without a fill: the views must see it
                continue
            else:
                remaining.append(leg)
                continue
            ledger.apply(Fill(leg.order_id, symbol, side_of(side), t, price, leg.quantity, price * leg.quantity * fee,
                              False, leg.tag, False), i)
        w.legs = remaining
        return ledger.positions.get(symbol)

    def _protect(self, w: _Working, position: Position, i: int, t: int, o: float, h: float, l: float) -> None:
        costs = self.costs
        levels = w.levels
        if levels is None:
            return
        side = position.side
        liq = position.liquidation_price
        stop = levels.stop
        if (side > 0 and l <= liq) or (side < 0 and h >= liq):
            stop_fill = costs.stop_exit(stop, o, side)
            if (side > 0 and (stop <= liq or stop_fill <= liq)) or (side < 0 and (stop >= liq or stop_fill >= liq)):
                self._liquidate(position, t, i)
                w.legs = []
                return
        if (side > 0 and l <= stop) or (side < 0 and h >= stop):
            reason = ExitReason.STOP_LOSS if stop == w.initial_stop else ExitReason.TRAILING_STOP
            reference = min(stop, o) if side > 0 else max(stop, o)
            self._exit(position, costs.stop_exit(stop, o, side), position.quantity, t, reason.value,
                       costs.fee_taker, i, reference=reference)
            w.legs = []
            return
        eligible = position.quantity - w.fresh     # a limit fill of this bar waits for the next one
        partial = levels.partial_take_profit
        if partial is not None and not w.partial_done and eligible > 1e-12 and \
                ((side > 0 and h >= partial) or (side < 0 and l <= partial)):
            w.partial_done = True
            qty = self.instruments[position.symbol].round_quantity(eligible * levels.partial_fraction)
            if qty > 0:
                self._exit(position, costs.limit_exit(partial, o, side), qty, t,
                           ExitReason.PARTIAL_TAKE_PROFIT.value, costs.fee_taker, i)
                eligible -= qty
        tp = levels.take_profit
        if tp is not None and eligible > 1e-12 and ((side > 0 and h >= tp) or (side < 0 and l <= tp)):
            price = costs.limit_exit(tp, o, side)
            w.legs = []
            if position.quantity - eligible > 1e-12:
                w.close_reason, w.close_fraction = ExitReason.TAKE_PROFIT.value, 1.0   # the rest at the next open
            self._exit(position, price, min(eligible, position.quantity), t, ExitReason.TAKE_PROFIT.value,
                       costs.fee_taker, i, reference=price)

    def _exit(self, position: Position, price: float, qty: float, t: int, reason: str, fee_rate: float,
              i: int, *, reference: Optional[float] = None, fee: Optional[float] = None) -> None:
        """Book an exit fill; a position's last exit also closes its hedge leg at market, priced
        from ``reference`` (the exit's price before slippage; default: ``price``)."""
        symbol = position.symbol
        fee = price * qty * fee_rate if fee is None else fee
        fill = Fill(f"{symbol}:{t}:{reason}", symbol, position.side, t, price, qty, fee, True, reason, position.hedge)
        trade = self.ledger.apply(fill, i)
        if trade is not None and not position.hedge:
            hedge = self.ledger.hedges.get(symbol)
            if hedge is not None:   # a hedge never outlives the position it protects
                base = price if reference is None else reference
                self._exit(hedge, self.costs.market_exit(base, hedge.side), hedge.quantity, t,
                           ExitReason.HEDGED_POSITION_CLOSED.value, self.costs.fee_taker, i)

    def close_everything(self, symbol: str, i: int, t: int, close: float) -> None:
        """What is still open at the end of the data closes at the last close (a market order)."""
        w = self._of(symbol)
        w.legs = []
        self.busy.discard(symbol)
        for book in (self.ledger.positions, self.ledger.hedges):
            position = book.get(symbol)
            if position is not None:
                self._exit(position, self.costs.market_exit(close, position.side), position.quantity, t,
                           ExitReason.END_OF_DATA.value, self.costs.fee_taker, i, reference=close)


def _rounded_levels(inst: Instrument, levels: ExitLevels) -> ExitLevels:
    """Trigger prices on the tick, as the exchange would hold them."""
    if inst.permissive or not inst.tick_size:
        return levels
    r = inst.round_price
    return attrs.evolve(levels, stop=r(levels.stop),
                        take_profit=None if levels.take_profit is None else r(levels.take_profit),
                        partial_take_profit=None if levels.partial_take_profit is None
                        else r(levels.partial_take_profit))
