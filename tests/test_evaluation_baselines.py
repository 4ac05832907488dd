"""Baselines (no look-ahead, pinned logistic regression, seeded), the logistic voter arm, the
development / holdout split and its log."""

from __future__ import annotations

import csv

import attrs
import numpy as np
import pandas as pd
import pytest

from mlcoord.backtest.run import run_backtest
from mlcoord.candles import load_candles
from mlcoord.config import Settings
from mlcoord.datasets import bundled_path
from mlcoord.errors import ConfigError
from mlcoord.evaluation import arms
from mlcoord.evaluation.baselines import BaselineOptions, L2Logistic, choose_c, fit_baselines, training_set
from mlcoord.evaluation.holdout import append_log, development_candles, make_split
from mlcoord.executors import PluginRecipe, plugins_from
from mlcoord.learning import EventSpec
from mlcoord.registry import discover_entry_points, load_plugins

SMALL = BaselineOptions(c_grid=(1e-3, 1.0), cv_splits=2, boosting_iterations=10)


@pytest.fixture(scope="module")
def btc():
    return load_candles(bundled_path("BTC/USDT")).slice(0, 5000)


def test_baselines_read_nothing_at_or_after_the_end_of_their_training_part(btc):
    start, end = int(btc.time[300]), int(btc.time[3000])
    frame = btc.frame.copy()
    frame.iloc[3000:, :4] *= 1.7                       # a different future (prices only)
    frame["high"] = frame[["open", "high", "low", "close"]].max(axis=1)
    frame["low"] = frame[["open", "high", "low", "close"]].min(axis=1)
    other = attrs.evolve(btc, frame=frame)
    a = fit_baselines([btc], start, end, EventSpec(), SMALL)
    b = fit_baselines([other], start, end, EventSpec(), SMALL)
    assert a.n_train == b.n_train == 3000 - 300 - EventSpec().horizon
    pa, pb = a.predict(btc.slice(0, 2990)), b.predict(btc.slice(0, 2990))
    for name in pa:
        for head in (0, 1):
            assert np.array_equal(pa[name][head], pb[name][head]), name
    x, up, _, times = training_set([btc], start, end, EventSpec())
    assert times.max() + EventSpec().horizon * btc.timeframe_ns < end   # every label closed before the end


def test_too_short_a_training_part_is_a_clear_error(btc):
    with pytest.raises(ValueError, match=r"no training rows for the baselines in 2020-09-2\d.* at most 200 \+ 24 bars"):
        fit_baselines([btc], int(btc.time[0]), int(btc.time[150]), EventSpec(), SMALL)
    with pytest.raises(ValueError, match=r"has 76 rows, too few to choose C by 2 time-series folds with a 24-row gap"):
        fit_baselines([btc], int(btc.time[0]), int(btc.time[300]), EventSpec(), SMALL)


def test_baseline_predictions_are_causal_and_deterministic(btc):
    m = fit_baselines([btc], int(btc.time[300]), int(btc.time[3000]), EventSpec(), SMALL)
    full, head = m.predict(btc), m.predict(btc.slice(0, 4000))
    for name in full:
        assert np.allclose(full[name][0][:4000], head[name][0]), name
    again = fit_baselines([btc], int(btc.time[300]), int(btc.time[3000]), EventSpec(), SMALL).predict(btc)
    assert all(np.array_equal(full[n][0], again[n][0]) for n in full)


def test_logistic_is_sklearns_l2_logistic_on_standardised_features():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 5)) * [1, 10, 0.1, 3, 1] + [0, 5, 0, 0, 2]
    y = (rng.random(3000) < 1 / (1 + np.exp(-(0.8 * x[:, 0] - 0.05 * x[:, 1])))).astype(float)
    for c in (1e-3, 0.1, 10.0):
        ours = L2Logistic(c).fit(x, y).predict_proba(x)[:, 1]
        ref = make_pipeline(StandardScaler(), LogisticRegression(C=c, tol=1e-12, max_iter=10_000)).fit(x, y)
        assert np.abs(ours - ref.predict_proba(x)[:, 1]).max() < 1e-5, c
    with pytest.raises(ValueError, match="C must be > 0, got 0"):
        L2Logistic(0)


def test_cross_validation_picks_weak_regularisation_for_a_real_pattern_and_strong_for_noise():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6000, 4))
    signal = (rng.random(6000) < 1 / (1 + np.exp(-2 * x[:, 0]))).astype(float)
    noise = (rng.random(6000) < 0.5).astype(float)
    opts = BaselineOptions(c_grid=(1e-6, 1.0), cv_splits=3)
    assert choose_c(x, signal, opts, gap=10) == 1.0
    assert choose_c(x, noise, opts, gap=10) == 1e-6


