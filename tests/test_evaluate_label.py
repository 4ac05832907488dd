"""``mlcoord evaluate --label trade`` (issue 16): the scored outcome is the engine's trade label,
computed as the learners receive it; its causal climatology and the baselines' training labels
use only labels known by then; ``--label event`` scores the event as before; trading is the same."""

from __future__ import annotations

import attrs
import numpy as np
import pandas as pd
import pytest

from mlcoord.candles import load_candles
from mlcoord.config import Settings
from mlcoord.costs import CostModel
from mlcoord.datasets import bundled_path
from mlcoord.errors import ConfigError
from mlcoord.evaluate import WARMUP, EvalOptions, WalkForward, evaluate, render
from mlcoord.evaluation.baselines import BaselineOptions, training_set
from mlcoord.evaluation.holdout import log_rows
from mlcoord.evaluation.labels import TRADE, Labeller, causal_climatology
from mlcoord.evaluation.tables import render_markdown
from mlcoord.learning import event_happened
from mlcoord.market_sources import market_datasets
from mlcoord.pipeline import Pipeline, resolve_components
from mlcoord.registry import discover_entry_points, load_plugins
from mlcoord.trade_label import history_trade_labels

HORIZON = Settings().learning.horizon
OPTIONS = EvalOptions(resamples=50, every_bar=True, all_arms=False,
                      baselines=BaselineOptions(c_grid=(1e-3, 1.0), cv_splits=2, boosting_iterations=10))


@pytest.fixture(scope="module")
def plugins():
    eps = {n: ep for n, ep in discover_entry_points().items() if getattr(ep.dist, "name", "") == "mlcoord"}
    return load_plugins({}, entry_points=eps)


@pytest.fixture(scope="module")
def btc():
    """Bars inside the shipped models' range (trained until 2022-03-31, valid for 1,095 days)."""
    c = load_candles(bundled_path("BTC/USDT"))
    start = int(np.searchsorted(c.time, pd.Timestamp("2022-06-01", tz="UTC").value))
    return c.slice(start, start + 4600)


@pytest.fixture(scope="module")
def runs(btc, plugins, tmp_path_factory):
    """One small walk-forward per label on the same bars, with the shipped models; ``learnt``: the
    trade labels the trading loop handed to the learners, by decision time."""
    wf = WalkForward(train_bars=2000, fit_bars=1000, test_bars=1400, windows=1, retrain=False)
    out, learnt = {}, {}
    real = Pipeline.learn

    def learn(self, symbol, index, decision, forward_return, trade=(None, None)):
        learnt.setdefault(decision.time, set()).add(tuple(None if t is None else float(t.win) for t in trade))
        return real(self, symbol, index, decision, forward_return, trade)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Pipeline, "learn", learn)
        for label in ("event", TRADE):
            export = tmp_path_factory.mktemp(label) / "decisions.parquet"
            result = evaluate(Settings(), plugins, [btc], wf, options=attrs.evolve(OPTIONS, label=label), export=export)
            out[label] = result, pd.read_parquet(export)
    out["learnt"] = learnt
    return out


def _part(btc, result):
    w = result["windows"][0]
    lo, hi = np.searchsorted(btc.time, [w["fit_start"] - WARMUP * btc.timeframe_ns, w["test_end"]])
    return btc.slice(int(lo), int(hi))


def test_trade_label_y_is_history_trade_labels_in_the_decisions_direction(btc, plugins, runs):
    result, frame = runs[TRADE]
    part = _part(btc, result)
    settings = Settings()
    costs = CostModel.from_config(settings.backtest)
    positions = resolve_components(settings, plugins).exit_manager.obj.prepare(market_datasets(settings, [part])[0])
    labels = history_trade_labels(positions, part, HORIZON, costs.fee_taker, costs.slippage)
    index = {int(t): i for i, t in enumerate(part.time)}
    assert set(frame["label"]) == {"trade"}
    signal = frame[frame["population"] == "signal_bars"]
    final = signal[signal["component"] == "ensemble (final, calibrated)"]
    assert len(final) > 20 and len(signal[signal["component"] == "signals"]) > 20
    assert (final["side"].to_numpy() != signal[signal["component"] == "signals"].set_index("time")
            .loc[final["time"], "side"].to_numpy()).any()      # some final decisions turned the signal round
    for frame_part in (signal, frame[frame["population"] == "every_bar"]):
        for t, side, y, pc in zip(frame_part["time"], frame_part["side"], frame_part["outcome"],
                                  frame_part["climatology_causal"]):
            i = index[pd.Timestamp(t).value]
            assert i + HORIZON < len(part)
            assert y == labels[int(side)].win[i], (t, side)
            known = labels[int(side)].win[: i - HORIZON + 1]            # labels handed over by bar i
            assert pc == pytest.approx(np.nanmean(known), abs=1e-12)
    assert set(frame[frame["population"] == "every_bar"]["side"]) == {1}
    learnt = runs["learnt"]                 # what the trading loop handed to the learners
    for t, side, y in zip(signal["time"], signal["side"], signal["outcome"]):
        (long_win, short_win), = learnt[pd.Timestamp(t).value]
        assert y == (long_win if side > 0 else short_win), (t, side)
    pop = result["populations"]["signal_bars"]
    assert pop["label"] == "trade" and pop["barriers"]["exit_manager"] == "exits"
    assert pop["barriers"]["horizon"] == HORIZON and pop["barriers"]["options"]["atr_stop_multiplier"] == 2.0
    assert pop["scores"]["climatology (causal)"]["skill_vs_causal"] == 0.0
    assert "scored: signal_bars, trade label (exits barriers, horizon 24) - signal bars" in render(result)
    assert "**signal bars**, trade label (exits barriers, horizon 24)" in render_markdown(result)


