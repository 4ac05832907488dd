"""What the ML stack has to beat, trained per window on exactly the bars its models train on.

Every baseline gives, for each bar, the probability of the learning event up and down (the
LSTM's two heads), so it is scored like a component: at a signal bar in direction ``d`` its
probability is the head of ``d``. All read :func:`mlcoord.feature_matrix.feature_matrix`, the
matrix the learned components read, and are fitted on the window's training part only
(``[train_start, fit_start)``, labels whose horizon closed before ``fit_start``; no look-ahead),
on the scored label: the event by default, or the trade label (``labels``, an
:class:`~mlcoord.evaluation.labels.Labeller`: P(a long / short entered at the bar wins)):

* ``climatology (causal)`` - the training part's frequency of the event up / down;
* ``logistic`` - standardised features, L2 logistic regression, ``C`` chosen by time-series
  cross-validation (log-loss, chronological folds with a horizon-wide gap) on the training part;
* ``gradient boosting`` - scikit-learn's HistGradientBoosting on the same matrix, fixed small
  settings (no tuning: a plain reference, not a contender);
* ``fade 24h`` - the last 24 bars' move, against its direction, with no training for its
  ranking (AUC); its probability is a Platt scaling fitted on the training part with the slope
  held >= 0, so the fit cannot turn "fade" into "follow".

The in-sample climatology (the scored set's own base rate) and always-abstain need no model:
see :mod:`mlcoord.evaluation.metrics` and :mod:`mlcoord.evaluation.arms`.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import attrs
import numpy as np

from mlcoord.candles import Candles
from mlcoord.feature_matrix import FEATURES, feature_matrix
from mlcoord.evaluation.metrics import pointwise_log_loss
from mlcoord.learning import EventSpec, event_labels

NAMES = ("climatology (causal)", "logistic", "gradient boosting", "fade 24h")
FEATURE_WARMUP = 200            # bars before the slowest feature (EMA 200) means anything
RET_24 = FEATURES.index("ret_24")
#: per bar of a series: (up / long, down / short) labels, NaN where not known inside it
LabelsOf = Callable[[Candles], tuple[np.ndarray, np.ndarray]]


@attrs.frozen
class BaselineOptions:
    """Fixed settings of the baselines (seeded: the same data gives the same models)."""

    c_grid: tuple[float, ...] = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
    cv_splits: int = 3
    boosting_iterations: int = 60
    boosting_learning_rate: float = 0.1
    boosting_leaf_nodes: int = 15
    boosting_min_leaf: int = 200
    seed: int = 0


@attrs.frozen(eq=False)
class BaselineModels:
    """One window's fitted baselines; picklable, so a worker can send them back."""

    climatology: tuple[float, float]
    logistic: tuple[Any, Any]                 # (P(up) model, P(down) model), each with predict_proba
    logistic_c: tuple[float, float]
    boosting: tuple[Any, Any]
    fade: tuple[tuple[float, float], tuple[float, float]]
    fade_scale: float
    n_train: int

    def describe(self) -> dict:
        """What was fitted (for the result's training report): rows, chosen C, climatology."""
        return {"rows": self.n_train, "logistic_c_up": self.logistic_c[0], "logistic_c_down": self.logistic_c[1],
                "climatology_up": round(self.climatology[0], 4), "climatology_down": round(self.climatology[1], 4)}

    def predict(self, candles: Candles) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per baseline, (P(up), P(down)) for every bar of ``candles`` (causal: bar i uses bars <= i)."""
        x = features_of(candles)
        n = len(x)
        def pair(up: np.ndarray, down: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return up, down

        move = x[:, RET_24] / self.fade_scale
        (a_up, b_up), (a_down, b_down) = self.fade
        return {
            "climatology (causal)": pair(np.full(n, self.climatology[0]), np.full(n, self.climatology[1])),
            "logistic": pair(self.logistic[0].predict_proba(x)[:, 1], self.logistic[1].predict_proba(x)[:, 1]),
            "gradient boosting": pair(self.boosting[0].predict_proba(x)[:, 1], self.boosting[1].predict_proba(x)[:, 1]),
            "fade 24h": pair(_sigmoid(a_up + b_up * -move), _sigmoid(a_down + b_down * move)),
        }


def features_of(candles: Candles) -> np.ndarray:
    c = candles
    return feature_matrix(c.open, c.high, c.low, c.close, c.volume).astype(float)


def training_set(candles: Sequence[Candles], start: int, end: int, event: EventSpec,
                 labels: Optional[LabelsOf] = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows of ``[start, end)`` of every symbol whose label is known before ``end``, by time:
    (features, up labels, down labels, times). ``labels`` (default: the event's) reads the
    series cut at ``end``, so no label resolved at or after it is used (purged)."""
    xs, ups, downs, times = [], [], [], []
    for c in candles:
        k_end = int(np.searchsorted(c.time, end))
        k_start = max(int(np.searchsorted(c.time, start)), FEATURE_WARMUP)
        if k_end - k_start <= event.horizon:
            continue
        head = c.slice(0, k_end)                     # nothing at or after ``end`` is read
        x = features_of(head)
        up, down = event_labels(head.close, event) if labels is None else labels(head)
        rows = np.arange(k_start, k_end)
        rows = rows[~np.isnan(up[rows]) & ~np.isnan(down[rows])]
        xs.append(x[rows])
        ups.append(up[rows])
        downs.append(down[rows])
        times.append(head.time[rows])
    if not xs:
        import pandas as pd

        span = " -> ".join(pd.Timestamp(v, tz="UTC").isoformat() for v in (start, end))
        raise ValueError(f"no training rows for the baselines in {span}: every symbol has at most "
                         f"{FEATURE_WARMUP} + {event.horizon} bars there")
    t = np.concatenate(times)
    order = np.argsort(t, kind="stable")
    return (np.concatenate(xs)[order], np.concatenate(ups)[order], np.concatenate(downs)[order], t[order])


