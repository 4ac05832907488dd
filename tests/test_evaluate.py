"""Walk-forward evaluation, smoke size: windows, retraining, no in-sample scoring, baselines
beside every row, intervals, both populations, the trading arms, the export round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mlcoord.candles import load_candles
from mlcoord.config import Settings, structure
from mlcoord.datasets import bundled_path
from mlcoord.errors import ConfigError
from mlcoord.evaluate import EvalOptions, WalkForward, evaluate, plan_windows, render
from mlcoord.evaluation.baselines import NAMES as BASELINES, BaselineOptions
from mlcoord.evaluation.collect import SIGNALS
from mlcoord.evaluation.holdout import make_split
from mlcoord.evaluation.metrics import rounded, score_row
from mlcoord.registry import discover_entry_points, load_plugins


def test_windows_never_overlap_their_training_data():
    times = np.arange(20_000, dtype=np.int64) * 3_600_000_000_000
    wf = WalkForward(train_bars=5000, fit_bars=1000, test_bars=2000)
    windows = plan_windows(times, wf)
    assert len(windows) == 7
    for w in windows:
        assert w.train_start < w.fit_start < w.test_start < w.test_end
        assert w.fit_start - w.train_start == 5000 * 3_600_000_000_000
    for a, b in zip(windows, windows[1:]):
        assert a.test_end <= b.test_start
    later = plan_windows(times, wf, test_from=int(times[12_345]))
    assert later[0].test_start == times[12_345] and len(later) == 4


SMALL = EvalOptions(resamples=200, every_bar=True,
                    baselines=BaselineOptions(c_grid=(1e-4, 1e-2, 1.0), cv_splits=2, boosting_iterations=20))


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """One small walk-forward over the bundled BTC data with retraining (tiny models)."""
    btc = load_candles(bundled_path("BTC/USDT"))
    btc = btc.slice(0, 9000)
    eps = {n: ep for n, ep in discover_entry_points().items() if getattr(ep.dist, "name", "") == "mlcoord"}
    plugins = load_plugins({}, entry_points=eps)
    settings = structure({"plugins": {"lstm": {"epochs": 1, "hidden": 4, "window": 16, "stride": 8},
                                      "attention": {"epochs": 1, "window": 8, "stride": 8}}}, Settings)
    wf = WalkForward(train_bars=4000, fit_bars=1500, test_bars=1700, windows=2)
    export = tmp_path_factory.mktemp("eval") / "decisions.parquet"
    return evaluate(settings, plugins, [btc], wf, options=SMALL, export=export), btc


def test_smoke_evaluation_scores_every_component_out_of_sample(smoke):
    result, btc = smoke
    scores = result["scores"]
    assert result["mlcoord_evaluation"] == 3
    for name in (SIGNALS, "lstm", "attention", "mtf", "rl_selector", "ensemble (raw)"):
        assert name in scores, sorted(scores)
        assert scores[name]["n"] > 20
        assert 0.0 <= scores[name]["auc"] <= 1.0
        assert scores[name]["log_loss"] > 0
    for report in result["training"]:
        assert {"lstm", "attention", "baselines"} <= set(report)     # retrained in every window
        assert report["baselines"]["logistic_c_up"] in SMALL.baselines.c_grid
        assert report["baselines"]["rows"] > 3000
    first_test = min(w["test_start"] for w in result["windows"])
    trained = max(w["fit_start"] for w in result["windows"] if w["test_start"] == first_test)
    assert trained < first_test


def test_smoke_evaluation_compares_the_trading_arms_on_the_same_windows(smoke):
    result, _ = smoke
    assert {row["symbol"] for row in result["trading"]} == {"BTC/USDT"}
    summary = result["trading_summary"]
    assert summary["signals_only"]["trades"] > 0
    assert set(summary["with_ml"]) == {"mean_return", "mean_sharpe", "worst_drawdown", "trades"}
    arms = result["trading_arms"]["arms"]
    assert list(arms) == ["signals_only", "signals + calibrator", "logistic voter", "with_ml", "always abstain"]
    assert arms["signals_only"]["trades"] == summary["signals_only"]["trades"]
    assert arms["with_ml"]["trades"] == summary["with_ml"]["trades"]
    for row in result["trading"]:
        assert row["signals_only"]["trades"] == len(row["arms"]["signals_only"]["trades"])
        assert row["with_ml"]["trades"] == len(row["arms"]["with_ml"]["trades"])
    assert arms["always abstain"]["trades"] == 0 and arms["always abstain"]["total_return"] == 0.0
    for name, arm in arms.items():
        if arm["trades"]:
            lo, hi = arm["per_trade_return_ci"]
            assert lo <= hi, name
    pnl = sum(t[1] for row in result["trading"] for t in row["arms"]["signals_only"]["trades"])
    assert arms["signals_only"]["total_return"] == pytest.approx(pnl / (10_000 * len(result["trading"])))
    assert "with_ml - signals + calibrator" in result["trading_arms"]["differences"]
    text = render(result)
    for words in ("lstm", "logistic", "climatology (causal)", "always abstain", "signals + calibrator",
                  "logistic voter", "scored: signal_bars", "scored: every_bar", "200 resamples"):
        assert words in text, words
    json.dumps(result, default=str)   # machine-readable


def test_every_row_has_its_baselines_n_and_intervals(smoke):
    result, _ = smoke
    signal = result["populations"]["signal_bars"]
    assert "signal's direction" in signal["event"]
    rows = signal["scores"]
    assert rows is result["scores"]
    for name in (*BASELINES, "climatology (in-sample)", "always abstain"):
        assert rows[name]["n"] == rows[SIGNALS]["n"], name      # scored on the same signal bars
    for name, row in rows.items():
        if name == "always abstain":
            assert row["accuracy"] == pytest.approx(1 - rows[SIGNALS]["base_rate"], abs=1e-4)
            continue
        for field in ("log_loss_clim_in_sample", "log_loss_clim_causal", "skill_vs_in_sample", "skill_vs_causal",
                      "ece", "ece_mass15"):
            assert field in row, (name, field)
        ci = row["ci"]["log_loss"]
        assert ci[0] <= ci[1], name
    assert list(rows)[0] == SIGNALS         # the signal sources' row first, whatever the sources are named
    ml = ("attention", "lstm", "mtf", "rl_selector")
    assert list(signal["differences"]) == [     # each ensemble row against the logistic baseline and each ML component
        "ensemble (raw) - logistic", *(f"ensemble (raw) - {n}" for n in ml),
        "ensemble (final, calibrated) - logistic", *(f"ensemble (final, calibrated) - {n}" for n in ml),
        "logistic - climatology (causal)"]
    final = signal["differences"]["ensemble (final, calibrated) - lstm"]
    assert final["auc"] == pytest.approx(rows["ensemble (final, calibrated)"]["auc"] - rows["lstm"]["auc"], abs=2e-4)
    assert final["auc_ci"][0] <= final["auc_ci"][1]
    assert rows["climatology (in-sample)"]["skill_vs_in_sample"] == pytest.approx(0.0, abs=1e-4)
    assert rows["climatology (causal)"]["skill_vs_causal"] == pytest.approx(0.0, abs=1e-4)
    every = result["populations"]["every_bar"]
    assert "every bar" in every["event"] and "lstm" in every["scores"] and "mtf" not in every["scores"]
    assert every["scores"]["logistic"]["n"] > 2 * rows["logistic"]["n"]


def test_export_round_trips_to_the_tables_figures(smoke):
    import pandas as pd

    result, _ = smoke
    frame = pd.read_parquet(result["export"]["path"])
    assert list(frame.columns) == ["time", "symbol", "window", "population", "label", "component", "probability",
                                   "outcome", "side", "climatology_causal"]
    assert len(frame) == result["export"]["rows"]
    assert set(frame["side"]) <= {-1, 1} and set(frame["outcome"]) <= {0, 1}
    for population, table in result["populations"].items():
        part = frame[frame["population"] == population]
        for name, row in table["scores"].items():
            if name in ("climatology (in-sample)", "always abstain"):
                continue
            rows = part[part["component"] == name]
            again = rounded(score_row(rows["outcome"].to_numpy(float), rows["probability"].to_numpy(),
                                      rows["climatology_causal"].to_numpy()))
            for field, value in again.items():
                assert row[field] == value or (value != value and row[field] != row[field]), (name, field)


def test_a_holdout_run_must_be_recorded_and_short_data_names_sizes_that_fit():
    btc = load_candles(bundled_path("BTC/USDT")).slice(0, 5000)
    plugins = load_plugins({}, entry_points={})
    with pytest.raises(ConfigError, match="holdout part must be recorded"):
        evaluate(Settings(), plugins, [btc], WalkForward(), split=make_split([btc], None, "holdout"))
    with pytest.raises(ConfigError, match=r"5,000 bars, too few .* \(22,995 in all\)\. Sizes in the same "
                                          r"proportions that fit 5,000 bars \(2 windows\): --train-bars 2857"):
        evaluate(Settings(), plugins, [btc], WalkForward())


def test_cli_holdout_run_is_logged_and_exports_its_predictions(tmp_path, monkeypatch):
    import csv

    import pandas as pd
    from click.testing import CliRunner

    from mlcoord import registry
    from mlcoord.cli import main

    real = registry.discover_entry_points
    monkeypatch.setattr(registry, "discover_entry_points",
                        lambda: {n: ep for n, ep in real().items() if getattr(ep.dist, "name", "") == "mlcoord"})
    log, export = tmp_path / "holdout-log.csv", tmp_path / "decisions.parquet"
    args = ["evaluate", "--windows", "1", "--train-bars", "2000", "--fit-bars", "1000", "--test-bars", "1000",
            "--no-retrain", "--no-progress", "--executor", "inline", "--part", "holdout", "--holdout-from",
            "2024-06-01", "--holdout-log", str(log), "--export", str(export), "--resamples", "50",
            "--json", str(tmp_path / "wf.json")]
    out = CliRunner().invoke(main, args, catch_exceptions=False)
    assert out.exit_code == 0, out.output
    assert f"holdout look recorded in {log}" in out.output and "holdout from 2024-06-01" in out.output
    result = json.loads((tmp_path / "wf.json").read_text())
    assert result["windows"][0]["test_start"] >= pd.Timestamp("2024-06-01", tz="UTC").value
    rows = list(csv.DictReader(log.open()))
    assert {r["config_hash"] for r in rows} == {result["config_hash"]}
    auc = {r["row"]: r for r in rows if r["metric"] == "auc" and r["population"] == "signal_bars"}
    assert float(auc["logistic"]["value"]) == result["scores"]["logistic"]["auc"]
    assert len(pd.read_parquet(export)) == result["export"]["rows"] > 0
    again = CliRunner().invoke(main, args, catch_exceptions=False)
    assert again.exit_code == 0 and len(list(csv.DictReader(log.open()))) == 2 * len(rows)   # every look logged
