"""Fees as the exchange charged them, a part of :class:`mlcoord.live.trader.LiveTrader`.

Order answers often carry no fee (futures orders, orders that filled while resting), so the
exchange venue (:mod:`mlcoord.live.venue`) books a finished order's last fill with the fee its
trade list shows (:meth:`ExchangeFees.exchange_fees`); the ledger then folds the trade's fees,
funding and PnL as a backtest does.
"""

from __future__ import annotations

from typing import Optional, Sequence

import structlog

from mlcoord.errors import StoreError
from mlcoord.live.broker import BrokerError
from mlcoord.live.records import OrderRecord, PlanRecord
from mlcoord.live.trade_fee import trade_list_fee
from mlcoord.live.trader_parts import TraderParts
from mlcoord.model import OrderKind

log = structlog.get_logger("mlcoord.live.fees")


class ExchangeFees(TraderParts):
    """:class:`~mlcoord.live.trader.LiveTrader`'s fee lookup (uses its broker)."""

    def exchange_fees(self, plan: PlanRecord, filled: Sequence[OrderRecord]) -> Optional[float]:
        """The fees of the plan's filled orders in the quote asset, from the exchange's trade list
        (one request per filled order, by its exchange id, so no time window can cut trades off),
        unless every fill of the order booked its fee already (the broker reads a fill's fee from the
        trade list when its order answer has none: futures orders, orders that filled while resting). A fee in the base asset is converted at the trade's price.
        None (the fills' own fees are used, logged) when the trades cannot be read, or a fee is in a
        third asset (e.g. BNB) that this cannot price."""
        broker = self.broker
        sym = broker.symbol(plan.symbol)
        market = broker.exchange.market(sym)
        total, ids = 0.0, set()
        try:
            for r in list(filled):
                known = broker.store.fills(r.client_order_id)
                if known and all(f.fee_currency for f in known) and \
                        abs(sum(f.fill.quantity for f in known) - r.filled_quantity) <= 1e-9 * max(r.filled_quantity, 1):
                    other = {f.fee_currency for f in known} - {market["quote"], market["base"]}
                    if other:
                        raise BrokerError(f"a fee in {sorted(other)[0]}, which this cannot price")
                    total += sum(f.fill.fee for f in known)      # every fill booked its fee already
                    continue
                if broker.market == "futures" and r.order.kind not in (OrderKind.MARKET, OrderKind.LIMIT):
                    found = broker.lookup(r) or {}       # an algo order: its triggered order has the trades
                    child = (found.get("info") or {}).get("actualOrderId") or found.get("id")
                    ids.add(str(child or r.exchange_order_id or ""))
                else:
                    ids.add(str(r.exchange_order_id or ""))
            if "" in ids:
                raise BrokerError("a filled order has no exchange id")
            for oid in sorted(ids):
                trades = broker.order_trades(sym, oid)
                listed = trade_list_fee(trades, market)
                unpriced = sorted(c for c, cost in listed.other.items() if cost)
                if unpriced:
                    raise BrokerError(f"a fee in {unpriced[0]}, which this cannot price")
                total += listed.in_quote
        except StoreError:
            raise                            # the store's failure stops the bot; not an unreadable trade list
        except Exception as exc:
            log.warning("trade_fees_unavailable", plan=plan.plan_id, error=f"{type(exc).__name__}: {exc}",
                        note="using the fees the order answers reported")
            return None
        return total
