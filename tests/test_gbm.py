"""The gbm ML component (issue 16): purged CV splits, determinism, the skip message, a backtest."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("lightgbm")

from mlcoord.api import build_market_data, bundled_path, load_candles  # noqa: E402
from mlcoord_gbm import Gbm, GbmOptions  # noqa: E402
from mlcoord_gbm.purged_cv import purged_folds  # noqa: E402

SMALL = GbmOptions(retrain_every_bars=600, min_train_bars=300, max_rounds=30, leaves=4, min_child_samples=40)


def test_purged_folds_never_train_on_a_label_that_overlaps_the_fold_or_its_embargo():
    rng = np.random.default_rng(0)
    decided = np.sort(rng.integers(0, 2000, 1500))
    resolved = decided + rng.integers(1, 25, len(decided))
    folds = purged_folds(decided, resolved, folds=4, embargo=24)
    assert len(folds) == 4
    for train, val in folds:
        start, end = decided[val].min(), resolved[val].max()
        assert not np.any((resolved[train] >= start) & (decided[train] <= end))   # purged
        assert not np.any((decided[train] > end) & (decided[train] <= end + 24))  # embargoed
        assert not set(train) & set(val)
        assert len(train) > 0


def test_purged_folds_refuse_unsorted_samples():
    with pytest.raises(ValueError, match="sorted"):
        purged_folds(np.array([3, 1]), np.array([4, 2]), folds=2, embargo=1)


@pytest.fixture(scope="module")
def btc():
    c = load_candles(bundled_path("BTC/USDT"), symbol="BTC/USDT", timeframe="1h")
    return build_market_data(c.slice(0, 2400))


def test_two_runs_give_identical_probabilities(btc):
    a = Gbm(SMALL).prepare(btc).p
    b = Gbm(SMALL).prepare(btc).p
    assert np.isfinite(a[600:]).all() and np.isnan(a[:600]).all()
    np.testing.assert_array_equal(a, b)


def test_a_model_is_trained_only_on_labels_resolved_by_its_block_start(btc):
    full = Gbm(SMALL).prepare(btc).p
    cut = Gbm(SMALL).prepare(btc.head(1201)).p          # the block starting at 1200 sees bars 0..1200
    np.testing.assert_array_equal(full[:1201], cut)


def test_without_lightgbm_the_plugin_loads_and_an_enabled_gbm_is_refused_saying_how(monkeypatch, short_candles):
    """Off by default: a user without lightgbm who never enables gbm hears nothing of it; one who
    enables it is stopped by an error naming the component and the extra to install."""
    from structlog.testing import capture_logs

    from mlcoord.backtest.run import run_backtest
    from mlcoord.config import Settings, structure
    from mlcoord.errors import PluginError
    from mlcoord.pipeline import build_pipeline
    from mlcoord.registry import load_plugins

    monkeypatch.setitem(sys.modules, "lightgbm", None)        # import lightgbm -> ModuleNotFoundError
    with capture_logs() as logs:
        plugins = load_plugins()
        run_backtest(Settings(), plugins=plugins, candles=[short_candles.slice(0, 300)])
    assert plugins.statuses["gbm"].enabled
    assert not [e for e in logs if "lightgbm" in str(e)]
    enabled = structure({"engine": {"enable": ["gbm"]}}, Settings)
    for strict in (False, True):
        with pytest.raises(PluginError, match=r"component 'gbm' .*pip install 'mlcoord\[gbm\]'"):
            build_pipeline(enabled, plugins, strict=strict)


def test_a_backtest_with_enable_gbm_gets_its_votes(tmp_path):
    from mlcoord.cli import main

    config = tmp_path / "c.toml"
    config.write_text("[plugins.gbm]\nretrain_every_bars = 500\nmin_train_bars = 300\nmax_rounds = 30\n"
                      "leaves = 4\nmin_child_samples = 40\n")
    out = tmp_path / "r.json"
    result = CliRunner().invoke(main, ["backtest", "--config", str(config), "--enable", "gbm", "--no-progress",
                                       "--timerange", "20240101-20240115", "--json", str(out)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    decisions = json.loads(out.read_text())["decisions"]
    votes = [v for d in decisions for v in d["votes"] if v["component"] == "gbm"]
    assert decisions and len(votes) == len(decisions)
    assert all("P(long wins net" in v["reasons"][0] and 0 < v["p_up"] < 1 for v in votes)
