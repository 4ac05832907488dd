"""The ``mtf`` multi-timeframe fusion: causality, agreement, real online learning, persistence."""

from __future__ import annotations

import json

import cattrs
import numpy as np
import pandas as pd
import pytest

from mlcoord.datasets import bundled_path
from mlcoord import Action
from mlcoord.candles import candles_from_frame, load_candles
from mlcoord.components import MLComponent, build_market_data
from mlcoord.learning import Outcome, auc
from mlcoord_mtf import MtfOptions, MtfVoter, MultiTimeframeFusion, register_ml_components

BTC = bundled_path("BTC/USDT")
HOUR = 3_600_000_000_000


def _candles(close, timeframe="1h", start="2021-01-04", symbol="SYN/USDT"):
    close = np.asarray(close, dtype=float)
    open_ = np.r_[close[0], close[:-1]]
    frame = pd.DataFrame({
        "time": pd.date_range(start, periods=len(close), freq=timeframe, tz="UTC"),
        "open": open_, "high": np.maximum(open_, close) * 1.002, "low": np.minimum(open_, close) * 0.998,
        "close": close, "volume": np.full(len(close), 100.0)})
    return candles_from_frame(frame, symbol=symbol, timeframe=timeframe)


@pytest.fixture(scope="module")
def btc():
    c = load_candles(BTC, symbol="BTC/USDT")
    return build_market_data(c.slice(20_000, 23_000), timeframes=("4h", "1d"))


def _outcome(voter, i, direction, hit):
    return Outcome(voter.symbol, i, int(voter.time[i]), direction, 0.0, bool(hit), 0.5, 0.5)


def _synthetic_voter(component, scores, labels=("1h", "4h", "1d")):
    time = np.arange(len(scores), dtype=np.int64) * HOUR
    voter = MtfVoter(component, "SYN/USDT", time, list(labels), np.asarray(scores, float), 24 * HOUR)
    component._series["SYN/USDT"] = voter     # as prepare() would, so learn() can find the bars
    return voter


def test_registers_as_ml_component():
    seen = {}
    register_ml_components(lambda name, factory, options=None, description="", **declared: seen.update(
        {name: (factory, options, description)}))
    factory, options, description = seen["mtf"]
    assert isinstance(factory(options()), MLComponent) and description
    assert cattrs.structure({"learning_rate": 0.05, "timeframes": ["1d"]}, MtfOptions).timeframes == ("1d",)
    with pytest.raises(ValueError):
        MtfOptions(learning_rate=0.0)


@pytest.mark.parametrize("k", [700, 1501, 2222])
def test_no_look_ahead_by_truncation(btc, k):
    full = MultiTimeframeFusion().prepare(btc)
    head = MultiTimeframeFusion().prepare(btc.head(k))
    np.testing.assert_array_equal(head.scores, full.scores[:k])
    for i in range(0, k, 37):
        assert head.vote(i, None) == full.vote(i, None)


