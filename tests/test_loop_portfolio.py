"""The loop's portfolio view answers its per-bar reads (drawdown, last price) directly from the
ledger; every bar they equal the protocol's definitions (``PortfolioMath``, the ledger's)."""

from __future__ import annotations

import pytest

import fake_plugins
from mlcoord.backtest.run import run_backtest
from mlcoord.config import Settings
from mlcoord.config import structure
from mlcoord.registry import load_plugins
from mlcoord.views import PortfolioMath

pytestmark = pytest.mark.usefixtures("builtin_plugins_only")


class Probe:
    """A watcher comparing the view's fast reads with the slow definitions on every bar."""

    seen: list = []

    def __init__(self, options=None):
        pass

    def on_bar(self, portfolio):
        ledger = portfolio._ledger
        prices = {s: PortfolioMath.last_price(portfolio, s) for s in portfolio.symbols()}
        Probe.seen.append((portfolio.drawdown, ledger.drawdown, {s: portfolio.last_price(s) for s in prices}, prices))
        return []

    def on_trade_closed(self, trade, decision=None):
        pass


def test_drawdown_and_last_price_equal_their_definitions_every_bar(short_candles):
    Probe.seen = []
    plugins = load_plugins({}, extra_plugins={"probe": fake_plugins.Components(portfolio_watchers={"probe": Probe})})
    result = run_backtest(structure({"engine": {"enable": ["probe"]}}, Settings), plugins=plugins,
                          candles=[short_candles])
    assert len(Probe.seen) == result.stats["bars"] and result.stats["trades"] > 0
    assert all(fast == slow for fast, slow, _, _ in Probe.seen)
    assert all(fast == slow and fast for _, _, fast, slow in Probe.seen)
    assert max(dd for dd, _, _, _ in Probe.seen) > 0.0              # a drawdown was there to read


def test_last_price_of_an_unpriced_symbol_is_a_key_error():
    from mlcoord.ledger import Ledger
    from mlcoord.loop import LoopPortfolio

    ledger = Ledger(1000.0)
    view = LoopPortfolio(ledger, venue=None, loop=None)  # type: ignore[arg-type]
    with pytest.raises(KeyError):
        view.last_price("BTC/USDT")
    ledger.prices["BTC/USDT"] = 5.0
    ledger.equity, ledger.peak_equity = 900.0, 1200.0
    assert view.last_price("BTC/USDT") == 5.0 == PortfolioMath.last_price(view, "BTC/USDT")
    assert view.drawdown == ledger.drawdown == 0.25
    ledger.peak_equity = 0.0
    assert view.drawdown == ledger.drawdown == 0.0
