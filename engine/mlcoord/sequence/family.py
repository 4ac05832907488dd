"""A sequence-model family and numpy inference with it.

A plugin describes its network once, as a :class:`SequenceModel` (its artifact kind, how to build
the torch module, how to run the trained weights in numpy); the engine trains, saves, loads and
runs any family the same way and names none of them.

Why numpy inference: importing torch alone costs ~1.5 s and the models are tiny, so a run that
only *uses* a trained model reads float64 weights from the artifact and never imports torch.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Union

import attrs
import numpy as np
from attrs import validators as v

from mlcoord.feature_matrix import windows
from mlcoord.sequence.sided import align

CLIP = 5.0              # normalised features are clipped to +-CLIP standard deviations
CHUNK = 2048            # windows per numpy batch: bounds memory (CHUNK * window * features floats)
#: a forward pass takes whole blocks of this many windows (the last one padded): numpy's matrix
#: products (OpenBLAS) take other kernels for a batch's leftover rows, which changed a window's last
#: bit with its batch's length, so a bar's probability depended on how many bars came with it
MIN_BATCH = 16

Weights = Mapping[str, np.ndarray]
#: what a numpy forward returns: ``(n, 2)`` [P(up), P(down)], or that plus an ``(n, k)`` array of
#: per-window extras (e.g. which inputs the vote rests on), kept by the voter for reasons
ForwardResult = Union[np.ndarray, tuple[np.ndarray, Optional[np.ndarray]]]


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Overflow-free logistic function."""
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def state_dict_arrays(module: Any) -> dict[str, np.ndarray]:
    """Default weight export: the module's ``state_dict`` as float64 numpy arrays under torch's
    names, so numpy inference and :func:`mlcoord.sequence.torch_model` read the same arrays."""
    import torch
    return {k: t.detach().to(torch.float64).numpy().copy() for k, t in module.state_dict().items()}


def _kind(instance: Any, attribute: Any, value: Any) -> None:
    if not isinstance(value, str) or not value.isidentifier():
        raise ValueError(f"SequenceModel {attribute.name} must be an identifier string (it is stored in "
                         f"artifacts), got {value!r}")


@attrs.frozen
class SequenceModel:
    """What a sequence-model plugin supplies; the shared machinery does the rest.

    * ``kind``: written into every artifact; an artifact of another kind is refused on load.
    * ``build_torch(n_features, options)``: a fresh ``torch.nn.Module`` (``options`` a
      :class:`mlcoord.sequence.FitOptions`) mapping ``(n, window, n_features)`` to ``(n, 2)``
      logits [up, down]. Called after the training seed is set, so its initial weights are fixed.
    * ``numpy_forward(weights, x)``: the same network without torch, ``x`` float64
      ``(n, window, n_features)`` -> :data:`ForwardResult` (probabilities, not logits).
    * ``export_weights(module)``: the trained module's arrays for the artifact (default: its
      ``state_dict`` as float64).
    """

    kind: str = attrs.field(validator=_kind)
    build_torch: Callable[[int, Any], Any] = attrs.field(validator=v.is_callable())
    numpy_forward: Callable[[Weights, np.ndarray], ForwardResult] = attrs.field(validator=v.is_callable())
    export_weights: Callable[[Any], dict[str, np.ndarray]] = attrs.field(default=state_dict_arrays,
                                                                        validator=v.is_callable())

    def forward(self, weights: Weights, x: np.ndarray, sided: bool = False
                ) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """``numpy_forward`` with its output checked: a wrong shape is named, not broadcast.
        ``sided``: the network reads side-aligned windows and its first column is P(the trade
        wins); a family that ignores ``FitOptions.outputs`` and gives two columns still works."""
        out = self.numpy_forward(weights, x)
        probs, extra = out if isinstance(out, tuple) else (out, None)
        probs = np.asarray(probs)
        if sided and probs.ndim == 2 and len(probs) == len(x) and probs.shape[1] in (1, 2):
            probs = probs[:, :1]
        elif probs.shape != (len(x), 2):
            raise ValueError(f"{self.kind} numpy_forward returned probabilities of shape {probs.shape}, "
                             f"expected {(len(x), 1 if sided else 2)}")
        if extra is not None:
            extra = np.asarray(extra)
            if extra.ndim != 2 or len(extra) != len(x):
                raise ValueError(f"{self.kind} numpy_forward returned extras of shape {extra.shape}, "
                                 f"expected ({len(x)}, k)")
        return probs, extra


