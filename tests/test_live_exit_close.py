"""An exit manager closes (part of) a position itself, live as in the backtest.

``PositionExit(reason, fraction)`` from ``update``: a reduce-only market order for that fraction of
what the plan holds (futures), the stop then resized to the rest; a full ``PositionExit`` flattens
the plan. The same candles through the backtest trim and close on the same bars.
"""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from exchange_sim import exchange_server, futures_client  # noqa: F401 (fixture)
from mlcoord.live.records import OrderState, PlanStatus
from mlcoord.live.retry import ManualClock
from mlcoord.live.runner import load_live_settings
from mlcoord.live.session import run_live
from mlcoord.model import ExitLevels, PositionExit
from mlcoord.registry import load_plugins
from live_helpers import BarClock, backtest_of_session, live_config, planted_pipeline, with_pipeline

TF = 3_600_000_000_000
FIRST = 300          # history_bars: the index of the first live bar


class TrimThenClose:
    """Wide fixed levels; half closed at bar ``trim``, the rest at bar ``close`` (a time stop)."""

    def __init__(self, trim, close):
        self.trim, self.close = trim, close

    def prepare(self, data):
        return self

    def initial(self, i, side, plan):
        worst = plan.worst_price
        return ExitLevels(stop=worst * (1 - side * 0.2), take_profit=worst * (1 + side * 0.4))

    def update(self, i, position, levels):
        if i == self.trim:
            return PositionExit("trim", fraction=0.5)
        if i >= self.close:
            return PositionExit("time_stop")
        return levels


def scenario(signals, trim, close):
    """The planted source and the trimming exit manager, as one plugin."""
    from fake_plugins import Components
    from test_live_spot import PlantedSource

    return Components(signal_sources={"planted": lambda o: PlantedSource(signals)},
                      exit_managers={"trimexits": lambda o: TrimThenClose(trim, close)})


PIPELINE = planted_pipeline("trimexits")


def test_an_exit_manager_trims_and_closes_live_on_the_backtests_bars(exchange_server, tmp_path):
    server = exchange_server
    path = with_pipeline(live_config(tmp_path), PIPELINE)
    settings, options = load_live_settings(path)
    plugins = load_plugins(extra_plugins={"scenario": scenario({FIRST + 2: 1}, trim=FIRST + 6, close=FIRST + 10)})
    with capture_logs() as logs:
        trader = run_live(settings, options, futures_client(server), plugins, clock=BarClock(server),
                          health_clock=ManualClock(), cycles=16)
    plan = next(iter(trader.store.plans()))
    assert plan.status == PlanStatus.CLOSED
    orders = trader.plan_orders(plan.plan_id)
    entry = sum(r.filled_quantity for r in orders if r.order.tag.startswith("entry"))
    trims = [r for r in orders if r.order.tag == "close:part"]
    assert len(trims) == 1 and trims[0].state == OrderState.FILLED and trims[0].order.reduce_only
    assert trims[0].filled_quantity == pytest.approx(entry / 2, abs=0.0011)        # half, on the lot
    stops = sorted((r for r in orders if r.order.tag == "stop"), key=lambda r: r.order.created_at)
    before = [r for r in stops if r.order.created_at < trims[0].order.created_at]
    after = [r for r in stops if r.order.created_at >= trims[0].order.created_at]
    assert before and before[-1].order.quantity == pytest.approx(entry)
    assert after and after[-1].order.quantity == pytest.approx(entry - trims[0].filled_quantity)   # resized
    closes = [r for r in orders if r.order.tag == "close"]
    assert closes and sum(r.filled_quantity for r in closes) == pytest.approx(entry - trims[0].filled_quantity)
    assert [e for e in logs if e["event"] == "plan_flatten" and e["reason"] == "trimexits:time_stop"]

    raw, _ = backtest_of_session(trader, settings, options, plugins)
    simulated_trim = [f.time - TF for f in raw.fills if f.tag == "trimexits:trim"]
    simulated_close = [f.time - TF for f in raw.fills if f.tag == "trimexits:time_stop"]
    assert [trims[0].order.created_at] == simulated_trim                  # decided on the same bar
    assert [closes[0].order.created_at] == simulated_close


def test_on_spot_an_exit_manager_trims_with_the_stop_released_and_put_back(exchange_server, tmp_path):
    """Spot: the stop locks the coins, so a partial close releases it, sells the part at market and
    protects the rest at once (no cycle with coins and no stop); then the time stop closes all."""
    from test_live_spot import spot_config

    server = exchange_server
    path = with_pipeline(spot_config(tmp_path), PIPELINE)
    settings, options = load_live_settings(path)
    plugins = load_plugins(extra_plugins={"scenario": scenario({FIRST + 2: 1}, trim=FIRST + 6, close=FIRST + 10)})
    spot = server.state.spot
    unprotected = []

    def check(trader):
        for plan in trader.store.active_plans():
            held = trader.tally(plan).net
            stops = [r for r in trader.plan_orders(plan.plan_id) if r.order.tag == "stop" and not r.state.terminal]
            if held > 0.0011 and not stops:
                unprotected.append(trader.last_time)

    with capture_logs() as logs:
        trader = run_live(settings, options, _spot_client(server), plugins,
                          clock=BarClock(server), health_clock=ManualClock(), cycles=16, on_cycle=check)
    assert not [e for e in logs if e["event"] == "not_yet_supported"]
    plan = next(iter(trader.store.plans()))
    assert plan.status == PlanStatus.CLOSED
    orders = trader.plan_orders(plan.plan_id)
    trims = [r for r in orders if r.order.tag == "close:part"]
    assert len(trims) == 1 and trims[0].state == OrderState.FILLED
    stops = sorted((r for r in orders if r.order.tag == "stop"), key=lambda r: r.order.created_at)
    after = [r for r in stops if r.order.created_at >= trims[0].order.created_at]
    assert after and after[0].order.quantity < stops[0].order.quantity      # the rest, protected again
    assert not unprotected, unprotected
    assert [t.exit_reason for t in trader.engine.trades] == ["trimexits:time_stop"]
    tags = [f.tag for f in trader.ledger.fills if f.reduce_only]
    # the close, then maybe the dust the exchange's base-asset fees left (written off, same reason)
    assert tags[0] == "trimexits:trim" and set(tags[1:]) == {"trimexits:time_stop"} and len(tags) <= 3
    assert float(spot.total("BTC")) < 0.0011       # what is left is dust


def _spot_client(server):
    from exchange_sim import spot_client

    return spot_client(server)
