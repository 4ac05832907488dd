"""Start-up safety: a live bot never trades next to what the exchange holds and its store does not know.

A store that was lost, emptied or looked for in the wrong folder looks like a new one. The bot then
met an open position of its own past as a stranger ("leaves it alone"): never managed, no stop. So
before reconciliation touches anything, :func:`survey` lists, per traded symbol, what the exchange
holds that the store has no record of:

* futures: a position that is neither an active plan's position nor its hedge leg;
* spot: a balance of the symbol's base asset beyond what the active plans' fills account for,
  above dust (the market's minimum amount and notional);
* open orders (regular and, on futures, conditional) whose client id the store does not hold,
  the bot's own id format or not, unless ``[live] unknown_orders`` says what to do with them
  ("cancel" or "adopt"; the default "refuse" counts them here).

If anything is found the bot refuses to start (:class:`UnknownExchangeState`, naming each thing)
until the user chooses, per start:

* ``--adopt``: take everything over. Unknown orders are adopted (stored, tracked, left working);
  each position becomes a journaled plan (:func:`adopt_positions`) whose stop and take profit the
  exit manager sets from current data, as for a new entry (its ``initial`` levels at the last
  closed bar, the entry at the last close), and the loop then manages it like any plan;
* ``--ignore SYMBOL`` (repeatable): leave that symbol's positions and orders alone and do not trade
  it this session (``symbol_ignored`` at every start). A symbol the store has an active plan on
  cannot be ignored (the bot manages it).
"""

from __future__ import annotations

from typing import Iterable, Optional, Sequence

import attrs
import structlog

from mlcoord.live.broker import Broker, BrokerError
from mlcoord.live.ids import is_own_order
from mlcoord.model import Side

log = structlog.get_logger("mlcoord.live.startup")

#: ``[live] unknown_orders`` values
UNKNOWN_ORDER_POLICIES = ("refuse", "cancel", "adopt")


class UnknownExchangeState(BrokerError):
    """The exchange holds positions, balances or orders the store has no record of."""


@attrs.frozen
class Unknown:
    """One thing the exchange holds that the store does not know: ``kind`` position, balance or
    order; the position's side, quantity and entry price (a balance's price is the last trade)."""

    symbol: str
    kind: str
    detail: str
    side: Optional[Side] = None
    quantity: float = 0.0
    price: Optional[float] = None

    def line(self) -> str:
        return f"{self.symbol}: {self.kind} {self.detail}"


def open_exchange_orders(broker: Broker, symbol: str) -> list[dict]:
    """The exchange's open orders of ``symbol``: regular ones and, where the exchange keeps them in
    a book of their own (Binance futures algo orders, Bybit spot stop orders, OKX algo orders),
    conditional ones (stops, take profits, trailing stops), which a plain listing does not show.
    Amounts in coins and client ids as :meth:`Broker.in_coins` reads them."""
    sym = broker.symbol(symbol)
    found = list(broker.call(lambda: broker.exchange.fetch_open_orders(sym), f"fetch_open_orders {sym}") or [])
    if broker.market in broker.dialect.trigger_book:
        found += broker.call(lambda: broker.exchange.fetch_open_orders(sym, None, None, broker.trigger_listing()),
                             f"fetch_open_orders {sym} (algo)") or []
    return [broker.in_coins(sym, o) for o in found]     # amounts in coins, an algo order's client id read


def survey(broker: Broker, symbols: Sequence[str], *, orders: bool = True) -> tuple[Unknown, ...]:
    """What the exchange holds on ``symbols`` that the store has no record of (reads only).
    ``orders``: look at open orders too."""
    out: list[Unknown] = []
    if orders:
        for symbol in symbols:
            for o in open_exchange_orders(broker, symbol):
                cid = str(o.get("clientOrderId") or "")
                if cid and broker.store.order(cid) is not None:
                    continue
                price = o.get("triggerPrice") or o.get("price")
                whose = "the bot's id format" if is_own_order(cid) else "not the bot's id format"
                out.append(Unknown(symbol, "order", f"{o.get('side')} {o.get('type')} {o.get('amount')} @ {price} "
                                                    f"(id {o.get('id')}, client id {cid or 'none'}: {whose})"))
    out += _futures_positions(broker, symbols) if broker.market == "futures" else _spot_balances(broker, symbols)
    return tuple(out)


