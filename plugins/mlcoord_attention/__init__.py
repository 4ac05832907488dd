"""Attention weighting: a small attention model that says which features its vote rests on.

Each feature's last ``window`` bars become one token; a learned query attends over the feature
tokens (softmax), and the attended mix gives P(this trade wins), once for a long and once for a
short (the window aligned with the side, plus a ``side`` token: ``target = "trade_label"``, the
default; ``"event"``: the seed's P(move up) / P(move down)). The reasons name the three most attended features with their weights, so a user sees
*why* it voted ("attended: rsi 0.31, ret_24 0.22, atr_pct 0.14"). Inference runs in numpy from
the artifact (torch only to train); the shipped ``models/default.npz`` was trained on the earliest
bundled bars (BTC/USDT and ETH/USDT 1h, 2020-09-20 to 2022-03-31 23:00 UTC; ``train_default.py``
in :mod:`mlcoord_lstm` reproduces both shipped models). Retraining schedule, expiry and drift
warning are those of :class:`mlcoord.sequence.SequenceComponent`; the network (torch and numpy)
is in :mod:`mlcoord_attention.net`.
"""

from __future__ import annotations

import attrs
import numpy as np

from mlcoord.api import SequenceComponent, SequenceOptions, SequenceVoter, hookimpl, integer
from mlcoord_attention.net import ATTENTION

MLCOORD_HOOKS_VERSION = 1
TOP_FEATURES = 3


@attrs.frozen
class AttentionOptions(SequenceOptions):
    """``[plugins.attention]``: window=24 bars per feature token, hidden=16 (token size); the rest
    is documented in :class:`mlcoord.sequence.SequenceOptions`."""

    window: int = attrs.field(default=24, validator=integer(2))
    hidden: int = attrs.field(default=16, validator=integer(1))


class Attention(SequenceComponent):
    family = ATTENTION
    title = "Attention"
    package = "mlcoord_attention"
    hyper_fields = ("window", "hidden")

    def extra_reasons(self, voter: SequenceVoter, i: int) -> tuple[str, ...]:
        weights = voter.extra[i]
        top = np.argsort(-weights, kind="stable")[:TOP_FEATURES]
        names = self.model_inputs()
        return ("attended: " + ", ".join(f"{names[k]} {weights[k]:.2f}" for k in top),)


@hookimpl
def register_ml_components(register):
    register("attention", Attention, options=AttentionOptions,
             description="attention over feature tokens: P(up), P(down) and the features it attended to",
             examples=({"drift_window": 50, "drift_accuracy": 0.4}, {"max_model_age_days": 3650.0}))
