"""Fit the technical signal's confidence to the trade label, on the development part only (issue 16).

Usage: PYTHONPATH=engine:plugins python benchmarks/derive_technical_confidence.py [--symbols BTC,ETH,SOL,XRP,ADA]
                                                                                  [--holdout-from DATE] [--folds 5]

Data: ``../shared/data/roshan7869-algotrading/{SYM}_USDT-1h.feather`` (Binance 1h, read for this
derivation only), each cut before the holdout by ``evaluate``'s rule (``make_split``: the last 30 %
of the common time axis, 2023-11-12 23:00 for the five series). Samples: every BUY/SELL bar of the
``technical`` source (default options) with its trade label in the signal's direction
(``mlcoord.trade_label``: the default ``exits`` manager's initial stop and take profit, 24-bar time
barrier, the default costs). Inputs: the four indicator scores aligned with the signal (RSI,
MACD, trend, Bollinger; positive = reading in the signal's direction) and the volatility flag,
as :mod:`mlcoord_technical.confidence` reads them.

Model: L2-penalised logistic regression (``C``; the penalty shrinks every coefficient towards 0,
the fit towards the base rate). Measured out of fold: ``--folds`` contiguous time blocks, pooled
over symbols, each block scored by a fit on the others with ``HORIZON`` bars purged on both
sides; AUC of the fitted confidence, of the old strength confidence (``confidence = "strength"``)
and of the constant forecast (each block's training base rate), with 95 % paired week-block
bootstrap intervals (``mlcoord.evaluation.bootstrap``, 1,000 draws, every symbol's rows of a drawn
week together). Then one fit on every sample: the constants to paste into
``mlcoord_technical/confidence.py``. Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "roshan7869-algotrading"
HORIZON = 24
C_GRID = (0.003, 0.01, 0.03, 0.1, 1.0)


def samples(candles):
    """(inputs, label, time, old confidence) of every signal bar with a resolved label."""
    import attrs

    from mlcoord.api import Regime, build_market_data
    from mlcoord.config import BacktestConfig
    from mlcoord.trade_label import history_trade_labels
    from mlcoord_exits import ExitManager
    from mlcoord_technical import TechnicalOptions, confidence, scoring

    costs = BacktestConfig()
    data = build_market_data(candles)
    hv = np.asarray(data.context.regime) == Regime.HIGH_VOLATILITY
    o = TechnicalOptions(confidence="trade_label")
    s = scoring.score(candles.close, candles.high, candles.low, candles.volume, o, hv)
    old = scoring.score(candles.close, candles.high, candles.low, candles.volume,
                        attrs.evolve(o, confidence="strength"), hv).confidence
    bars = np.flatnonzero(s.action != 0)
    labels = history_trade_labels(ExitManager().prepare(data), candles, HORIZON, costs.fee_taker, costs.slippage,
                                  bars)
    side = s.action[bars]
    y = np.where(side > 0, labels[1].win, labels[-1].win)
    ok = np.isfinite(y)
    x = confidence.inputs(s)[bars]
    return x[ok], y[ok], candles.time[bars][ok], old[bars][ok], s.confidence[bars][ok]


def fit(x, y, c):
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=c, max_iter=1000).fit(x, y)
    return float(model.intercept_[0]), model.coef_[0].astype(float)


def predict(intercept, coef, x):
    return 1.0 / (1.0 + np.exp(-(intercept + x @ coef)))


def out_of_fold(x, y, t, folds, c):
    """Fitted and constant forecasts of each time block from a fit on the other blocks (purged)."""
    edges = np.quantile(t, np.linspace(0, 1, folds + 1))
    fold = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, folds - 1)
    purge = HORIZON * 3600 * 10**9
    p, const = np.full(len(y), np.nan), np.full(len(y), np.nan)
    for k in range(folds):
        test = fold == k
        lo, hi = t[test].min(), t[test].max()
        train = ~test & ((t < lo - purge) | (t > hi + purge))
        b, w = fit(x[train], y[train], c)
        p[test], const[test] = predict(b, w, x[test]), y[train].mean()
    return p, const


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", default="BTC,ETH,SOL,XRP,ADA")
    parser.add_argument("--holdout-from", default=None)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--c", type=float, default=0.01, help="the L2 strength shipped (1/penalty)")
    args = parser.parse_args()

    from mlcoord.api import auc
    from mlcoord.candles import load_candles
    from mlcoord.evaluation.bootstrap import WeeklyBootstrap, interval
    from mlcoord.evaluation.holdout import development_candles, make_split
    from mlcoord_technical import confidence

    candles = [load_candles(DATA / f"{s}_USDT-1h.feather", symbol=f"{s}/USDT") for s in args.symbols.split(",")]
    split = make_split(candles, args.holdout_from)
    parts = development_candles(candles, split)
    print(f"{split.describe()}; {', '.join(f'{c.symbol} {len(c):,}' for c in parts)} bars")
    got = [samples(c) for c in parts]
    x, y, t, old, shipped = (np.concatenate([g[k] for g in got]) for k in range(5))
    order = np.argsort(t, kind="stable")
    x, y, t, old, shipped = x[order], y[order], t[order], old[order], shipped[order]
    print(f"{len(y):,} signal bars with a resolved trade label, base rate {y.mean():.3f}; "
          f"inputs {', '.join(confidence.INPUTS)}")

    print(f"\nout of fold ({args.folds} purged time blocks), AUC by L2 strength C:")
    for c in C_GRID:
        p, _ = out_of_fold(x, y, t, args.folds, c)
        print(f"  C {c:<6g} AUC {auc(y, p):.4f}  range {p.min():.3f} .. {p.max():.3f}")

    p, const = out_of_fold(x, y, t, args.folds, args.c)
    boot = WeeklyBootstrap(t, resamples=1000, seed=0)
    draws = {name: boot.scores(t, y, q)["auc"] for name, q in
             (("fitted (out of fold)", p), ("old strength", old), ("constant", const))}
    point = {"fitted (out of fold)": auc(y, p), "old strength": auc(y, old), "constant": auc(y, const)}
    print(f"\nC = {args.c:g}, AUC on the trade label [95 % week-block interval], {len(boot.weeks)} weeks:")
    for name, v in point.items():
        lo, hi = interval(draws[name])
        print(f"  {name:<22} {v:.4f} [{lo:.4f}, {hi:.4f}]")
    for a, b in (("fitted (out of fold)", "constant"), ("fitted (out of fold)", "old strength"),
                 ("old strength", "constant")):
        lo, hi = interval(draws[a] - draws[b])
        print(f"  {a} - {b}: {point[a] - point[b]:+.4f} [{lo:+.4f}, {hi:+.4f}]")
    edges = np.quantile(p, np.linspace(0, 1, 11))
    top = p >= edges[9]
    print(f"  most confident decile (out of fold): hit rate {y[top].mean():.3f} (n {top.sum()}); "
          f"old strength's: {y[old >= np.quantile(old, 0.9)].mean():.3f}")

    b, w = fit(x, y, args.c)
    print(f"\nfit on every sample (C = {args.c:g}): INTERCEPT = {b:.4f}")
    for name, coef in zip(confidence.INPUTS, w):
        print(f"  {name:<10} {coef:+.4f}")
    full = predict(b, w, x)
    print(f"in-sample range {full.min():.3f} .. {full.max():.3f}; shipped constants' AUC here "
          f"{auc(y, shipped):.4f} (in sample), max |shipped - this fit| {np.abs(shipped - full).max():.4f}")


if __name__ == "__main__":
    main()
