"""LSTM and attention on the trade label, pooled across symbols, direction as an input (issue 16).

Usage: MALLOC_MMAP_THRESHOLD_=1000000000 MALLOC_TRIM_THRESHOLD_=1000000000 \\
       PYTHONPATH=engine:plugins python benchmarks/sequence_trade_label.py [--setup new|old|both]
                                                                         [--windows N] [--symbols ...]

Data: ``../shared/data/roshan7869-algotrading/{SYM}_USDT-1h.feather``, each cut before the holdout
(``make_split``: 2023-11-12 23:00 for the five series); the holdout is never read. Windows: those of
``mlcoord evaluate`` (``plan_windows`` with the default ``WalkForward``: a model per window trained
on the 17,520 bars before a 4,380-bar fit period, pooled over every symbol, scored on the next
4,380 bars), the newest ``--windows`` of them. Setups: ``new`` = the shipped defaults (target
``trade_label``, direction as an input, early stopping with ``min_epochs``); ``old`` = the seed's
(target ``event``, two heads, lr 3e-3, patience 3, min_epochs 1, stride 2).

Scored: every technical BUY/SELL bar of the test ranges (default ``technical`` options), label =
the engine's trade label in the signal's direction (``history_trade_labels`` with the default
``exits`` manager's initial levels, 24-bar time barrier, default costs). Forecasts: each model's
probability for the signal's side (new: P(this trade wins); old: P(the move event in the signal's
direction)), a plain logistic regression on the same inputs at the signal bar (the last bar's 12
features aligned with the side, plus the side; trained on the same window's bars and both sides'
labels as the new models), and the constant (the window's training base rate). AUC with 95 %
paired week-block bootstrap intervals (``mlcoord.evaluation.bootstrap``, 1,000 draws); the
chosen (best) epoch of every fit; the correlation of each forecast with the signed 24 h return
(side x log return of the last 24 bars: "fade the move" is strongly negative). Prints numbers;
asserts nothing.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "roshan7869-algotrading"
HORIZON = 24
OLD = dict(target="event", lr=3e-3, patience=3, min_epochs=1, stride=2)


def components(setup: str):
    from mlcoord_attention import Attention, AttentionOptions
    from mlcoord_lstm import Lstm, LstmOptions
    extra = OLD if setup == "old" else {}
    return {"lstm": (Lstm, LstmOptions, extra), "attention": (Attention, AttentionOptions, extra)}


def signal_rows(data, start: int, end: int):
    """(bars, side, trade label) of the technical BUY/SELL bars in time [start, end) with a label."""
    from mlcoord.config import BacktestConfig
    from mlcoord.trade_label import history_trade_labels
    from mlcoord_exits import ExitManager
    from mlcoord_technical import Technical

    c = data.candles
    action = Technical().prepare(data).action
    lo, hi = np.searchsorted(c.time, [start, end])
    bars = lo + np.flatnonzero(action[lo:hi] != 0)
    costs = BacktestConfig()
    labels = history_trade_labels(ExitManager().prepare(data), c, HORIZON, costs.fee_taker, costs.slippage, bars)
    side = action[bars].astype(int)
    y = np.where(side > 0, labels[1].win, labels[-1].win)
    ok = np.isfinite(y)
    return bars[ok], side[ok], y[ok]


def logistic(train_sets, test_x):
    """The plain baseline: last-bar aligned features + side, standardised, L2 (C = 0.1)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from mlcoord.feature_matrix import feature_matrix
    from mlcoord.sequence.component import WARMUP
    from mlcoord.sequence.sided import Barriers, signs, trade_label_matrix
    xs, ys = [], []
    for d in train_sets:
        c = d.candles
        m = feature_matrix(c.open, c.high, c.low, c.close, c.volume)
        lab = trade_label_matrix(c, len(d) - 1, HORIZON, Barriers())
        for k, s in enumerate((1, -1)):
            ok = np.flatnonzero(np.isfinite(lab[:, k]))
            ok = ok[ok >= WARMUP]
            xs.append(np.column_stack([m[ok] * signs(np.full(len(ok), s)), np.full(len(ok), s)]))
            ys.append(lab[ok, k])
    x, y = np.vstack(xs), np.concatenate(ys)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=1000)).fit(x, y)
    return model.predict_proba(test_x)[:, 1], float(y.mean())


