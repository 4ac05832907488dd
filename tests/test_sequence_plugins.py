"""Sequence models are plugins: a class registered under a second name learns under that name,
and a GRU voter is added by a test plugin (tests/gru_plugin.py) without touching the engine:
trained by ``mlcoord train``, voting in a backtest, numpy inference equal to torch."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import gru_plugin
from mlcoord import hookimpl
from mlcoord.backtest.run import run_backtest
from mlcoord.candles import load_candles
from mlcoord.cli import main
from mlcoord.components import build_market_data
from mlcoord.config import Settings, structure
from mlcoord.datasets import bundled_path
from mlcoord.errors import ConfigError
from mlcoord.model import Action, Signal
from mlcoord.pipeline import build_component
from mlcoord.registry import load_plugins
from mlcoord.sequence import FEATURES, Model, SequenceModel, feature_matrix, normalise, torch_model, windows
from mlcoord.sequence.sided import align
from mlcoord_lstm import Lstm, LstmOptions

TRAIN_RANGE = "20220101-20220401"        # the GRU trains on bundled BTC/USDT 1h up to 2022-04-01
GRU_OPTIONS = {"epochs": 2, "stride": 4, "patience": 1}
#: float64 torch and float64 numpy run the same recurrence; only summation order differs
NUMPY_TORCH_ATOL = 1e-10


class SlowLstm:
    """The LSTM class registered a second time, under another name."""

    @hookimpl
    def register_ml_components(self, register):
        register("lstm_slow", Lstm, options=LstmOptions)


@pytest.fixture(scope="module")
def btc():
    return load_candles(bundled_path("BTC/USDT"), symbol="BTC/USDT")


def _at(candles, day: str) -> int:
    return int(np.searchsorted(candles.time, pd.Timestamp(day, tz="UTC").value))


def test_a_class_registered_twice_learns_under_its_registered_name(btc, tmp_path):
    """Regression: the component's name was its kind ("lstm"), so a second registration voted and
    was fed outcomes under "lstm_slow" but never found its own votes: it silently never learnt."""
    first = _at(btc, "2023-03-01")
    candles = btc.slice(first - 300, first + 700)
    start = pd.Timestamp(int(candles.time[300]), tz="UTC")
    state = tmp_path / "state.json"
    settings = structure({"engine": {"min_confidence": 0.5}, "data": {"timerange": f"{start:%Y%m%d}-"},
                          "pipeline": {"ml_components": ["lstm_slow"]},
                          "learning": {"state_file": str(state)}}, Settings)
    plugins = load_plugins({}, extra_plugins={"slow": SlowLstm()})

    built = build_component(settings, plugins.components["lstm_slow"])
    assert built.obj.name == "lstm_slow"
    own = built.obj.prepare(build_market_data(candles)).vote(500, Signal(Action.BUY, 0.6))
    assert own is not None and own.component == "lstm_slow"           # stamped by the component itself

    raw = run_backtest(settings, plugins=plugins, candles=[candles]).raw
    voted = [v for d in raw.decisions for v in d.votes if v.component != "technical"]
    assert voted and {v.component for v in voted} == {"lstm_slow"}
    learnt = json.loads(state.read_text())["components"]["lstm_slow"]
    assert learnt["n"] > 0 and len(learnt["recent"]) == learnt["n"]    # it learnt from its own votes


def test_without_a_context_the_name_is_the_family_kind():
    assert Lstm(LstmOptions()).name == "lstm"


@pytest.fixture(scope="module")
def gru_dir(tmp_path_factory):
    """A plugins folder holding the GRU plugin as a one-file plugin named ``gru_test``."""
    folder = tmp_path_factory.mktemp("plugins")
    shutil.copy(Path(gru_plugin.__file__), folder / "gru_test.py")
    return folder


@pytest.fixture(scope="module")
def gru_artifact(gru_dir, tmp_path_factory):
    """``mlcoord train --component gru``: the command asks the component how to train."""
    tmp = tmp_path_factory.mktemp("gru")
    config = tmp / "config.toml"
    config.write_text("[plugins.gru]\n" + "".join(f"{k} = {v}\n" for k, v in GRU_OPTIONS.items()))
    out = tmp / "gru.npz"
    result = CliRunner().invoke(main, ["train", "--component", "gru", "--plugins-dir", str(gru_dir),
                                       "--config", str(config), "--symbol", "BTC/USDT",
                                       "--timerange", TRAIN_RANGE, "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert f"model written to {out}" in result.output and "best_epoch" in result.output
    return out


def test_the_gru_plugin_votes_in_a_backtest(btc, gru_dir, gru_artifact):
    first = _at(btc, "2022-04-15")
    candles = btc.slice(first - 300, first + 700)
    start = pd.Timestamp(int(candles.time[300]), tz="UTC")
    settings = structure({"engine": {"min_confidence": 0.5, "enable": ["gru_test"], "plugins_dir": str(gru_dir)},
                          "data": {"timerange": f"{start:%Y%m%d}-"},
                          "pipeline": {"ml_components": []},
                          "plugins": {"gru": {**GRU_OPTIONS, "model_path": str(gru_artifact)}}}, Settings)
    result = run_backtest(settings, candles=[candles])
    gru_votes = [v for d in result.raw.decisions for v in d.votes if v.component == "gru"]
    assert len(gru_votes) > 0 and not result.raw.errors
    assert all(v.reasons[0].startswith("GRU(8 bars): P(long wins)=") for v in gru_votes)
    assert len({(v.p_up, v.p_down) for v in gru_votes}) > 1                 # a model, not a constant


def test_gru_numpy_inference_matches_torch(btc, gru_artifact):
    component = gru_plugin.Gru(gru_plugin.GruOptions(**GRU_OPTIONS, model_path=str(gru_artifact)))
    c = btc.slice(_at(btc, "2022-04-01"), _at(btc, "2022-05-01"))
    data = build_market_data(c)
    model = component.load_model(data.event)
    assert model.kind == "gru" and set(model.weights) >= {"gru.weight_ih_l0", "head.weight"}
    matrix = feature_matrix(c.open, c.high, c.low, c.close, c.volume)
    bars = np.arange(100, 400)
    # the default target: the long side's aligned windows (its network keeps two logits; the first counts)
    x = align(windows(normalise(matrix, model.mean, model.std), bars, model.window), np.ones(len(bars)))
    net = torch_model(gru_plugin.GRU, model.weights, len(FEATURES) + 1, component.fit_options())
    import torch
    with torch.no_grad():
        expected = torch.sigmoid(net(torch.as_tensor(x))).numpy()
    got = gru_plugin.gru_forward(model.weights, x)
    np.testing.assert_allclose(got, expected, atol=NUMPY_TORCH_ATOL, rtol=0)
    np.testing.assert_array_equal(model.predict(matrix, bars)[0][:, 0], got[:, 0])   # the voter's path: the same numbers
    assert got[:, 0].std() > 0


def test_train_refuses_a_component_without_a_model():
    result = CliRunner().invoke(main, ["train", "--component", "technical", "--out", "x.npz"])
    assert result.exit_code != 0 and "'technical' has no model to train" in result.output


def test_a_family_forward_of_the_wrong_shape_is_named():
    family = SequenceModel("broken", lambda n, o: None, lambda w, x: np.zeros((len(x), 3)))
    model = Model(family, {}, np.zeros(len(FEATURES)), np.ones(len(FEATURES)), 4, 0)
    with pytest.raises(ValueError, match=r"broken numpy_forward returned probabilities of shape \(16, 3\)"):
        model.predict(np.zeros((20, len(FEATURES))), np.array([10]))
    with pytest.raises(ValueError, match="identifier string"):
        SequenceModel("not a kind", lambda n, o: None, lambda w, x: x)


def test_a_component_without_a_shipped_model_says_what_to_set():
    component = gru_plugin.Gru(gru_plugin.GruOptions())
    with pytest.raises(ConfigError, match=r"gru: model_path is not set .* \[plugins.gru\]"):
        component.model_path()
