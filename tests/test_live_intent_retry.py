"""Intents an exchange error interrupts are carried out next cycle, never dropped.

Two symbols hold positions; on the same bar BTC's exit manager closes its position and ETH's
raises its stop. The exchange fails every read long enough for the retries to give up (the
session pauses that cycle) while BTC's close is being carried out. Regression: the intents queued
behind it were lost with the failed one, so ETH's raised stop was never journaled nor sent (the
loop believed it was: the exit manager had no reason to ask again) and the exchange kept the old
stop. Now both are carried out in the next cycle.
"""

from __future__ import annotations

import attrs
import pytest

from exchange_sim import exchange_server  # noqa: F401 (fixture)
from mlcoord.live.records import PlanStatus
from mlcoord.model import PositionExit
from fake_plugins import Components
from live_helpers import planted_pipeline, run_scripted
from test_live_exit_close import TrimThenClose
from test_live_spot import PlantedSource

FIRST = 300
ACT = FIRST + 6          # the bar both exit managers act on


class CloseBtcRaiseEth(TrimThenClose):
    """Wide levels (as ``TrimThenClose``); BTC: a time stop from bar ``ACT``; ETH: its stop raised
    at ``ACT``. When BTC's close is decided, every exchange read starts failing until the retries
    give up (once)."""

    def __init__(self, server):
        super().__init__(trim=-1, close=ACT)
        self.server, self.faulted = server, False

    def update(self, i, position, levels):
        if i < ACT:
            return levels
        if position.symbol == "BTC/USDT":
            if not self.faulted:
                self.faulted = True
                self.server.faults.server_error(method="GET", times=8)
            return PositionExit("time_stop")
        if i == ACT:
            return attrs.evolve(levels, stop=levels.stop * 1.05)       # still far below the price
        return levels


def scenario(server):
    return Components(signal_sources={"planted": lambda o: PlantedSource({FIRST + 2: 1})},
                      exit_managers={"scripted": lambda o: CloseBtcRaiseEth(server)})


PIPELINE = planted_pipeline("scripted")


def test_intents_behind_a_failed_one_are_carried_out_next_cycle(exchange_server, tmp_path):
    server = exchange_server
    trader, logs = run_scripted(server, tmp_path, scenario(server), PIPELINE, cycles=12,
                                symbols=("BTC/USDT", "ETH/USDT"))
    kept = [e for e in logs if e["event"] == "intent_not_carried_out"]
    assert kept and kept[0]["intent"] == "ClosePosition" and kept[0]["kept"]
    btc = [p for p in trader.store.plans() if p.symbol == "BTC/USDT"]
    assert btc and btc[0].status == PlanStatus.CLOSED
    assert [t.exit_reason for t in trader.engine.trades if t.symbol == "BTC/USDT"] == ["scripted:time_stop"]
    eth = [p for p in trader.store.active_plans() if p.symbol == "ETH/USDT"]
    assert eth, "the ETH plan is still open"
    decided = trader.store.decision("ETH/USDT", eth[0].decision_time)
    initial = float(decided["levels"]["stop"])
    assert eth[0].levels.stop == pytest.approx(initial * 1.05)          # journaled
    working = [r for r in trader.plan_orders(eth[0].plan_id) if r.order.tag == "stop" and not r.state.terminal]
    assert len(working) == 1 and working[0].order.price == trader.broker.price("ETH/USDT", initial * 1.05)
