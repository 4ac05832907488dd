"""Live on the loopback Binance: a resting DCA leg the moved stop has passed is cancelled on the
exchange in the cycle the stop moves, and no leg fills after the stop-out (issue 14: a leg left
below a raised stop filled 154 s after the stop and was sold at market). The backtest of the same
candles agrees: the leg never fills there either.

Emulator data (history index = bundled bar - 700): long decided at bar 333 (close 13753), a market
leg and a limit leg at 13600; the stop, first 13000, is raised to 13650 at bar 338 (close 13734);
bar 340 drops to 13420, through the stop and the leg's price."""

from __future__ import annotations

import pytest

from exchange_sim import exchange_server, futures_client  # noqa: F401 (fixture)
from mlcoord.live.records import OrderState, PlanStatus
from mlcoord.live.retry import ManualClock
from mlcoord.live.runner import load_live_settings
from mlcoord.live.session import run_live
from mlcoord.model import ExitLevels
from mlcoord.registry import load_plugins
from live_helpers import BarClock, backtest_of_session, live_config, planted_pipeline, with_pipeline
from test_simulated_venue import Ladder

SIGNAL, RAISE, LEG, STOP, RAISED = 333, 338, 13600.0, 13000.0, 13650.0


class RaiseAt:
    def prepare(self, data):
        return self

    def initial(self, i, side, plan):
        return ExitLevels(stop=STOP, take_profit=16000.0)

    def update(self, i, position, levels):
        return ExitLevels(stop=RAISED, take_profit=levels.take_profit) if i >= RAISE else levels


def scenario():
    from fake_plugins import Components
    from test_live_spot import PlantedSource

    return Components(signal_sources={"planted": lambda o: PlantedSource({SIGNAL: 1})},
                      exit_managers={"raiseat": lambda o: RaiseAt()},
                      entry_planners={"ladder": lambda o: Ladder((LEG,))})


def test_a_leg_the_raised_stop_passed_is_cancelled_in_that_cycle_and_never_fills(exchange_server, tmp_path):
    server = exchange_server
    path = with_pipeline(live_config(tmp_path), planted_pipeline("raiseat", entry_planner="ladder"))
    settings, options = load_live_settings(path)
    plugins = load_plugins(extra_plugins={"scenario": scenario()})
    seen = {}

    def check(trader):
        plans = trader.store.plans()
        if not plans:
            return
        plan = plans[0]
        legs = [r for r in trader.plan_orders(plan.plan_id) if r.order.tag == "entry:2/2"]
        if plan.levels.stop == RAISED and "raised" not in seen:
            seen["raised"] = trader.last_time
            # the same cycle: the leg is cancelled on the exchange (and in the store)
            assert legs and legs[0].state == OrderState.CANCELLED and legs[0].filled_quantity == 0
            on_server = server.state.futures.by_client[legs[0].client_order_id]
            assert on_server.status == "CANCELED"
        elif "raised" not in seen and legs:
            assert not legs[0].state.terminal            # resting until then

    trader = run_live(settings, options, futures_client(server), plugins, clock=BarClock(server),
                      health_clock=ManualClock(), cycles=46, on_cycle=check)
    assert seen["raised"] == int(trader.history["BTC/USDT"].time[RAISE])
    plan = trader.store.plans()[0]
    assert plan.status == PlanStatus.CLOSED
    orders = trader.plan_orders(plan.plan_id)
    entered = [r for r in orders if r.order.tag.startswith("entry") and r.filled_quantity > 0]
    assert [r.order.tag for r in entered] == ["entry:1/2"]            # the leg at 13600 never filled
    assert not [r for r in orders if r.order.tag == "close"]        # nothing left to sell at market
    trades = trader.engine.trades
    assert [t.exit_reason for t in trades] == ["trailing_stop"]
    assert trades[0].quantity == pytest.approx(entered[0].filled_quantity)

    raw, _ = backtest_of_session(trader, settings, options, plugins)
    assert [f.tag for f in raw.fills if not f.reduce_only] == ["entry:1/2"]
    assert [t.exit_reason for t in raw.trades] == ["trailing_stop"]
    assert raw.trades[0].closed_at == trades[0].closed_at
