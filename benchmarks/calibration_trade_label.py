"""The bayes calibrator fitted to where trades happen, scored on the trade label (issue 16).

Usage: PYTHONPATH=engine:plugins python benchmarks/calibration_trade_label.py [--symbols BTC,ETH,SOL,XRP,ADA]
                                                                               [--holdout-from DATE]

Data: ``../shared/data/roshan7869-algotrading/{SYM}_USDT-1h.feather``, each cut before the holdout
(``make_split``: 2023-11-12 23:00 for the five series); the holdout is never read. Per symbol a
fresh calibrator calibrates every BUY/SELL bar of the ``technical`` source (raw = its default
strength confidence, what the "signals + calibrator" arm calibrates) and learns each outcome at
its horizon (bar + 24) through ``learn_outcome``, with the engine's trade labels (default ``exits``
barriers and costs). Variants: the default (``target = "event"``, identity prior), ``target =
"trade_label"`` with ``prior_rate = 0.40`` and with the identity prior. Each is scored against the
trade label in the signal's direction: log-loss, skill against the causal climatology (the mean
of the labels resolved so far, per symbol), ECE on 15 equal-mass bins, AUC, and the share of bars
at or above ``min_confidence`` 0.55, with 95 % week-block intervals (``mlcoord.evaluation``, 1,000
draws) and paired differences. Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "roshan7869-algotrading"
HORIZON = 24
VARIANTS = {"event, identity prior (default)": {},
            "trade_label, prior_rate 0.40": {"target": "trade_label", "prior_rate": 0.40},
            "trade_label, identity prior": {"target": "trade_label"}}


def replay(candles):
    """(time, label, causal climatology, {variant: calibrated}) per signal bar with a resolved label."""
    from mlcoord.api import Action, Outcome, Signal, build_market_data
    from mlcoord.config import BacktestConfig
    from mlcoord.trade_label import history_trade_labels
    from mlcoord_bayes import BayesCalibrator, BayesOptions
    from mlcoord_exits import ExitManager
    from mlcoord_technical import Technical

    data = build_market_data(candles)
    tech = Technical().prepare(data)
    bars = np.flatnonzero(tech.action != 0)
    costs = BacktestConfig()
    labels = history_trade_labels(ExitManager().prepare(data), candles, HORIZON, costs.fee_taker, costs.slippage,
                                  bars)
    cals = {name: BayesCalibrator(BayesOptions(**kw)) for name, kw in VARIANTS.items()}
    close = candles.close
    pending: list[tuple[int, Outcome]] = []
    seen: list[float] = []
    rows = []
    for k, i in enumerate(bars.tolist()):
        while pending and pending[0][0] <= i:
            outcome = pending.pop(0)[1]
            for cal in cals.values():
                cal.learn_outcome(outcome)
            label = outcome.trade(outcome.direction)
            if label is not None:
                seen.append(float(label.win))
        if i + HORIZON >= len(close):
            break
        d, raw = int(tech.action[i]), float(tech.confidence[i])
        signal = Signal(Action(d), raw, (), "technical")
        trade = tuple(labels[side].label(k, side, 0.0, None) for side in (1, -1))
        y = trade[0] if d > 0 else trade[1]
        if y is None:
            continue
        rows.append((int(candles.time[i]), float(y.win), float(np.mean(seen)) if seen else 0.4,
                     {name: cal.calibrate(raw, signal) for name, cal in cals.items()}))
        fr = close[i + HORIZON] / close[i] - 1.0
        pending.append((i + HORIZON, Outcome(candles.symbol, i, int(candles.time[i]), d, float(fr),
                                             bool(d * fr >= 0.002), raw, raw, (), *trade)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", default="BTC,ETH,SOL,XRP,ADA")
    parser.add_argument("--holdout-from", default=None)
    args = parser.parse_args()

    from mlcoord.api import log_loss
    from mlcoord.candles import load_candles
    from mlcoord.evaluation.bootstrap import WeeklyBootstrap, interval
    from mlcoord.evaluation.metrics import score_row
    from mlcoord.evaluation.holdout import development_candles, make_split

    candles = [load_candles(DATA / f"{s}_USDT-1h.feather", symbol=f"{s}/USDT") for s in args.symbols.split(",")]
    split = make_split(candles, args.holdout_from)
    rows = [r for c in development_candles(candles, split) for r in replay(c)]
    t = np.array([r[0] for r in rows], dtype=np.int64)
    y = np.array([r[1] for r in rows])
    pc = np.array([r[2] for r in rows])
    print(f"{split.describe()}; {len(rows):,} signal bars, trade-label base rate {y.mean():.3f}")
    boot = WeeklyBootstrap(t, 1000, 0)
    samples = {}
    for name in VARIANTS:
        p = np.array([r[3][name] for r in rows])
        row = score_row(y, p, pc)
        samples[name] = boot.scores(t, y, p, pc)
        ci = {k: interval(v) for k, v in samples[name].items()}
        print(f"\n{name}: calibrated {np.percentile(p, 5):.3f} .. {np.percentile(p, 95):.3f} (5-95 %), "
              f"{(p >= 0.55).mean():.1%} of bars >= 0.55")
        for key in ("log_loss", "skill_vs_causal", "ece_mass15", "auc"):
            print(f"  {key:<16} {row[key]:+.4f} {ci[key]}")
    base = "event, identity prior (default)"
    for name in VARIANTS:
        if name != base:
            for key in ("log_loss", "skill_vs_causal"):
                diff = samples[name][key] - samples[base][key]
                print(f"{name} - default, {key}: {np.nanmean(diff):+.4f} {interval(diff)}")
    print(f"causal climatology log-loss {log_loss(y, pc):.4f}")


if __name__ == "__main__":
    main()
