"""Deep-learning predictor: an LSTM over the last ``window`` bars of causal features.

It votes on every non-HOLD signal with two probabilities of the engine's trade label: that a
long entered at this bar closes positive net of costs, and that a short does; one network
answers both, reading the window aligned with the side plus the side itself (``target =
"trade_label"``, :mod:`mlcoord.sequence.sided`; ``target = "event"``: the seed's P(move up) /
P(move down) heads). The model is small
(1 layer, 16 units, 48 bars) because it must vote fast and an hourly crypto series does not
support more: bigger ones overfit the training range without scoring better out of sample.
Inference runs in numpy from the artifact's weights (torch is only imported to train), and the
shipped ``models/default.npz`` was trained on the earliest bundled bars (BTC/USDT and ETH/USDT 1h,
2020-09-20 to 2022-03-31 23:00 UTC; ``train_default.py`` reproduces it). Retraining schedule,
expiry and drift warning are those of :class:`mlcoord.sequence.SequenceComponent`; the network
(torch and numpy) is in :mod:`mlcoord_lstm.net`.
"""

from __future__ import annotations

import attrs

from mlcoord.api import SequenceComponent, SequenceOptions, fraction, hookimpl, integer
from mlcoord_lstm.net import LSTM

MLCOORD_HOOKS_VERSION = 1


@attrs.frozen
class LstmOptions(SequenceOptions):
    """``[plugins.lstm]``: window=48 bars, hidden=16 units, layers=1.

    feature_dropout=0.25: during training each sample loses whole feature channels with this
    probability. Without it the LSTM memorises slow features (EMA spreads, ADX) that fingerprint
    the training path instead of learning what generalises (on planted synthetic data: held-out
    AUC 0.65 without, 0.68 with). The rest is documented in :class:`mlcoord.sequence.SequenceOptions`.
    """

    window: int = attrs.field(default=48, validator=integer(2))
    hidden: int = attrs.field(default=16, validator=integer(1))
    layers: int = attrs.field(default=1, validator=integer(1))
    feature_dropout: float = attrs.field(default=0.25, validator=fraction(hi_open=True))


class Lstm(SequenceComponent):
    family = LSTM
    title = "LSTM"
    package = "mlcoord_lstm"
    hyper_fields = ("window", "hidden", "layers")


@hookimpl
def register_ml_components(register):
    register("lstm", Lstm, options=LstmOptions,
             description="LSTM over recent bars: P(up), P(down) of the learning event",
             examples=({"drift_window": 50, "drift_accuracy": 0.4}, {"max_model_age_days": 3650.0}))
