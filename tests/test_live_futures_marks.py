"""Futures marks of the live loop (:mod:`mlcoord.live.futures_marks`) against the loopback Binance:
liquidation prices as the exchange computes them, funding as the exchange charges it (into the
trades fed back), and a position that vanished from the exchange closes its plan."""

from __future__ import annotations

from decimal import Decimal

import pytest
from structlog.testing import capture_logs

from exchange_sim import exchange_server, futures_client  # noqa: F401 (fixture)
from mlcoord.live.futures_marks import FUNDING, GONE_REASON
from mlcoord.live.records import PlanStatus
from mlcoord.live.retry import ManualClock
from mlcoord.live.runner import load_live_settings
from mlcoord.live.session import run_live
from mlcoord.registry import load_plugins
from live_helpers import BarClock, live_config
from test_live_spot import Recorder

QUIET = "[plugins.protections]\ncooldown_after_stop_hours = 0\npair_lock_losses = 0"


def test_liquidation_prices_and_funding_follow_the_exchange(exchange_server, tmp_path):
    server = exchange_server
    account = server.state.futures
    settings, options = load_live_settings(live_config(tmp_path, extra=QUIET))
    marked = []

    def check(trader):
        for sym, position in trader.portfolio.positions.items():
            want = float(account.liquidation_price("BTCUSDT", "LONG" if position.side > 0 else "SHORT"))
            got = position.liquidation_price
            if want:
                # marked after this cycle's fills; a fill later in the cycle may move it
                stored = [p.liquidation_price for p in trader.store.positions()
                          if p.symbol == sym and p.side == position.side and not p.hedge]
                marked.append((got, want, stored[0] if stored else None))

    recorder = Recorder()
    trader = run_live(settings, options, futures_client(server), load_plugins(extra_plugins={"rec": recorder}),
                      clock=BarClock(server), health_clock=ManualClock(), cycles=260, on_cycle=check)
    assert marked, "no position was held"
    same = sum(1 for got, want, _ in marked if got == pytest.approx(want, rel=1e-9))
    # the store's position row holds what the engine sees (a row a fill created after this cycle's
    # marks gets its price at the next cycle)
    assert sum(1 for got, _, stored in marked if stored == got) >= 0.8 * len(marked)
    assert same >= 0.8 * len(marked), (same, len(marked))
    charged = -sum(Decimal(r["income"]) for r in account.income if r["incomeType"] == "FUNDING_FEE")
    assert charged != 0, "no funding event while a position was held"
    paid = (trader.store.load_state(FUNDING) or {}).get("paid", {})
    assert sum(paid.values()) == pytest.approx(float(charged), abs=1e-6)
    fed = sum(t.funding for t, _ in recorder.trades)
    open_plans = {p.plan_id for p in trader.store.active_plans()}
    assert fed == pytest.approx(sum(v for k, v in paid.items() if k not in open_plans), abs=1e-9)
    for trade, _ in recorder.trades:
        assert trade.funding == pytest.approx(paid.get(trade.id, 0.0), abs=1e-12)
    print(f"positions marked {len(marked)} (exact {same}); funding charged {float(charged):.6f}, "
          f"fed back in {len(recorder.trades)} trades {fed:.6f}")


def test_a_position_closed_behind_the_bots_back_closes_its_plan(exchange_server, tmp_path):
    server = exchange_server
    settings, options = load_live_settings(live_config(tmp_path, extra=QUIET))
    done, liquidation = {}, {}

    def close_by_hand(trader):
        plans = trader.store.active_plans()
        held = trader.ledger.positions.get("BTC/USDT")
        if held is not None and not done:
            liquidation["last"] = held.liquidation_price
        if not done and plans and trader.portfolio.positions:
            plan = plans[0]
            hand = futures_client(server)
            hand.load_markets()
            qty = float(server.state.futures.positions[("BTCUSDT", "LONG" if plan.side > 0 else "SHORT")].amt)
            hand.create_order("BTC/USDT:USDT", "market", "sell" if plan.side > 0 else "buy", abs(qty), None,
                              {"positionSide": "LONG" if plan.side > 0 else "SHORT"})
            done["plan"] = plan.plan_id

    with capture_logs() as logs:
        trader = run_live(settings, options, futures_client(server), load_plugins(), clock=BarClock(server),
                          health_clock=ManualClock(), cycles=200, on_cycle=close_by_hand)
    assert done, "no position was held"
    gone = [e for e in logs if e["event"] == "position_gone"]
    assert [e["plan"] for e in gone] == [done["plan"]]
    assert trader.store.plan(done["plan"]).status == PlanStatus.CLOSED
    closed = [e for e in logs if e["event"] == "plan_closed" and e["plan"] == done["plan"]]
    assert closed and closed[-1]["reason"] == GONE_REASON
    # the bot never saw the closing fill: it writes the position off at the last liquidation price
    # the exchange gave it (as far as it can tell, a liquidation), not at the last close
    written = [e for e in logs if e["event"] == "position_written_off" and e["plan"] == done["plan"]]
    assert written and liquidation["last"] > 0
    assert written[0]["price"] == liquidation["last"]
    trade = [t for t in trader.engine.trades if t.exit_reason == GONE_REASON]
    assert trade and trade[-1].exit_price == liquidation["last"] != trader.ledger.prices["BTC/USDT"]
    ids = {r.client_order_id for r in trader.plan_orders(done["plan"])}
    assert any(r.order.tag == "stop" for r in trader.plan_orders(done["plan"]))
    open_on_server = [o for o in list(server.state.futures.orders.values()) + list(server.state.futures.algos.values())
                      if o.is_open and getattr(o, "client_id", None) in ids]
    assert open_on_server == []
