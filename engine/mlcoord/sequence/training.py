"""Torch training of a :class:`~mlcoord.sequence.family.SequenceModel`: windows of several series
in one tensor, a chronological purged split, AdamW with early stopping on the validation
log-loss, deterministic (fixed seed, a fixed number of torch threads, deterministic algorithms).

Torch is imported lazily here only (the optional ``ml`` extra): voting never needs it.
Long training runs: glibc's malloc trimming costs 30-40 % system time in torch; start the process
with ``MALLOC_MMAP_THRESHOLD_=1000000000 MALLOC_TRIM_THRESHOLD_=1000000000`` set (they must be in
the environment before the process starts).
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any, Callable, Mapping, Optional, Sequence

import attrs
import numpy as np

from mlcoord.sequence.family import SequenceModel, norm_stats, normalise
from mlcoord.sequence.sided import sided_norm_stats, signs


@attrs.frozen
class FitOptions:
    """Training hyper-parameters handed to :func:`fit` and to a family's ``build_torch``
    (see :class:`mlcoord.sequence.SequenceOptions`)."""

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
    min_epochs: int = 1         # early stopping never stops before this epoch
    sided: bool = False         # direction as an input, one output: P(this side's trade wins)
    outputs: int = 2            # logits the network gives (1 when sided); families may read it


@attrs.frozen(eq=False)
class Series:
    """One training series: its feature matrix, (n, 2) labels (NaN unknown) and usable sample bars."""

    matrix: np.ndarray
    labels: np.ndarray
    samples: np.ndarray


def import_torch() -> Any:
    """``torch``, or a ConfigError naming the extra to install (torch is optional)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - depends on the install
        from mlcoord.errors import ConfigError
        raise ConfigError("training needs torch: pip install 'mlcoord[ml]'") from None
    return torch


def torch_model(family: SequenceModel, weights: Mapping[str, np.ndarray], n_features: int, opts: FitOptions,
                dtype: str = "float64") -> Any:
    """A torch module of ``family`` holding ``weights`` (state_dict names), in eval mode: for
    tests comparing a family's numpy inference with torch."""
    torch = import_torch()
    model = family.build_torch(n_features, opts)
    model.load_state_dict({k: torch.as_tensor(np.asarray(w)) for k, w in weights.items()})
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