def test_a_forming_4h_bar_is_never_used(btc):
    c = btc.candles
    hours = (c.time // HOUR) % 4
    i = int(np.flatnonzero(hours == 1)[300])         # second hour of a 4h bucket: bucket still forming
    end = i + 2                                       # last hour of that bucket: the 4h bar completes
    assert hours[end] == 3
    frame = pd.DataFrame({"time": c.time, "open": c.open, "high": c.high, "low": c.low,
                          "close": c.close, "volume": c.volume})
    for col in ("open", "high", "low", "close"):
        frame.loc[i + 1:end, col] = frame.loc[i + 1:end, col] * 1.25   # a violent move after bar i
    mutated = build_market_data(candles_from_frame(frame, symbol="BTC/USDT", timeframe="1h"), ("4h", "1d"))
    before, after = MultiTimeframeFusion().prepare(btc), MultiTimeframeFusion().prepare(mutated)
    col = before.labels.index("4h")
    np.testing.assert_array_equal(after.scores[: i + 1], before.scores[: i + 1])
    assert after.vote(i, None) == before.vote(i, None)
    # the same change is visible in the 4h view as soon as that 4h bar is complete: the test can fail
    assert after.scores[end, col] > before.scores[end, col] + 0.05


def test_missing_timeframes_use_what_is_available():
    rng = np.random.default_rng(3)
    c4 = _candles(100 * np.exp(np.cumsum(rng.normal(0, 0.01, 1500))), timeframe="4h")
    data = build_market_data(c4, timeframes=("4h", "1d"))      # 4h is the base: only 1d is higher
    voter = MultiTimeframeFusion().prepare(data)
    assert voter.labels == ["4h", "1d"]
    vote = voter.vote(1400, None)
    assert vote is not None and "4h" in vote.reasons[0] and "1d" in vote.reasons[0]
    assert MultiTimeframeFusion().prepare(build_market_data(c4)).labels == ["4h"]


def test_warm_up_abstains_then_votes_with_probabilities(btc):
    voter = MultiTimeframeFusion().prepare(btc)
    assert voter.vote(0, None) is None
    vote = voter.vote(2500, None)
    assert vote.p_up is not None and vote.p_down is not None
    assert vote.confidence == max(vote.p_up, vote.p_down)
    assert vote.action == (Action.BUY if vote.p_up >= vote.p_down else Action.SELL)
    assert "warm-up prior" in vote.reasons[1] and "agree" in vote.reasons[0]


def _agreement_stream(n, rng, informative=True):
    """Random views and directions; the hit probability rises with how many views agree with the
    direction (logit 2 * agreement: the true probabilities allow an AUC of about 0.75), or is a
    constant 0.45 (noise)."""
    scores = rng.uniform(-1, 1, size=(n, 3))
    direction = rng.choice([-1, 1], size=n)
    agreement = np.sign(scores * direction[:, None]).mean(axis=1)
    p = 1 / (1 + np.exp(-(2.0 * agreement - 0.2))) if informative else np.full(n, 0.45)
    hit = rng.random(n) < p
    return scores, direction, hit


def test_agreement_raises_confidence_and_conflict_lowers_it():
    scores = [[0.5, 0.4, 0.6], [0.5, -0.4, -0.6], [0.5, 0.4, -0.6]]
    prior = _synthetic_voter(MultiTimeframeFusion(), scores)
    agree, conflict, mixed = (prior.vote(i, None) for i in range(3))
    assert agree.action == Action.BUY and agree.p_up > mixed.p_up > conflict.p_up
    assert "3 of 3 agree (BUY)" in agree.reasons[0]
    # the same holds once the model has learnt from a stream where agreement pays
    component = MultiTimeframeFusion()
    rng = np.random.default_rng(11)
    s, d, hit = _agreement_stream(600, rng)
    voter = _synthetic_voter(component, np.vstack([s, scores]))
    for i in range(600):
        component.learn(_outcome(voter, i, int(d[i]), hit[i]))
    agree, conflict = voter.vote(600, None), voter.vote(601, None)
    assert "online logistic, 600 outcomes" in agree.reasons[1]
    assert agree.p_up > conflict.p_up + 0.05


def test_learns_a_planted_agreement_pattern_online():
    component = MultiTimeframeFusion()
    rng = np.random.default_rng(5)
    s, d, hit = _agreement_stream(1400, rng)
    voter = _synthetic_voter(component, s)
    for i in range(400):                              # a few hundred outcomes, through learn()
        voter.vote(i, None)
        component.learn(_outcome(voter, i, int(d[i]), hit[i]))
    probs = [(voter.vote(i, None).p_up if d[i] > 0 else voter.vote(i, None).p_down) for i in range(400, 1400)]
    assert auc(hit[400:], probs) > 0.7
    assert component.fusion.outcomes == 400


def test_no_high_confidence_on_noise():
    component = MultiTimeframeFusion()
    rng = np.random.default_rng(7)
    s, d, hit = _agreement_stream(3000, rng, informative=False)
    voter = _synthetic_voter(component, s)
    for i in range(2000):
        component.learn(_outcome(voter, i, int(d[i]), hit[i]))
    confidence = [voter.vote(i, None).confidence for i in range(2000, 3000)]
    assert max(confidence) < 0.7


def test_state_round_trip_gives_identical_predictions(btc):
    rng = np.random.default_rng(2)
    component = MultiTimeframeFusion()
    voter = component.prepare(btc)
    for i in range(300, 1500, 3):
        component.learn(_outcome(voter, i, int(rng.choice([-1, 1])), rng.random() < 0.5))
    state = json.loads(json.dumps(component.state()))
    restored = MultiTimeframeFusion()
    restored.load_state(state)
    again = restored.prepare(btc)
    for i in range(1500, 3000, 29):
        assert again.vote(i, None) == voter.vote(i, None)
    assert restored.trained_until() == component.trained_until() == int(btc.candles.time[1497]) + 24 * HOUR
    with pytest.raises(ValueError):
        restored.load_state({**state, "version": 99})


def test_learning_is_deterministic(btc):
    states = []
    for _ in range(2):
        component = MultiTimeframeFusion()
        voter = component.prepare(btc)
        for i in range(300, 2000, 7):
            component.learn(_outcome(voter, i, 1 if i % 3 else -1, i % 5 < 2))
        states.append(json.dumps(component.state(), sort_keys=True))
    assert states[0] == states[1]
