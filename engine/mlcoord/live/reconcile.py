"""Reconciliation at start: the store's view against the exchange's, said out loud.

1. Every order the store holds as live (PENDING included) is looked up by client id and brought up
   to date: a PENDING order the exchange has is adopted, one it lacks is sent (same client id).
2. Open orders on the exchange that the store does not know are adopted (stored, with no plan)
   or cancelled, per ``[live] unknown_orders``.
3. Balances (spot) or positions (futures) are read and logged next to the store's positions.
4. Active plans whose position has no live stop are returned: the caller places their stops
   before any new entry (:meth:`mlcoord.live.store.Store.plans_without_stop`).
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


def reconcile(broker: Broker, symbols: Sequence[str], unknown_orders: str = "cancel") -> Reconciliation:
    store = broker.store
    live = store.open_orders()
    for record in live:
        broker.refresh(record)
    adopted, cancelled = [], []
    for symbol in symbols:
        sym = broker.symbol(symbol)
        found = broker.call(lambda: broker.exchange.fetch_open_orders(sym), f"fetch_open_orders {sym}")
        for o in found:
            cid = o.get("clientOrderId") or ""
            if cid and store.order(cid) is not None:
                continue
            if unknown_orders == "adopt" and o.get("amount"):
                side = Side.LONG if o.get("side") == "buy" else Side.SHORT
                kind = OrderKind.LIMIT if o.get("price") else OrderKind.MARKET
                order = Order(cid or f"exchange:{o['id']}", symbol, side, kind, float(o["amount"]),
                              float(o["price"]) if o.get("price") else None,
                              int(o.get("timestamp") or 0) * 1_000_000, tag="adopted")
                store.upsert_order(OrderRecord(order, None, OrderState.OPEN, float(o.get("filled") or 0.0),
                                               exchange_order_id=str(o["id"])))
                adopted.append(order.id)
            else:
                broker.call(lambda: broker.exchange.cancel_order(o["id"], sym), f"cancel_order {o['id']}")
                cancelled.append(cid or str(o["id"]))
            log.warning("unknown_exchange_order", symbol=symbol, client_id=cid, own_format=is_own_order(cid),
                        action=unknown_orders)
    exchange_positions = _exchange_positions(broker, symbols)
    ours = tuple((p.symbol, p.side.name, p.quantity) for p in store.positions())
    unprotected = tuple(store.plans_without_stop())
    log.info("reconciled", refreshed=len(live), adopted=len(adopted), cancelled=len(cancelled),
             exchange_positions=exchange_positions, store_positions=ours,
             plans_without_stop=[p.plan_id for p in unprotected])
    return Reconciliation(len(live), tuple(adopted), tuple(cancelled), exchange_positions, ours, unprotected)


def _exchange_positions(broker: Broker, symbols: Sequence[str]) -> tuple[tuple[str, str, float], ...]:
    if broker.market == "futures":
        rows = broker.call(lambda: broker.exchange.fetch_positions([broker.symbol(s) for s in symbols]),
                           "fetch_positions")
        return tuple((r["symbol"], str(r.get("side")), float(r.get("contracts") or 0.0))
                     for r in rows if float(r.get("contracts") or 0.0))
    balance = broker.call(broker.exchange.fetch_balance, "fetch_balance")
    bases = {s.split("/")[0] for s in symbols}
    return tuple((b, "balance", float((balance.get("total") or {}).get(b) or 0.0)) for b in sorted(bases))
