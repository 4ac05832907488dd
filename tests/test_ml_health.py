"""ML health (issue 17): rolling scores per contributor, the reliability against a reference saved
with the learning state, and the drift rule."""

from __future__ import annotations

import pytest

from mlcoord.learning import Outcome
from mlcoord.ml_health import DRIFT_ECE_THRESHOLD, DRIFT_MIN_OUTCOMES, MlHealth, ReliabilityCounts, drift
from mlcoord.model import Vote


def _outcome(p: float, hit: bool, confidence: float, direction: int = 1) -> Outcome:
    return Outcome("BTC/USDT", 0, 0, direction, 0.01 if hit else -0.01, hit, confidence, confidence,
                   (Vote("m", 1, 0.5, p_up=p, p_down=1 - p),))


def counts(pairs) -> ReliabilityCounts:
    c = ReliabilityCounts()
    for p, hit in pairs:
        c.add(p, hit)
    return c


def test_rolling_accuracy_and_log_loss_over_a_bounded_window():
    health = MlHealth(window=4)
    for p, hit in [(0.9, False)] * 3 + [(0.8, True)] * 4:      # the first three fall out of the window
        health.observe(_outcome(p, hit, 0.7))
    health.observe(_outcome(0.5, True, 0.7, direction=0))     # judged in no direction: skipped
    [row] = health.report({"m": -0.4}, ["m"], None)["components"]
    assert row == {"component": "m", "coefficient": -0.4, "outcomes": 4, "accuracy": 1.0,
                   "log_loss": pytest.approx(-__import__("math").log(0.8))}
    assert health.observed == 7


def test_the_drift_rule_needs_a_reference_enough_outcomes_and_an_ece_gap():
    reference = counts([(0.65, True), (0.65, False), (0.65, True)] * 10)       # ECE ~0.017
    few = counts([(0.95, False)] * (DRIFT_MIN_OUTCOMES - 1))
    assert drift(few, None)["state"] == "no reference"
    assert drift(few, reference)["state"] == "insufficient data"
    bad = counts([(0.95, False)] * DRIFT_MIN_OUTCOMES)
    found = drift(bad, reference)
    assert found["state"] == "alert" and found["difference"] > DRIFT_ECE_THRESHOLD
    assert drift(counts([(0.65, True), (0.65, False), (0.65, True)] * 20), reference)["state"] == "ok"


def test_a_reference_round_trips_and_a_malformed_one_names_its_field():
    c = counts([(0.15, False), (0.72, True)])
    again = ReliabilityCounts.from_dict(c.to_dict())
    assert again.rows() == c.rows() and again.ece() == c.ece()
    with pytest.raises(ValueError, match="calibration_reference.hits"):
        ReliabilityCounts.from_dict({**c.to_dict(), "hits": [0.0] * 9})
    with pytest.raises(ValueError, match="calibration_reference.count"):
        ReliabilityCounts.from_dict({**c.to_dict(), "count": [-1] + [0] * 9})


def test_a_backtest_saves_its_reliability_as_the_reference_with_the_learning_state(short_candles, tmp_path):
    from test_learning_state import learn_on

    learner, saved, _ = learn_on(short_candles, tmp_path / "state.json")
    reference = ReliabilityCounts.from_dict(saved["calibration_reference"])
    judged = [o for o in learner.outcomes if o.direction != 0]
    assert judged and reference.n == len(judged)
    assert reference.rows() == counts((o.confidence, o.hit) for o in judged).rows()
