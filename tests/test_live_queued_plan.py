"""A plan an exchange outage keeps queued still counts as working on its symbol.

ETH holds a position; on bar ``ACT`` its exit manager closes it and BTC signals. The exchange
then fails every request long enough for the retries to give up while ETH's close (queued
first) is being carried out, so BTC's plan stays queued behind it, never journaled. BTC signals
again on the next bar. Regression: the loop saw no working entries for BTC (a plan counted only
once on the exchange) and decided a second plan, so two plans went out for one symbol. Now the
second signal meets the queued plan, and the one plan is carried out once the exchange is back
(its market entry, bars late, is no longer what was decided: it is cancelled unsent).
"""

from __future__ import annotations

import numpy as np

from exchange_sim import exchange_server  # noqa: F401 (fixture)
from mlcoord.components import SignalSeries
from mlcoord.live.records import PlanStatus
from mlcoord.model import PositionExit
from fake_plugins import Components
from live_helpers import planted_pipeline, run_scripted
from test_backtest import FixedExits

FIRST = 300
ACT = FIRST + 5
SIGNALS = {"ETH/USDT": (FIRST + 2,), "BTC/USDT": (ACT, ACT + 1)}


class PerSymbolSource:
    """BUYs at given bar indices of each symbol's history."""

    def prepare(self, data):
        n = len(data)
        action, conf = np.zeros(n, np.int8), np.zeros(n)
        for i in SIGNALS.get(data.symbol, ()):
            if i < n:
                action[i], conf[i] = 1, 0.9
        return SignalSeries(action, conf, lambda i: ["planted signal"])


class CloseEthThenOutage(FixedExits):
    """Wide fixed levels; at ``ACT`` ETH's position is closed (a time stop) and every request
    starts failing."""

    def __init__(self, server):
        super().__init__(0.1, 0.2)
        self.server, self.faulted = server, False

    def update(self, i, position, levels):
        if i >= ACT and position.symbol == "ETH/USDT":
            if not self.faulted:
                self.faulted = True
                self.server.faults.server_error(times=40)
            return PositionExit("time_stop")
        return levels


PIPELINE = planted_pipeline("scripted")


def test_a_plan_kept_queued_by_an_outage_is_not_decided_again(exchange_server, tmp_path):
    server = exchange_server
    exits = CloseEthThenOutage(server)
    plugins = Components(signal_sources={"planted": lambda o: PerSymbolSource()},
                         exit_managers={"scripted": lambda o: exits})
    trader, _ = run_scripted(server, tmp_path, plugins, PIPELINE, cycles=14, symbols=("ETH/USDT", "BTC/USDT"))
    assert exits.faulted                                            # the outage happened
    entered = [d.symbol for d in trader.engine.journal.decisions if d.outcome == "entered"]
    assert entered == ["ETH/USDT", "BTC/USDT"]
    btc = [p for p in trader.store.plans() if p.symbol == "BTC/USDT"]
    assert len(btc) == 1, [p.plan_id for p in btc]
    # carried out bars after its decision: a market entry is no longer what was decided
    assert btc[0].decision_time == int(trader.books["BTC/USDT"].t[ACT])
    assert btc[0].status == PlanStatus.CANCELLED and not trader.store.orders(btc[0].plan_id)
    assert [t.exit_reason for t in trader.engine.trades if t.symbol == "ETH/USDT"] == ["scripted:time_stop"]

