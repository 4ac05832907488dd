"""Small windowed sequence models for ML components: numpy inference, torch training, and the
machinery a model voter needs (artifact, walk-forward retraining, expiry, drift warning).

Why numpy inference: importing torch alone costs ~1.5 s and the models are tiny, so a run that
only *uses* a trained model reads float64 weights from the artifact and never imports torch.
Torch is imported lazily inside :func:`fit` only (it is the optional ``ml`` extra).

Every model reads windows of the causal :func:`mlcoord.feature_matrix.feature_matrix`,
normalised with the training slice's mean/std (stored in the artifact) and clipped to
+-``CLIP`` standard deviations (one crash bar must not saturate every gate), and outputs two
sigmoid probabilities: P(event up), P(event down) of :class:`mlcoord.learning.EventSpec`.
Weights are stored under torch's ``state_dict`` names, so numpy and torch read the same arrays.

Architectures (``ARCHITECTURES``):

* ``lstm``: ``torch.nn.LSTM`` (gate order i, f, g, o) over the window, last hidden state ->
  linear -> 2 sigmoids.
* ``attention``: one token per feature built from that feature's window
  (``tanh(W x_j + b + e_j)``, ``W`` shared, ``e_j`` a learned feature embedding), a learned
  query plus a learned per-feature bias score each token, softmax attention over the feature
  tokens, the attended mix -> linear -> 2 sigmoids.
  The attention weights say which features the vote rests on.

Long training runs: glibc's malloc trimming costs 30-40 % system time in torch; start the process
with ``MALLOC_MMAP_THRESHOLD_=1000000000 MALLOC_TRIM_THRESHOLD_=1000000000`` set (they must be in
the environment before the process starts).
"""

from __future__ import annotations

import math
import sys
import time
from collections import deque
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, Sequence

import attrs
import numpy as np
import structlog
from attrs import validators as v

from mlcoord.feature_matrix import FEATURES, windows

if TYPE_CHECKING:
    from mlcoord.learning import RunningScore

CLIP = 5.0              # normalised features are clipped to +-CLIP standard deviations
WARMUP = 200            # first bars of a series are never training samples (ema200 warm-up)
FORGET_BIAS = 1.0       # initial LSTM forget-gate bias
CHUNK = 2048            # windows per numpy batch: bounds memory (CHUNK * window * features floats)


# -- numpy inference ---------------------------------------------------------------------------

def sigmoid(x: np.ndarray) -> np.ndarray:
    """Overflow-free logistic function."""
    return 0.5 * (1.0 + np.tanh(0.5 * x))


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


def _lstm_numpy(weights, x):
    return lstm_forward(weights, x), None


ARCHITECTURES: dict[str, Callable[[Mapping[str, np.ndarray], np.ndarray], tuple[np.ndarray, Optional[np.ndarray]]]] = {
    "lstm": _lstm_numpy,
    "attention": attention_forward,
}


# -- data --------------------------------------------------------------------------------------

