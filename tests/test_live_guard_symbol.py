"""A portfolio watcher's hedge for one symbol hedges that symbol only, live as in the backtest.

Regression (issue 11): ``GuardAction.symbol`` was ignored, so a guard hedging ETH got legs on BTC
and ETH. Two symbols hold positions; a planted watcher asks for a hedge of ETH alone; the loop's
``OpenHedge`` intents reach the exchange venue for ETH only, the exchange holds one hedge leg
(ETH's), and the ledger shows it as ETH's hedge leg.
"""

from __future__ import annotations

from exchange_sim import exchange_server  # noqa: F401 (fixture)
from mlcoord.model import GuardAction
from fake_plugins import Components
from live_helpers import planted_pipeline, run_scripted
from test_live_exit_close import TrimThenClose
from test_live_spot import PlantedSource

FIRST = 300


class HedgeEthAt:
    """Asks for a 50 % hedge of ETH/USDT only, once, when the portfolio holds two positions."""

    def __init__(self):
        self.asked = False

    def on_bar(self, portfolio):
        if self.asked or portfolio.open_positions() < 2:
            return []
        self.asked = True
        return [GuardAction("open_hedge", "planted: ETH only", symbol="ETH/USDT", fraction=0.5)]


def scenario(watcher):
    return Components(signal_sources={"planted": lambda o: PlantedSource({FIRST + 2: 1})},
                      exit_managers={"wideexits": lambda o: TrimThenClose(trim=-1, close=10**9)},
                      portfolio_watchers={"ethhedge": lambda o: watcher})


PIPELINE = planted_pipeline("wideexits", watchers=["ethhedge"])


def test_a_hedge_asked_for_one_symbol_is_placed_for_that_symbol_only(exchange_server, tmp_path):
    server = exchange_server
    watcher = HedgeEthAt()
    trader, logs = run_scripted(server, tmp_path, scenario(watcher), PIPELINE, cycles=10,
                                symbols=("BTC/USDT", "ETH/USDT"))
    assert watcher.asked
    plans = {p.symbol: p for p in trader.store.active_plans()}
    assert set(plans) == {"BTC/USDT", "ETH/USDT"}
    assert plans["ETH/USDT"].hedge is not None and plans["BTC/USDT"].hedge is None
    hedge_orders = [r for r in trader.store.orders() if r.order.hedge]
    assert hedge_orders and {r.order.symbol for r in hedge_orders} == {"ETH/USDT"}
    assert [e["symbol"] for e in logs if e["event"] == "hedge_on"] == ["ETH/USDT"]
    assert set(trader.ledger.hedges) == {"ETH/USDT"}
    leg, held = trader.ledger.hedges["ETH/USDT"], trader.ledger.positions["ETH/USDT"]
    assert leg.side == held.side.opposite and abs(leg.quantity - 0.5 * held.quantity) <= 0.001 + 1e-9
    held = server.state.futures.positions             # the exchange: a SHORT leg on ETH, none on BTC
    assert getattr(held.get(("ETHUSDT", "SHORT")), "amt", 0) != 0
    assert getattr(held.get(("BTCUSDT", "SHORT")), "amt", 0) == 0