def fit(family: SequenceModel, series: Sequence[Series], opts: FitOptions, horizon: int,
        progress: Optional[Callable[[dict], None]] = None, desc: str = "") -> tuple[dict, np.ndarray, np.ndarray, dict]:
    """Train a ``family`` model on ``series``; returns (weights float64, mean, std, report).

    Deterministic: fixed seeds, ``opts.threads`` threads and torch's deterministic algorithms
    (both restored afterwards). Early stopping keeps the epoch with the best validation log-loss
    and stops ``patience`` epochs after it, never before ``min_epochs``. With ``opts.sided``
    every (bar, side) whose label column (0 long, 1 short) is known is a sample, the window
    aligned with the side (:mod:`mlcoord.sequence.sided`), and the network's first logit is
    P(that trade wins).
    ``progress``, if given, is called after every epoch with a dict (epoch, epochs, train_loss,
    val_loss); a tqdm bar is shown on a terminal.
    """
    from mlcoord.learning import auc
    torch = import_torch()
    kind = family.kind
    started = time.perf_counter()
    train_idx, val_idx = split(series, opts.val_fraction, horizon, opts.stride)
    n_train, n_val = sum(map(len, train_idx)), sum(map(len, val_idx))
    if n_train < opts.batch_size // 4 or n_val < 20:
        from mlcoord.errors import ConfigError
        raise ConfigError(f"too little labelled data to train {kind}: {n_train} training and {n_val} "
                          f"validation samples; give a longer history")
    train_rows = np.vstack([s.matrix[int(t[0]):int(t[-1]) + 1] for s, t in zip(series, train_idx) if len(t)])
    mean, std = (sided_norm_stats if opts.sided else norm_stats)(train_rows)
    # one padded float32 tensor holding every series; window of bar i of series k starts at offset_k + i
    w = opts.window
    blocks, offsets, pos = [], [], 0
    for s in series:
        blocks.append(np.vstack([np.zeros((w - 1, s.matrix.shape[1])), normalise(s.matrix, mean, std)]))
        offsets.append(pos)
        pos += len(blocks[-1])

    def gather(index_lists):
        flat = np.concatenate([off + np.asarray(ix, dtype=np.int64) for off, ix in zip(offsets, index_lists)])
        y = np.concatenate([s.labels[np.asarray(ix, dtype=np.int64)] for s, ix in zip(series, index_lists)])
        if not opts.sided:
            return flat, y, None
        flat2, y2 = np.concatenate([flat, flat]), np.concatenate([y[:, 0], y[:, 1]])
        side = np.concatenate([np.ones(len(flat)), -np.ones(len(flat))])
        known = np.isfinite(y2)
        return flat2[known], y2[known, None], side[known]

    tr_flat, tr_y, tr_side = gather(train_idx)
    va_flat, va_y, va_side = gather(val_idx)
    n_train, n_val = len(tr_flat), len(va_flat)
    prev_threads, prev_det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(opts.threads)
    torch.use_deterministic_algorithms(True)
    try:
        torch.manual_seed(opts.seed)
        rng = np.random.default_rng(opts.seed)
        data = torch.as_tensor(np.vstack(blocks), dtype=torch.float32)
        steps = torch.arange(w)
        model = family.build_torch(len(mean) + int(opts.sided), opts)

        def inputs(flat, side):
            x = data[torch.as_tensor(flat)[:, None] + steps]
            if side is None:
                return x
            s = torch.as_tensor(side, dtype=torch.float32)
            x = x * torch.as_tensor(signs(side), dtype=torch.float32)[:, None, :]
            return torch.cat([x, s[:, None, None].expand(len(side), w, 1)], dim=2)

        def logits_of(x):
            out = model(x)
            return out[:, :1] if opts.sided else out
        optimiser = torch.optim.AdamW(model.parameters(), lr=opts.lr, weight_decay=opts.weight_decay)
        loss_fn = torch.nn.BCEWithLogitsLoss()
        y_train = torch.as_tensor(tr_y, dtype=torch.float32)
        y_val = torch.as_tensor(va_y, dtype=torch.float32)

        def predict_val():
            model.eval()
            with torch.no_grad():
                out = torch.cat([logits_of(inputs(va_flat[a:a + 4096], None if va_side is None else va_side[a:a + 4096]))
                                 for a in range(0, len(va_flat), 4096)])
            return out

        # (validation loss, weights, validation probabilities, epoch) of the best epoch so far
        best: tuple[float, Optional[dict[str, np.ndarray]], Optional[np.ndarray], int] = (math.inf, None, None, 0)
        bar = _progress_bar(opts.epochs, desc or f"train {kind}")
        epochs_run = 0
        val_losses: list[float] = []
        for epoch in range(1, opts.epochs + 1):
            model.train()
            order = rng.permutation(len(tr_flat))
            total = 0.0
            for a in range(0, len(order), opts.batch_size):
                batch = order[a:a + opts.batch_size]
                x = inputs(tr_flat[batch], None if tr_side is None else tr_side[batch])
                loss = loss_fn(logits_of(x), y_train[batch])
                optimiser.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimiser.step()
                total += float(loss.detach()) * len(batch)
            logits = predict_val()
            val_loss = float(loss_fn(logits, y_val))
            epochs_run = epoch
            info = {"epoch": epoch, "epochs": opts.epochs, "train_loss": total / len(order), "val_loss": val_loss}
            val_losses.append(val_loss)
            if progress is not None:
                progress(info)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(train=f"{info['train_loss']:.4f}", val=f"{val_loss:.4f}")
            if val_loss < best[0] - 1e-6:
                state = family.export_weights(model)
                best = (val_loss, state, torch.sigmoid(logits).double().numpy(), epoch)
            elif epoch - best[3] >= opts.patience and epoch >= opts.min_epochs:
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
    if opts.sided:
        assert va_side is not None
        aucs = {"val_auc_long": auc(va_y[va_side > 0, 0], val_p[va_side > 0, 0]),
                "val_auc_short": auc(va_y[va_side < 0, 0], val_p[va_side < 0, 0]),
                "val_auc": auc(va_y[:, 0], val_p[:, 0])}
    else:
        aucs = {"val_auc_up": auc(va_y[:, 0], val_p[:, 0]), "val_auc_down": auc(va_y[:, 1], val_p[:, 1])}
    report = {
        "kind": kind, "epochs_run": epochs_run, "best_epoch": best_epoch, "best_val_log_loss": best_loss,
        **aucs, "val_losses": [round(v, 6) for v in val_losses],
        "train_samples": int(n_train), "val_samples": int(n_val),
        "seconds": seconds, "seconds_per_epoch": seconds / max(epochs_run, 1),
    }
    return weights, mean, std, report


def _progress_bar(total: int, desc: str):
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit="epoch", leave=False)
