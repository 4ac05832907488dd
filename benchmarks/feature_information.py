"""How much the market features (funding, basis, cross-asset, calendar, volatility regime) carry,
on real data, development part only.

Usage: python benchmarks/feature_information.py [--symbols BTC,ETH,XRP,ADA,SOL] [--seed 0] [--resamples 1000]

Data (evaluation only, never bundled; GPL-3.0): ../shared/data/roshan7869-algotrading/
``{SYM}_USDT-1h.feather`` (Binance spot 1h) and ``futures/{SYM}_USDT_USDT-1h-futures.feather`` /
``-funding_rate.feather`` (the USD-M perpetual and its funding). Bars from the holdout split on
(``mlcoord.evaluation.holdout.make_split``: the last 30 % of the spot bars) are never read.

Prints, per feature of :data:`mlcoord.feature_matrix.ALL_FEATURES`: coverage (share of scored
bars with a value) and the pooled univariate AUC against the learning event up (0.2 % in 24 bars)
with its 95 % weekly-block bootstrap interval; then a pooled L2 logistic regression trained on the
development part's earlier bars (to 2022-06-30) and scored on its later ones (2022-07-01 on, after
a 24-bar purge), on the own-candle features alone and on every feature (NaN -> 0 after
standardising), with the paired difference in AUC and its 95 % weekly-block bootstrap interval;
and the time feature_table takes.

Intervals: ``mlcoord.evaluation.bootstrap.WeeklyBootstrap`` (calendar weeks, UTC Monday, every
symbol's bars of a drawn week together; one seeded draw of weeks for every feature). Its AUC is
exact for the drawn rows (checked here against roc_auc_score with the draw's weights), so 1,000
resamples cost seconds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "engine"), str(ROOT / "plugins")]
DATA = ROOT.parent / "shared" / "data" / "roshan7869-algotrading"
SPLIT_AT = pd.Timestamp("2022-07-01", tz="UTC").value
WARMUP = 720                      # bars: the slowest feature (vol_rank_500 over vol_24) is defined after 524
FIRST = pd.Timestamp("2020-02-01", tz="UTC").value     # after the perpetuals' placeholder listing bars


def load(symbols):
    from mlcoord.api import load_candles
    from mlcoord.evaluation.holdout import make_split
    from mlcoord.market_inputs import MarketInputs
    from mlcoord.market_sources import load_funding

    spot = {s: load_candles(DATA / f"{s}_USDT-1h.feather", symbol=f"{s}/USDT") for s in symbols}
    holdout = make_split(list(spot.values())).holdout_from
    spot = {s: c.between(None, pd.Timestamp(holdout, tz="UTC")) for s, c in spot.items()}
    inputs = {}
    for s, c in spot.items():
        perp = load_candles(DATA / "futures" / f"{s}_USDT_USDT-1h-futures.feather", symbol=f"{s}/USDT")
        funding = load_funding(DATA / "futures" / f"{s}_USDT_USDT-1h-funding_rate.feather")
        inputs[s] = MarketInputs(funding, spot=c, perpetual=perp,
                                 peers={p.symbol: p for q, p in spot.items() if q != s})
    return spot, inputs, holdout


def main() -> int:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    from mlcoord.api import build_market_data
    from mlcoord.evaluation.bootstrap import WeeklyBootstrap, interval
    from mlcoord.feature_matrix import ALL_FEATURES, FEATURES, feature_table
    from mlcoord.learning import EventSpec, event_labels

    ap = argparse.ArgumentParser()
    ap.add_argument("--symbols", default="BTC,ETH,XRP,ADA,SOL")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--resamples", type=int, default=1000, help="weekly-block bootstrap draws")
    args = ap.parse_args()
    if not DATA.is_dir():
        print(f"no data at {DATA}")
        return 2
    spot, inputs, holdout = load(args.symbols.split(","))
    rows, times, ys = [], [], []
    seconds = []
    for s, c in spot.items():
        data = build_market_data(c, inputs=inputs[s])
        t0 = time.perf_counter()
        table = feature_table(data)
        seconds.append((time.perf_counter() - t0, len(c), s))
        up, _ = event_labels(c.close, EventSpec())
        keep = (np.arange(len(c)) >= WARMUP) & (c.time >= FIRST) & np.isfinite(up)
        rows.append(table[keep])
        times.append(c.time[keep])
        ys.append(up[keep])
    x, t, y = np.vstack(rows).astype(np.float64), np.concatenate(times), np.concatenate(ys)
    print(f"development part: bars before {pd.Timestamp(holdout, tz='UTC').date()}, scored from "
          f"{pd.Timestamp(FIRST, tz='UTC').date()}; {len(y):,} bars of {', '.join(spot)}; base rate up {y.mean():.3f}")
    t0 = time.perf_counter()
    boot = WeeklyBootstrap(t, args.resamples, args.seed)
    print(f"\n{'feature':<18} {'coverage':>9} {'AUC (up)':>9}  95 % interval ({len(boot.weeks)} weeks, "
          f"{args.resamples:,} resamples, seed {args.seed})")
    for k, name in enumerate(ALL_FEATURES):
        ok = np.isfinite(x[:, k])
        if ok.sum() <= 100:
            print(f"{name:<18} {ok.mean():>9.3f} {'n/a':>9}")
            continue
        a = roc_auc_score(y[ok], x[ok, k])
        draws = boot.auc(t[ok], y[ok], x[ok, k])
        if k == 0:      # the fast AUC against sklearn's, on the first draw's weights
            check = roc_auc_score(y[ok], x[ok, k], sample_weight=boot.counts[0][boot.index(t[ok])])
            if abs(check - draws[0]) > 1e-9:
                raise RuntimeError(f"bootstrap AUC {draws[0]!r} != roc_auc_score {check!r} on draw 0 of {name}")
        lo, hi = interval(draws)
        flag = "" if lo is None or lo > 0.5 or hi < 0.5 else "  (contains 0.5)"
        print(f"{name:<18} {ok.mean():>9.3f} {a:>9.4f}  [{lo:.4f}, {hi:.4f}]{flag}")
    print(f"intervals took {time.perf_counter() - t0:.1f} s")

    train = t < SPLIT_AT - 24 * 3_600 * 10**9
    test = t >= SPLIT_AT
    aucs, probs = {}, {}
    for label, names in (("own-candle features", FEATURES), ("all features", ALL_FEATURES)):
        cols = [ALL_FEATURES.index(n) for n in names]
        z = x[:, cols]
        mean, std = np.nanmean(z[train], axis=0), np.nanstd(z[train], axis=0)
        z = np.nan_to_num((z - mean) / np.where(std > 0, std, 1.0))
        model = LogisticRegression(C=1e-3, max_iter=2000).fit(z[train], y[train])
        probs[label] = model.predict_proba(z[test])[:, 1]
        aucs[label] = roc_auc_score(y[test], probs[label])
    paired = WeeklyBootstrap(t[test], args.resamples, args.seed)      # the same draws for both models
    lo, hi = interval(paired.auc(t[test], y[test], probs["all features"])
                      - paired.auc(t[test], y[test], probs["own-candle features"]))
    print(f"\npooled logistic (C=1e-3), trained {int(train.sum()):,} bars to 2022-06-30, tested {int(test.sum()):,} "
          f"bars 2022-07-01 -> holdout:")
    for label, a in aucs.items():
        print(f"  {label:<20} AUC {a:.4f}")
    print(f"  difference           {aucs['all features'] - aucs['own-candle features']:+.4f} "
          f"[{lo:+.4f}, {hi:+.4f}] (95 % weekly-block bootstrap, {len(paired.weeks)} weeks, "
          f"{args.resamples:,} resamples)")
    print("\nfeature_table (all 25 columns), one call per symbol, cold:")
    for sec, n, s in seconds:
        print(f"  {s}: {n:,} bars, 4 peers, funding and perpetual: {sec * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
