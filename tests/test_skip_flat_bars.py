"""A backtest takes stretches of flat bars at once (``TradingLoop.skip_flat``, the watchers'
``SkipsFlatBars``); stepping every bar, as paper and live sessions do, must give the same run:
the same decisions, fills, trades, equity and exposure curves, guard actions and guard state."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from mlcoord.backtest.engine import Backtest
from mlcoord.backtest.run import run_backtest
from mlcoord.candles import candles_from_frame, load_candles
from mlcoord.journal import Journal
from mlcoord.config import Settings, structure
from mlcoord.datasets import bundled_path
from mlcoord.loop import TradingLoop
from mlcoord.protocols import SkipsFlatBars
from mlcoord.registry import load_plugins

from fake_plugins import Components

ML = ("bayes", "lstm", "attention", "mtf", "rl_selector")
TECHNICAL = {n: "test: technical pipeline" for n in ML}


def _run(monkeypatch, tmp_path, skip: bool, settings_dict: dict, candles, **kw):
    """The run's JSON (without timings) with its raw curves and guard actions, its learning state
    (the guards' included), and the bars taken at once."""
    taken, actions = [], []
    real = TradingLoop.skip_flat
    monkeypatch.setattr(Journal, "guard", lambda self, guard, action, portfolio: actions.append(
        (int(portfolio.time), guard, str(action.kind), action.reason, action.symbol, action.fraction)))

    def counting(self, times, bars):
        done = real(self, times, bars)
        taken.append(len(times) if done else 0)
        return done

    monkeypatch.setattr(TradingLoop, "skip_flat", counting)
    monkeypatch.setattr(Backtest, "skip_flat_bars", skip)
    state = tmp_path / f"state-{skip}.json"
    settings = structure({**settings_dict, "learning": {"state_file": str(state)}}, Settings)
    result = run_backtest(settings, candles=candles, **kw)
    out = result.to_json()
    out.pop("elapsed_seconds")
    out = json.loads(json.dumps(out, default=str))
    out.update(raw_equity=result.raw.equity.tolist(), raw_exposure=result.raw.exposure.tolist(),
               guard_actions=actions)
    return out, json.loads(state.read_text()), sum(taken)


def _assert_same(monkeypatch, tmp_path, settings_dict, candles, **kw):
    stepped, stepped_state, none = _run(monkeypatch, tmp_path, False, settings_dict, candles, **kw)
    skipped, skipped_state, taken = _run(monkeypatch, tmp_path, True, settings_dict, candles, **kw)
    assert none == 0
    assert taken > 0.3 * len(stepped["equity"]["value"]), "too few bars skipped to compare anything"
    assert len(stepped["trades"]) >= 5
    for key in stepped:
        assert skipped[key] == stepped[key], key
    assert skipped_state == stepped_state
    return stepped, taken


def test_one_symbol_with_the_guards_acting(monkeypatch, tmp_path, short_candles):
    """Hedging (its drawdown and volatility triggers fire) and a daily loss limit that arms and
    closes everything: the guards act, and both ways agree on every figure."""
    settings = {"plugins": {"hedging": {"drawdown_trigger": 0.03, "drawdown_release": 0.015,
                                        "vol_trigger_ratio": 1.3, "vol_release_ratio": 1.0},
                            "protections": {"daily_loss_limit": 0.004, "close_all_on_daily_loss": True}}}
    stepped, _ = _assert_same(monkeypatch, tmp_path, settings, [short_candles], disabled=TECHNICAL)
    kinds = {(guard, kind) for _, guard, kind, *_ in stepped["guard_actions"]}
    assert {("hedging", "open_hedge"), ("hedging", "close_hedge"), ("protections", "close_all")} <= kinds


def test_two_symbols_with_missing_bars(monkeypatch, tmp_path, short_candles):
    """ETH starts later and misses 30 bars in the middle: slots without every symbol are stepped,
    the rest may be skipped, and both ways agree."""
    eth = load_candles(bundled_path("ETH/USDT"), symbol="ETH/USDT")
    first = int(np.searchsorted(eth.time, short_candles.time[300]))
    eth = eth.slice(first, len(eth))
    holed = candles_from_frame(eth.frame.drop(eth.frame.index[900:930]), symbol="ETH/USDT", timeframe="1h")
    assert len(holed) == len(eth) - 30
    _assert_same(monkeypatch, tmp_path, {}, [short_candles, holed], disabled=TECHNICAL)


def test_default_ml_pipeline_with_learning(monkeypatch, tmp_path):
    """Every ML component votes and learns from outcomes due ``horizon`` bars later: a stretch
    never passes a due outcome, and both ways agree (weights and calibration included)."""
    btc = load_candles(bundled_path("BTC/USDT"), symbol="BTC/USDT")
    first = int(np.searchsorted(btc.time, pd.Timestamp("2023-03-01", tz="UTC").value))
    candles = btc.slice(first - 1100, first + 600)
    start = pd.Timestamp(int(candles.time[1100]), tz="UTC")
    settings = {"engine": {"min_confidence": 0.5}, "data": {"timerange": f"{start:%Y%m%d}-"}}
    stepped, _ = _assert_same(monkeypatch, tmp_path, settings, [candles])
    voted = {v["component"] for d in stepped["decisions"] for v in d.get("votes", [])}
    assert {"lstm", "mtf", "rl_selector", "attention"} <= voted


def test_a_watcher_without_the_protocol_sees_every_bar(monkeypatch, tmp_path, short_candles):
    """A third-party watcher that cannot take bars in bulk turns skipping off: it is called on
    every bar, as before."""
    seen = []

    class Watcher:
        def on_bar(self, portfolio):
            seen.append(int(portfolio.time))
            return []

    assert not isinstance(Watcher(), SkipsFlatBars)
    plugins = load_plugins(TECHNICAL,
                           extra_plugins={"counting": Components(portfolio_watchers={"counting": lambda o: Watcher()})})
    settings = structure({"engine": {"enable": ["counting"]}}, Settings)
    monkeypatch.setattr(Backtest, "skip_flat_bars", True)
    result = run_backtest(settings, plugins=plugins, candles=[short_candles])
    assert seen == [int(t) for t in result.raw.times]
