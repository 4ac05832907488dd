"""Honest weights on display (issue 16): a decision shows each contributor's signed ensemble
coefficient and its contribution to the log-odds, and says when a contributor is faded; the old
"weight" (share of absolute coefficients) showed a coefficient of -0.227 as "weight 0.377"."""

from __future__ import annotations

import math

import pytest

from mlcoord.coordinator import Coordinator
from mlcoord.ensemble import EnsembleOptions
from mlcoord.journal import decision_to_dict, render_decision
from mlcoord.model import Action, Decision, Signal, Vote

COEFFICIENTS = {"technical": -0.227, "lstm": 0.25, "mtf": 0.125}


def logit(p):
    return math.log(p / (1 - p))


def coordinator(intercept=0.05, **options):
    c = Coordinator({"technical": 0.3, "lstm": 0.25, "mtf": 0.2}, EnsembleOptions(**options))
    c.ensemble(list(COEFFICIENTS)).load_state({"weights": COEFFICIENTS, "intercept": intercept})
    return c


def ml_votes(p_up_lstm=0.58, p_up_mtf=0.55):
    return [Vote("lstm", Action.BUY, p_up_lstm, p_up=p_up_lstm, p_down=1 - p_up_lstm),
            Vote("mtf", Action.BUY, p_up_mtf, p_up=p_up_mtf, p_down=1 - p_up_mtf)]


def test_a_faded_contributor_shows_its_negative_coefficient_and_the_sum_is_the_log_odds():
    technical = Signal(Action.BUY, 0.7, ("RSI oversold",), "technical")
    combined = coordinator().combine(technical, ml_votes(), signal_name="technical")
    tech, lstm, mtf = combined.votes
    assert combined.signal.action == Action.BUY
    assert (tech.coefficient, tech.faded) == (-0.227, True) and not lstm.faded and not mtf.faded
    assert tech.weight == pytest.approx(0.227 / 0.602, abs=1e-6)     # the old display: positive, hides the fade
    assert tech.contribution == pytest.approx(-0.227 * logit(0.7), abs=1e-6)
    assert lstm.contribution == pytest.approx(0.25 * logit(0.58), abs=1e-6)
    total = 0.05 + sum(v.contribution for v in combined.votes)
    assert total == pytest.approx(logit(combined.raw_confidence), abs=1e-5)
    assert combined.signal.reasons[1].startswith(f"ensemble log-odds of BUY {total:+.3f} = intercept +0.050")
    assert "faded (negative coefficient): technical" in combined.signal.reasons[1]
    decision = Decision(time=0, symbol="BTC/USDT", signal=combined.signal, technical=technical, votes=combined.votes,
                        raw_confidence=combined.raw_confidence, confidence=combined.confidence, threshold=0.55,
                        outcome="entered")
    event = decision_to_dict(decision)
    assert event["votes"][0]["coefficient"] == -0.227 and event["votes"][0]["faded"] is True
    block = render_decision(event).splitlines()
    assert "(conf: 70%, coef -0.227 (faded), contribution" in block[1]
    assert "(conf: 58%, coef +0.250, contribution +0.081)" in block[2]
    assert block[4].startswith("🧮 ensemble confirmed technical BUY") and "intercept +0.050" in block[4]


def test_a_flipped_signal_is_explained_in_the_direction_it_trades():
    technical = Signal(Action.BUY, 0.8, ("MACD cross",), "technical")
    combined = coordinator(intercept=0.0).combine(technical, ml_votes(0.2, 0.3), signal_name="technical")
    assert combined.signal.action == Action.SELL                    # the ensemble flipped it
    total = sum(v.contribution for v in combined.votes)
    assert total == pytest.approx(logit(combined.raw_confidence), abs=1e-5)
    assert combined.votes[0].contribution == pytest.approx(-0.227 * logit(0.2), abs=1e-6)   # P(down) of technical


def test_without_an_ensemble_there_is_no_coefficient_to_show():
    technical = Signal(Action.BUY, 0.7, ("RSI oversold",), "technical")
    combined = Coordinator({"technical": 0.3}).combine(technical, [], signal_name="technical")
    [vote] = combined.votes
    assert vote.coefficient is None and vote.contribution is None and not vote.faded
    event = decision_to_dict(Decision(0, "X", combined.signal, technical, combined.votes, 0.7, 0.7, 0.55, "entered"))
    assert "coefficient" not in event["votes"][0]
    assert "(conf: 70%, weight 1.00)" in render_decision(event)
