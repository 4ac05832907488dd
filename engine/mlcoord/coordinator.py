"""The ML coordinator: combines the technical vote and ML votes into one signal.

With no ML component the technical signal passes through unchanged (only calibration, if a
calibrator runs, changes its confidence). With ML votes the signal is a weighted vote: the
direction is the sign of ``sum(weight * direction * confidence)``; the raw confidence is the
weighted confidence of the votes that agree with it over the total weight, so disagreement
lowers it; a net score within ``veto_margin`` of zero vetoes the signal to HOLD.
"""

from __future__ import annotations

import re
from typing import Mapping, Optional, Sequence

import attrs

from mlcoord.model import Action, Signal, Vote

TECHNICAL = "technical"


@attrs.frozen
class Combined:
    signal: Signal
    votes: tuple[Vote, ...]
    raw_confidence: float
    confidence: float


class Coordinator:
    """Weights votes; the weights start from config (``[pipeline] weights``)."""

    def __init__(self, weights: Mapping[str, float], veto_margin: float = 0.05):
        self.weights = dict(weights)
        self.veto_margin = veto_margin

    def weight(self, component: str) -> float:
        return self.weights.get(component, self.weights.get(TECHNICAL, 1.0) if component == TECHNICAL else 0.1)

    def combine(self, technical: Signal, ml_votes: Sequence[Vote],
                calibrate=None) -> Combined:
        tech_vote = Vote(TECHNICAL, technical.action, technical.confidence, self.weight(TECHNICAL), technical.reasons)
        if not ml_votes:
            raw = technical.confidence
            final = technical
            votes = (tech_vote,)
        else:
            votes = (tech_vote,) + tuple(attrs.evolve(v, weight=self.weight(v.component)) for v in ml_votes)
            total = sum(v.weight for v in votes) or 1.0
            score = sum(v.weight * int(v.action) * v.confidence for v in votes) / total
            if abs(score) < self.veto_margin:
                action = Action.HOLD
                raw = 0.0
            else:
                action = Action.BUY if score > 0 else Action.SELL
                raw = sum(v.weight * v.confidence for v in votes if v.action == action) / total
            reasons = technical.reasons if action == technical.action else (
                f"ensemble {'vetoed' if action == Action.HOLD else 'flipped'} technical {technical.action.name} "
                f"(net score {score:+.3f})",) + technical.reasons
            final = Signal(action, min(max(raw, 0.0), 1.0), reasons, "coordinator")
        confidence = final.confidence
        if calibrate is not None and final.action != Action.HOLD:
            confidence = calibrate(final.confidence, final)
        if confidence != final.confidence:
            final = attrs.evolve(final, confidence=confidence)
        return Combined(final, votes, raw, confidence)


_NUMBERS = re.compile(r"\[[^\]]*\]|\([^)]*\)|(?<![A-Za-z])[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?%?x?")


def decisive_reason(signal: Optional[Signal]) -> str:
    """The reason a trade is attributed to in breakdowns: the headline (first) reason with its
    numbers removed, so "RSI 27.1 oversold (<30) [+1.2]" and "RSI 24.0 oversold" group together."""
    if signal is None or not signal.reasons:
        return "unspecified"
    return " ".join(_NUMBERS.sub("", signal.reasons[0]).split()) or signal.reasons[0]
