"""A paper or live session prepares only its latest ``prepare_bars`` bars per new bar (a cycle's
cost bounded however long it runs); on a history five times that window, with the default
pipeline (every ML component voting), its decisions equal a backtest's over the whole history.

Indicators with an infinite memory (EMAs, Wilder's ATR and RSI, on 1h and on the 4h/1d views)
start from the window's first bar instead of the data's; 5,000 1h bars are 208 days, where the
slowest of them (a 14-day Wilder average on daily bars) has forgotten its start to 3.5e-7. The
confidences differ by less than 1e-8, the ATR-scaled trailing distances by 1e-12 of their value;
every decision, plan and size is the same, every fill and trade the same within 1e-8 (a trade carries its confidence).
"""

from __future__ import annotations

import attrs
import numpy as np
import pandas as pd

from mlcoord.backtest.run import run_backtest
from mlcoord.candles import load_candles
from mlcoord.config import Settings, structure
from mlcoord.datasets import bundled_path
from mlcoord.live.runner import LiveLoopOptions, PaperTrader
from mlcoord.pipeline import build_pipeline
from mlcoord.registry import load_plugins

ML = ("lstm", "attention", "mtf", "rl_selector")
WINDOW = LiveLoopOptions().prepare_bars          # the default window


def test_the_default_window_leaves_the_default_pipelines_decisions_unchanged():
    btc = load_candles(bundled_path("BTC/USDT"), symbol="BTC/USDT")
    end = int(np.searchsorted(btc.time, pd.Timestamp("2023-09-11", tz="UTC").value))
    candles = btc.slice(end - 5 * WINDOW - 240, end)        # five windows of history before the steps
    start = pd.Timestamp("2023-09-01", tz="UTC")
    cut = int(np.searchsorted(candles.time, start.value))
    assert cut >= 5 * WINDOW
    settings = structure({"engine": {"min_confidence": 0.5}, "data": {"timerange": f"{start:%Y%m%d}-"}}, Settings)
    plugins = load_plugins()
    raw = run_backtest(settings, plugins=plugins, candles=[candles]).raw    # prepares all 25,000+ bars

    paper = PaperTrader(build_pipeline(settings, plugins), settings, [candles.slice(0, cut)], prepare_bars=WINDOW)
    for k in range(cut, len(candles)):
        assert paper.on_candles([candles.slice(k - 3, k + 1)]) == 1
        assert len(paper.history["BTC/USDT"]) <= WINDOW + WINDOW // 4       # what is kept stays bounded
    result = paper.result(close=True)

    voted = lambda decisions: {v.component for d in decisions for v in d.votes if v.component in ML}  # noqa: E731
    assert voted(result.decisions) == set(ML) == voted(raw.decisions)
    assert sum(d.outcome == "entered" for d in raw.decisions) >= 2
    assert [(d.time, d.outcome, d.plan, d.sizing, d.signal.action) for d in result.decisions] == \
           [(d.time, d.outcome, d.plan, d.sizing, d.signal.action) for d in raw.decisions]
    for a, b in zip(result.decisions, raw.decisions):
        assert _close(a.levels, b.levels)          # the trailing distance is ATR-scaled: equal to 1e-12
        assert abs(a.confidence - b.confidence) < 1e-8 and abs(a.raw_confidence - b.raw_confidence) < 1e-8
        assert [(v.component, v.action) for v in a.votes] == [(v.component, v.action) for v in b.votes]
        assert max((abs(v.confidence - w.confidence) for v, w in zip(a.votes, b.votes)), default=0.0) < 1e-7
    assert len(result.fills) == len(raw.fills) and all(_close(f, g) for f, g in zip(result.fills, raw.fills))
    assert len(result.trades) == len(raw.trades) and all(_close(t, u) for t, u in zip(result.trades, raw.trades))


def _close(a, b, rel: float = 1e-8) -> bool:
    """Equal, but floats (also inside attrs values and tuples) only within ``rel``."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or abs(a - b) <= rel * max(abs(a), abs(b))
    if attrs.has(type(a)) and type(a) is type(b):
        return all(_close(getattr(a, f.name), getattr(b, f.name), rel) for f in attrs.fields(type(a)))
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_close(x, y, rel) for x, y in zip(a, b))
    return a == b


def test_a_symbol_back_after_more_than_a_window_keeps_every_bar_index():
    """A scanner symbol back after an absence longer than the window brings more new bars than
    the window holds: the series takes them all (indices never shift), the window is re-prepared
    at its end, and the next bar is stepped at the right index with the right prices."""
    btc = load_candles(bundled_path("BTC/USDT"), symbol="BTC/USDT")
    settings = structure({"engine": {"min_confidence": 0.5},
                          "pipeline": {"ml_components": [], "signal_sources": ["technical"]}}, Settings)
    other = btc.slice(0, 3000)
    other = type(other)("ETH/USDT", other.timeframe, other.frame)
    paper = PaperTrader(build_pipeline(settings, load_plugins()), settings, [btc.slice(0, 1000), other.slice(0, 1000)],
                        prepare_bars=600)
    for k in range(1000, 2800):                   # ETH is absent: only BTC's bars come
        paper.on_candles([btc.slice(k - 1, k + 1)])
    paper.add_history(other.slice(0, 2800))       # 1,800 missed bars, three windows
    eth = paper.books["ETH/USDT"]
    first = 1000 - 600                            # the series starts at the window it began with
    assert list(eth.t) == other.time[first:2800].tolist() and list(eth.c) == other.close[first:2800].tolist()
    assert eth.offset == len(eth.t) - 600 and len(paper.history["ETH/USDT"]) <= 600 + 150
    paper.on_candles([btc.slice(2799, 2801), other.slice(2799, 2801)])
    assert len(eth.t) == 2801 - first and eth.t[-1] == int(other.time[2800]) and eth.c[-1] == float(other.close[2800])
    assert eth.prepared.data.candles.time[-1] == other.time[2800]          # the window ends at the new bar