def fit_baselines(candles: Sequence[Candles], start: int, end: int, event: EventSpec,
                  options: BaselineOptions = BaselineOptions(), labels: Optional[LabelsOf] = None) -> BaselineModels:
    """Fit every baseline on ``[start, end)`` (the window's training part), on ``labels``
    (default: the event)."""
    x, up, down, _ = training_set(candles, start, end, event, labels)
    gap = event.horizon * max(len(candles), 1)      # rows of one horizon across the pooled symbols
    logistic, chosen, boosting, fade = [], [], [], []
    scale = float(np.std(x[:, RET_24])) or 1.0
    _sklearn()
    from threadpoolctl import threadpool_limits

    # one thread: OpenMP workers spinning against other processes on a shared 2-core machine made
    # gradient boosting 8x slower; executors run one task per core anyway
    with threadpool_limits(limits=1):
        for y, sign in ((up, -1.0), (down, 1.0)):
            c = choose_c(x, y, options, gap)
            chosen.append(c)
            logistic.append(_logistic(c).fit(x, y))
            boosting.append(_boosting(options).fit(x, y))
            fade.append(_platt(sign * x[:, RET_24] / scale, y))
    return BaselineModels((float(up.mean()), float(down.mean())), (logistic[0], logistic[1]), (chosen[0], chosen[1]),
                          (boosting[0], boosting[1]), (fade[0], fade[1]), scale, len(x))


def _logistic(c: float) -> "L2Logistic":
    return L2Logistic(c)


class L2Logistic:
    """Standardised features, L2-penalised logistic regression (scikit-learn's convention:
    minimise ``sum(log-loss) + |w|^2 / (2 C)``, intercept not penalised), solved by Newton's
    method: a dozen features converge in a few exact steps, 30x faster than a generic solver
    on 100,000 rows, and the result does not depend on a solver's tolerance."""

    def __init__(self, c: float, iterations: int = 50):
        if not c > 0:
            raise ValueError(f"logistic C must be > 0, got {c!r}")
        self.c, self.iterations = float(c), iterations

    def fit(self, x: np.ndarray, y: np.ndarray) -> "L2Logistic":
        self.mean = x.mean(axis=0)
        self.scale = x.std(axis=0)
        self.scale[self.scale == 0] = 1.0
        z = np.column_stack([np.ones(len(x)), (x - self.mean) / self.scale])
        penalty = np.full(z.shape[1], 1.0 / self.c)
        penalty[0] = 0.0
        w = np.zeros(z.shape[1])
        for _ in range(self.iterations):
            p = _sigmoid(z @ w)
            grad = z.T @ (p - y) + penalty * w
            hess = (z * (p * (1 - p))[:, None]).T @ z + np.diag(penalty) + 1e-9 * np.eye(len(w))
            step = np.linalg.solve(hess, grad)
            w -= step
            if np.abs(step).max() < 1e-10:
                break
        self.coef = w
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        p = _sigmoid(self.coef[0] + ((x - self.mean) / self.scale) @ self.coef[1:])
        return np.column_stack([1 - p, p])


def _sklearn():
    try:
        import sklearn  # noqa: F401
    except ImportError:
        from mlcoord.errors import ConfigError

        raise ConfigError("mlcoord evaluate needs scikit-learn for its baselines: pip install 'mlcoord[evaluate]'"
                          ) from None


def _boosting(options: BaselineOptions):
    _sklearn()
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(
        max_iter=options.boosting_iterations, learning_rate=options.boosting_learning_rate,
        max_leaf_nodes=options.boosting_leaf_nodes, min_samples_leaf=options.boosting_min_leaf,
        early_stopping=False, random_state=options.seed)


def choose_c(x: np.ndarray, y: np.ndarray, options: BaselineOptions, gap: int) -> float:
    """The L2 strength with the lowest mean validation log-loss over chronological folds."""
    _sklearn()
    from sklearn.model_selection import TimeSeriesSplit

    if len(options.c_grid) == 1:
        return float(options.c_grid[0])
    need = (options.cv_splits + 1) * 2 * gap
    if len(x) < need:
        raise ValueError(f"the baselines' training part has {len(x)} rows, too few to choose C by "
                         f"{options.cv_splits} time-series folds with a {gap}-row gap (need {need}); "
                         f"give the models more training bars (--train-bars)")
    folds = list(TimeSeriesSplit(n_splits=options.cv_splits, gap=gap).split(x))
    best, best_loss = options.c_grid[0], np.inf
    for c in options.c_grid:
        losses = []
        for train, valid in folds:
            if len(np.unique(y[train])) < 2:
                continue
            p = _logistic(c).fit(x[train], y[train]).predict_proba(x[valid])[:, 1]
            losses.append(float(pointwise_log_loss(y[valid], p).mean()))
        loss = float(np.mean(losses)) if losses else np.inf
        if loss < best_loss:
            best, best_loss = c, loss
    return float(best)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))


def _platt(score: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(intercept, slope >= 0) of a logistic fit of ``y`` on ``score``."""
    from scipy.optimize import minimize

    def loss(w):
        p = np.clip(_sigmoid(w[0] + w[1] * score), 1e-9, 1 - 1e-9)
        g = p - y
        return -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)), np.array([g.mean(), (g * score).mean()])

    base = min(max(float(y.mean()), 1e-3), 1 - 1e-3)
    res = minimize(loss, np.array([np.log(base / (1 - base)), 0.0]), jac=True, method="L-BFGS-B",
                   bounds=[(None, None), (0.0, None)])
    return float(res.x[0]), float(res.x[1])