def test_logistic_voter_votes_the_windows_model_in_its_trading_arm(btc, tmp_path):
    import pickle

    models = fit_baselines([btc], int(btc.time[300]), int(btc.time[3000]), EventSpec(), SMALL)
    path = tmp_path / "baselines.pkl"
    path.write_bytes(pickle.dumps(models))
    eps = {n: ep for n, ep in discover_entry_points().items() if getattr(ep.dist, "name", "") == "mlcoord"}
    base = load_plugins({}, entry_points=eps)
    plugins = plugins_from(PluginRecipe(PluginRecipe.of(base).plugins
                                        + (("baseline_logistic", "mlcoord.evaluation.voter"),)))
    with pytest.raises(ValueError, match="needs the plugins"):
        arms.arm_settings(Settings(), "logistic voter")
    settings = arms.arm_settings(Settings(), "logistic voter", base)
    assert settings.pipeline.ml_components == ("baseline_logistic",) and settings.pipeline.calibrator is None
    # the signal vote keeps the profile's starting weight; the voter takes the ML components' sum
    assert settings.pipeline.weights == {"technical": 0.3, "baseline_logistic": pytest.approx(0.7)}
    part = btc.slice(2400, 5000)
    result = run_backtest(settings, plugins=plugins, candles=[part],
                          option_changes={"baseline_logistic": {"model_path": str(path)}})
    p_up = models.predict(part)["logistic"][0]
    index = {int(t): i for i, t in enumerate(part.time)}
    votes = [(d, v) for d in result.raw.decisions for v in d.votes if v.component == "baseline_logistic"]
    assert len(votes) > 20
    for d, v in votes:
        assert v.p_up == pytest.approx(p_up[index[d.time]])
    assert "baseline_logistic" not in base.components      # never in a normal run


def test_arm_settings_change_only_who_votes():
    s = Settings()
    ta, cal, ml = (arms.arm_settings(s, a) for a in ("signals_only", "signals + calibrator", "with_ml"))
    assert ta.pipeline.ml_components == () and ta.pipeline.calibrator == ""
    assert cal.pipeline.ml_components == () and cal.pipeline.calibrator is None   # the default calibrator
    assert ml == s
    for other in (ta, cal):
        assert other.backtest == s.backtest and other.engine == s.engine
    with pytest.raises(ValueError, match="unknown trading arm 'nope'"):
        arms.arm_settings(s, "nope")


def test_logistic_voter_weights_follow_the_configured_pipeline():
    from mlcoord.config import structure

    eps = {n: ep for n, ep in discover_entry_points().items() if getattr(ep.dist, "name", "") == "mlcoord"}
    plugins = load_plugins({}, entry_points=eps)
    # [pipeline] weights override the profile's key by key; the voter takes the ML components' sum
    s = structure({"pipeline": {"weights": {"technical": 0.5, "lstm": 0.05}}}, Settings)
    assert arms.voter_weights(s, plugins) == {"technical": 0.5, "baseline_logistic": pytest.approx(0.5)}
    # only the ML components the pipeline runs count (the profile weighs others too)
    s = structure({"pipeline": {"ml_components": ["lstm"]}}, Settings)
    assert arms.voter_weights(s, plugins) == {"technical": 0.3, "baseline_logistic": pytest.approx(0.25)}
    # no ML component at all: the fallback weight
    s = structure({"pipeline": {"ml_components": []}}, Settings)
    assert arms.voter_weights(s, plugins)["baseline_logistic"] == arms.FALLBACK_ML_WEIGHT


def test_default_holdout_is_the_last_30_percent_and_development_reads_none_of_it(btc):
    eth = load_candles(bundled_path("ETH/USDT")).slice(1000, 6000)
    split = make_split([btc, eth], None, "development")
    times = np.unique(np.concatenate([btc.time, eth.time]))
    assert split.holdout_from == times[int(len(times) * 0.7)]
    assert "last 30%" in split.chosen_by
    for c in development_candles([btc, eth], split):
        assert c.time.max() < split.holdout_from
    chosen = make_split([btc], "2021-02-01", "holdout")
    assert chosen.holdout_from == pd.Timestamp("2021-02-01", tz="UTC").value and chosen.part == "holdout"
    with pytest.raises(ConfigError, match="holdout_from '2031-01-01' is outside the data"):
        make_split([btc], "2031-01-01")
    with pytest.raises(ConfigError, match="holdout_from 'soon' is not a date"):
        make_split([btc], "soon")
    with pytest.raises(ConfigError, match="part 'test' is not one of development, holdout"):
        make_split([btc], None, "test")


def test_holdout_log_appends_with_one_header(tmp_path):
    log = tmp_path / "benchmarks" / "holdout-log.csv"
    row = {"run_at": "2026-01-01T00:00:00+00:00", "commit": "abc", "config_hash": "h", "holdout_from": "x",
           "symbols": "BTC/USDT", "windows": 1, "population": "signal_bars", "row": "logistic", "metric": "auc",
           "value": 0.51, "lo": 0.49, "hi": None}
    append_log(log, [row])
    append_log(log, [dict(row, commit="def")])
    rows = list(csv.DictReader(log.open()))
    assert [r["commit"] for r in rows] == ["abc", "def"]
    assert rows[0]["hi"] == "" and rows[0]["value"] == "0.51"


def test_arms_summary_leaves_out_arms_a_run_did_not_trade():
    from mlcoord.evaluation.bootstrap import WeeklyBootstrap

    week = 7 * 24 * 3_600_000_000_000
    rows = [{"arms": {"signals_only": {"return": -0.01, "sharpe": -1.0, "max_drawdown": 0.02,
                                       "trades": [[0, -50.0, -0.01], [week, 20.0, 0.004]]},
                      "with_ml": {"return": 0.0, "sharpe": 0.0, "max_drawdown": 0.0, "trades": []}}}]
    out = arms.summarise(rows, 10_000.0, WeeklyBootstrap([0, week], 100, 0))
    assert list(out["arms"]) == ["signals_only", "with_ml", "always abstain"]
    assert out["arms"]["signals_only"]["total_return"] == pytest.approx(-30.0 / 10_000)
    assert out["arms"]["signals_only"]["per_trade_return"] == pytest.approx(-15.0 / 10_000)
    assert out["arms"]["with_ml"]["trades"] == 0 and out["arms"]["with_ml"]["per_trade_return"] is None
    assert list(out["differences"]) == []       # none of the compared pairs both ran
