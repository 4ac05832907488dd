"""The lstm plugin (and the shared machinery of mlcoord.sequence): learns a planted pattern, numpy
inference equals torch, batched equals one window, artifacts round-trip and are refused on
mismatch, causal (also when walking forward), deterministic, expires, never imports torch to vote."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import structlog

from mlcoord.candles import candles_from_frame
from mlcoord.components import build_market_data
from mlcoord.errors import ConfigError
from mlcoord.feature_matrix import FEATURES, feature_matrix, windows
from mlcoord.learning import EventSpec, auc, event_labels
from mlcoord.model import Action, Signal
from mlcoord.sequence import normalise, torch_model
from mlcoord_lstm import Lstm, LstmOptions
from mlcoord_lstm.net import LSTM, lstm_forward

SIGNAL = Signal(Action.BUY, 0.6)


def synthetic(n, seed=1, jump=0.025, rate=0.04, planted=True):
    """Random walk; a volume spike (dip) at bar t moves price up (down) by ``jump`` at bar t+12.

    Only ``volume_ratio`` knows about the coming move (past returns do not), and a linear read of
    the true events allows an AUC of ~0.77 for the 24-bar event at 0.2 %.
    """
    rng = np.random.default_rng(seed)
    kind = np.zeros(n)
    if planted:
        u = rng.random(n)
        kind[u < rate], kind[(u >= rate) & (u < 2 * rate)] = 1.0, -1.0
    r = rng.normal(0, 0.005, n)
    r[12:] += jump * kind[:-12]
    close = 100 * np.exp(np.cumsum(r))
    open_ = np.concatenate([[100], close[:-1]])
    frame = pd.DataFrame({
        "time": pd.date_range("2021-01-01", periods=n, freq="h", tz="UTC"), "open": open_,
        "high": np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.0025, n))),
        "low": np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.0025, n))),
        "close": close, "volume": 1000 * np.exp(rng.normal(0, 0.3, n) + np.log(4.0) * kind)})
    return build_market_data(candles_from_frame(frame, symbol="SYN/USDT", timeframe="1h"))


TINY = dict(window=16, hidden=4, epochs=2, stride=4, patience=1, target="event")   # the two-headed event model


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    data = synthetic(3000, seed=3)
    path = tmp_path_factory.mktemp("lstm") / "tiny.npz"
    report = Lstm(LstmOptions(**TINY)).train([data.head(2500)], path)   # the last 500 bars are unseen
    return data, path, report


def test_learns_planted_pattern(tmp_path):
    data = synthetic(60_000)
    k = 45_000
    opts = LstmOptions(hidden=8, epochs=8, stride=1, patience=8, lr=3e-3, target="event",
                       model_path=str(tmp_path / "m.npz"))
    report = Lstm(opts).train([data.head(k)], tmp_path / "m.npz")
    assert report["epochs_run"] >= 1 and report["seconds_per_epoch"] > 0
    up, down = event_labels(data.candles.close, data.event)
    idx = np.arange(k, len(data) - data.event.horizon)
    p = Lstm(opts).prepare(data).probabilities(idx)
    assert auc(up[idx], p[:, 0]) >= 0.60
    assert auc(down[idx], p[:, 1]) >= 0.60


def test_pure_noise_claims_no_confidence(tmp_path):
    data = synthetic(12_000, seed=5, planted=False)
    opts = LstmOptions(hidden=8, epochs=4, stride=2, lr=3e-3, target="event", model_path=str(tmp_path / "m.npz"))
    Lstm(opts).train([data.head(9000)], tmp_path / "m.npz")
    up, down = event_labels(data.candles.close, data.event)
    idx = np.arange(9000, len(data) - 24)
    p = Lstm(opts).prepare(data).probabilities(idx)
    assert p.max() < 0.7
    assert abs(p[:, 0].mean() - np.nanmean(up[:9000])) < 0.05
    assert abs(p[:, 1].mean() - np.nanmean(down[:9000])) < 0.05


def test_numpy_inference_matches_torch(tiny_model):
    import torch
    data, path, _ = tiny_model
    component = Lstm(LstmOptions(**TINY, model_path=str(path)))
    model = component.load_model(data.event)
    c = data.candles
    matrix = normalise(feature_matrix(c.open, c.high, c.low, c.close, c.volume), model.mean, model.std)
    x = windows(matrix, np.arange(500, 900), model.window)
    net = torch_model(LSTM, model.weights, len(FEATURES), component.fit_options())
    with torch.no_grad():
        expected = torch.sigmoid(net(torch.as_tensor(x))).numpy()
    np.testing.assert_allclose(lstm_forward(model.weights, x), expected, atol=1e-6, rtol=0)


def test_batched_equals_single_window_and_vote(tiny_model):
    data, path, _ = tiny_model
    opts = LstmOptions(**TINY, model_path=str(path))
    batched = Lstm(opts).prepare(data).probabilities()
    single = Lstm(opts).prepare(data)
    for i in (0, 5, 15, 16, 777, 1500, len(data) - 1):
        vote = single.vote(i, SIGNAL)
        single_p = single.component.load_model(data.event).predict(single.matrix, np.array([i]))[0][0]
        np.testing.assert_allclose(single_p, batched[i], atol=1e-6, rtol=0)
        np.testing.assert_allclose([vote.p_up, vote.p_down], batched[i], atol=1e-12)
        assert vote.action == (Action.BUY if vote.p_up >= vote.p_down else Action.SELL)
        assert vote.confidence == max(vote.p_up, vote.p_down)
        assert vote.reasons[0].startswith("LSTM(16 bars): P(up 0.2%/24 bars)=")


@pytest.mark.parametrize("kind", ["lstm", "attention"])
def test_a_bars_probabilities_do_not_depend_on_its_batch(kind):
    """Bit for bit: a live session asks about its newest bar alone, a backtest about thousands of
    bars at once; both must see the same numbers (regression: a single window took another BLAS
    path and differed in the last bit, which broke paper-backtest parity). The shipped models."""
    from mlcoord.backtest.run import bundled_path
    from mlcoord.candles import load_candles
    from mlcoord.components import build_market_data
    from mlcoord_attention import Attention, AttentionOptions

    c = load_candles(bundled_path("BTC/USDT"), symbol="BTC/USDT")
    data = build_market_data(c.slice(20000, 21500))
    component = Lstm(LstmOptions()) if kind == "lstm" else Attention(AttentionOptions())
    voter = component.prepare(data)
    model = component.load_model(data.event)
    bars = np.arange(1000, 1300)
    together = model.predict(voter.matrix, bars)[0]
    for k, i in enumerate(bars[::7]):
        for batch in ([i], [i, i + 1], [i, i + 1, i + 2]):
            alone = model.predict(voter.matrix, np.array(batch))[0][0]
            assert np.array_equal(alone, together[7 * k]), (kind, i, len(batch))


def test_artifact_round_trip(tiny_model, tmp_path):
    data, path, _ = tiny_model
    a = Lstm(LstmOptions(**TINY, model_path=str(path))).prepare(data).probabilities()
    # retrained with the same seed: identical weights, identical predictions
    Lstm(LstmOptions(**TINY)).train([data.head(2500)], tmp_path / "again.npz")
    b = Lstm(LstmOptions(**TINY, model_path=str(tmp_path / "again.npz"))).prepare(data).probabilities()
    np.testing.assert_array_equal(a, b)


def test_determinism_identical_weights(tiny_model, tmp_path):
    data, path, _ = tiny_model
    Lstm(LstmOptions(**TINY)).train([data.head(2500)], tmp_path / "b.npz")
    with np.load(path) as za, np.load(tmp_path / "b.npz") as zb:
        for key in za.files:
            if key.startswith("w.") or key.startswith("norm_"):
                np.testing.assert_array_equal(za[key], zb[key])


def test_mismatched_artifact_refused(tiny_model):
    data, path, _ = tiny_model
    other = build_market_data(data.candles, event=EventSpec(horizon=12))
    with pytest.raises(ConfigError, match="horizon 24"):
        Lstm(LstmOptions(**TINY, model_path=str(path))).prepare(other)
    with pytest.raises(ConfigError, match="hidden 4"):
        Lstm(LstmOptions(**{**TINY, "hidden": 5}, model_path=str(path))).prepare(data)


def test_causal_static_model(tiny_model):
    data, path, _ = tiny_model
    opts = LstmOptions(**TINY, model_path=str(path))
    full = Lstm(opts).prepare(data).probabilities()
    for k in (100, 1234, 2500):
        head = Lstm(opts).prepare(data.head(k))
        np.testing.assert_array_equal(head.probabilities(), full[:k])


def test_causal_walk_forward():
    data = synthetic(1400, seed=7)
    opts = LstmOptions(**TINY, retrain_every_bars=300, train_bars=600, min_train_bars=300)
    full = Lstm(opts).prepare(data)
    p_full = full.probabilities()
    assert np.isnan(p_full[:600]).all()           # too little labelled history before bar 600
    assert not np.isnan(p_full[600:]).any()
    assert len({id(m) for m in full.models}) == len(full.models) == 3
    k = 1000
    head = Lstm(opts).prepare(data.head(k))     # a fresh component: retrains on the head's data
    np.testing.assert_array_equal(head.probabilities(), p_full[:k])
    assert Lstm(opts).trained_until() is None


def test_expired_model_abstains_with_one_warning(tiny_model):
    data, path, _ = tiny_model
    component = Lstm(LstmOptions(**TINY, model_path=str(path), max_model_age_days=10))
    with structlog.testing.capture_logs() as logs:
        voter = component.prepare(data)
        component.prepare(data)
    expired = [e for e in logs if e["event"] == "ml_model_expired"]
    assert len(expired) == 1 and "mlcoord train --component lstm" in expired[0]["fix"]
    cutoff = component.trained_until() + 10 * 86_400 * 10**9
    last_ok = int(np.searchsorted(data.candles.time, cutoff, side="right")) - 1
    assert voter.vote(last_ok, SIGNAL) is not None
    assert voter.vote(last_ok + 1, SIGNAL) is None


def test_drift_warning_and_state_round_trip(tiny_model):
    from mlcoord.learning import Outcome
    from mlcoord.model import Vote
    data, path, _ = tiny_model
    component = Lstm(LstmOptions(**TINY, model_path=str(path), drift_window=20))
    vote = Vote("lstm", Action.BUY, 0.7, p_up=0.7, p_down=0.2)
    with structlog.testing.capture_logs() as logs:
        for i in range(40):
            component.learn(Outcome("SYN/USDT", i, 0, 1, -0.01, False, 0.7, 0.7, (vote,)))
    assert [e["event"] for e in logs].count("ml_model_drift") == 1
    state = component.state()
    other = Lstm(LstmOptions(**TINY, model_path=str(path), drift_window=20))
    other.load_state(state)
    assert other.state() == state and other.running_score.accuracy == 0.0


def test_shipped_model_votes_without_importing_torch():
    code = (
        "import sys\n"
        "from mlcoord.backtest.run import bundled_path\n"
        "from mlcoord.candles import load_candles\n"
        "from mlcoord.components import build_market_data\n"
        "from mlcoord.model import Action, Signal\n"
        "from mlcoord_lstm import Lstm, LstmOptions\n"
        "from mlcoord_attention import Attention, AttentionOptions\n"
        "c = load_candles(bundled_path('BTC/USDT'), symbol='BTC/USDT')\n"
        "data = build_market_data(c.slice(20000, 23000))\n"
        "for comp in (Lstm(LstmOptions()), Attention(AttentionOptions())):\n"
        "    v = comp.prepare(data).vote(2999, Signal(Action.BUY, 0.6))\n"
        "    assert v is not None and 0 <= v.confidence <= 1, v\n"
        "    print(v.reasons)\n"
        "assert 'torch' not in sys.modules\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "LSTM(48 bars)" in out.stdout and "attended:" in out.stdout


def test_training_without_a_finite_validation_loss_is_a_clear_error():
    """NaN features give NaN losses: no epoch is ever the best. It was a TypeError (None[:, 0])."""
    from mlcoord.errors import DataError
    from mlcoord.sequence import FitOptions, Series, fit

    n = 400
    labels = (np.arange(2 * n).reshape(n, 2) % 2).astype(float)
    series = Series(np.full((n, len(FEATURES)), np.nan), labels, np.arange(10, n))
    with pytest.raises(DataError, match="training lstm never reached a finite validation loss"):
        fit(LSTM, [series], FitOptions(window=4, hidden=2, epochs=2, batch_size=16, patience=1), horizon=1)
