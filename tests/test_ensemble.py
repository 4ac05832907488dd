"""The River ensemble and the coordinator: weights follow outcomes, keep forgetting, persist."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mlcoord.coordinator import Coordinator
from mlcoord.ensemble import Ensemble, EnsembleOptions
from mlcoord.model import Action, Signal, Vote

THRESHOLD = 0.002


def stream(rng, n, informative):
    """Votes of two components, ``informative`` knows the outcome (AUC ~0.8), the other is noise."""
    for _ in range(n):
        up = rng.random() < 0.5
        fr = 0.01 if up else -0.01
        good = np.clip((0.7 if up else 0.3) + rng.normal(0, 0.12), 0.01, 0.99)
        noise = rng.uniform(0.2, 0.8)
        p = {informative: good, ({"a", "b"} - {informative}).pop(): noise}
        votes = [Vote(name, Action.BUY if q >= 0.5 else Action.SELL, max(q, 1 - q), p_up=q, p_down=1 - q)
                 for name, q in sorted(p.items())]
        yield votes, fr


def test_weight_moves_to_the_informative_component_and_recovers_after_a_regime_change():
    rng = np.random.default_rng(0)
    ens = Ensemble({"a": 0.5, "b": 0.5}, EnsembleOptions(learning_rate=0.05))
    start = ens.weights(["a", "b"])
    assert start["a"] == pytest.approx(0.5)
    for votes, fr in stream(rng, 1500, informative="a"):
        ens.learn(votes, fr, THRESHOLD)
    after_a = ens.weights(["a", "b"])
    assert after_a["a"] > 0.75, after_a
    for votes, fr in stream(rng, 1500, informative="b"):     # planted regime change
        ens.learn(votes, fr, THRESHOLD)
    after_b = ens.weights(["a", "b"])
    assert after_b["b"] > 0.75, after_b                      # it kept forgetting


def test_without_adaptation_weights_stay_put():
    rng = np.random.default_rng(1)
    ens = Ensemble({"a": 0.3, "b": 0.7}, EnsembleOptions(adapt=False))
    for votes, fr in stream(rng, 300, informative="a"):
        ens.learn(votes, fr, THRESHOLD)
    assert ens.weights(["a", "b"]) == pytest.approx({"a": 0.3, "b": 0.7})


def test_starting_point_is_the_weighted_log_odds_pool():
    ens = Ensemble({"technical": 0.3, "lstm": 0.25, "mtf": 0.2, "rl_selector": 0.15, "attention": 0.1})
    votes = [Vote(n, Action.BUY, 0.7, p_up=0.7, p_down=0.3) for n in ("technical", "lstm", "mtf")]
    # equal inputs of 0.7 from components holding 75 % of the weight: logit pooled = 0.75 * logit(0.7)
    expected = 1 / (1 + np.exp(-0.75 * np.log(0.7 / 0.3)))
    assert ens.predict(votes, 1) == pytest.approx(expected, abs=1e-9)


def test_state_round_trip_gives_identical_predictions():
    rng = np.random.default_rng(2)
    ens = Ensemble({"a": 0.5, "b": 0.5})
    data = list(stream(rng, 400, informative="a"))
    for votes, fr in data[:300]:
        ens.learn(votes, fr, THRESHOLD)
    state = json.loads(json.dumps(ens.state()))
    clone = Ensemble({"a": 0.5, "b": 0.5})
    clone.load_state(state)
    for votes, _ in data[300:]:
        assert clone.predict(votes, 1) == pytest.approx(ens.predict(votes, 1), abs=1e-12)
    assert clone.score_table() == ens.score_table()


def signal(action=Action.BUY, conf=0.7):
    return Signal(action, conf, ("technical reason",), "technical")


def test_no_ml_vote_passes_the_technical_signal_through_unchanged():
    combined = Coordinator({"technical": 0.3}).combine(signal(), [])
    assert combined.signal == signal()
    assert combined.raw_confidence == 0.7 and combined.p_signal is None


def test_ml_votes_can_confirm_flip_and_veto():
    coord = Coordinator({"technical": 0.3, "lstm": 0.7})
    confirm = coord.combine(signal(), [Vote("lstm", Action.BUY, 0.8, p_up=0.8, p_down=0.1)], signal_name="technical")
    assert confirm.signal.action == Action.BUY and confirm.raw_confidence > 0.6
    flip = coord.combine(signal(conf=0.55), [Vote("lstm", Action.SELL, 0.95, p_up=0.02, p_down=0.95)],
                         signal_name="technical")
    assert flip.signal.action == Action.SELL and "flipped" in flip.signal.reasons[0]
    veto = coord.combine(signal(conf=0.55), [Vote("lstm", Action.BUY, 0.5, p_up=0.05, p_down=0.3)],
                         signal_name="technical")
    assert veto.signal.action == Action.HOLD and "vetoed" in veto.signal.reasons[0]
    assert [v.component for v in veto.votes] == ["technical", "lstm"]
    assert sum(v.weight for v in veto.votes) == pytest.approx(1.0)


def _label(side, win):
    from mlcoord.learning import TradeLabel
    return TradeLabel(side, win, 0.01 if win else -0.01, "time", 0, 0.0, None)


def test_trade_label_target_learns_the_trade_outcome_not_the_move():
    """Component "a" knows whether the trade wins, "b" knows the 24-bar move; the two disagree. An
    ensemble with target = "trade_label" must move weight to "a", the event ensemble to "b"."""
    rng = np.random.default_rng(5)
    by_trade = Ensemble({"a": 0.5, "b": 0.5}, EnsembleOptions(learning_rate=0.05, target="trade_label"))
    by_event = Ensemble({"a": 0.5, "b": 0.5}, EnsembleOptions(learning_rate=0.05))
    for _ in range(1500):
        up = rng.random() < 0.5                  # the move
        long_wins = rng.random() < 0.5           # the trade label, independent of the move
        fr = 0.01 if up else -0.01
        qa = float(np.clip((0.75 if long_wins else 0.25) + rng.normal(0, 0.1), 0.01, 0.99))
        qb = float(np.clip((0.75 if up else 0.25) + rng.normal(0, 0.1), 0.01, 0.99))
        votes = [Vote("a", Action.BUY, qa, p_up=qa, p_down=1 - qa), Vote("b", Action.BUY, qb, p_up=qb, p_down=1 - qb)]
        labels = (_label(1, long_wins), _label(-1, not long_wins))
        by_trade.learn(votes, fr, THRESHOLD, labels)
        by_event.learn(votes, fr, THRESHOLD, labels)
    assert by_trade.weights(["a", "b"])["a"] > 0.75
    assert by_event.weights(["a", "b"])["b"] > 0.75


def test_trade_label_target_skips_a_side_without_a_label():
    ens = Ensemble({"a": 0.5, "b": 0.5}, EnsembleOptions(target="trade_label"))
    votes = [Vote("a", Action.BUY, 0.7, p_up=0.7, p_down=0.3), Vote("b", Action.BUY, 0.6, p_up=0.6, p_down=0.4)]
    before = dict(ens.model.weights)
    ens.learn(votes, 0.05, THRESHOLD, (None, None))      # no exit levels: nothing to learn
    assert dict(ens.model.weights) == before and "a" not in ens.scores
    ens.learn(votes, 0.05, THRESHOLD, (_label(1, True), None))
    assert ens.scores["a"].n == 1                         # the long side only


def test_a_state_learnt_on_another_target_is_refused_naming_both():
    event = Ensemble({"a": 0.5, "b": 0.5})
    state = json.loads(json.dumps(event.state()))
    trade = Ensemble({"a": 0.5, "b": 0.5}, EnsembleOptions(target="trade_label"))
    with pytest.raises(ValueError, match="'event'.*'trade_label'"):
        trade.load_state(state)
    del state["target"]                                   # a state written before the option: the event
    with pytest.raises(ValueError, match="'event'"):
        trade.load_state(state)
    Ensemble({"a": 0.5, "b": 0.5}).load_state(state)


def test_an_unknown_target_is_refused_naming_it():
    with pytest.raises(ValueError, match="target.*'trades'"):
        EnsembleOptions(target="trades")
