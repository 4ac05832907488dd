"""Walk-forward AUC of the gbm component vs a constant forecast and a logistic regression (issue 16).

Same inputs (``available_features``, side as an input), same label (the trade label of the gbm
options' barriers), same blocks (a model per ``retrain_every_bars`` trained on labels resolved at
the block start), on the bundled BTC/USDT 1h development part only (bars before 2023-11-12: the
holdout is never read). Every bar and both sides are scored. Intervals: 95 % paired bootstrap over
whole weeks (1,000 draws). Run: PYTHONPATH=engine:plugins python benchmarks/gbm_auc.py
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlcoord.api import auc, available_features, build_market_data, bundled_path, feature_table, load_candles
from mlcoord.evaluation.bootstrap import week_of
from mlcoord_gbm import Gbm, GbmOptions, training_set

HOLDOUT = np.datetime64("2023-11-12T00:00", "ns").astype(np.int64)


def main() -> None:
    c = load_candles(bundled_path("BTC/USDT"), symbol="BTC/USDT", timeframe="1h")
    c = c.slice(0, int(np.searchsorted(c.time, HOLDOUT)))
    data = build_market_data(c)
    o = GbmOptions()
    names = available_features(data)
    table = np.asarray(feature_table(data, names), dtype=np.float32)
    gbm = Gbm(o).prepare(data).p
    # every bar's labels, known at the end of the development part (for scoring only)
    x_all, y_all, dec_all, _ = training_set(data, table, len(data) - 1,
                                            GbmOptions(train_bars=len(data)), data.event.horizon)
    side = x_all[:, -1]
    p_gbm = np.where(side > 0, gbm[dec_all, 0], gbm[dec_all, 1])
    p_lr = np.full(len(y_all), np.nan)
    p_const = np.full(len(y_all), np.nan)
    step = o.retrain_every_bars
    for start in range(step, len(data), step):
        x, y, _, _ = training_set(data, table, start, o, data.event.horizon)
        if len(np.unique(y)) < 2 or len(x) < 2 * o.min_train_bars:
            continue
        lr = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=500))
        lr.fit(np.nan_to_num(x), y)
        rows = (dec_all >= start) & (dec_all < start + step)
        p_lr[rows] = lr.predict_proba(np.nan_to_num(x_all[rows]))[:, 1]
        p_const[rows] = y.mean()
    ok = np.isfinite(p_gbm) & np.isfinite(p_lr)
    y, p_gbm, p_lr, p_const = y_all[ok], p_gbm[ok], p_lr[ok], p_const[ok]
    weeks = week_of(c.time[dec_all[ok]])
    labels, inverse = np.unique(weeks, return_inverse=True)
    groups = [np.flatnonzero(inverse == k) for k in range(len(labels))]
    rng = np.random.default_rng(0)
    draws = {"gbm": [], "logistic": [], "gbm - logistic": [], "constant": [], "gbm - constant": []}
    for _ in range(1000):
        idx = np.concatenate([groups[k] for k in rng.integers(0, len(groups), len(groups))])
        a, b = auc(y[idx], p_gbm[idx]), auc(y[idx], p_lr[idx])
        draws["gbm"].append(a)
        draws["logistic"].append(b)
        draws["gbm - logistic"].append(a - b)
        c0 = auc(y[idx], p_const[idx])
        draws["constant"].append(c0)
        draws["gbm - constant"].append(a - c0)
    print(f"BTC/USDT 1h development part, {ok.sum()} scored (bar, side) samples, base rate {y.mean():.3f}, "
          f"{len(names)} features")
    point = {"gbm": auc(y, p_gbm), "logistic": auc(y, p_lr), "gbm - logistic": auc(y, p_gbm) - auc(y, p_lr),
             "constant": auc(y, p_const), "gbm - constant": auc(y, p_gbm) - auc(y, p_const)}
    for k, v in point.items():
        lo, hi = np.percentile(draws[k], [2.5, 97.5])
        print(f"  AUC {k:15s} {v:+.4f} [{lo:+.4f}, {hi:+.4f}]")
    # the constant is each block's training base rate: 0.5 within a block, above it pooled only
    # because base rates move between blocks


if __name__ == "__main__":
    main()
