"""What ML confidence means, and how outcomes are scored without look-ahead.

**The event.** For a signal at bar ``t`` in direction ``d`` (+1 BUY, -1 SELL), the event is that
price moves at least the cost threshold in that direction by the close of bar ``t + H``:
``d * (close[t+H] / close[t] - 1) >= threshold``. ``H`` (``horizon``, default 24 bars) and the
threshold (default 0.2 %, the round trip of taker fees 2 x 0.05 % and slippage 2 x 0.05 %) are
configurable in ``[learning]``. Every ML vote, the ensemble, the calibrator and the reliability
diagram are scored against this event.

**No look-ahead.** The outcome of a decision at ``t`` is known at the close of ``t + H`` and is
only handed to learners then (the backtest engine keeps each decision pending until its
horizon bar closes); :func:`event_labels` is for training on
history, where every label it returns for bar ``i`` needs bars up to ``i + H``: a training set
that ends at bar ``k`` may use labels of bars ``<= k - H`` only (:func:`trainable_until`).
"""

from __future__ import annotations

import math
from typing import Iterable, Optional

import attrs
import numpy as np
from numpy.typing import ArrayLike

from mlcoord.model import Vote


@attrs.frozen
class EventSpec:
    """``[learning]``: the event every probability refers to."""

    horizon: int = attrs.field(default=24, validator=attrs.validators.gt(0))
    threshold: float = attrs.field(default=0.002, validator=attrs.validators.ge(0.0))

    def describe(self) -> str:
        return (f"P(price moves >= {self.threshold * 100:.2f}% in the signal's direction by the close "
                f"{self.horizon} bars later)")


def forward_return(close: np.ndarray, horizon: int) -> np.ndarray:
    """``close[i+H] / close[i] - 1``; NaN where ``i + H`` is beyond the data."""
    close = np.asarray(close, dtype=float)
    out = np.full(len(close), np.nan)
    if len(close) > horizon:
        out[:-horizon] = close[horizon:] / close[:-horizon] - 1.0
    return out


def event_happened(direction: int, forward_return: float, threshold: float) -> bool:
    """The event for one decision: the move in ``direction`` reached ``threshold``."""
    return direction * forward_return >= threshold


def event_labels(close: np.ndarray, spec: EventSpec) -> tuple[np.ndarray, np.ndarray]:
    """(up, down) labels per bar: 1.0 if the move happened, 0.0 if not, NaN if not yet known."""
    r = forward_return(close, spec.horizon)
    known = ~np.isnan(r)
    up = np.where(known, (r >= spec.threshold).astype(float), np.nan)
    down = np.where(known, (-r >= spec.threshold).astype(float), np.nan)
    return up, down


def trainable_until(k: int, spec: EventSpec) -> int:
    """Last bar whose label is known at the close of bar ``k``."""
    return k - spec.horizon


@attrs.frozen
class TradeLabel:
    """The trade label of one side of a decision bar (see :mod:`mlcoord.trade_label`): did a direct
    entry with the exit manager's initial stop and take profit close positive net of fees and
    slippage, within the event's horizon?"""

    side: int                   # +1 long / -1 short
    win: bool                   # net_return > 0
    net_return: float           # relative to the entry notional, fees and slippage paid
    barrier: str                # "stop", "take_profit" or "time": what ended the trade
    resolved_index: int         # the bar at which the label became known
    stop: float
    take_profit: Optional[float]


@attrs.frozen
class Outcome:
    """A decision's result once its horizon has closed: what every learner is fed.

    ``hit`` is the learning event (the move of :class:`EventSpec` in ``direction``); ``trade_up`` /
    ``trade_down`` are the trade labels of a long / short entered at the decision bar (None when
    the exit manager gave no levels there). A learner may learn either."""

    symbol: str
    index: int                  # the decision bar
    time: int                   # the decision bar's time (ns)
    direction: int              # +1 / -1: the direction that was judged
    forward_return: float
    hit: bool                   # the event happened
    raw_confidence: float
    confidence: float
    votes: tuple[Vote, ...] = ()
    trade_up: Optional[TradeLabel] = None
    trade_down: Optional[TradeLabel] = None

    def trade(self, direction: int) -> Optional[TradeLabel]:
        """The trade label of ``direction`` (+1 long, -1 short)."""
        return self.trade_up if direction > 0 else self.trade_down


