"""Catch-up (issue 14): a live bot paused for 30 bars replays every missed bar in order when it
comes back: the exit manager's level moves and the guards' triggers happen on their bars, a
trailing move the replayed bars already crossed is closed now at market with reason ``catch_up``,
no entry is decided on a replayed bar, one ``catch_up_bar`` line per replayed bar, and the
history has no hole. The missed bars are fetched in pages (a small page here).

Emulator data (history index = bundled bar - 700): long decided at bar 333 (market entry, stop
13000 on the exchange); the pause covers bars 336-365; the exit manager raises the stop to 13650
at bar 338 (replayed); bar 340 (low 13420) crosses it; the exchange's stop (13000) is never hit;
a guard trips (close_all) at bar 350."""

from __future__ import annotations

import attrs

import numpy as np
import pytest
from structlog.testing import capture_logs

from exchange_sim import exchange_server, futures_client, spot_client  # noqa: F401 (fixture)
from mlcoord.live.records import PlanStatus
from mlcoord.live.retry import ManualClock
from mlcoord.live.runner import load_live_settings
from mlcoord.live.session import run_live
from mlcoord.model import GuardAction
from mlcoord.registry import load_plugins
from live_helpers import BarClock, live_config, planted_pipeline, with_pipeline
from test_live_stop_passes_legs import RaiseAt

TF = 3_600_000_000_000
SIGNAL, PAUSE_AFTER, PAUSE, TRIP = 333, 335, 30, 350


class Tripwire:
    """Records the bars it sees; asks for close_all at bar ``TRIP``."""

    def __init__(self):
        self.seen = []
        self.trip_time = None

    def on_bar(self, portfolio):
        self.seen.append(portfolio.time)
        if self.trip_time is not None and portfolio.time == self.trip_time:
            return [GuardAction("close_all", "tripped")]
        return []

    def allow_entry(self, symbol, side, portfolio):
        return None


@pytest.mark.parametrize("market", ["futures", "spot"])
def test_a_paused_bot_replays_every_missed_bar_and_closes_with_catch_up(exchange_server, tmp_path, monkeypatch,
                                                                        market):
    from fake_plugins import Components
    from test_live_spot import PlantedSource

    server = exchange_server
    # a signal on every bar after the decision: none may be acted on while replaying
    signals = {SIGNAL: 1, **{k: 1 for k in range(PAUSE_AFTER + 1, PAUSE_AFTER + PAUSE + 1)}}
    wire = Tripwire()
    plugins = load_plugins(extra_plugins={"scenario": Components(
        signal_sources={"planted": lambda o: PlantedSource(signals)},
        exit_managers={"raiseat": lambda o: RaiseAt()},
        portfolio_watchers={"tripwire": lambda o: wire})})
    path = live_config(tmp_path, market=market, leverage=3 if market == "futures" else 1)
    settings, options = load_live_settings(with_pipeline(path, planted_pipeline("raiseat", watchers=["tripwire"])))
    options = attrs.evolve(options, candle_page=7)               # 31 missed bars: five pages
    paused = {}

    def on_cycle(trader):
        times = trader.history["BTC/USDT"].time
        wire.trip_time = int(times[0]) + TRIP * TF
        if "at" not in paused and int(times[-1]) == int(times[0]) + PAUSE_AFTER * TF:
            paused["at"] = int(times[-1])
            server.advance(PAUSE)            # the bot is away for 30 bars (the exchange goes on)

    client = futures_client(server) if market == "futures" else spot_client(server)
    with capture_logs() as logs:
        trader = run_live(settings, options, client, plugins, clock=BarClock(server), health_clock=ManualClock(),
                          cycles=PAUSE_AFTER - 298 + 6, on_cycle=on_cycle)
    times = trader.history["BTC/USDT"].time
    first = int(times[0])
    assert np.all(np.diff(times) == TF)                                  # no hole in the stored history
    stepped = list(trader.engine.loop.times)
    assert stepped == sorted(set(stepped)) and np.all(np.diff(stepped) == TF)   # every bar once, in order
    assert stepped[-1] == int(times[-1]) and stepped[-1] > paused["at"] + PAUSE * TF
    live_seen = [t for t in wire.seen if t >= stepped[0]]
    assert live_seen == stepped                                          # the guard saw every bar once
    replayed = [e for e in logs if e["event"] == "catch_up_bar"]
    assert [e["time"] for e in replayed] == [paused["at"] + k * TF for k in range(1, PAUSE + 1)]
    assert [e for e in logs if e["event"] == "catch_up_fetched" and e["pages"] == 5]
    crossed = [e for e in replayed if e["stops_crossed"]]
    assert [e["time"] for e in crossed] == [first + 340 * TF]
    assert [e for e in logs if e["event"] == "guard_action" and e["guard"] == "tripwire"]
    plans = trader.store.plans()
    assert len(plans) == 2 or len(plans) == 1
    first_plan = min(plans, key=lambda p: p.decision_time)
    assert first_plan.decision_time == first + SIGNAL * TF and first_plan.status == PlanStatus.CLOSED
    # no entry decided on a replayed bar; the newest bar (a signal too) may enter
    assert all(p.decision_time in (first + SIGNAL * TF, paused["at"] + (PAUSE + 1) * TF) for p in plans), \
        [(p.decision_time - first) // TF for p in plans]
    trade = trader.engine.trades[0]
    assert trade.exit_reason == "catch_up:trailing_stop"        # sent late, and why
    closes = [r for r in trader.plan_orders(first_plan.plan_id) if r.order.tag == "close"]
    assert closes and closes[0].filled_quantity > 0
    print(f"{market}: replayed {len(replayed)} bars, catch_up close at {trade.exit_price}")
