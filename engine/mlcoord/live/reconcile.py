"""Reconciliation at start: the store's view against the exchange's, said out loud.

1. Every order the store holds as live (PENDING included) is looked up by client id and brought up
   to date: a PENDING order the exchange has is adopted, one it lacks is sent (same client id).
2. Open orders on the exchange that the store does not know (regular and, on futures,
   conditional ones) are adopted (stored, with no plan) or cancelled, per ``[live] unknown_orders``
   or ``--adopt``; with the default ("refuse") the start-up survey has already stopped a bot that
   has any (:mod:`mlcoord.live.startup`), and one that appears since is left alone.
3. Balances (spot) or positions (futures) are read and logged next to the store's positions.
   Spot has no exchange positions: a plan's position is the coins its fills bought, so each
   active plan's holding is compared with the account's free + locked balance of its base asset
   (``spot_holding_short`` when the account has less than the fills say beyond fees: coins sold
   outside the bot; the trader then sells and protects only what is there; coins of a traded
   asset without an active plan above dust stopped the start-up survey unless adopted or ignored;
   dust is left alone, ``spot_balance_without_plan``).
4. Active plans whose position has no live stop are returned: the caller places their stops
   before any new entry (:meth:`mlcoord.live.store.Store.plans_without_stop`). On spot this is the
   same rule: a plan whose bought coins are (partly) still held needs its ``STOP_LOSS_LIMIT``.
"""

from __future__ import annotations

from typing import Sequence

import attrs
import structlog

from mlcoord.live.broker import Broker
from mlcoord.live.ids import is_own_order
from mlcoord.live.records import OrderRecord, OrderState, PlanRecord
from mlcoord.model import Order, OrderKind, Side

log = structlog.get_logger("mlcoord.live.reconcile")


@attrs.frozen
class Reconciliation:
    refreshed: int
    adopted: tuple[str, ...]
    cancelled: tuple[str, ...]
    exchange_positions: tuple[tuple[str, str, float], ...]
    store_positions: tuple[tuple[str, str, float], ...]
    unprotected: tuple[PlanRecord, ...]
    #: spot: (plan id, base asset, the plan's net fills, the account's balance of that asset)
    spot_holdings: tuple[tuple[str, str, float, float], ...] = ()
    #: futures: (exchange symbol, side, contracts, plan id) of each exchange position that is an
    #: active plan's hedge leg (hedge mode: the side opposite to the plan's)
    hedge_legs: tuple[tuple[str, str, float, str], ...] = ()
    #: futures: exchange positions that are neither an active plan's position nor its hedge leg
    unknown_positions: tuple[tuple[str, str, float], ...] = ()


def reconcile(broker: Broker, symbols: Sequence[str], unknown_orders: str = "cancel",
              adopting: Sequence[str] = ()) -> Reconciliation:
    """``adopting``: symbols whose unknown positions or balances are being taken over (``--adopt``)."""
    from mlcoord.live.startup import open_exchange_orders

    store = broker.store
    live = store.open_orders()
    for record in live:
        broker.refresh(record)
    adopted, cancelled = [], []
    for symbol in symbols:
        sym = broker.symbol(symbol)
        for o in open_exchange_orders(broker, symbol):
            cid = o.get("clientOrderId") or ""
            if cid and store.order(cid) is not None:
                continue
            if unknown_orders == "adopt" and o.get("amount"):
                order = _adopted_order(broker, symbol, cid, o)
                store.upsert_order(OrderRecord(order, None, OrderState.OPEN, float(o.get("filled") or 0.0),
                                               exchange_order_id=str(o["id"])))
                adopted.append(order.id)
            elif unknown_orders == "cancel":
                params = {"trigger": True} if o.get("triggerPrice") and broker.market in broker.dialect.trigger_book else {}
                broker.call(lambda: broker.exchange.cancel_order(o["id"], sym, params), f"cancel_order {o['id']}")
                cancelled.append(cid or str(o["id"]))
            log.warning("unknown_exchange_order", symbol=symbol, client_id=cid, own_format=is_own_order(cid),
                        action=unknown_orders if unknown_orders != "refuse" else "left alone")
    exchange_positions = _exchange_positions(broker, symbols)
    holdings = _spot_holdings(broker, symbols, exchange_positions, adopting) if broker.market == "spot" else ()
    ours = tuple((p.symbol, p.side.name, p.quantity) for p in store.positions())
    unprotected = tuple(store.plans_without_stop())
    log.info("reconciled", refreshed=len(live), adopted=len(adopted), cancelled=len(cancelled),
             exchange_positions=exchange_positions, store_positions=ours,
             plans_without_stop=[p.plan_id for p in unprotected])
    hedge_legs, unknown = _futures_positions(broker, exchange_positions, adopting) \
        if broker.market == "futures" else ((), ())
    return Reconciliation(len(live), tuple(adopted), tuple(cancelled), exchange_positions, ours, unprotected,
                          holdings, hedge_legs, unknown)