# -- scoring -----------------------------------------------------------------------------------

def _clip(p: ArrayLike) -> np.ndarray:
    return np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6)


def log_loss(y: ArrayLike, p: ArrayLike) -> float:
    yv, pv = np.asarray(y, float), _clip(p)
    return float(-np.mean(yv * np.log(pv) + (1 - yv) * np.log(1 - pv))) if len(yv) else math.nan


def brier(y: ArrayLike, p: ArrayLike) -> float:
    yv, pv = np.asarray(y, float), np.asarray(p, float)
    return float(np.mean((pv - yv) ** 2)) if len(yv) else math.nan


def accuracy(y: ArrayLike, p: ArrayLike) -> float:
    yv, pv = np.asarray(y, float), np.asarray(p, float)
    return float(np.mean((pv >= 0.5) == (yv >= 0.5))) if len(yv) else math.nan


def auc(y: ArrayLike, p: ArrayLike) -> float:
    """Area under the ROC curve (rank statistic, ties averaged); NaN with one class only."""
    yv, pv = np.asarray(y, float), np.asarray(p, float)
    pos = yv >= 0.5
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    order = np.argsort(pv, kind="mergesort")
    ranks = np.empty(len(pv))
    sorted_p = pv[order]
    i = 0
    while i < len(pv):   # average ranks of ties
        j = i
        while j + 1 < len(pv) and sorted_p[j + 1] == sorted_p[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def reliability(y: ArrayLike, p: ArrayLike, bins: int = 10) -> list[dict]:
    """Per confidence bin: mean predicted probability, observed frequency, count."""
    yv, pv = np.asarray(y, float), np.asarray(p, float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(pv, edges[1:-1]), 0, bins - 1)
    out = []
    for b in range(bins):
        mask = which == b
        n = int(mask.sum())
        out.append({"bin": f"{edges[b]:.1f}-{edges[b + 1]:.1f}", "count": n,
                    "predicted": float(pv[mask].mean()) if n else None,
                    "observed": float(yv[mask].mean()) if n else None})
    return out


def expected_calibration_error(y: ArrayLike, p: ArrayLike, bins: int = 10) -> float:
    rows = reliability(y, p, bins)
    total = sum(r["count"] for r in rows)
    if not total:
        return math.nan
    return float(sum(r["count"] * abs(r["predicted"] - r["observed"]) for r in rows if r["count"]) / total)


def scores(y: Iterable[float], p: Iterable[float]) -> dict[str, float]:
    y, p = list(y), list(p)
    return {"n": len(y), "accuracy": accuracy(y, p), "auc": auc(y, p), "log_loss": log_loss(y, p),
            "brier": brier(y, p), "ece": expected_calibration_error(y, p),
            "base_rate": float(np.mean(y)) if y else math.nan}


class RunningScore:
    """A component's running accuracy and log-loss over the outcomes seen so far."""

    __slots__ = ("n", "correct", "loss")

    def __init__(self):
        self.n, self.correct, self.loss = 0, 0, 0.0

    def update(self, p: float, hit: bool) -> None:
        p = min(max(p, 1e-6), 1 - 1e-6)
        self.n += 1
        self.correct += int((p >= 0.5) == hit)
        self.loss -= math.log(p if hit else 1 - p)

    @property
    def accuracy(self) -> Optional[float]:
        return self.correct / self.n if self.n else None

    @property
    def log_loss(self) -> Optional[float]:
        return self.loss / self.n if self.n else None
