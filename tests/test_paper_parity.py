"""Paper trading and the backtest agree: the same candles, fed bar by bar through paper mode and
all at once through ``run_backtest``, give the same decisions, plans and fills (DCA included)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlcoord.backtest.run import run_backtest
from mlcoord.candles import load_candles
from mlcoord.config import Settings, structure
from mlcoord.datasets import bundled_path
from mlcoord.live.runner import PaperTrader
from mlcoord.pipeline import build_pipeline
from mlcoord.registry import load_plugins


def _settings(market: str, symbols: list[str], start: pd.Timestamp) -> Settings:
    guards = ["protections", "hedging"] if market == "futures" else ["protections"]
    return structure({"engine": {"min_confidence": 0.5},
                      "pipeline": {"ml_components": [], "signal_sources": ["technical"], "entry_guards": ["protections"],
                                   "portfolio_watchers": guards},
                      "data": {"symbols": symbols, "timerange": f"{start:%Y%m%d}-"},
                      "exchange": {"market": market},
                      "backtest": {"leverage": 2.0 if market == "futures" else 1.0}}, Settings)


def _fill_rows(fills):
    return [(f.order_id, f.symbol, int(f.side), f.time, f.price, f.quantity, f.fee, f.reduce_only, f.tag, f.hedge)
            for f in fills]


def _decision_rows(decisions):
    return [(d.time, d.symbol, d.outcome, d.confidence, d.plan, d.levels, d.sizing, d.veto) for d in decisions]


@pytest.mark.parametrize("market,symbols,bars", [("futures", ["BTC/USDT"], 2600),
                                                 ("spot", ["BTC/USDT", "ETH/USDT"], 1400)])
def test_paper_equals_backtest(market, symbols, bars):
    candles = [load_candles(bundled_path(s), symbol=s).slice(5000, 5000 + bars) for s in symbols]
    start = pd.Timestamp(int(candles[0].time[700]), tz="UTC").ceil("D")   # ~700 bars of warm-up
    settings = _settings(market, symbols, start)
    plugins = load_plugins()
    raw = run_backtest(settings, plugins=plugins, candles=candles).raw

    warmup = [c.slice(0, int(np.searchsorted(c.time, start.value))) for c in candles]
    paper = PaperTrader(build_pipeline(settings, plugins), settings, warmup)
    for k in range(len(warmup[0]), bars):   # one closed bar per cycle; the feed overlaps what was seen
        assert paper.on_candles([c.slice(max(k - 3, 0), k + 1) for c in candles]) == 1
    result = paper.result(close=True)       # the backtest closes what is open at the end of its data

    decisions = _decision_rows(raw.decisions)
    assert _decision_rows(result.decisions) == decisions
    assert sum(d[2] == "entered" for d in decisions) >= 5, "too few entries to compare"
    assert result.plans == raw.plans
    assert any(p["planned"] > 1 and p["filled"] > 1 for p in raw.plans), "no DCA ladder filled twice"
    assert _fill_rows(result.fills) == _fill_rows(raw.fills)
    assert result.trades == raw.trades
    assert list(result.times) == list(raw.times) and list(result.equity) == list(raw.equity)


def test_paper_takes_only_new_bars_and_batches_gaps():
    symbols = ["BTC/USDT"]
    candles = [load_candles(bundled_path("BTC/USDT"), symbol="BTC/USDT").slice(5000, 5800)]
    start = pd.Timestamp(int(candles[0].time[600]), tz="UTC").ceil("D")
    settings = _settings("spot", symbols, start)
    plugins = load_plugins()
    raw = run_backtest(settings, plugins=plugins, candles=candles).raw
    cut = int(np.searchsorted(candles[0].time, start.value))
    paper = PaperTrader(build_pipeline(settings, plugins), settings, [candles[0].slice(0, cut)])
    assert paper.on_candles([candles[0].slice(0, cut)]) == 0          # nothing new
    assert paper.on_candles([candles[0].slice(0, cut + 5)]) == 5      # a feed that was down for 5 bars
    assert paper.on_candles([candles[0]]) == len(candles[0]) - cut - 5
    assert _fill_rows(paper.result(close=True).fills) == _fill_rows(raw.fills)
