"""The ML coordinator: combines the technical vote and the ML votes into one signal.

With no ML vote the technical signal passes through unchanged (only a calibrator, if one runs,
changes its confidence). With ML votes the :class:`~mlcoord.ensemble.Ensemble` gives the
probability of the learning event in the signal's direction and in the opposite one; the
coordinator keeps the signal, flips it (the opposite is more likely by ``flip_margin`` and above
one half) or vetoes it to HOLD (the signal's direction is below ``veto_probability``), then the
calibrator maps the raw probability. Every step is recorded in the decision.
"""

from __future__ import annotations

import re
from typing import Mapping, Optional, Sequence

import attrs

from mlcoord.ensemble import Ensemble, EnsembleOptions
from mlcoord.learning import TradeLabel
from mlcoord.model import Action, Signal, Vote

DEFAULT_WEIGHT = 0.10


@attrs.frozen
class Combined:
    signal: Signal
    votes: tuple[Vote, ...]
    raw_confidence: float
    confidence: float
    note: str = ""
    p_signal: Optional[float] = None


class Coordinator:
    """Votes in, one signal out. The ensemble is built on the first ML vote (River is heavy)."""

    def __init__(self, weights: Mapping[str, float], options: EnsembleOptions = EnsembleOptions()):
        self.start_weights = dict(weights)
        self.options = options
        self._ensemble: Optional[Ensemble] = None
        self._names: set[str] = set()

    def ensemble(self, names: Sequence[str]) -> Ensemble:
        missing = [n for n in names if n not in self._names]
        if self._ensemble is None or missing:
            self._names.update(names)
            weights = {n: self.start_weights.get(n, DEFAULT_WEIGHT) for n in sorted(self._names)}
            if self._ensemble is None:
                self._ensemble = Ensemble(weights, self.options)
            else:   # a component seen for the first time starts at its configured weight
                for n in missing:
                    self._ensemble.add_contributor(n, weights[n] / (sum(self.start_weights.values()) or 1.0))
        return self._ensemble

    @property
    def active(self) -> Optional[Ensemble]:
        return self._ensemble

    def combine(self, technical: Signal, ml_votes: Sequence[Vote], calibrate=None, *,
                signal_name: str = "signals", signal_label: str = "") -> Combined:
        """``technical`` is the signal sources' signal; its vote is named ``signal_name`` (the
        source's registered name, or the sources' joined by "+") and shown as ``signal_label``."""
        tech_vote = Vote(signal_name, technical.action, technical.confidence,
                         1.0 if not ml_votes else self.start_weights.get(signal_name, DEFAULT_WEIGHT),
                         technical.reasons, display_name=signal_label or signal_name)
        note = ""
        p_signal = None
        if not ml_votes:
            raw = technical.confidence
            final = technical
            votes: tuple[Vote, ...] = (tech_vote,)
        else:
            votes = (tech_vote,) + tuple(ml_votes)
            ensemble = self.ensemble([v.component for v in votes])
            d = int(technical.action)
            p_signal, p_opposite = ensemble.predict(votes, d), ensemble.predict(votes, -d)
            opts = self.options
            if p_opposite >= 0.5 and p_opposite > p_signal + opts.flip_margin:
                action, raw = Action(-d), p_opposite
                note = (f"ensemble flipped technical {technical.action.name}: P(opposite)={p_opposite:.2f} > "
                        f"P(signal)={p_signal:.2f}")
            elif p_signal < opts.veto_probability:
                action, raw = Action.HOLD, p_signal
                note = f"ensemble vetoed technical {technical.action.name}: P={p_signal:.2f} < {opts.veto_probability:.2f}"
            else:
                action, raw = technical.action, p_signal
                note = f"ensemble confirmed technical {technical.action.name}: P={p_signal:.2f}"
            votes, explained = _signed(ensemble, votes, int(action) or d)
            reasons = (note, explained) + technical.reasons
            final = Signal(action, min(max(raw, 0.0), 1.0), reasons, "coordinator")
        confidence = final.confidence
        if calibrate is not None and final.action != Action.HOLD:
            confidence = calibrate(final.confidence, final)
        if confidence != final.confidence:
            final = attrs.evolve(final, confidence=confidence)
        return Combined(final, votes, raw, confidence, note, p_signal)

    def learn(self, votes: Sequence[Vote], forward_return: float, threshold: float,
              trade: tuple[Optional[TradeLabel], Optional[TradeLabel]] = (None, None)) -> None:
        if self._ensemble is not None and len(votes) > 1:
            self._ensemble.learn(votes, forward_return, threshold, trade)


def _signed(ensemble: Ensemble, votes: tuple[Vote, ...], direction: int) -> tuple[tuple[Vote, ...], str]:
    """The votes with their ensemble figures for ``direction`` (the one the raw confidence is
    about): the share of absolute coefficients (``weight``, the old display), the signed
    coefficient and the contribution to the log-odds; and that sum in words."""
    shown = ensemble.weights([v.component for v in votes])
    parts = ensemble.contributions(votes, direction)
    votes = tuple(attrs.evolve(v, weight=round(shown[v.component], 6), coefficient=round(parts[v.component][0], 6),
                               contribution=round(parts[v.component][1], 6)) for v in votes)
    total = ensemble.intercept + sum(c for _, c in parts.values())
    faded = [v.display_name or v.component for v in votes if v.faded]
    text = (f"ensemble log-odds of {Action(direction).name} {total:+.3f} = intercept {ensemble.intercept:+.3f} "
            + " ".join(f"{'+' if (v.contribution or 0.0) >= 0 else '-'} {v.display_name or v.component} "
                       f"{abs(v.contribution or 0.0):.3f}" for v in votes)
            + (f"; faded (negative coefficient): {', '.join(faded)}" if faded else ""))
    return votes, text


_NUMBERS = re.compile(r"\[[^\]]*\]|\([^)]*\)|(?<![\w.])[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?%?x?(?![\w.-])")


def decisive_reason(signal: Optional[Signal]) -> str:
    """The reason a trade is attributed to in breakdowns: the headline (first) reason with its
    numbers removed, so "RSI 27.1 oversold (<30) [+1.2]" and "RSI 24.0 oversold" group together."""
    if signal is None or not signal.reasons:
        return "unspecified"
    return " ".join(_NUMBERS.sub("", signal.reasons[0]).split()) or signal.reasons[0]
