"""Paper trading and the backtest agree with every ML component voting (the default pipeline).

The same candles bar by bar through a paper session (the simulated account stepped as candles
close, re-preparing its history each bar) and all at once through ``run_backtest``: the same
decisions (every vote and its weight), plans, fills and trades. The range lies inside the shipped
models' validity (trained until 2022-04-01, voting until 2025-03-31), and every ML component must
have voted in both runs, or the comparison would say nothing about them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlcoord.backtest.run import run_backtest
from mlcoord.candles import load_candles
from mlcoord.config import Settings, structure
from mlcoord.datasets import bundled_path
from mlcoord.live.runner import PaperTrader
from mlcoord.pipeline import build_pipeline
from mlcoord.registry import load_plugins

ML = ("lstm", "attention", "mtf", "rl_selector")


def _votes(decisions):
    return {v.component for d in decisions for v in d.votes if v.component in ML}


def test_paper_equals_backtest_with_the_ml_components_voting():
    btc = load_candles(bundled_path("BTC/USDT"), symbol="BTC/USDT")
    first = int(np.searchsorted(btc.time, pd.Timestamp("2023-03-01", tz="UTC").value))
    candles = btc.slice(first - 1500, first + 160)
    start = pd.Timestamp(int(candles.time[1500]), tz="UTC")
    settings = structure({"engine": {"min_confidence": 0.5}, "data": {"timerange": f"{start:%Y%m%d}-"}}, Settings)
    plugins = load_plugins()
    raw = run_backtest(settings, plugins=plugins, candles=[candles]).raw

    cut = int(np.searchsorted(candles.time, start.value))
    paper = PaperTrader(build_pipeline(settings, plugins), settings, [candles.slice(0, cut)])
    for k in range(cut, len(candles)):
        assert paper.on_candles([candles.slice(max(k - 3, 0), k + 1)]) == 1
    result = paper.result(close=True)

    assert _votes(raw.decisions) == set(ML) and _votes(result.decisions) == set(ML)
    assert [(d.time, d.outcome, d.votes, d.raw_confidence, d.confidence, d.plan, d.levels, d.sizing)
            for d in result.decisions] == \
           [(d.time, d.outcome, d.votes, d.raw_confidence, d.confidence, d.plan, d.levels, d.sizing)
            for d in raw.decisions]
    assert sum(d.outcome == "entered" for d in raw.decisions) >= 2, "too few entries to compare"
    assert result.fills == raw.fills and result.trades == raw.trades
    assert result.plans == raw.plans
    assert np.array_equal(result.equity, raw.equity)
