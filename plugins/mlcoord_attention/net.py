"""The attention family: one token per feature built from that feature's window
(``tanh(W x_j + b + e_j)``, ``W`` shared, ``e_j`` a learned feature embedding), a learned query
plus a learned per-feature bias score each token, softmax attention over the feature tokens, the
attended mix -> linear -> 2 logits [up, down]. The attention weights (the numpy forward's extras)
say which features the vote rests on."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from mlcoord.api import FitOptions, SequenceModel, import_torch, sigmoid

KIND = "attention"      # the kind stored in (and checked against) this plugin's artifacts


def attention_forward(weights: Mapping[str, np.ndarray], x_batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(n, window, features)`` -> (``(n, 2)`` probabilities, ``(n, features)`` attention weights)."""
    x = np.asarray(x_batch, dtype=np.float64)
    tokens = np.tanh(np.einsum("nwf,dw->nfd", x, weights["embed.weight"])
                     + weights["embed.bias"] + weights["feature_embedding"])
    scores = tokens @ weights["query"] + weights["feature_bias"]
    scores -= scores.max(axis=1, keepdims=True)
    attn = np.exp(scores)
    attn /= attn.sum(axis=1, keepdims=True)
    mixed = np.einsum("nf,nfd->nd", attn, tokens)
    return sigmoid(mixed @ weights["head.weight"].T + weights["head.bias"]), attn


def build_attention(n_features: int, opts: FitOptions) -> Any:
    """A fresh torch attention net; ``attend(x)`` also returns the attention weights."""
    torch = import_torch()
    nn = torch.nn

    class AttentionNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Linear(opts.window, opts.hidden)
            self.feature_embedding = nn.Parameter(0.1 * torch.randn(n_features, opts.hidden))
            self.query = nn.Parameter(0.1 * torch.randn(opts.hidden))
            self.feature_bias = nn.Parameter(torch.zeros(n_features))
            self.head = nn.Linear(opts.hidden, opts.outputs)

        def attend(self, x):
            tokens = torch.tanh(self.embed(x.transpose(1, 2)) + self.feature_embedding)   # (n, f, d)
            attn = torch.softmax(tokens @ self.query + self.feature_bias, dim=1)
            return self.head((attn.unsqueeze(-1) * tokens).sum(dim=1)), attn

        def forward(self, x):
            return self.attend(x)[0]

    return AttentionNet()


ATTENTION = SequenceModel(KIND, build_attention, attention_forward)
