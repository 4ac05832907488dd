"""One LightGBM fit: purged, embargoed CV picks the number of rounds, then a fit on all samples.

Everything that could make two runs differ is fixed: ``deterministic=True``, one thread, the seed,
no bagging or feature sampling randomness beyond the seed, so a local run and a Dask worker give
identical probabilities.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np

from mlcoord_gbm.purged_cv import purged_folds


def lightgbm() -> Any:
    """The lightgbm module, imported when the component is built (it is off by default: a user
    who never enables it never needs lightgbm, and gets no warning about it)."""
    try:
        import lightgbm as module
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError("the gbm component needs lightgbm: pip install 'mlcoord[gbm]' "
                                  "(it runs with --enable gbm)", name="lightgbm") from exc
    return module


@attrs.frozen
class Fit:
    """A trained booster and the rounds the purged CV chose (for reasons and reports)."""

    booster: Any
    rounds: int
    cv_logloss: float

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.booster.predict(x, num_threads=1), dtype=np.float64)


def params(leaves: int, learning_rate: float, min_child_samples: int, seed: int) -> dict[str, Any]:
    return {"objective": "binary", "metric": "binary_logloss", "num_leaves": leaves,
            "learning_rate": learning_rate, "min_child_samples": min_child_samples, "lambda_l2": 1.0,
            "deterministic": True, "force_row_wise": True, "num_threads": 1, "seed": seed,
            "bagging_seed": seed, "feature_fraction_seed": seed, "data_random_seed": seed, "verbosity": -1}


def fit(x: np.ndarray, y: np.ndarray, decided: np.ndarray, resolved: np.ndarray, *, folds: int, embargo: int,
        max_rounds: int, leaves: int, learning_rate: float, min_child_samples: int, seed: int,
        patience: int = 10) -> Fit:
    """Rounds = the mean best iteration over the purged folds (early stopping on each validation
    fold), then one booster on every sample with that many rounds."""
    lgb = lightgbm()
    p = params(leaves, learning_rate, min_child_samples, seed)
    best, losses = [], []
    for train, val in purged_folds(decided, resolved, folds, embargo, min_train=4 * min_child_samples):
        if len(np.unique(y[train])) < 2 or len(np.unique(y[val])) < 2:
            continue
        dtrain = lgb.Dataset(x[train], y[train], params={"verbosity": -1}, free_raw_data=False)
        dval = lgb.Dataset(x[val], y[val], reference=dtrain)
        booster = lgb.train(p, dtrain, max_rounds, valid_sets=[dval],
                                 callbacks=[lgb.early_stopping(patience, verbose=False)])
        best.append(max(1, booster.best_iteration))
        losses.append(float(booster.best_score["valid_0"]["binary_logloss"]))
    rounds = int(round(float(np.mean(best)))) if best else 1
    booster = lgb.train(p, lgb.Dataset(x, y, params={"verbosity": -1}), rounds)
    return Fit(booster, rounds, float(np.mean(losses)) if losses else float("nan"))
