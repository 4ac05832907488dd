"""The figures of one scored row. Kept beside :mod:`mlcoord.learning`'s scores (which the
product's running reports use) because the evaluation needs more than they give: skill against
a constant forecast, and an ECE that does not hide in a few wide bins.

Names of the JSON fields (one dict per row):

* ``n``, ``accuracy``, ``auc``, ``log_loss``, ``brier``, ``base_rate`` - as before;
* ``ece`` - 10 equal-width bins (as before); ``ece_mass15`` - 15 equal-mass bins;
* ``log_loss_clim_in_sample`` - log-loss of the scored set's own base rate (a constant that
  peeks at the outcomes it is scored on: the hardest constant to beat);
* ``log_loss_clim_causal`` - log-loss of the climatology learnt on the window's training part;
* ``skill_vs_in_sample`` / ``skill_vs_causal`` - ``1 - log_loss / that climatology's log-loss``:
  above 0 the row forecasts better than the constant, below 0 worse.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from mlcoord.learning import accuracy, auc, brier, expected_calibration_error, log_loss

EPS = 1e-6


def clip(p: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(p, dtype=float), EPS, 1 - EPS)


def pointwise_log_loss(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    p = clip(p)
    y = np.asarray(y, dtype=float)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def binary_entropy(rate: float) -> float:
    """Log-loss of the constant forecast ``rate`` on a set whose base rate is ``rate``."""
    r = min(max(rate, EPS), 1 - EPS)
    return float(-(r * math.log(r) + (1 - r) * math.log(1 - r)))


def equal_mass_edges(p: np.ndarray, bins: int) -> np.ndarray:
    """Inner bin edges putting about the same number of predictions in each bin."""
    p = np.asarray(p, dtype=float)
    if not len(p):
        return np.zeros(0)
    return np.quantile(p, np.linspace(0, 1, bins + 1)[1:-1])


def bin_index(p: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.searchsorted(edges, np.asarray(p, dtype=float), side="right")


def ece_binned(y: np.ndarray, p: np.ndarray, which: np.ndarray, bins: int) -> float:
    """Count-weighted mean |mean prediction - observed frequency| over the given bins."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    if not len(y):
        return math.nan
    cnt = np.bincount(which, minlength=bins)
    sp = np.bincount(which, weights=p, minlength=bins)
    sy = np.bincount(which, weights=y, minlength=bins)
    return float(np.abs(sp - sy).sum() / cnt.sum())


def ece_equal_mass(y: np.ndarray, p: np.ndarray, bins: int = 15) -> float:
    """ECE on ``bins`` equal-mass bins (predictions bunched in 0.4-0.6 get resolved)."""
    return ece_binned(y, p, bin_index(p, equal_mass_edges(p, bins)), bins)


def score_row(y, p, p_causal: Optional[np.ndarray] = None) -> dict[str, float]:
    """Every figure of one row; ``p_causal`` is the causal climatology's forecast per row."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    n = len(y)
    base = float(y.mean()) if n else math.nan
    ll = log_loss(y, p)
    ll_in = binary_entropy(base) if n else math.nan
    ll_causal = float(pointwise_log_loss(y, p_causal).mean()) if p_causal is not None and n else math.nan
    return {
        "n": n, "accuracy": accuracy(y, p), "auc": auc(y, p), "log_loss": ll, "brier": brier(y, p),
        "ece": expected_calibration_error(y, p), "ece_mass15": ece_equal_mass(y, p), "base_rate": base,
        "log_loss_clim_in_sample": ll_in, "log_loss_clim_causal": ll_causal,
        "skill_vs_in_sample": 1.0 - ll / ll_in if n else math.nan,
        "skill_vs_causal": 1.0 - ll / ll_causal if n and ll_causal == ll_causal else math.nan,
    }


def rounded(row: dict) -> dict:
    """Four decimals for floats (the table's precision), NaN kept as None-safe NaN."""
    return {k: (round(v, 4) if isinstance(v, float) and not math.isnan(v) else v) for k, v in row.items()}