def norm_stats(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std (std 1 where a feature is constant)."""
    rows = np.asarray(rows, dtype=np.float64)
    mean, std = rows.mean(axis=0), rows.std(axis=0)
    return mean, np.where(std > 1e-12, std, 1.0)


def normalise(matrix: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Standardise with the training slice's statistics, clipped: one crash bar must not
    saturate every unit."""
    return np.clip((np.asarray(matrix, dtype=np.float64) - mean) / std, -CLIP, CLIP)


@attrs.frozen(eq=False)
class Model:
    """A trained model of ``family`` ready for numpy inference."""

    family: SequenceModel
    weights: Weights
    mean: np.ndarray
    std: np.ndarray
    window: int
    trained_until: int          # ns time of the last bar whose data the model saw
    sided: bool = False         # direction as an input (:mod:`mlcoord.sequence.sided`)

    @property
    def kind(self) -> str:
        return self.family.kind

    def predict(self, matrix: np.ndarray, index: np.ndarray, chunk: int = CHUNK
                ) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """Probabilities (and extras, if the family gives any) for the windows ending at each bar
        of ``index``. Only the rows those windows need are normalised; ``chunk`` windows go
        through at a time."""
        index = np.asarray(index, dtype=np.int64)
        if not len(index):
            return np.zeros((0, 2)), None
        lo = max(0, int(index.min()) - self.window + 1)
        rows = normalise(matrix[lo:int(index.max()) + 1], self.mean, self.std)
        probs: list[np.ndarray] = []
        extras: list[Optional[np.ndarray]] = []
        for a in range(0, len(index), chunk):
            x = _windows_from(rows, index[a:a + chunk] - lo, self.window, lo)
            n = len(x)
            padded = -(-n // MIN_BATCH) * MIN_BATCH
            if padded > n:        # BLAS takes other paths for a batch's last few rows: pad to whole
                x = np.concatenate([x, np.repeat(x[-1:], padded - n, axis=0)])   # blocks, so a bar's number never depends on its batch
            if not self.sided:
                p, extra = self.family.forward(self.weights, x)
                probs.append(p[:n])
                extras.append(None if extra is None else extra[:n])
                continue
            # one pass per side, each batch starting at row 0 (as an unsided batch does)
            ones = np.ones(len(x))
            p_long, e_long = self.family.forward(self.weights, align(x, ones), sided=True)
            p_short, e_short = self.family.forward(self.weights, align(x, -ones), sided=True)
            pair = np.column_stack([p_long[:n, 0], p_short[:n, 0]])
            probs.append(pair)
            extra = None
            if e_long is not None and e_short is not None:     # the extras of the side the vote takes
                extra = np.where((pair[:, 0] >= pair[:, 1])[:, None], e_long[:n], e_short[:n])
            extras.append(extra)
        extra = None if extras[0] is None else np.concatenate([e for e in extras if e is not None])
        return np.concatenate(probs), extra


def _windows_from(rows: np.ndarray, local_index: np.ndarray, window: int, offset: int) -> np.ndarray:
    """Windows over ``rows`` (the series from row ``offset``); zero-padding only before bar 0."""
    if offset == 0:
        return windows(rows, local_index, window)
    idx = local_index[:, None] - (window - 1) + np.arange(window)[None, :]
    return rows[idx]
