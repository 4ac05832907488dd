"""A test-only plugin adding a GRU voter without touching the engine: a ``SequenceModel`` (torch
``nn.GRU`` to train, the same recurrence in numpy to vote) on the shared helpers of
``mlcoord.api``, registered as the ML component ``gru``. It ships no model: ``model_path`` names
the artifact ``mlcoord train --component gru`` wrote."""

from __future__ import annotations

from typing import Any, Mapping

import attrs
import numpy as np

from mlcoord.api import (
    FitOptions,
    SequenceComponent,
    SequenceModel,
    SequenceOptions,
    hookimpl,
    import_torch,
    integer,
    sigmoid,
)

MLCOORD_HOOKS_VERSION = 2


def gru_forward(weights: Mapping[str, np.ndarray], x_batch: np.ndarray) -> np.ndarray:
    """``(n, window, features)`` -> ``(n, 2)`` [P(up), P(down)]; torch GRU semantics (gates r, z, n)."""
    h_in = np.asarray(x_batch, dtype=np.float64)
    n, steps = h_in.shape[:2]
    layer = 0
    while f"gru.weight_ih_l{layer}" in weights:
        w_ih, w_hh = weights[f"gru.weight_ih_l{layer}"], weights[f"gru.weight_hh_l{layer}"]
        b_ih, b_hh = weights[f"gru.bias_ih_l{layer}"], weights[f"gru.bias_hh_l{layer}"]
        hidden = w_hh.shape[1]
        projected = h_in @ w_ih.T + b_ih              # (n, T, 3H): the input part of every step
        h = np.zeros((n, hidden))
        outputs = np.empty((n, steps, hidden))
        for t in range(steps):
            recurrent = h @ w_hh.T + b_hh
            r = sigmoid(projected[:, t, :hidden] + recurrent[:, :hidden])
            z = sigmoid(projected[:, t, hidden:2 * hidden] + recurrent[:, hidden:2 * hidden])
            candidate = np.tanh(projected[:, t, 2 * hidden:] + r * recurrent[:, 2 * hidden:])
            h = (1.0 - z) * candidate + z * h
            outputs[:, t] = h
        h_in = outputs
        layer += 1
    return sigmoid(h @ weights["head.weight"].T + weights["head.bias"])


def build_gru(n_features: int, opts: FitOptions) -> Any:
    torch = import_torch()
    nn = torch.nn

    class GruNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = nn.GRU(n_features, opts.hidden, num_layers=opts.layers, batch_first=True)
            self.head = nn.Linear(opts.hidden, 2)

        def forward(self, x):
            out, _ = self.gru(x)
            return self.head(out[:, -1])

    return GruNet()


GRU = SequenceModel("gru", build_gru, gru_forward)


@attrs.frozen
class GruOptions(SequenceOptions):
    """``[plugins.gru]``: a deliberately tiny default (tests train it in seconds)."""

    window: int = attrs.field(default=8, validator=integer(2))
    hidden: int = attrs.field(default=4, validator=integer(1))
    layers: int = attrs.field(default=1, validator=integer(1))


class Gru(SequenceComponent):
    family = GRU
    title = "GRU"
    hyper_fields = ("window", "hidden", "layers")


@hookimpl
def register_ml_components(register):
    register("gru", Gru, options=GruOptions, description="GRU over recent bars (test plugin)")
