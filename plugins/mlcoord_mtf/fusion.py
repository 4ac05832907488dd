"""Fusion of the timeframe views into P(event up) and P(event down).

**Features** for direction ``d`` (+1 up, -1 down), built from the scores ``s`` of the views
known at that bar: ``d * s_tf`` per timeframe; ``agree`` = ``d * mean(sign(s))`` (+1 when every
view points in ``d``, -1 when all point against it); ``aligned`` = ``min(d * s)`` (positive only
when all views agree with ``d``, as strong as the weakest); ``abs_mean`` = ``|mean(s)|`` (not
signed: how much the views move at all). The bias is the model's intercept. Signing by ``d``
lets one model serve both directions: P(up) = model(x(+1)), P(down) = model(x(-1)).

**Model**: River's online logistic regression with constant-learning-rate SGD, so it keeps
adapting as markets change instead of freezing as a decaying rate would. Until it has seen
``warmup_outcomes`` outcomes it is not trusted and a stated prior answers instead:
``0.5 + prior_gain * (d * mean(s) + agree) / 2``, i.e. within +-``prior_gain`` of a coin flip,
higher when the views agree with ``d`` and lower when they conflict.
"""

from __future__ import annotations

import math

import numpy as np
from river import linear_model, optim, utils

STATE_VERSION = 1
P_MIN, P_MAX = 0.01, 0.99


def features(scores: np.ndarray, labels, direction: int) -> dict[str, float]:
    """The model's input for one bar's view scores (NaN = view not known) and a direction."""
    x: dict[str, float] = {}
    known = [(label, float(s)) for label, s in zip(labels, scores) if math.isfinite(s)]
    if not known:
        return x
    signed = [direction * s for _, s in known]
    for (label, _), value in zip(known, signed):
        x[f"s_{label}"] = value
    x["agree"] = sum(math.copysign(1.0, v) if v else 0.0 for v in signed) / len(signed)
    x["aligned"] = min(signed)
    x["abs_mean"] = abs(sum(s for _, s in known)) / len(known)
    return x


def _clip(p: float) -> float:
    return min(max(p, P_MIN), P_MAX)


class OnlineFusion:
    """The learnable part: one logistic model for both directions, plus its warm-up prior."""

    def __init__(self, learning_rate: float, l2: float, warmup_outcomes: int, prior_gain: float):
        self.learning_rate = learning_rate
        self.l2 = l2
        self.warmup_outcomes = warmup_outcomes
        self.prior_gain = prior_gain
        self.outcomes = 0
        self.model = self._new_model()

    def _new_model(self):
        return linear_model.LogisticRegression(
            optimizer=optim.SGD(self.learning_rate), l2=self.l2, intercept_lr=self.learning_rate)

    @property
    def warming_up(self) -> bool:
        return self.outcomes < self.warmup_outcomes

    def probability(self, x: dict[str, float]) -> float:
        """P(event in the direction ``x`` was signed for)."""
        if self.warming_up:
            views = [v for k, v in x.items() if k.startswith("s_")]
            return _clip(0.5 + self.prior_gain * (sum(views) / len(views) + x["agree"]) / 2.0)
        return _clip(float(self.model.predict_proba_one(x).get(True, 0.5)))

    def learn(self, x: dict[str, float], hit: bool) -> None:
        self.model.learn_one(x, bool(hit))
        self.outcomes += 1

    def state(self) -> dict:
        return {"version": STATE_VERSION, "outcomes": self.outcomes,
                "weights": {k: float(v) for k, v in self.model.weights.items()},
                "intercept": float(self.model.intercept),
                "iterations": int(self.model.optimizer.n_iterations)}

    def load_state(self, state: dict) -> None:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"mtf state version {state.get('version')!r} is not {STATE_VERSION}")
        model = self._new_model()
        model._weights = utils.VectorDict({str(k): float(v) for k, v in state["weights"].items()})
        model.intercept = float(state["intercept"])
        model.optimizer.n_iterations = int(state.get("iterations", 0))
        self.model = model
        self.outcomes = int(state["outcomes"])
