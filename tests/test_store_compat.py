"""A live store written before the one trading core is resumed by today's version.

``data/legacy_store/v0-hedged.sqlite`` was written by mlcoord at commit 3d01ba3 (the live
trader on its own bar stepper, the version users ran when the trading core was rebuilt; see
``data/legacy_store/make.py``): an open plan on the loopback exchange holding its LONG, its stop
and take profit, and a hedge leg from the hedging guard. Today's code replays the same cycles on a
fresh loopback exchange with a throwaway store, so the exchange holds what the old store lists
(client ids derive from the plan and the order's tag, so they are the same), then resumes on the
old store: the ledger holds the plan's position and hedge leg from the stored fills, no order is
sent twice, the stop keeps covering the position and the plan runs to its close.
"""

from __future__ import annotations

import json
import shutil
from decimal import Decimal
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from exchange_sim import exchange_server, futures_client  # noqa: F401 (fixture)
from live_helpers import BarClock
from mlcoord.live.records import PlanStatus
from mlcoord.live.retry import ManualClock
from mlcoord.live.runner import load_live_settings
from mlcoord.live.schema import SCHEMA_VERSION
from mlcoord.live.session import run_live
from mlcoord.live.store import Store
from mlcoord.registry import load_plugins
from test_live_hedge import _amount, check_hedge_invariants, client_ids_unique, hedge_config

LEGACY = Path(__file__).parent / "data" / "legacy_store"


def _open_on_server(account) -> set[str]:
    regular = {o.client_id for o in account.orders.values() if o.is_open}
    return regular | {a.client_id for a in account.algos.values() if a.is_open}


def test_a_store_from_before_the_trading_core_is_migrated_and_resumed(exchange_server, tmp_path):
    server = exchange_server
    account = server.state.futures
    meta = json.loads((LEGACY / "v0-hedged.json").read_text())
    settings, options = load_live_settings(hedge_config(tmp_path))
    cycles = []

    def replay(trader):
        cycles.append(trader.last_time)
        if len(cycles) == meta["cycles"]:
            raise KeyboardInterrupt

    with capture_logs(), pytest.raises(KeyboardInterrupt):
        run_live(settings, options, futures_client(server), load_plugins(), clock=BarClock(server),
                 health_clock=ManualClock(), cycles=meta["cycles"] + 1, on_cycle=replay)
    assert cycles[-1] == meta["last_bar_ns"]

    copy = tmp_path / "v0.sqlite"
    shutil.copy(LEGACY / "v0-hedged.sqlite", copy)
    old = Store.open(copy)
    assert old.schema_version() == SCHEMA_VERSION          # opened (and migrated when older) as today's
    [plan] = old.active_plans()
    assert plan.hedge is not None and plan.hedge.quantity > 0
    # the exchange holds exactly what the old store lists: the same working orders, the plan's
    # position and its hedge leg
    assert {r.client_order_id for r in old.open_orders()} == _open_on_server(account)
    assert any(r.order.tag == "stop" for r in old.open_orders())
    own = sum(r.filled_quantity * (-1 if r.order.reduce_only else 1) for r in old.orders(plan.plan_id)
              if not r.order.hedge)
    assert _amount(account, plan.side.name) == Decimal(str(round(own, 3)))
    assert abs(_amount(account, plan.hedge.side.name)) == Decimal(str(plan.hedge.quantity))
    sent_before = {r.client_order_id for r in old.orders()}

    seen = {"hedged_bars": []}
    first = {}

    def check(trader):
        check_hedge_invariants(trader, server, seen)
        ok, twice = client_ids_unique(account)
        assert ok, twice
        if not first:      # the first cycle on the old store: the ledger rebuilt from its fills
            position = trader.ledger.positions.get(plan.symbol)
            leg = trader.ledger.hedges.get(plan.symbol)
            first.update(position=position.quantity if position else None, leg=leg.quantity if leg else None,
                         levels=trader.engine.loop.levels.get(plan.symbol), last=trader.last_time)

    with capture_logs() as logs:
        trader = run_live(settings, options, futures_client(server), load_plugins(), clock=BarClock(server),
                          health_clock=ManualClock(), cycles=40, store=old, on_cycle=check)
    assert first["position"] == pytest.approx(own) and first["leg"] == pytest.approx(plan.hedge.quantity)
    assert first["levels"] is not None and first["levels"].stop == plan.levels.stop
    # nothing the old session sent was sent again (every cycle checked that no client id was used
    # twice on the exchange); the plan ran to its close
    assert sent_before <= {r.client_order_id for r in trader.store.orders()}
    closed = trader.store.plan(plan.plan_id)
    assert closed.status == PlanStatus.CLOSED
    trades = [t for t in trader.engine.trades if t.id == plan.plan_id]
    assert len(trades) == 1 and trades[0].quantity == pytest.approx(
        sum(r.filled_quantity for r in trader.store.orders(plan.plan_id)
            if not r.order.hedge and not r.order.reduce_only))
    # labelled from the stored decision (the Decision object died with the old process)
    fed = [e for e in logs if e["event"] == "trade_feedback" and e["plan"] == plan.plan_id]
    assert [e["decision"] for e in fed] == ["stored"]
    assert trades[0].entry_reason and trades[0].confidence > 0
    hedge_trades = [t for t in trader.engine.trades if t.hedge and t.id.startswith(plan.plan_id)]
    assert hedge_trades and all(t.side == plan.hedge.side for t in hedge_trades)
