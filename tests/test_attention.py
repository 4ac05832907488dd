"""The attention plugin: learns the planted pattern and attends to the planted feature, numpy
inference equals torch, batched equals one window, reasons name the top-3 features, artifacts
are checked, causal. (Machinery shared with lstm is covered in test_lstm.py.)"""

from __future__ import annotations

import numpy as np
import pytest

from mlcoord.components import build_market_data
from mlcoord.errors import ConfigError
from mlcoord.feature_matrix import FEATURES, feature_matrix, windows
from mlcoord.learning import EventSpec, auc, event_labels
from mlcoord.model import Action, Signal
from mlcoord.sequence import normalise, torch_model
from mlcoord_attention import Attention, AttentionOptions
from mlcoord_attention.net import ATTENTION, attention_forward
from test_lstm import synthetic   # the planted volume-spike generator

SIGNAL = Signal(Action.SELL, 0.6)
TINY = dict(window=8, hidden=4, epochs=2, stride=4, patience=1, target="event")   # the two-headed event model


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    data = synthetic(3000, seed=3)
    path = tmp_path_factory.mktemp("attention") / "tiny.npz"
    Attention(AttentionOptions(**TINY)).train([data.head(2500)], path)
    return data, path


def test_learns_planted_pattern_and_attends_to_it(tmp_path):
    data = synthetic(40_000)
    k = 30_000
    opts = AttentionOptions(hidden=8, epochs=10, stride=1, patience=10, lr=3e-3, target="event",
                            model_path=str(tmp_path / "m.npz"))
    Attention(opts).train([data.head(k)], tmp_path / "m.npz")
    up, down = event_labels(data.candles.close, data.event)
    idx = np.arange(k, len(data) - data.event.horizon)
    voter = Attention(opts).prepare(data)
    p = voter.probabilities(idx)
    assert auc(up[idx], p[:, 0]) >= 0.60
    assert auc(down[idx], p[:, 1]) >= 0.60
    top = np.argmax(voter.extra[idx], axis=1)
    assert np.mean(top == FEATURES.index("volume_ratio")) >= 0.8
    vote = voter.vote(int(idx[0]), SIGNAL)
    assert vote.reasons[1].startswith("attended: volume_ratio ")


def test_pure_noise_claims_no_confidence(tmp_path):
    data = synthetic(12_000, seed=5, planted=False)
    opts = AttentionOptions(hidden=8, epochs=4, stride=2, lr=3e-3, target="event", model_path=str(tmp_path / "m.npz"))
    Attention(opts).train([data.head(9000)], tmp_path / "m.npz")
    up, down = event_labels(data.candles.close, data.event)
    p = Attention(opts).prepare(data).probabilities(np.arange(9000, len(data) - 24))
    assert p.max() < 0.7
    assert abs(p[:, 0].mean() - np.nanmean(up[:9000])) < 0.05
    assert abs(p[:, 1].mean() - np.nanmean(down[:9000])) < 0.05


def test_numpy_inference_matches_torch(tiny_model):
    import torch
    data, path = tiny_model
    component = Attention(AttentionOptions(**TINY, model_path=str(path)))
    model = component.load_model(data.event)
    c = data.candles
    matrix = normalise(feature_matrix(c.open, c.high, c.low, c.close, c.volume), model.mean, model.std)
    x = windows(matrix, np.arange(300, 700), model.window)
    net = torch_model(ATTENTION, model.weights, len(FEATURES), component.fit_options())
    with torch.no_grad():
        logits, attn = net.attend(torch.as_tensor(x))
    probs, weights = attention_forward(model.weights, x)
    np.testing.assert_allclose(probs, torch.sigmoid(logits).numpy(), atol=1e-6, rtol=0)
    np.testing.assert_allclose(weights, attn.numpy(), atol=1e-6, rtol=0)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-12)


def test_batched_equals_single_window_and_reasons(tiny_model):
    data, path = tiny_model
    opts = AttentionOptions(**TINY, model_path=str(path))
    batched = Attention(opts).prepare(data)
    p = batched.probabilities()
    single = Attention(opts).prepare(data)
    for i in (0, 7, 8, 999, len(data) - 1):
        vote = single.vote(i, SIGNAL)
        np.testing.assert_allclose([vote.p_up, vote.p_down], p[i], atol=1e-6, rtol=0)
        np.testing.assert_allclose(single.extra[i], batched.extra[i], atol=1e-6, rtol=0)
        top = np.argsort(-batched.extra[i])[:3]
        assert vote.reasons[0].startswith("Attention(8 bars): P(up 0.2%/24 bars)=")
        assert vote.reasons[1] == "attended: " + ", ".join(f"{FEATURES[k]} {batched.extra[i][k]:.2f}" for k in top)


def test_mismatched_artifact_refused(tiny_model, tmp_path):
    data, path = tiny_model
    other = build_market_data(data.candles, event=EventSpec(threshold=0.005))
    with pytest.raises(ConfigError, match="threshold 0.002"):
        Attention(AttentionOptions(**TINY, model_path=str(path))).prepare(other)
    with pytest.raises(ConfigError, match="window 8"):
        Attention(AttentionOptions(**{**TINY, "window": 12}, model_path=str(path))).prepare(data)
    from mlcoord_lstm import Lstm, LstmOptions   # an lstm artifact is not an attention model
    Lstm(LstmOptions(window=8, hidden=4, epochs=1, stride=8)).train([data.head(2500)], tmp_path / "l.npz")
    with pytest.raises(ConfigError, match="kind 'lstm'"):
        Attention(AttentionOptions(**TINY, model_path=str(tmp_path / "l.npz"))).prepare(data)


def test_causal(tiny_model):
    data, path = tiny_model
    opts = AttentionOptions(**TINY, model_path=str(path))
    full = Attention(opts).prepare(data)
    p = full.probabilities()
    for k in (50, 1700):
        head = Attention(opts).prepare(data.head(k))
        np.testing.assert_array_equal(head.probabilities(), p[:k])
        np.testing.assert_array_equal(head.extra[:k], full.extra[:k])


def test_causal_walk_forward():
    data = synthetic(1300, seed=9)
    opts = AttentionOptions(**{**TINY, "stride": 2}, retrain_every_bars=250, train_bars=500, min_train_bars=300)
    p = Attention(opts).prepare(data).probabilities()
    head = Attention(opts).prepare(data.head(900)).probabilities()
    np.testing.assert_array_equal(head, p[:900])
    assert np.isnan(p[:750]).all() and not np.isnan(p[750:]).any()   # block 500 has < 300 labelled bars
