"""The ML ensemble: online stacking of the components' probabilities with River.

Each contributor (the technical signal and every ML component) gives the probability of the
learning event in a direction; the ensemble is a River logistic regression over their log-odds.
It starts as the product's weighted log-odds pool (technical 0.30, lstm 0.25, mtf 0.20,
rl_selector 0.15, attention 0.10: with equal inputs it returns that input) and learns online
from every outcome once its horizon has closed. A constant learning rate keeps it forgetting, so
after a regime change weights move again instead of freezing on one expert (River's
``EWARegressor`` never forgets). A component that keeps being wrong loses weight, and one that is
reliably wrong gets a *negative* coefficient: the ensemble fades it. Decisions therefore show each
contributor's signed coefficient and its contribution (coefficient x its log-odds) to the
ensemble's log-odds (:meth:`Ensemble.contributions`); the older "weight", each contributor's
share of the absolute coefficients, hides that sign and is kept only for old result readers.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Sequence

import attrs

from mlcoord.learning import RunningScore, TradeLabel, event_happened
from mlcoord.model import Vote
from mlcoord.river_state import river_weights, set_river_weights


def _within(low: float, high: float, *, open_low: bool = False):
    """A validator: a finite number in ``[low, high]`` (``(low, high]`` with ``open_low``), so an
    absurd value fails when the config loads, not as a NaN confidence bars into a run."""
    shown = f"{'(' if open_low else '['}{low:g}, {high:g}]"

    def check(instance, attribute, value):
        ok = isinstance(value, (int, float)) and math.isfinite(value) and value <= high
        if not (ok and (value > low if open_low else value >= low)):
            raise ValueError(f"{attribute.name} must be a number in {shown}, got {value!r}")
    return check


@attrs.frozen
class EnsembleOptions:
    """``[ensemble]``: online stacking settings (defaults stated).

    ``learning_rate`` in (0, 1] and ``l2`` in [0, 1]: their product stays at most 1, so the SGD
    step never overshoots and the weights stay finite; ``veto_probability`` and ``flip_margin``
    are probabilities, in [0, 1]."""

    learning_rate: float = attrs.field(default=0.02, validator=_within(0.0, 1.0, open_low=True))
    l2: float = attrs.field(default=1e-4, validator=_within(0.0, 1.0))
    veto_probability: float = attrs.field(default=0.40, validator=_within(0.0, 1.0))
    flip_margin: float = attrs.field(default=0.05, validator=_within(0.0, 1.0))
    adapt: bool = True
    #: what the ensemble learns, so what its probability is: ``"event"`` (the 24-bar move of
    #: ``[learning]``) or ``"trade_label"`` (the decision bar's trade label per side: did a direct
    #: entry with the configured exits close positive net of costs?)
    target: str = attrs.field(default="event", validator=attrs.validators.in_(("event", "trade_label")))


def _logit(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return math.log(p / (1 - p))


class Ensemble:
    """River online stacking over contributors' log-odds, per direction."""

    def __init__(self, weights: Mapping[str, float], options: EnsembleOptions = EnsembleOptions()):
        from river import linear_model, optim  # lazy: heavy, only for ML runs

        total = sum(weights.values()) or 1.0
        self.initial = {k: v / total for k, v in weights.items()}
        self.options = options
        self.model = linear_model.LogisticRegression(
            optimizer=optim.SGD(options.learning_rate), l2=options.l2, intercept_lr=options.learning_rate)
        self._set_weights(self.initial)
        self.scores: dict[str, RunningScore] = {}
        self.ensemble_score = RunningScore()
        self.updates = 0

    @staticmethod
    def features(votes: Sequence[Vote], direction: int) -> dict[str, float]:
        return {v.component: _logit(v.probability(direction)) for v in votes}

    def predict(self, votes: Sequence[Vote], direction: int) -> float:
        return float(self.model.predict_proba_one(self.features(votes, direction))[True])

    def _set_weights(self, weights: Mapping[str, float]) -> None:
        """The product's per-feature starting weights (River has no public setter: see
        :mod:`mlcoord.river_state`)."""
        set_river_weights(self.model, weights)

    def add_contributor(self, name: str, weight: float) -> None:
        """A contributor seen for the first time starts at ``weight`` (the others keep theirs)."""
        self._set_weights({**self.model.weights, name: weight})

    def weights(self, names: Sequence[str]) -> dict[str, float]:
        """Displayed weights: each present contributor's share of the absolute coefficients."""
        w = self.model.weights
        raw = {n: abs(w.get(n, 0.0)) for n in names}
        total = sum(raw.values())
        return {n: (v / total if total else 1.0 / len(names)) for n, v in raw.items()}

    @property
    def intercept(self) -> float:
        return float(self.model.intercept)

    def coefficients(self, names: Sequence[str]) -> dict[str, float]:
        """Each contributor's signed coefficient (0 for one the model has not seen)."""
        w = self.model.weights
        return {n: float(w.get(n, 0.0)) for n in names}

    def contributions(self, votes: Sequence[Vote], direction: int) -> dict[str, tuple[float, float]]:
        """Per contributor: (coefficient, coefficient x its log-odds for ``direction``). Their sum
        plus :attr:`intercept` is the log-odds of :meth:`predict`."""
        w = self.model.weights
        return {n: (float(w.get(n, 0.0)), float(w.get(n, 0.0)) * x) for n, x in self.features(votes, direction).items()}

    def learn(self, votes: Sequence[Vote], forward_return: float, threshold: float,
              trade: tuple[Optional[TradeLabel], Optional[TradeLabel]] = (None, None)) -> None:
        """Both directions' outcomes are known once the horizon closed: learn from each. With
        ``target = "trade_label"`` the outcome of a direction is its trade label (``trade``: long,
        short); a side without one (no exit levels there) teaches nothing."""
        by_trade = self.options.target == "trade_label"
        for direction, label in ((1, trade[0]), (-1, trade[1])):
            if by_trade:
                if label is None:
                    continue
                hit = bool(label.win)
            else:
                hit = event_happened(direction, forward_return, threshold)
            for v in votes:
                self.scores.setdefault(v.component, RunningScore()).update(v.probability(direction), hit)
            if self.options.adapt:
                self.model.learn_one(self.features(votes, direction), hit)
        self.updates += 1

    # -- persistence ---------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"target": self.options.target, "weights": river_weights(self.model),
                "intercept": float(self.model.intercept), "updates": self.updates,
                "scores": {k: [s.n, s.correct, s.loss] for k, s in self.scores.items()}}

    def load_state(self, state: Mapping[str, Any]) -> None:
        saved = state.get("target", "event")            # states before the option learnt the event
        if saved != self.options.target:
            raise ValueError(f"the saved ensemble learnt target {saved!r}, [ensemble] target is "
                             f"{self.options.target!r}: its weights predict another probability "
                             f"(start without the state file, or set target = {saved!r})")
        self._set_weights(state["weights"])
        self.model.intercept = float(state.get("intercept", 0.0))
        self.updates = int(state.get("updates", 0))
        for name, (n, correct, loss) in state.get("scores", {}).items():
            score = RunningScore()
            score.n, score.correct, score.loss = int(n), int(correct), float(loss)
            self.scores[name] = score

    def score_table(self) -> dict[str, dict[str, Optional[float]]]:
        return {k: {"outcomes": s.n, "accuracy": s.accuracy, "log_loss": s.log_loss}
                for k, s in sorted(self.scores.items())}
