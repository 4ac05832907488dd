"""Saving and restoring a River linear model's learned weights as JSON-able data.

River's linear models expose ``weights`` as a read-only copy and have no public setter, and their
``initializer`` gives every feature one starting value; restoring a model's state (``--state``, a
live restart) or starting it from chosen per-feature weights therefore needs its private
``_weights``. This module is the one place that touches it, for the engine's ensemble and for
plugins (through ``mlcoord.api``); ``tests/test_ensemble.py`` checks River still reads what is set.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional


def river_weights(model: Any) -> dict[str, float]:
    """The model's per-feature weights, JSON-able (feature names as strings)."""
    return {str(k): float(v) for k, v in model.weights.items()}


def set_river_weights(model: Any, weights: Mapping[Any, float], intercept: Optional[float] = None) -> None:
    """Replace the model's weights (and intercept, when given) by ``weights``."""
    from river import utils

    model._weights = utils.VectorDict({k: float(v) for k, v in weights.items()})
    if intercept is not None:
        model.intercept = float(intercept)


__all__ = ["river_weights", "set_river_weights"]