def _futures_positions(broker: Broker, symbols: Sequence[str]) -> list[Unknown]:
    """Positions that are neither an active plan's own (by symbol and side) nor its hedge leg (the
    opposite side of a plan with hedge orders). An active plan accounts for its side whatever its
    recorded fills say: a bot killed before it recorded a fill has the fill on the exchange only,
    and reconciliation reads it back."""
    named = {broker.symbol(s): s for s in symbols}
    rows = broker.fetch_positions(list(named))
    ours = set()
    for p in broker.store.active_plans():
        sym = broker.symbol(p.symbol)
        ours.add((sym, p.side.name.lower()))
        if p.hedge is not None or any(r.order.hedge for r in broker.store.orders(p.plan_id)):
            ours.add((sym, p.side.opposite.name.lower()))
    out = []
    for r in rows:
        contracts = float(r.get("contracts") or 0.0)
        sym, side = str(r.get("symbol") or ""), str(r.get("side") or "").lower()
        if not contracts or sym not in named or (sym, side) in ours:
            continue
        entry = float(r.get("entryPrice") or 0.0) or None
        out.append(Unknown(named[sym], "position", f"{side.upper()} {contracts:g} at {entry}",
                           Side.LONG if side == "long" else Side.SHORT, contracts, entry))
    return out


def _spot_balances(broker: Broker, symbols: Sequence[str]) -> list[Unknown]:
    """Base-asset balances beyond what the symbol's active plans may hold (their fills, or their
    whole planned quantity: fills not yet recorded by a bot killed before it read them), above
    dust."""
    from mlcoord.live.reconcile import spot_plan_nets

    balance = broker.call(broker.exchange.fetch_balance, "fetch_balance")
    total = balance.get("total") or {}
    nets = spot_plan_nets(broker)
    active = broker.store.active_plans()          # one read, not one per symbol
    out = []
    for symbol in symbols:
        base = broker.base_asset(symbol)
        held = float(total.get(base) or 0.0)
        planned = sum(max(nets.get(p.plan_id, 0.0), p.quantity) for p in active if p.symbol == symbol)
        extra = broker.amount(symbol, held - planned)
        if extra <= 0:
            continue
        sym = broker.symbol(symbol)
        last = float(broker.call(lambda: broker.exchange.fetch_ticker(sym), f"fetch_ticker {sym}").get("last") or 0.0)
        if extra * last < broker.min_notional(symbol):
            continue                      # dust: below what the exchange would let anyone sell
        out.append(Unknown(symbol, "balance", f"{base} {held:g} ({extra:g} beyond the active plans' {planned:g})",
                           Side.LONG, extra, last or None))
    return out


def resolve(found: Sequence[Unknown], symbols: Sequence[str], *, adopt: bool, ignore: Iterable[str],
            store_name: str, active_symbols: Iterable[str] = (), scan: bool = False) -> list[str]:
    """The symbols to trade, once ``found`` is dealt with: refused (:class:`UnknownExchangeState`)
    unless each symbol with something unknown is adopted or ignored. ``ignore`` names symbols
    to leave alone (each must be traded, unless the scanner picks them, and hold no active plan)."""
    ignore = list(dict.fromkeys(ignore))
    held = set(active_symbols)
    for s in ignore:
        if s in held:
            raise BrokerError(f"--ignore {s}: the store has an active plan on {s}; the bot manages it "
                              "(close it first, or start without --ignore)")
        if s not in symbols and not scan:
            raise BrokerError(f"--ignore {s}: not a traded symbol ({', '.join(symbols)})")
    for s in ignore:
        what = [u.line() for u in found if u.symbol == s]
        log.warning("symbol_ignored", symbol=s, unknown=what or None,
                    note=f"{s} is not traded this session (--ignore): its positions and orders are left alone")
    open_ = [u for u in found if u.symbol not in ignore]
    if open_ and not adopt:
        lines = "; ".join(u.line() for u in open_)
        names = sorted({u.symbol for u in open_})
        raise UnknownExchangeState(
            f"the exchange holds what store {store_name} has no record of: {lines}. The bot does not trade "
            f"next to it. If the store was moved or lost, point [live] store at it; else start with --adopt "
            f"to take it over (positions get the exit manager's stop and take profit, orders are tracked), "
            f"or with {' '.join(f'--ignore {s}' for s in names)} to leave it alone and not trade "
            f"{'that symbol' if len(names) == 1 else 'those symbols'}")
    if adopt:                    # one plan per symbol: what cannot be adopted stops the start before any change
        for s in sorted({u.symbol for u in open_}):
            held_here = [u.line() for u in open_ if u.symbol == s and u.kind != "order"]
            if len(held_here) > 1 or (held_here and s in held):
                way = "close what is not its own by hand" + ("" if s in held else f", or start with --ignore {s}")
                raise BrokerError(f"cannot adopt {'; '.join(held_here)}: the bot keeps one plan per symbol"
                                  f"{' and has an active one on ' + s if s in held else ''}; {way}")
    traded = [s for s in symbols if s not in ignore]
    if not traded:
        raise BrokerError(f"nothing left to trade: every symbol is ignored ({', '.join(ignore)})")
    return traded