def norm_stats(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std (std 1 where a feature is constant)."""
    rows = np.asarray(rows, dtype=np.float64)
    mean, std = rows.mean(axis=0), rows.std(axis=0)
    return mean, np.where(std > 1e-12, std, 1.0)


def normalise(matrix: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return np.clip((np.asarray(matrix, dtype=np.float64) - mean) / std, -CLIP, CLIP)


@attrs.frozen(eq=False)
class Model:
    """A trained model ready for numpy inference."""

    kind: str
    weights: Mapping[str, np.ndarray]
    mean: np.ndarray
    std: np.ndarray
    window: int
    trained_until: int          # ns time of the last bar whose data the model saw

    def predict(self, matrix: np.ndarray, index: np.ndarray, chunk: int = CHUNK
                ) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """Probabilities (and attention, if any) for the windows ending at each bar of ``index``.

        Only the rows those windows need are normalised; ``chunk`` windows go through at a time.
        """
        index = np.asarray(index, dtype=np.int64)
        if not len(index):
            return np.zeros((0, 2)), None
        lo = max(0, int(index.min()) - self.window + 1)
        rows = normalise(matrix[lo:int(index.max()) + 1], self.mean, self.std)
        forward = ARCHITECTURES[self.kind]
        probs: list[np.ndarray] = []
        extras: list[Optional[np.ndarray]] = []
        for a in range(0, len(index), chunk):
            x = _windows_from(rows, index[a:a + chunk] - lo, self.window, lo)
            n = len(x)
            if n < MIN_BATCH:     # BLAS takes other paths for 1-4 rows: pad, so a bar's number
                x = np.concatenate([x, np.repeat(x[-1:], MIN_BATCH - n, axis=0)])   # never depends on its batch
            p, extra = forward(self.weights, x)
            probs.append(p[:n])
            extras.append(None if extra is None else extra[:n])
        extra = None if extras[0] is None else np.concatenate([e for e in extras if e is not None])
        return np.concatenate(probs), extra


def _windows_from(rows: np.ndarray, local_index: np.ndarray, window: int, offset: int) -> np.ndarray:
    """Windows over ``rows`` (the series from row ``offset``); zero-padding only before bar 0."""
    if offset == 0:
        return windows(rows, local_index, window)
    idx = local_index[:, None] - (window - 1) + np.arange(window)[None, :]
    return rows[idx]


# -- torch training ----------------------------------------------------------------------------

@attrs.frozen
class FitOptions:
    """Training hyper-parameters shared by every architecture (see :class:`SequenceOptions`)."""

    window: int
    hidden: int
    layers: int = 1
    feature_dropout: float = 0.0
    epochs: int = 30
    batch_size: int = 256
    lr: float = 3e-3
    weight_decay: float = 1e-4
    patience: int = 3
    val_fraction: float = 0.2
    stride: int = 2
    seed: int = 0
    threads: int = 1


@attrs.frozen(eq=False)
class Series:
    """One training series: its feature matrix, (n, 2) labels (NaN unknown) and usable sample bars."""

    matrix: np.ndarray
    labels: np.ndarray
    samples: np.ndarray


def _torch():
    try:
        import torch
    except ImportError:  # pragma: no cover - depends on the install
        from mlcoord.errors import ConfigError
        raise ConfigError("training needs torch: pip install 'mlcoord[ml]'") from None
    return torch


def _build_torch_model(torch, kind: str, n_features: int, opts: FitOptions):
    nn = torch.nn
    Module: Any = nn.Module   # torch comes in at run time (the "ml" extra): a base class of unknown type

    class LstmNet(Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(n_features, opts.hidden, num_layers=opts.layers, batch_first=True)
            self.head = nn.Linear(opts.hidden, 2)
            self.drop = nn.Dropout1d(opts.feature_dropout)   # whole feature channels, training only
            with torch.no_grad():   # forget-gate bias 1 (Jozefowicz et al. 2015): remember across the window
                for name, p in self.lstm.named_parameters():
                    if name.startswith("bias_ih"):
                        p[opts.hidden:2 * opts.hidden] = FORGET_BIAS

        def forward(self, x):
            out, _ = self.lstm(self.drop(x.transpose(1, 2)).transpose(1, 2))
            return self.head(out[:, -1])

    class AttentionNet(Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Linear(opts.window, opts.hidden)
            self.feature_embedding = nn.Parameter(0.1 * torch.randn(n_features, opts.hidden))
            self.query = nn.Parameter(0.1 * torch.randn(opts.hidden))
            self.feature_bias = nn.Parameter(torch.zeros(n_features))
            self.head = nn.Linear(opts.hidden, 2)

        def attend(self, x):
            tokens = torch.tanh(self.embed(x.transpose(1, 2)) + self.feature_embedding)   # (n, f, d)
            attn = torch.softmax(tokens @ self.query + self.feature_bias, dim=1)
            return self.head((attn.unsqueeze(-1) * tokens).sum(dim=1)), attn

        def forward(self, x):
            return self.attend(x)[0]

    nets = {"lstm": LstmNet, "attention": AttentionNet}
    return nets[kind]()


def torch_model(kind: str, weights: Mapping[str, np.ndarray], n_features: int, opts: FitOptions, dtype="float64"):
    """A torch module holding ``weights`` (for tests comparing numpy with torch)."""
    torch = _torch()
    model = _build_torch_model(torch, kind, n_features, opts)
    model.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in weights.items()})
    return model.to(getattr(torch, dtype)).eval()


def split(series: Sequence[Series], val_fraction: float, horizon: int, stride: int):
    """Chronological split per series: the later ``val_fraction`` of its samples validate.

    Training samples whose label window reaches into the validation range are purged
    (``horizon`` bars), and training samples are thinned to every ``stride``-th bar.
    """
    train, val = [], []
    for s in series:
        idx = np.asarray(s.samples, dtype=np.int64)
        if not len(idx):
            train.append(idx)
            val.append(idx)
            continue
        cut = int(idx[min(len(idx) - 1, int(len(idx) * (1.0 - val_fraction)))])
        train.append(idx[idx < cut - horizon][::stride])
        val.append(idx[idx >= cut])
    return train, val


def fit(kind: str, series: Sequence[Series], opts: FitOptions, horizon: int,
        progress: Optional[Callable[[dict], None]] = None, desc: str = "") -> tuple[dict, np.ndarray, np.ndarray, dict]:
    """Train ``kind`` on ``series``; returns (weights float64, mean, std, report).

    Deterministic: fixed seeds, ``opts.threads`` threads and torch's deterministic algorithms
    (both restored afterwards). Early stopping keeps the epoch with the best validation log-loss.
    ``progress``, if given, is called after every epoch with a dict (epoch, epochs, train_loss,
    val_loss); a tqdm bar is shown on a terminal.
    """
    from mlcoord.learning import auc
    torch = _torch()
    started = time.perf_counter()
    train_idx, val_idx = split(series, opts.val_fraction, horizon, opts.stride)
    n_train, n_val = sum(map(len, train_idx)), sum(map(len, val_idx))
    if n_train < opts.batch_size // 4 or n_val < 20:
        from mlcoord.errors import ConfigError
        raise ConfigError(f"too little labelled data to train {kind}: {n_train} training and {n_val} "
                          f"validation samples; give a longer history")
    train_rows = np.vstack([s.matrix[int(t[0]):int(t[-1]) + 1] for s, t in zip(series, train_idx) if len(t)])
    mean, std = norm_stats(train_rows)
    # one padded float32 tensor holding every series; window of bar i of series k starts at offset_k + i
    w = opts.window
    blocks, offsets, pos = [], [], 0
    for s in series:
        blocks.append(np.vstack([np.zeros((w - 1, s.matrix.shape[1])), normalise(s.matrix, mean, std)]))
        offsets.append(pos)
        pos += len(blocks[-1])

    def gather(index_lists):
        flat = np.concatenate([off + np.asarray(ix) for off, ix in zip(offsets, index_lists)])
        y = np.concatenate([s.labels[np.asarray(ix)] for s, ix in zip(series, index_lists)])
        return flat, y

    tr_flat, tr_y = gather(train_idx)
    va_flat, va_y = gather(val_idx)
    prev_threads, prev_det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(opts.threads)
    torch.use_deterministic_algorithms(True)
    try:
        torch.manual_seed(opts.seed)
        rng = np.random.default_rng(opts.seed)
        data = torch.as_tensor(np.vstack(blocks), dtype=torch.float32)
        steps = torch.arange(w)
        model = _build_torch_model(torch, kind, len(mean), opts)
        optimiser = torch.optim.AdamW(model.parameters(), lr=opts.lr, weight_decay=opts.weight_decay)
        loss_fn = torch.nn.BCEWithLogitsLoss()
        y_train = torch.as_tensor(tr_y, dtype=torch.float32)
        y_val = torch.as_tensor(va_y, dtype=torch.float32)
        val_windows = torch.as_tensor(va_flat)[:, None] + steps

        def predict_val():
            model.eval()
            with torch.no_grad():
                out = torch.cat([model(data[val_windows[a:a + 4096]]) for a in range(0, len(va_flat), 4096)])
            return out

        # (validation loss, weights, validation probabilities, epoch) of the best epoch so far
        best: tuple[float, Optional[dict[str, np.ndarray]], Optional[np.ndarray], int] = (math.inf, None, None, 0)
        bar = _progress_bar(opts.epochs, desc or f"train {kind}")
        epochs_run = 0
        for epoch in range(1, opts.epochs + 1):
            model.train()
            order = rng.permutation(len(tr_flat))
            total = 0.0
            for a in range(0, len(order), opts.batch_size):
                batch = order[a:a + opts.batch_size]
                x = data[torch.as_tensor(tr_flat[batch])[:, None] + steps]
                loss = loss_fn(model(x), y_train[batch])
                optimiser.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimiser.step()
                total += float(loss.detach()) * len(batch)
            logits = predict_val()
            val_loss = float(loss_fn(logits, y_val))
            epochs_run = epoch
            info = {"epoch": epoch, "epochs": opts.epochs, "train_loss": total / len(order), "val_loss": val_loss}
            if progress is not None:
                progress(info)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(train=f"{info['train_loss']:.4f}", val=f"{val_loss:.4f}")
            if val_loss < best[0] - 1e-6:
                state = {k: v.detach().to(torch.float64).numpy().copy() for k, v in model.state_dict().items()}
                best = (val_loss, state, torch.sigmoid(logits).double().numpy(), epoch)
            elif epoch - best[3] >= opts.patience:
                break
        if bar is not None:
            bar.close()
    finally:
        torch.set_num_threads(prev_threads)
        torch.use_deterministic_algorithms(prev_det)
    seconds = time.perf_counter() - started
    best_loss, weights, val_p, best_epoch = best
    if weights is None or val_p is None:     # every epoch's validation loss was NaN: nothing to keep
        from mlcoord.errors import DataError
        raise DataError(f"training {kind} never reached a finite validation loss ({epochs_run} epoch(s) run: "
                        f"non-finite features or a diverging model)")
    report = {
        "kind": kind, "epochs_run": epochs_run, "best_epoch": best_epoch, "best_val_log_loss": best_loss,
        "val_auc_up": auc(va_y[:, 0], val_p[:, 0]), "val_auc_down": auc(va_y[:, 1], val_p[:, 1]),
        "train_samples": int(n_train), "val_samples": int(n_val),
        "seconds": seconds, "seconds_per_epoch": seconds / max(epochs_run, 1),
    }
    return weights, mean, std, report


def _progress_bar(total: int, desc: str):
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit="epoch", leave=False)



# -- the model voter shared by the lstm and attention plugins ------------------------------------

_NS_PER_DAY = 86_400 * 10**9
#: the fewest windows one forward pass takes (smaller batches are padded): numpy's matrix products
#: give a row the same bits in any batch of at least this many rows, not in batches of 1-4
MIN_BATCH = 8
LAZY_BLOCK = 256        # windows computed together when vote() meets an uncomputed bar (one batch ~ 7 ms)
log = structlog.get_logger("mlcoord.nn")


def int_at_least(lo: int):
    """attrs validators: an int >= ``lo``."""
    return [v.instance_of(int), v.ge(lo)]


@attrs.frozen
class SequenceOptions:
    """Options shared by windowed model voters (each plugin adds window, hidden, layers).

    Training (``mlcoord train`` and walk-forward retraining): epochs=30 (maximum; early stopping
    after ``patience``=3 epochs without a better validation log-loss), batch_size=256, lr=3e-3
    (AdamW), weight_decay=1e-4, val_fraction=0.2 (the *later* part of each series validates;
    chronological, with a ``horizon``-bar purge between the parts), stride=2 (every 2nd training
    bar: neighbouring windows are near duplicates), seed=0, threads=1 (torch threads).
    model_path=None: the artifact to vote with; None is the model shipped in the plugin package.
    retrain_every_bars=0: off. When > 0, ``prepare`` walks forward instead: bars in block
    ``[k*N, (k+1)*N)`` are scored by a model trained on the trailing ``train_bars``=17520 bars whose
    labels are known at bar ``k*N`` (up to bar ``k*N - horizon``); a block with fewer than
    ``min_train_bars``=2000 labelled bars abstains. Trained models are cached per series and block.
    max_model_age_days=1095: a bar later than the model's last training bar plus this age gets no
    vote, with one warning naming the fix.
    drift_window=200, drift_accuracy=0.45: the accuracy (``p >= 0.5`` versus the event) of the
    component's own votes over the last ``drift_window`` outcomes handed to ``learn``; below
    ``drift_accuracy`` a warning is logged once (a whole-run RunningScore is kept as well).
    """

    epochs: int = attrs.field(default=30, validator=int_at_least(1))
    batch_size: int = attrs.field(default=256, validator=int_at_least(1))
    lr: float = attrs.field(default=3e-3, validator=[v.instance_of((int, float)), v.gt(0)])
    weight_decay: float = attrs.field(default=1e-4, validator=[v.instance_of((int, float)), v.ge(0)])
    patience: int = attrs.field(default=3, validator=int_at_least(1))
    val_fraction: float = attrs.field(default=0.2, validator=[v.instance_of(float), v.gt(0), v.lt(1)])
    stride: int = attrs.field(default=2, validator=int_at_least(1))
    seed: int = attrs.field(default=0, validator=int_at_least(0))
    threads: int = attrs.field(default=1, validator=int_at_least(1))
    model_path: Optional[str] = attrs.field(default=None, validator=v.optional(v.instance_of(str)))
    retrain_every_bars: int = attrs.field(default=0, validator=int_at_least(0))
    train_bars: int = attrs.field(default=17_520, validator=int_at_least(1))
    min_train_bars: int = attrs.field(default=2_000, validator=int_at_least(1))
    max_model_age_days: float = attrs.field(default=1095.0, validator=[v.instance_of((int, float)), v.gt(0)])
    drift_window: int = attrs.field(default=200, validator=int_at_least(1))
    drift_accuracy: float = attrs.field(default=0.45, validator=[v.instance_of(float), v.ge(0), v.le(1)])


def _iso(ns: int) -> str:
    return str(np.datetime64(int(ns), "ns").astype("datetime64[s]")) + "Z"


class SequenceVoter:
    """Votes of one series. Probabilities are computed lazily in small batches (the engine asks
    only on non-HOLD bars) or all at once with :meth:`probabilities`; every window is computed
    independently, so the order of requests never changes a number."""

    def __init__(self, component: "SequenceComponent", data, matrix: np.ndarray,
                 segments: Sequence[tuple[int, int, Model]]):
        n = len(data)
        self.component, self.data, self.matrix = component, data, matrix
        self.models = [m for _, _, m in segments]
        self.segment = np.full(n, -1, dtype=np.int64)
        for k, (a, b, _) in enumerate(segments):
            self.segment[a:b] = k
        self.p = np.full((n, 2), np.nan)
        self.extra: Optional[np.ndarray] = None
        self.done = self.segment < 0
        event = data.event
        self._head = (f"{component.title}({component.options.window} bars): "
                      f"P(up {event.threshold * 100:g}%/{event.horizon} bars)=")
        focus = getattr(data, "focus", None)
        if focus is not None and len(focus):      # batch every bar the engine may ask about
            self._compute(np.asarray(focus, dtype=np.int64))

    def _compute(self, index: np.ndarray) -> None:
        index = index[~self.done[index]]
        if not len(index):
            return
        for k in np.unique(self.segment[index]):
            idx = index[self.segment[index] == k]
            p, extra = self.models[k].predict(self.matrix, idx)
            self.p[idx] = p
            if extra is not None:
                if self.extra is None:
                    self.extra = np.full((len(self.p), extra.shape[1]), np.nan)
                self.extra[idx] = extra
        self.done[index] = True

    def probabilities(self, index: Optional[np.ndarray] = None) -> np.ndarray:
        """``(len(index), 2)`` [P(up), P(down)] (NaN where the component abstains), batched."""
        index = np.arange(len(self.p)) if index is None else np.asarray(index, dtype=np.int64)
        self._compute(index)
        return self.p[index]

    def vote(self, i: int, signal=None):
        from mlcoord.model import Action, Vote
        if not self.done[i]:
            block = np.arange(i, min(i + LAZY_BLOCK, len(self.p)))
            self._compute(block[self.segment[block] == self.segment[i]])
        p_up, p_down = self.p[i]
        if not (p_up == p_up and p_down == p_down):      # abstain (no model for this bar)
            return None
        p_up, p_down = float(p_up), float(p_down)
        reasons = (f"{self._head}{p_up:.2f}, P(down)={p_down:.2f}",
                   *self.component.extra_reasons(self, i))
        up = p_up >= p_down
        return Vote(self.component.name, Action.BUY if up else Action.SELL, p_up if up else p_down,
                    reasons=reasons, p_up=p_up, p_down=p_down)


class SequenceComponent:
    """An ML component voting with a windowed model of kind ``kind`` (see module docstring).

    Subclasses set ``kind`` (architecture and artifact kind), ``title`` (in reasons), ``package``
    (holding ``models/default.npz``), ``hyper_fields`` (options that define the architecture and
    must match the artifact) and may override :meth:`extra_reasons`.
    """

    kind = ""
    title = ""
    package = ""
    hyper_fields: tuple[str, ...] = ("window", "hidden", "layers")

    def __init__(self, options) -> None:
        self.options = options
        self.name = self.kind
        self._artifact: Optional[tuple[dict, dict, Path]] = None
        self._walk_forward: dict[tuple, Model] = {}
        self._score: Optional[RunningScore] = None
        self._recent: deque = deque(maxlen=options.drift_window)
        self._drift_warned = False
        self._expiry_warned = False

    # -- configuration ----------------------------------------------------------------------
    def hyper(self) -> dict:
        return {f: getattr(self.options, f) for f in self.hyper_fields}

    def fit_options(self) -> FitOptions:
        o = self.options
        return FitOptions(window=o.window, hidden=o.hidden, layers=getattr(o, "layers", 1),
                          feature_dropout=float(getattr(o, "feature_dropout", 0.0)), epochs=o.epochs,
                          batch_size=o.batch_size, lr=float(o.lr), weight_decay=float(o.weight_decay),
                          patience=o.patience, val_fraction=o.val_fraction, stride=o.stride, seed=o.seed,
                          threads=o.threads)

    def model_path(self) -> Path:
        if self.options.model_path:
            return Path(self.options.model_path).expanduser()
        return Path(str(resources.files(self.package) / "models" / "default.npz"))

    def extra_reasons(self, voter: SequenceVoter, i: int) -> Sequence[str]:
        return ()

    # -- the shipped / configured model ------------------------------------------------------
    def _read_artifact(self) -> tuple[dict, dict, Path]:
        if self._artifact is None:
            from mlcoord.artifacts import load_artifact
            path = self.model_path()
            arrays, meta = load_artifact(path)
            self._artifact = (arrays, meta, path)
        return self._artifact

    def load_model(self, event) -> Model:
        """The configured artifact as a :class:`Model`, refused if it does not fit ``event`` or the options."""
        from mlcoord.artifacts import check_compatible
        arrays, meta, path = self._read_artifact()
        check_compatible(meta, path, kind=self.kind, features=FEATURES, horizon=event.horizon,
                         threshold=event.threshold, **self.hyper())
        weights = {k[2:]: v.astype(np.float64) for k, v in arrays.items() if k.startswith("w.")}
        return Model(self.kind, weights, arrays["norm_mean"], arrays["norm_std"], self.options.window,
                     int(meta["data_last_time"]))

    def trained_until(self) -> Optional[int]:
        """Last bar time (ns) the configured model saw; None when walking forward (never in-sample)."""
        if self.options.retrain_every_bars:
            return None
        return int(self._read_artifact()[1]["data_last_time"])

    # -- prepare -----------------------------------------------------------------------------
    def prepare(self, data) -> SequenceVoter:
        from mlcoord.feature_matrix import feature_matrix
        c = data.candles
        matrix = feature_matrix(c.open, c.high, c.low, c.close, c.volume)
        if self.options.retrain_every_bars:
            segments = self._walk_forward_segments(data, matrix)
        else:
            segments = [self._static_segment(data)]
        return SequenceVoter(self, data, matrix, [s for s in segments if s[1] > s[0]])

    def _static_segment(self, data) -> tuple[int, int, Model]:
        model = self.load_model(data.event)
        limit = model.trained_until + int(self.options.max_model_age_days * _NS_PER_DAY)
        end = int(np.searchsorted(data.candles.time, limit, side="right"))
        if end < len(data) and not self._expiry_warned:
            self._expiry_warned = True
            log.warning("ml_model_expired", component=self.name, symbol=data.symbol,
                        trained_until=_iso(model.trained_until), first_bar_without_vote=_iso(data.candles.time[end]),
                        max_model_age_days=self.options.max_model_age_days,
                        fix=f"retrain with `mlcoord train --component {self.name}` and point model_path to it, "
                            f"or set retrain_every_bars in [plugins.{self.name}]")
        return 0, end, model

    def _walk_forward_segments(self, data, matrix) -> list[tuple[int, int, Model]]:
        from mlcoord.artifacts import data_hash
        from mlcoord.learning import event_labels, trainable_until
        o, c, event = self.options, data.candles, data.event
        segments = []
        for start in range(0, len(data), o.retrain_every_bars):
            last_label = trainable_until(start, event)
            first = max(WARMUP, last_label + 1 - o.train_bars)
            if last_label + 1 - first < o.min_train_bars:
                continue
            key = (data.symbol, event, tuple(self.hyper().items()), start,
                   data_hash(c.time[:start + 1], c.open[:start + 1], c.high[:start + 1], c.low[:start + 1],
                             c.close[:start + 1], c.volume[:start + 1]))
            model = self._walk_forward.get(key)
            if model is None:
                up, down = event_labels(c.close[:start + 1], event)
                labels = np.column_stack([up, down])
                samples = np.arange(first, last_label + 1)
                weights, mean, std, _ = fit(self.kind, [Series(matrix[:last_label + 1], labels, samples)],
                                            self.fit_options(), event.horizon,
                                            desc=f"{self.name} {data.symbol} block {start}")
                model = Model(self.kind, weights, mean, std, o.window, int(c.time[start]))
                self._walk_forward[key] = model
            segments.append((start, min(start + o.retrain_every_bars, len(data)), model))
        return segments

    # -- training ----------------------------------------------------------------------------
    def train(self, datasets, out: Path, progress: Optional[Callable[[dict], None]] = None) -> dict:
        """Train on ``datasets`` (MarketData, e.g. several symbols) and save the artifact to ``out``
        (a ``.npz`` path, or a directory receiving ``<name>.npz``). Returns the training report."""
        import datetime

        import mlcoord
        from mlcoord.artifacts import data_hash, save_artifact
        from mlcoord.errors import ConfigError
        from mlcoord.feature_matrix import feature_matrix
        from mlcoord.learning import event_labels
        if not datasets:
            raise ConfigError(f"{self.name}: no data to train on")
        event = datasets[0].event
        if any(d.event != event for d in datasets):
            raise ConfigError(f"{self.name}: all training series must use the same [learning] event")
        series, hashes = [], []
        for d in datasets:
            c = d.candles
            up, down = event_labels(c.close, event)
            labels = np.column_stack([up, down])
            samples = np.flatnonzero(~np.isnan(up))
            series.append(Series(feature_matrix(c.open, c.high, c.low, c.close, c.volume), labels,
                                 samples[samples >= WARMUP]))
            hashes.append(data_hash(c.time, c.close))
        weights, mean, std, report = fit(self.kind, series, self.fit_options(), event.horizon, progress,
                                         desc=f"train {self.name}")
        first = min(int(d.candles.time[min(WARMUP, len(d) - 1)]) for d in datasets)
        last = max(int(d.candles.time[-1]) for d in datasets)
        meta = {
            "kind": self.kind, "features": list(FEATURES), "horizon": event.horizon,
            "threshold": event.threshold, **self.hyper(),
            "data_first_time": first, "data_last_time": last,
            "data_first": _iso(first), "data_last": _iso(last),
            "symbols": [d.symbol for d in datasets], "data_hash": data_hash(np.array(hashes).astype("S64")),
            "trained_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "package_version": mlcoord.__version__, "seed": self.options.seed,
            "report": {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in report.items()},
        }
        arrays = {"norm_mean": mean, "norm_std": std, **{f"w.{k}": val for k, val in weights.items()}}
        out = Path(out)
        path = out if out.suffix == ".npz" else out / f"{self.name}.npz"
        save_artifact(path, arrays, meta)
        self._artifact = None
        return {**report, "path": str(path), "data_first": meta["data_first"], "data_last": meta["data_last"]}

    # -- online feedback ---------------------------------------------------------------------
    def learn(self, outcome) -> None:
        """Track the accuracy of this component's own past votes; warn once on drift."""
        from mlcoord.learning import RunningScore
        mine = next((vt for vt in outcome.votes if vt.component == self.name), None)
        if mine is None:
            return
        p = mine.probability(outcome.direction)
        if self._score is None:
            self._score = RunningScore()
        self._score.update(p, bool(outcome.hit))
        self._recent.append(int((p >= 0.5) == bool(outcome.hit)))
        o = self.options
        if len(self._recent) == o.drift_window and not self._drift_warned:
            recent = sum(self._recent) / len(self._recent)
            if recent < o.drift_accuracy:
                self._drift_warned = True
                log.warning("ml_model_drift", component=self.name, symbol=outcome.symbol,
                            recent_accuracy=round(recent, 4), window=o.drift_window,
                            threshold=o.drift_accuracy, run_accuracy=self._score.accuracy,
                            fix=f"retrain with `mlcoord train --component {self.name}` or set retrain_every_bars")

    def state(self) -> dict:
        s = self._score
        return {"n": s.n if s else 0, "correct": s.correct if s else 0, "loss": s.loss if s else 0.0,
                "recent": list(self._recent), "drift_warned": self._drift_warned}

    def load_state(self, state: Mapping[str, Any]) -> None:
        from mlcoord.learning import RunningScore
        score = RunningScore()
        score.n, score.correct, score.loss = int(state["n"]), int(state["correct"]), float(state["loss"])
        self._score = score
        self._recent = deque((int(x) for x in state.get("recent", ())), maxlen=self.options.drift_window)
        self._drift_warned = bool(state.get("drift_warned", False))

    @property
    def running_score(self):
        return self._score


__all__ = [
    "CLIP", "WARMUP", "CHUNK", "sigmoid", "lstm_forward", "attention_forward", "ARCHITECTURES",
    "norm_stats", "normalise", "Model", "FitOptions", "Series", "split", "fit", "torch_model",
    "SequenceOptions", "SequenceVoter", "SequenceComponent", "FEATURES",
]