def _adopted_order(broker: Broker, symbol: str, cid: str, o: dict) -> Order:
    """An exchange order the store did not know, as the store keeps it (tag ``adopted``, no plan):
    a conditional one as a stop at its trigger price, a closing one (futures: the side opposite
    its position side; spot: a sell) reduce-only on the side of the position it closes."""
    trigger = o.get("triggerPrice") or o.get("stopPrice")
    kind = OrderKind.STOP if trigger else OrderKind.LIMIT if o.get("price") else OrderKind.MARKET
    price = float(trigger or o.get("price") or 0.0) or None
    buy = o.get("side") == "buy"
    field, long_, short = broker.dialect.position_side
    raw = (o.get("info") or {}).get(field) if broker.market == "futures" else None
    held = "LONG" if raw in (long_, str(long_)) else "SHORT" if raw in (short, str(short)) else ""
    if held in ("LONG", "SHORT"):
        side = Side.LONG if held == "LONG" else Side.SHORT
        closing = buy != (side == Side.LONG)
    else:
        side, closing = (Side.LONG, not buy) if broker.market == "spot" else (Side.LONG if buy else Side.SHORT, False)
    return Order(cid or f"exchange:{o['id']}", symbol, side, kind, float(o["amount"]), price,
                 int(o.get("timestamp") or 0) * 1_000_000, reduce_only=closing, tag="adopted")


def _exchange_positions(broker: Broker, symbols: Sequence[str]) -> tuple[tuple[str, str, float], ...]:
    if broker.market == "futures":
        rows = broker.fetch_positions([broker.symbol(s) for s in symbols])
        return tuple((r["symbol"], str(r.get("side")), float(r.get("contracts") or 0.0))
                     for r in rows if float(r.get("contracts") or 0.0))
    balance = broker.call(broker.exchange.fetch_balance, "fetch_balance")
    plans = {p.symbol for p in broker.store.active_plans()}
    bases = {broker.base_asset(s) for s in (*symbols, *plans)}
    return tuple((b, "balance", float((balance.get("total") or {}).get(b) or 0.0)) for b in sorted(bases))


#: the share of a spot plan's bought coins the account may lack before it is reported (fees)
SPOT_FEE_TOLERANCE = 0.01


def spot_plan_nets(broker: Broker) -> dict[str, float]:
    """Each active spot plan's coins as its fills say: bought less sold, less the coins the
    exchange kept as its fees (booked with each fill: never held)."""
    store = broker.store
    nets = store.filled_nets()
    out = {}
    for plan in store.active_plans():
        base = broker.base_asset(plan.symbol)
        fees = sum(f.fill.fee / f.fill.price for r in store.orders(plan.plan_id) if not r.order.reduce_only
                   for f in store.fills(r.client_order_id) if f.fee_currency == base and f.fill.price > 0)
        out[plan.plan_id] = float(nets.get(plan.plan_id) or 0.0) - fees
    return out


def _spot_holdings(broker: Broker, symbols: Sequence[str], balances,
                   adopting: Sequence[str] = ()) -> tuple[tuple[str, str, float, float], ...]:
    """Each active spot plan's net fills next to the account's balance of its base asset."""
    store = broker.store
    total = {b: q for b, _, q in balances}
    nets = spot_plan_nets(broker)
    out, planned = [], set()
    for plan in store.active_plans():
        base = broker.base_asset(plan.symbol)
        planned.add(plan.symbol)
        net, held = nets[plan.plan_id], total.get(base, 0.0)
        out.append((plan.plan_id, base, net, held))
        if net > 0 and held < net * (1 - SPOT_FEE_TOLERANCE):
            log.warning("spot_holding_short", plan=plan.plan_id, asset=base, plan_net=net, balance=held,
                        note="the account holds less than the plan's fills (sold outside the bot?): the bot "
                             "sells and protects only what is there")
    for symbol in symbols:
        base = broker.base_asset(symbol)
        if symbol not in planned and symbol not in adopting and broker.amount(symbol, total.get(base, 0.0)) > 0:
            log.info("spot_balance_without_plan", symbol=symbol, asset=base, balance=total.get(base, 0.0),
                     note="dust (below the minimum order; more stops the start-up survey): left alone")
    return tuple(out)


def _futures_positions(broker: Broker, exchange_positions, adopting: Sequence[str] = ()):
    """Each futures exchange position matched with the store's positions (built from the bot's
    fills, keyed by symbol, side and hedge flag): an active plan's hedge leg (the opposite side of
    its plan, hedge mode) is named as such; one the store has no active plan for is reported
    (``exchange_position_unknown``: opened outside the bot, or a plan closed while it was held;
    the start-up survey refused to start next to it unless it is being adopted: ``adopting``)."""
    adopted = {broker.symbol(s) for s in adopting}
    active = {p.plan_id for p in broker.store.active_plans()}
    ours = {(broker.symbol(p.symbol), p.side.name.lower()): p for p in broker.store.positions()}
    hedges, unknown = [], []
    for sym, side, contracts in exchange_positions:
        mine = ours.get((sym, side.lower()))
        if mine is not None and mine.plan_id in active:
            if mine.hedge:
                hedges.append((sym, side, contracts, mine.plan_id))
                log.info("exchange_position_hedge_leg", symbol=sym, side=side, contracts=contracts,
                         plan=mine.plan_id, store_quantity=mine.quantity)
            continue
        unknown.append((sym, side, contracts))
        if sym in adopted:
            log.info("exchange_position_adopting", symbol=sym, side=side, contracts=contracts,
                     note="no active plan holds it yet: taken over (--adopt)")
            continue
        log.warning("exchange_position_unknown", symbol=sym, side=side, contracts=contracts,
                    note="no active plan holds it (it appeared after the start-up survey?); left alone")
    return tuple(hedges), tuple(unknown)
