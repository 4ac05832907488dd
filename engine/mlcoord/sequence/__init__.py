"""Windowed sequence models for ML components, for any network a plugin brings.

A plugin supplies a :class:`SequenceModel` (its artifact kind, a torch module to train, the same
network in numpy to vote) and subclasses :class:`SequenceComponent`; this package does the rest:
windows of the causal :func:`~mlcoord.feature_matrix.feature_matrix`, normalised with the training
slice's mean/std (stored in the artifact) and clipped to +-``CLIP`` standard deviations, two
sigmoid outputs P(event up), P(event down) of :class:`mlcoord.learning.EventSpec`, deterministic
torch training with early stopping, ``.npz`` artifacts, walk-forward retraining, expiry and a
drift warning. Weights are stored under torch's ``state_dict`` names, so numpy and torch read the
same arrays. The engine names no network: every family lives in its plugin.

Modules: :mod:`~mlcoord.sequence.family` (the family, numpy inference), :mod:`~.training`
(torch), :mod:`~.component` (options, component, voter). Import from here.
"""

from mlcoord.feature_matrix import FEATURES, feature_matrix, windows
from mlcoord.sequence.component import (
    LAZY_BLOCK,
    WARMUP,
    SequenceComponent,
    SequenceOptions,
    SequenceVoter,
)
from mlcoord.sequence.family import (
    CHUNK,
    CLIP,
    MIN_BATCH,
    ForwardResult,
    Model,
    SequenceModel,
    Weights,
    norm_stats,
    normalise,
    sigmoid,
    state_dict_arrays,
)
from mlcoord.sequence.training import FitOptions, Series, fit, import_torch, split, torch_model

__all__ = [
    "FEATURES", "feature_matrix", "windows",
    "SequenceModel", "ForwardResult", "Weights", "Model", "sigmoid", "state_dict_arrays",
    "norm_stats", "normalise", "CLIP", "CHUNK", "MIN_BATCH",
    "FitOptions", "Series", "fit", "split", "torch_model", "import_torch",
    "SequenceOptions", "SequenceComponent", "SequenceVoter", "WARMUP", "LAZY_BLOCK",
]