def run_window(parts, window, setup, folder):
    from mlcoord.api import build_market_data
    from mlcoord.evaluate import _between
    from mlcoord.feature_matrix import feature_matrix
    from mlcoord.sequence.sided import signs

    train = [build_market_data(p) for p in (_between(c, window.train_start, window.fit_start) for c in parts)
             if len(p) > 600]     # as ``train_models``: a series needs more than its warm-up
    full = [build_market_data(_between(c, 0, window.test_end)) for c in parts]
    rows = [signal_rows(d, window.test_start, window.test_end) for d in full]
    out = {"time": np.concatenate([d.candles.time[r[0]] for d, r in zip(full, rows)]),
           "y": np.concatenate([r[2] for r in rows]), "fits": {}}
    side = np.concatenate([r[1] for r in rows])
    ret24 = np.concatenate([np.log(d.candles.close[r[0]] / d.candles.close[r[0] - 24]) for d, r in zip(full, rows)])
    out["signed_ret24"] = side * ret24
    for name, (cls, opts, extra) in components(setup).items():
        started = time.perf_counter()
        report = cls(opts(**extra)).train(train, folder / f"{name}-{setup}-w{window.index}.npz")
        model = cls(opts(**extra, model_path=str(folder / f"{name}-{setup}-w{window.index}.npz"),
                         max_model_age_days=100_000.0))
        p = np.concatenate([model.prepare(d).probabilities(r[0]) for d, r in zip(full, rows)])
        out[name] = np.where(side > 0, p[:, 0], p[:, 1])
        out["fits"][name] = (report["best_epoch"], report["epochs_run"], report["train_samples"],
                             round(time.perf_counter() - started, 1))
        print(f"  window {window.index} {name} ({setup}): best epoch {report['best_epoch']} of "
              f"{report['epochs_run']}, {report['train_samples']:,} samples, {out['fits'][name][3]} s, "
              f"val losses {report['val_losses']}", flush=True)
    test_x = []
    for d, r in zip(full, rows):
        c = d.candles
        m = feature_matrix(c.open, c.high, c.low, c.close, c.volume)[r[0]]
        test_x.append(np.column_stack([m * signs(r[1]), r[1]]))
    out["logistic"], rate = logistic(train, np.vstack(test_x))
    out["constant"] = np.full(len(out["y"]), rate)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", default="BTC,ETH,SOL,XRP,ADA")
    parser.add_argument("--setup", choices=("new", "old", "both"), default="new")
    parser.add_argument("--windows", type=int, default=6, help="the newest N windows (6: evaluate's)")
    args = parser.parse_args()

    from mlcoord.api import auc
    from mlcoord.candles import load_candles
    from mlcoord.evaluate import WalkForward, plan_windows
    from mlcoord.evaluation.bootstrap import WeeklyBootstrap, interval
    from mlcoord.evaluation.holdout import development_candles, make_split, union_times

    candles = [load_candles(DATA / f"{s}_USDT-1h.feather", symbol=f"{s}/USDT") for s in args.symbols.split(",")]
    split = make_split(candles, None)
    parts = development_candles(candles, split)
    windows = plan_windows(union_times([c.time for c in parts]), WalkForward(windows=args.windows))
    print(f"{split.describe()}; {len(windows)} windows; {', '.join(f'{c.symbol} {len(c):,}' for c in parts)} bars")
    setups = ("old", "new") if args.setup == "both" else (args.setup,)
    folder = Path(tempfile.mkdtemp(prefix="seq16-"))
    for setup in setups:
        got = [run_window(parts, w, setup, folder) for w in windows]
        cat = {k: np.concatenate([g[k] for g in got]) for k in ("time", "y", "signed_ret24", "lstm", "attention",
                                                                  "logistic", "constant")}
        t, y = cat["time"], cat["y"]
        boot = WeeklyBootstrap(t, 1000, 0)
        draws = {k: boot.scores(t, y, cat[k])["auc"] for k in ("lstm", "attention", "logistic", "constant")}
        print(f"\nsetup {setup}: {len(y):,} signal bars, trade-label base rate {y.mean():.3f}, "
              f"{len(boot.weeks)} weeks")
        for k in ("lstm", "attention", "logistic", "constant"):
            corr = np.corrcoef(cat[k], cat["signed_ret24"])[0, 1] if np.std(cat[k]) > 0 else float("nan")
            print(f"  AUC {k:<10} {auc(y, cat[k]):.4f} {interval(draws[k])}  corr(signed 24 h return) {corr:+.3f}")
        for a, b in (("lstm", "logistic"), ("attention", "logistic"), ("lstm", "constant"),
                     ("attention", "constant"), ("logistic", "constant")):
            d = draws[a] - draws[b]
            print(f"  {a} - {b}: {auc(y, cat[a]) - auc(y, cat[b]):+.4f} {interval(d)}")
        for name in ("lstm", "attention"):
            print(f"  {name} (best epoch, epochs run, train samples, seconds) per window: "
                  f"{[g['fits'][name] for g in got]}")


if __name__ == "__main__":
    main()