def test_event_label_scores_the_event_and_the_trading_arms_do_not_depend_on_the_label(btc, runs):
    (event, frame), (trade, _) = runs["event"], runs[TRADE]
    part = _part(btc, event)
    index = {int(t): i for i, t in enumerate(part.time)}
    threshold = Settings().learning.event.threshold
    assert set(frame["label"]) == {"event"} and event["populations"]["signal_bars"]["label"] == "event"
    assert "barriers" not in event["populations"]["signal_bars"]
    for t, side, y in zip(frame["time"], frame["side"], frame["outcome"]):
        i = index[pd.Timestamp(t).value]
        assert y == event_happened(int(side), part.close[i + HORIZON] / part.close[i] - 1.0, threshold)
    assert event["trading_arms"] == trade["trading_arms"] and event["trading"] == trade["trading"]
    assert event["config_hash"] != trade["config_hash"]


def test_causal_climatology_at_bar_t_uses_no_label_resolved_after_t(btc, plugins):
    labeller = Labeller(TRADE, Settings(), plugins)
    head = btc.slice(0, 3000)
    full, cut = labeller(head), labeller(head.slice(0, 2000))
    for side in (0, 1):
        known = ~np.isnan(cut[side])
        assert known[:2000 - HORIZON].sum() > 1500 and not known[2000 - HORIZON:].any()   # known at i + horizon
        assert np.array_equal(cut[side][known], full[side][:2000][known])
    a, b = causal_climatology(full, HORIZON), causal_climatology(cut, HORIZON)
    for side in (0, 1):
        assert np.array_equal(a[side][:2000], b[side])      # nothing after bar t moves bar t's rate
        t = 1500
        assert a[side][t] == pytest.approx(np.nanmean(full[side][: t - HORIZON + 1]))
        assert 0.2 < a[side][t] < 0.6


def test_baselines_train_on_the_trade_label_purged_at_the_end_of_their_part(btc, plugins):
    labeller = Labeller(TRADE, Settings(), plugins)
    head = btc.slice(0, 3200)
    start, end = int(head.time[300]), int(head.time[3000])
    frame = head.frame.copy()
    frame.iloc[3000:, :4] *= 0.6                         # a different future
    frame["high"] = frame[["open", "high", "low", "close"]].max(axis=1)
    frame["low"] = frame[["open", "high", "low", "close"]].min(axis=1)
    other = attrs.evolve(head, frame=frame)
    x, up, down, times = training_set([head], start, end, Settings().learning.event, labeller)
    x2, up2, down2, _ = training_set([other], start, end, Settings().learning.event, labeller)
    assert times.max() + HORIZON * head.timeframe_ns < end           # every label handed over before the end
    assert np.array_equal(up, up2) and np.array_equal(down, down2) and np.array_equal(x, x2)
    full = labeller(head)
    rows = np.searchsorted(head.time, times)
    assert np.array_equal(up, full[0][rows]) and np.array_equal(down, full[1][rows])
    assert len(up) > 2500 and 0.2 < up.mean() < 0.6


def test_the_holdout_log_tells_the_trade_label_apart(runs):
    for label, population in (("event", "signal_bars"), (TRADE, "signal_bars@trade")):
        result = dict(runs[label][0], split={"holdout_from": "2023-01-01T00:00:00+00:00"})
        rows = log_rows(result, "abc", "now")
        assert population in {r["population"] for r in rows}
        assert {r["population"] for r in rows} <= {population, population.replace("signal_bars", "every_bar"),
                                                   "trading"}


def test_a_bad_label_is_refused_naming_it():
    from click.testing import CliRunner

    from mlcoord.cli import main

    with pytest.raises(ConfigError, match=r"^label 'move' is not one of event, trade$"):
        EvalOptions(label="move")
    out = CliRunner().invoke(main, ["evaluate", "--label", "move"])
    assert out.exit_code == 2
    assert "Invalid value for '--label': 'move' is not one of 'event', 'trade'" in out.output
