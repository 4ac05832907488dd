"""Walk-forward evaluation, smoke size: windows, retraining, no in-sample scoring, the table."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mlcoord.candles import load_candles
from mlcoord.config import Settings, structure
from mlcoord.datasets import bundled_path
from mlcoord.evaluate import WalkForward, evaluate, plan_windows, render
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


@pytest.fixture(scope="module")
def smoke():
    """One small walk-forward over the bundled BTC data with retraining (tiny models)."""
    btc = load_candles(bundled_path("BTC/USDT"))
    btc = btc.slice(0, 9000)
    eps = {n: ep for n, ep in discover_entry_points().items() if getattr(ep.dist, "name", "") == "mlcoord"}
    plugins = load_plugins({}, entry_points=eps)
    settings = structure({"plugins": {"lstm": {"epochs": 1, "hidden": 4, "window": 16, "stride": 8},
                                      "attention": {"epochs": 1, "window": 8, "stride": 8}}}, Settings)
    wf = WalkForward(train_bars=4000, fit_bars=1500, test_bars=1700, windows=2)
    return evaluate(settings, plugins, [btc], wf), btc


def test_smoke_evaluation_scores_every_component_out_of_sample(smoke):
    result, btc = smoke
    scores = result["scores"]
    for name in ("technical", "lstm", "attention", "mtf", "rl_selector", "ensemble (raw)"):
        assert name in scores, sorted(scores)
        assert scores[name]["n"] > 20
        assert 0.0 <= scores[name]["auc"] <= 1.0
        assert scores[name]["log_loss"] > 0
    for report in result["training"]:
        assert {"lstm", "attention"} <= set(report)     # retrained in every window
    first_test = min(w["test_start"] for w in result["windows"])
    trained = max(w["fit_start"] for w in result["windows"] if w["test_start"] == first_test)
    assert trained < first_test


def test_smoke_evaluation_compares_technical_and_ml_trading(smoke):
    result, _ = smoke
    assert {row["symbol"] for row in result["trading"]} == {"BTC/USDT"}
    summary = result["trading_summary"]
    assert summary["technical"]["trades"] > 0
    assert set(summary["ml"]) == {"mean_return", "mean_sharpe", "worst_drawdown", "trades"}
    text = render(result)
    assert "lstm" in text and "trading technical" in text and "trading ml" in text
    json.dumps(result, default=str)   # machine-readable
