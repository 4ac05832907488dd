"""Sequence models with the direction as an input (issue 16): one network predicts P(this trade
wins) for both sides from side-aligned windows; early stopping honours ``min_epochs``; artifacts
of the other target are refused; the drift score reads the trade label."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlcoord.candles import candles_from_frame
from mlcoord.components import build_market_data

from mlcoord.errors import ConfigError
from mlcoord.feature_matrix import DIRECTIONAL, FEATURES, feature_matrix, windows
from mlcoord.learning import Outcome, TradeLabel, auc
from mlcoord.model import Action, Signal, Vote
from mlcoord.sequence import FitOptions, Series, fit, normalise, torch_model
from mlcoord.sequence.sided import INPUTS, Barriers, align, sided_norm_stats, trade_label_matrix
from mlcoord_attention import Attention, AttentionOptions
from mlcoord_attention.net import ATTENTION
from mlcoord_lstm import Lstm, LstmOptions
from mlcoord_lstm.net import LSTM
from test_lstm import synthetic   # the planted volume-spike generator

TINY = dict(window=8, hidden=4, epochs=2, stride=4, patience=1)
FLIP = np.array([f in DIRECTIONAL for f in FEATURES])


@pytest.fixture(scope="module")
def data():
    return synthetic(3000, seed=3)


@pytest.fixture(scope="module", params=["lstm", "attention"])
def tiny(request, data, tmp_path_factory):
    cls, opts = (Lstm, LstmOptions) if request.param == "lstm" else (Attention, AttentionOptions)
    path = tmp_path_factory.mktemp("sided") / f"{request.param}.npz"
    report = cls(opts(**TINY)).train([data.head(2500)], path)
    return cls, opts, path, report


def test_align_flips_directional_features_and_appends_the_side():
    x = np.random.default_rng(0).normal(size=(3, 5, len(FEATURES)))
    out = align(x, np.array([1.0, -1.0, 1.0]))
    assert out.shape == (3, 5, len(FEATURES) + 1) and INPUTS[-1] == "side"
    np.testing.assert_array_equal(out[0, :, :-1], x[0])
    np.testing.assert_array_equal(out[1, :, :-1][:, FLIP], -x[1][:, FLIP])
    np.testing.assert_array_equal(out[1, :, :-1][:, ~FLIP], x[1][:, ~FLIP])
    assert (out[1, :, -1] == -1).all() and (out[2, :, -1] == 1).all()


def test_normalising_commutes_with_flipping_the_side(data):
    """Directional columns keep mean 0: a short's view of a bar is exactly the long's, mirrored."""
    c = data.candles
    m = np.asarray(feature_matrix(c.open, c.high, c.low, c.close, c.volume), dtype=np.float64)
    mean, std = sided_norm_stats(m)
    mirrored = np.where(FLIP, -m, m)
    a = normalise(mirrored, mean, std)
    b = normalise(m, mean, std)
    np.testing.assert_allclose(a[:, FLIP], -b[:, FLIP], atol=1e-12)


def momentum(n, seed=1, rate=0.04, cue=0.015, jump=0.04):
    """Random walk; a ``cue`` move up (down) at bar t is followed by a ``jump`` up (down) at bar
    t + 12: only the *aligned* past return knows which side wins."""
    rng = np.random.default_rng(seed)
    u = rng.random(n)
    kind = np.where(u < rate, 1.0, np.where(u < 2 * rate, -1.0, 0.0))
    r = rng.normal(0, 0.005, n) + cue * kind
    r[12:] += jump * kind[:-12]
    close = 100 * np.exp(np.cumsum(r))
    open_ = np.concatenate([[100], close[:-1]])
    frame = pd.DataFrame({
        "time": pd.date_range("2021-01-01", periods=n, freq="h", tz="UTC"), "open": open_,
        "high": np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.0025, n))),
        "low": np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.0025, n))),
        "close": close, "volume": 1000 * np.exp(rng.normal(0, 0.3, n))})
    return build_market_data(candles_from_frame(frame, symbol="SYN/USDT", timeframe="1h"))


def test_one_model_learns_both_sides_of_a_planted_pattern(tmp_path):
    """A cue move up (down) precedes a jump up (down): longs after up-cues and shorts after
    down-cues win. One sided model ranks both sides' trade labels out of sample from the same
    weights (the short side sees the cue mirrored)."""
    data = momentum(16_000)
    k = 12_000
    opts = AttentionOptions(window=16, hidden=8, epochs=8, stride=1, patience=8, lr=3e-3,
                            model_path=str(tmp_path / "m.npz"))
    Attention(opts).train([data.head(k)], tmp_path / "m.npz")
    labels = trade_label_matrix(data.candles, len(data) - 1, data.event.horizon, Barriers())
    idx = np.arange(k, len(data) - data.event.horizon)
    p = Attention(opts).prepare(data).probabilities(idx)
    assert auc(labels[idx, 0], p[:, 0]) >= 0.60
    assert auc(labels[idx, 1], p[:, 1]) >= 0.60


def test_sided_numpy_inference_matches_torch(tiny, data):
    import torch
    cls, opts, path, _ = tiny
    component = cls(opts(**TINY, model_path=str(path)))
    model = component.load_model(data.event)
    assert model.sided and component.model_inputs() == INPUTS
    c = data.candles
    matrix = feature_matrix(c.open, c.high, c.low, c.close, c.volume)
    bars = np.arange(500, 700)
    x = windows(normalise(matrix, model.mean, model.std), bars, model.window)
    family = LSTM if cls is Lstm else ATTENTION
    net = torch_model(family, model.weights, len(INPUTS), component.fit_options())
    p = model.predict(matrix, bars)[0]
    for col, side in ((0, 1.0), (1, -1.0)):
        with torch.no_grad():
            expected = torch.sigmoid(net(torch.as_tensor(align(x, np.full(len(bars), side))))).numpy()[:, 0]
        np.testing.assert_allclose(p[:, col], expected, atol=1e-6, rtol=0)


def test_votes_name_the_trade_and_attention_may_attend_to_the_side(tiny, data):
    cls, opts, path, _ = tiny
    voter = cls(opts(**TINY, model_path=str(path))).prepare(data)
    vote = voter.vote(2800, Signal(Action.BUY, 0.6))
    assert " bars): P(long wins)=" in vote.reasons[0] and "P(short wins)=" in vote.reasons[0]
    assert vote.action == (Action.BUY if vote.p_up >= vote.p_down else Action.SELL)
    if cls is Attention:
        assert voter.extra.shape[1] == len(INPUTS)
        named = vote.reasons[1].removeprefix("attended: ").split(", ")
        assert all(part.split(" ")[0] in INPUTS for part in named)


def test_an_artifact_of_the_other_target_is_refused(tiny, data):
    cls, opts, path, _ = tiny
    with pytest.raises(ConfigError, match="target 'trade_label' \\(running config: 'event'\\)"):
        cls(opts(**TINY, target="event", model_path=str(path))).prepare(data)
    with pytest.raises(ConfigError, match="stop_atr 2.0 \\(running config: 3.0\\)"):
        cls(opts(**TINY, stop_atr=3.0, model_path=str(path))).prepare(data)


def test_bad_target_is_named():
    with pytest.raises(ValueError, match="'target' must be in"):
        LstmOptions(target="move")


def test_early_stopping_runs_at_least_min_epochs():
    """patience=1 on noise stops after 2 epochs at the latest; ``min_epochs`` keeps training on
    (the best epoch is still chosen on the validation loss alone)."""
    rng = np.random.default_rng(0)
    n = 1500
    matrix = rng.normal(size=(n, len(FEATURES))).astype(np.float32)
    labels = (rng.random((n, 2)) < 0.4).astype(float)
    series = [Series(matrix, labels, np.arange(10, n - 5))]
    base = dict(window=4, hidden=4, epochs=12, batch_size=32, patience=1, lr=0.05, sided=True, outputs=1)
    early = fit(LSTM, series, FitOptions(**base), horizon=5)[3]
    late = fit(LSTM, series, FitOptions(**base, min_epochs=8), horizon=5)[3]
    assert early["epochs_run"] < 8 <= late["epochs_run"]
    assert len(late["val_losses"]) == late["epochs_run"]
    assert late["val_losses"][late["best_epoch"] - 1] == pytest.approx(late["best_val_log_loss"], abs=1e-6)


def test_walk_forward_trade_labels_are_causal():
    data = synthetic(1400, seed=7)
    opts = AttentionOptions(**TINY, retrain_every_bars=300, train_bars=600, min_train_bars=300)
    full = Attention(opts).prepare(data).probabilities()
    assert not np.isnan(full[600:]).any()
    k = 1000
    np.testing.assert_array_equal(Attention(opts).prepare(data.head(k)).probabilities(), full[:k])


def test_trade_label_matrix_uses_only_bars_up_to_the_cut(data):
    full = trade_label_matrix(data.candles, len(data) - 1, 24, Barriers())
    cut = 1500
    head = trade_label_matrix(data.candles, cut, 24, Barriers())
    known = np.isfinite(head)
    assert known[30:cut - 24].all() and not known[cut:].any()    # ATR(14) warms up first
    np.testing.assert_array_equal(head[known], full[:cut + 1][known])


def test_the_drift_score_reads_the_trade_label(tiny):
    cls, opts, path, _ = tiny
    component = cls(opts(**TINY, model_path=str(path), drift_window=5))
    vote = Vote(component.name, Action.BUY, 0.7, p_up=0.7, p_down=0.2)
    lost = TradeLabel(1, False, -0.01, "stop", 30, 99.0, 102.0)
    for i in range(5):   # the move event hit, the trade lost: a miss for P(long wins) = 0.7
        component.learn(Outcome("SYN/USDT", i, 0, 1, 0.01, True, 0.7, 0.7, (vote,), lost, None))
    assert component.running_score.accuracy == 0.0
    component.learn(Outcome("SYN/USDT", 9, 0, 1, 0.01, True, 0.7, 0.7, (vote,), None, None))   # unresolved
    assert component.running_score.n == 5
