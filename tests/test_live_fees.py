"""A live trade's fees are what the exchange charged for its orders, every one of them.

Futures order answers carry no fee: the exchange venue books a finished order's fee from the
exchange's trade list. Regression: an entry leg that filled in part and then expired (cancelled by
the bot) was finished only after its last fill had been booked, so its fee was never booked and
the trade's fees (and P&L) left it out. With partial fills injected, every closed trade's fees
equal the sum of the exchange's own trade fees for the plan's orders.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from structlog.testing import capture_logs

from exchange_sim import exchange_server, futures_client  # noqa: F401 (fixture)
from mlcoord.live.records import OrderState
from mlcoord.live.retry import ManualClock
from mlcoord.live.runner import load_live_settings
from mlcoord.live.session import run_live
from mlcoord.registry import load_plugins
from live_helpers import BarClock, live_config


def test_every_closed_trade_carries_the_fees_the_exchange_charged(exchange_server, tmp_path):
    server = exchange_server
    account = server.state.futures
    server.faults.partial_fill(fraction=0.4, probability=0.6)
    settings, options = load_live_settings(live_config(tmp_path))
    with capture_logs():
        trader = run_live(settings, options, futures_client(server), load_plugins(), clock=BarClock(server),
                          health_clock=ManualClock(), cycles=160)
    by_exchange_id = {}
    for t in account.trades:
        by_exchange_id[str(t["orderId"])] = by_exchange_id.get(str(t["orderId"]), Decimal(0)) + t["fee"]
    # a triggered conditional order (stop, take profit) trades through its child order
    children = {str(k): str(a.child_id) for k, a in account.algos.items() if a.child_id is not None}
    partly_then_gone = 0
    checked = 0
    for trade in trader.engine.trades:
        if trade.hedge:
            continue
        orders = [r for r in trader.plan_orders(trade.id) if not r.order.hedge and r.filled_quantity > 0]
        partly_then_gone += sum(1 for r in orders if r.order.tag.startswith("entry") and
                                r.state in (OrderState.CANCELLED, OrderState.EXPIRED))
        charged = Decimal(0)
        for r in orders:
            oid = str(r.exchange_order_id)
            charged += by_exchange_id.get(children.get(oid, oid), Decimal(0))
        assert trade.fees == pytest.approx(float(charged), rel=1e-9, abs=1e-8), trade.id
        checked += 1
    assert checked >= 3
    assert partly_then_gone >= 1, "no entry leg filled in part and then cancelled: the case is not exercised"
