"""The rl_selector bandit's arm choices against choosing at random, on the trade label (issue 16).

Usage: PYTHONPATH=engine:plugins python benchmarks/bandit_hit_rate.py [--symbols BTC,ETH,SOL,XRP,ADA]
                                                                       [--holdout-from DATE]

Data: ``../shared/data/roshan7869-algotrading/{SYM}_USDT-1h.feather``, each cut before the holdout
(``make_split``: 2023-11-12 23:00 for the five series); the holdout is never read. Per symbol a
fresh ``rl_selector`` votes, as in a backtest, on every BUY/SELL bar of the ``technical`` source
(default options) and learns each outcome at its horizon (bar + 24), with the engine's trade
labels in ``Outcome.trade_up`` / ``trade_down`` (default ``exits`` barriers and costs). Both
rewards are run on the same bars: ``trade_label`` (the default) and ``move`` (the seed's).

A choice *hits* when the chosen arm's trade (its direction's trade label) closed positive. Random
is the mean hit of the arms with a view at that bar (what choosing uniformly among them hits on
average). Figures: hit rate of the choices, of random, and their paired difference, with 95 %
week-block bootstrap intervals (``mlcoord.evaluation.bootstrap``, 1,000 draws, every symbol's bars
of a drawn week together). Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "roshan7869-algotrading"
HORIZON = 24


def run(candles, reward: str):
    """(time, chosen arm's hit, random's expected hit, chosen arm) per voted signal bar."""
    import attrs

    from mlcoord.api import Action, Outcome, Signal, build_market_data
    from mlcoord.config import BacktestConfig
    from mlcoord.trade_label import history_trade_labels
    from mlcoord_exits import ExitManager
    from mlcoord_rl_selector import RLSelector, RLSelectorOptions
    from mlcoord_technical import Technical

    data = build_market_data(candles)
    tech = Technical().prepare(data)
    bars = np.flatnonzero(tech.action != 0)
    costs = BacktestConfig()
    positions = ExitManager().prepare(data)
    labels = history_trade_labels(positions, candles, HORIZON, costs.fee_taker, costs.slippage, bars)
    lab = {side: labels[side] for side in (1, -1)}
    bandit = RLSelector(attrs.evolve(RLSelectorOptions(), reward=reward))
    voter = bandit.prepare(data)
    close = candles.close
    pending: list[tuple[int, Outcome]] = []
    out = []
    for k, i in enumerate(bars.tolist()):
        while pending and pending[0][0] <= i:            # outcomes whose horizon has closed
            bandit.learn(pending.pop(0)[1])
        if i + HORIZON >= len(close):
            break
        d = int(tech.action[i])
        vote = voter.vote(i, Signal(Action(d), float(tech.confidence[i]), (), "technical"))
        if vote is None:
            continue
        arm = voter.choose(i)[0]
        views = voter.directions[i]
        wins = {side: lab[side].win[k] for side in (1, -1)}
        if not all(np.isfinite(w) for w in wins.values()):
            continue
        active = np.flatnonzero(views != 0)
        hit = wins[int(views[arm])]
        random_hit = float(np.mean([wins[int(views[a])] for a in active]))
        out.append((int(candles.time[i]), hit, random_hit, arm))
        trade = tuple(lab[side].label(k, side, 0.0, None) for side in (1, -1))
        fr = close[i + HORIZON] / close[i] - 1.0
        outcome = Outcome(candles.symbol, i, int(candles.time[i]), d, float(fr), bool(d * fr >= 0.002),
                          0.5, 0.5, (vote,), *trade)
        pending.append((i + HORIZON, outcome))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", default="BTC,ETH,SOL,XRP,ADA")
    parser.add_argument("--holdout-from", default=None)
    args = parser.parse_args()

    from mlcoord.candles import load_candles
    from mlcoord.evaluation.bootstrap import WeeklyBootstrap, interval
    from mlcoord.evaluation.holdout import development_candles, make_split
    from mlcoord_rl_selector import ARMS

    candles = [load_candles(DATA / f"{s}_USDT-1h.feather", symbol=f"{s}/USDT") for s in args.symbols.split(",")]
    split = make_split(candles, args.holdout_from)
    parts = development_candles(candles, split)
    print(f"{split.describe()}; {', '.join(c.symbol for c in parts)}")
    results = {}
    for reward in ("trade_label", "move"):
        rows = np.array([r for c in parts for r in run(c, reward)], dtype=float)
        results[reward] = rows
    t = results["trade_label"][:, 0].astype(np.int64)
    boot = WeeklyBootstrap(np.concatenate([r[:, 0].astype(np.int64) for r in results.values()]), 1000, 0)
    for reward, rows in results.items():
        t = rows[:, 0].astype(np.int64)
        hit, rnd = rows[:, 1], rows[:, 2]
        h, r, d = boot.mean(t, hit), boot.mean(t, rnd), boot.mean(t, hit - rnd)
        arms = np.bincount(rows[:, 3].astype(int), minlength=len(ARMS)) / len(rows)
        print(f"\nreward {reward}: {len(rows):,} choices ({', '.join(f'{a} {s:.0%}' for a, s in zip(ARMS, arms))})")
        print(f"  hit rate chosen  {hit.mean():.4f} {interval(h)}")
        print(f"  hit rate random  {rnd.mean():.4f} {interval(r)}")
        print(f"  chosen - random  {np.mean(hit - rnd):+.4f} {interval(d)}")
    a, b = results["trade_label"], results["move"]
    if len(a) == len(b) and np.array_equal(a[:, 0], b[:, 0]):
        t = a[:, 0].astype(np.int64)
        diff = boot.mean(t, a[:, 1] - b[:, 1])
        print(f"\ntrade_label - move, hit rate of the choices (same bars): {np.mean(a[:, 1] - b[:, 1]):+.4f} "
              f"{interval(diff)}")


if __name__ == "__main__":
    main()
