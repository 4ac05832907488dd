"""The LSTM family: ``torch.nn.LSTM`` (gate order i, f, g, o) over the window, last hidden state
-> linear -> 2 logits [up, down]; the same network in numpy for voting without torch."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from mlcoord.api import FitOptions, SequenceModel, import_torch, sigmoid

KIND = "lstm"           # the kind stored in (and checked against) this plugin's artifacts
FORGET_BIAS = 1.0       # initial forget-gate bias


def lstm_forward(weights: Mapping[str, np.ndarray], x_batch: np.ndarray) -> np.ndarray:
    """``(n, window, features)`` -> ``(n, 2)`` [P(up), P(down)], float64, torch LSTM semantics."""
    h_in = np.asarray(x_batch, dtype=np.float64)
    n = h_in.shape[0]
    layer = 0
    while f"lstm.weight_ih_l{layer}" in weights:
        w_ih, w_hh = weights[f"lstm.weight_ih_l{layer}"], weights[f"lstm.weight_hh_l{layer}"]
        bias = weights[f"lstm.bias_ih_l{layer}"] + weights[f"lstm.bias_hh_l{layer}"]
        hidden = w_hh.shape[1]
        projected = h_in @ w_ih.T + bias            # (n, T, 4H): input part of every step at once
        h = np.zeros((n, hidden))
        c = np.zeros((n, hidden))
        last_layer = f"lstm.weight_ih_l{layer + 1}" not in weights
        outputs = None if last_layer else np.empty((n, h_in.shape[1], hidden))
        for t in range(h_in.shape[1]):
            gates = projected[:, t] + h @ w_hh.T
            i = sigmoid(gates[:, :hidden])
            f = sigmoid(gates[:, hidden:2 * hidden])
            g = np.tanh(gates[:, 2 * hidden:3 * hidden])
            o = sigmoid(gates[:, 3 * hidden:])
            c = f * c + i * g
            h = o * np.tanh(c)
            if outputs is not None:
                outputs[:, t] = h
        if outputs is not None:
            h_in = outputs
        layer += 1
    return sigmoid(h @ weights["head.weight"].T + weights["head.bias"])


def build_lstm(n_features: int, opts: FitOptions) -> Any:
    """A fresh torch LSTM net; whole feature channels drop out in training (``feature_dropout``)."""
    torch = import_torch()
    nn = torch.nn

    class LstmNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(n_features, opts.hidden, num_layers=opts.layers, batch_first=True)
            self.head = nn.Linear(opts.hidden, opts.outputs)
            self.drop = nn.Dropout1d(opts.feature_dropout)   # whole feature channels, training only
            with torch.no_grad():   # forget-gate bias 1 (Jozefowicz et al. 2015): remember across the window
                for name, p in self.lstm.named_parameters():
                    if name.startswith("bias_ih"):
                        p[opts.hidden:2 * opts.hidden] = FORGET_BIAS

        def forward(self, x):
            out, _ = self.lstm(self.drop(x.transpose(1, 2)).transpose(1, 2))
            return self.head(out[:, -1])

    return LstmNet()


LSTM = SequenceModel(KIND, build_lstm, lstm_forward)
