"""Gradient-boosted trees (LightGBM) on the feature table, predicting the engine's trade label.

Off by default: ``pip install 'mlcoord[gbm]'`` and ``--enable gbm``. The plugin loads without
lightgbm (nobody who leaves it off is warned about it); enabled without lightgbm, the run stops
with an error naming the component and that extra.

**What its numbers are.** ``p_up`` is P(a long entered at this bar closes positive net of costs),
``p_down`` the same for a short: the trade label of :mod:`mlcoord.trade_label` (triple barrier,
entry at the next open plus slippage, taker fees), not the ``[learning]`` move event. The vote's
confidence is the signal side's. A plugin cannot see the configured exit manager, so the barriers
are the ``exits`` plugin's defaults: a stop ``stop_atr`` ATR(14) away and a take profit at
``reward_risk`` times that risk; the time barrier is ``[learning] horizon``.

**Walk-forward, no look-ahead.** Bars ``[s, s + retrain_every_bars)`` are scored by a model trained
at bar ``s`` on the trailing ``train_bars`` bars whose labels had resolved by bar ``s`` (both sides
as samples, the side an input), computed from bars ``0..s`` only. The number of boosting rounds
comes from purged, embargoed CV on those samples (:mod:`mlcoord_gbm.purged_cv`; embargo = horizon),
then one fit on all of them (:mod:`mlcoord_gbm.booster`). Models are cached per series prefix, so
``prepare(data.head(k))`` reuses them. Features: :func:`available_features` (only columns the data
has; NaN is left to LightGBM).
"""

from __future__ import annotations

import hashlib
from typing import Any, Optional

import attrs
import numpy as np

from mlcoord.api import (Action, Vote, atr_trade_labels, available_features, feature_table, fraction,
                         hookimpl, integer, number)
from mlcoord_gbm.booster import Fit, fit, lightgbm

MLCOORD_HOOKS_VERSION = 1
WARMUP = 200       # the first bars never train (ema200 warm-up)


@attrs.frozen
class GbmOptions:
    """``[plugins.gbm]``.

    retrain_every_bars=1000, train_bars=8760 (a year of 1h bars), min_train_bars=800 (labelled bars
    a block needs, else it abstains). folds=3 purged CV folds; max_rounds=200 with early stopping
    (patience 10); leaves=7, learning_rate=0.05, min_child_samples=100: small trees, because an
    hourly series supports little more. seed=0 (LightGBM runs deterministic, one thread).
    stop_atr=2.0, reward_risk=1.5: the label's barriers (the exits plugin's defaults); fee=0.0005,
    slippage=0.0005: the label's taker fee and slippage (the futures defaults).
    """

    retrain_every_bars: int = attrs.field(default=1000, validator=integer(1))
    train_bars: int = attrs.field(default=8760, validator=integer(1))
    min_train_bars: int = attrs.field(default=800, validator=integer(1))
    folds: int = attrs.field(default=3, validator=integer(2))
    max_rounds: int = attrs.field(default=200, validator=integer(1))
    leaves: int = attrs.field(default=7, validator=integer(2))
    learning_rate: float = attrs.field(default=0.05, validator=number(0, 1, lo_open=True))
    min_child_samples: int = attrs.field(default=100, validator=integer(1))
    seed: int = attrs.field(default=0, validator=integer(0))
    stop_atr: float = attrs.field(default=2.0, validator=number(0, lo_open=True))
    reward_risk: float = attrs.field(default=1.5, validator=number(0, lo_open=True))
    fee: float = attrs.field(default=0.0005, validator=fraction(hi_open=True))
    slippage: float = attrs.field(default=0.0005, validator=fraction(hi_open=True))