def adopt_positions(trader, found: Sequence[Unknown]) -> list[str]:
    """Each unknown position (or spot balance) of ``found`` becomes a journaled plan of the trader:
    its entry an adopted fill at the exchange's entry price (spot: the last trade), its levels the
    exit manager's ``initial`` ones at the last closed bar (the entry leg at that bar's close); the
    loop then holds it as any resumed plan, and the next manage places its stop and take profit.
    Returns the plan ids."""
    return [plan for u in found if u.kind in ("position", "balance") and (plan := _adopt(trader, u))]


def _adopt(trader, u: Unknown) -> Optional[str]:
    from mlcoord.times import iso
    from mlcoord.live.plan_orders import ENTRY
    from mlcoord.live.records import FillRecord, OrderRecord, OrderState, PlanRecord
    from mlcoord.model import EntryLeg, EntryPlan, Fill, Order, OrderKind

    broker, store = trader.broker, trader.store
    book = trader.books.get(u.symbol)
    if book is None or u.side is None:
        raise BrokerError(f"cannot adopt {u.line()}: the symbol is not traded this session")
    if any(p.symbol == u.symbol for p in store.active_plans()):      # resolve() stops this before any change
        raise BrokerError(f"cannot adopt {u.line()}: the store has an active plan on {u.symbol} (one plan per "
                          "symbol); close the position by hand")
    prepared = book.prepared
    candles = prepared.data.candles
    i, t, close = len(candles) - 1, int(candles.time[-1]), float(candles.close[-1])
    entry = EntryPlan(u.side, (EntryLeg(close, 1.0, market=True),), planner="adopted",
                      reasons=(f"adopted at start: {u.kind} {u.detail}",))
    levels = trader.pipeline.initial_levels(prepared, i, u.side, entry, close)
    if levels is None:
        raise BrokerError(f"cannot adopt {u.line()}: the exit manager gave it no stop (see the log); close it by "
                          f"hand or start with --ignore {u.symbol}")
    when = t + 1              # never a bar's open time: no decided plan's client ids can match its orders'
    plan_id = broker.client_id(u.symbol, when, "plan")
    price = u.price or close
    plan = PlanRecord(plan_id, u.symbol, when, float(u.quantity), entry, levels, updated_at=t)
    tag = f"{ENTRY}:1/1"
    cid = broker.client_id(u.symbol, when, tag, 0)
    order = Order(cid, u.symbol, u.side, OrderKind.MARKET, float(u.quantity), None, when, tag=tag)
    fill = Fill(cid, u.symbol, u.side, when, price, float(u.quantity), 0.0, False, tag)
    decision = {"symbol": u.symbol, "time": iso(when), "outcome": "adopted", "confidence": 0.0,
                "reasons": [f"adopted: {u.kind} {u.detail} held on the exchange without a record in the store"],
                "levels": {"stop": levels.stop, "take_profit": levels.take_profit}}
    with store.transaction():
        store.save_plan(plan)
        store.record_decision(decision)
        store.upsert_order(OrderRecord(order, plan_id, OrderState.OPEN, updated_at=when))
        store.record_fill(FillRecord(fill, sequence=0, fee_currency=trader.quote))
    trader.venue.expect(plan, None)
    trader.engine.loop.resume_position(u.symbol, levels)
    trader.venue.book(plan, trader.tally(plan))
    log.warning("position_adopted", plan=plan_id, symbol=u.symbol, side=u.side.name, quantity=u.quantity,
                entry_price=price, stop=levels.stop, take_profit=levels.take_profit,
                note="taken over (--adopt): its stop and take profit are placed now, the exit manager moves them")
    return plan_id