def training_set(data: Any, table: np.ndarray, cut: int, options: GbmOptions, horizon: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x, y, decided, resolved) of both sides' trade labels known at the close of bar ``cut``,
    computed from bars ``0..cut`` only, sorted by decided bar."""
    c = data.candles
    end = cut + 1
    o, h, l, cl = c.open[:end], c.high[:end], c.low[:end], c.close[:end]
    bars = np.arange(max(WARMUP, end - options.train_bars), end)
    xs, ys, ds, rs = [], [], [], []
    for side in (1, -1):
        lab = atr_trade_labels(o, h, l, cl, bars, side, options.stop_atr, options.reward_risk, horizon, options.fee,
                               options.slippage)
        known = (lab.resolved >= 0) & (lab.resolved <= cut)
        xs.append(np.column_stack([table[bars[known]], np.full(int(known.sum()), side, dtype=np.float32)]))
        ys.append(lab.win[known])
        ds.append(bars[known])
        rs.append(lab.resolved[known])
    decided = np.concatenate(ds)
    order = np.argsort(decided, kind="stable")
    return (np.concatenate(xs)[order], np.concatenate(ys)[order], decided[order], np.concatenate(rs)[order])


def fingerprint(data: Any, end: int) -> bytes:
    """A digest of the first ``end`` bars (a cache key of 32 bytes, not a copy of the prefix)."""
    c = data.candles
    digest = hashlib.sha256()
    for a in (c.time, c.open, c.high, c.low, c.close):
        digest.update(np.ascontiguousarray(a[:end]).tobytes())
    return digest.digest()


class GbmVoter:
    """Votes of one series: both sides' probabilities for every bar of a trained block."""

    def __init__(self, name: str, p: np.ndarray, rounds: np.ndarray, horizon: int):
        self.name, self.p, self.rounds, self.horizon = name, p, rounds, horizon

    def vote(self, i: int, signal: Any = None) -> Optional[Vote]:
        p_long, p_short = self.p[i]
        if not (p_long == p_long and p_short == p_short):     # no model for this bar: abstain
            return None
        p_long, p_short = float(p_long), float(p_short)
        up = p_long >= p_short
        reason = (f"GBM({int(self.rounds[i])} rounds): P(long wins net, {self.horizon} bars)={p_long:.2f}, "
                  f"P(short wins)={p_short:.2f}")
        return Vote(self.name, Action.BUY if up else Action.SELL, p_long if up else p_short,
                    reasons=(reason,), p_up=p_long, p_down=p_short)


class Gbm:
    """The ``gbm`` ML component: see the module docstring."""

    def __init__(self, options: GbmOptions = GbmOptions(), context: Any = None):
        lightgbm()                       # enabled without lightgbm: say so now, not at the first fit
        self.options = options
        self.name = context.name if context is not None else "gbm"
        self._models: dict[tuple, Fit] = {}

    def trained_until(self) -> Optional[int]:
        """None: it walks forward, so no bar it votes on was in its training data."""
        return None

    def _model(self, data: Any, table: np.ndarray, names: tuple[str, ...], cut: int) -> Optional[Fit]:
        o, horizon = self.options, data.event.horizon
        key = (data.symbol, names, horizon, cut, fingerprint(data, cut + 1))
        if key not in self._models:
            x, y, decided, resolved = training_set(data, table, cut, o, horizon)
            if len(np.unique(decided)) < o.min_train_bars or len(np.unique(y)) < 2:
                return None
            self._models[key] = fit(x, y, decided, resolved, folds=o.folds, embargo=horizon,
                                    max_rounds=o.max_rounds, leaves=o.leaves, learning_rate=o.learning_rate,
                                    min_child_samples=o.min_child_samples, seed=o.seed)
        return self._models[key]

    def prepare(self, data: Any) -> GbmVoter:
        names = available_features(data)
        table = np.asarray(feature_table(data, names), dtype=np.float32)
        n = len(data)
        p = np.full((n, 2), np.nan)
        rounds = np.zeros(n, dtype=np.int64)
        step = self.options.retrain_every_bars
        for start in range(step, n, step):
            model = self._model(data, table, names, start)
            if model is None:
                continue
            stop = min(start + step, n)
            rows = table[start:stop]
            for k, side in enumerate((1, -1)):
                x = np.column_stack([rows, np.full(len(rows), side, dtype=np.float32)])
                p[start:stop, k] = model.predict(x)
            rounds[start:stop] = model.rounds
        return GbmVoter(self.name, p, rounds, data.event.horizon)


@hookimpl
def register_ml_components(register):
    register("gbm", Gbm, options=GbmOptions,
             description="LightGBM on the feature table, walk-forward with purged CV: P(long / short trade wins net)",
             examples=({"leaves": 4, "max_rounds": 50}, {"retrain_every_bars": 700, "min_train_bars": 500}))
