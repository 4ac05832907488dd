"""Time of the engine's trade label over history (issue 16): both sides of every bar of the last
``--bars`` bundled BTC/USDT 1h candles, with the default exit manager (``exits``) and cost model.
Prints numbers; asserts nothing.

Usage: python benchmarks/bench_trade_label.py [--bars 50000] [--runs 5]

Two parts, timed separately (median of ``--runs``): the exit manager's initial levels for a
direct long and short at every bar (plugin code, one call per bar and side) and the vectorised
barrier resolution (:func:`mlcoord.trade_label.trade_labels`), against labelling bar by bar as
the trading loop labels one decision (:func:`mlcoord.trade_label.resolve_trade`, run once, long
side) for scale.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from mlcoord.api import bundled_path, build_market_data, load_candles
from mlcoord.config import BacktestConfig
from mlcoord.costs import CostModel
from mlcoord.trade_label import hypothetical_levels, resolve_trade, trade_labels
from mlcoord.model import Side
from mlcoord_exits import ExitManager


def replay(candles, side, stop, tp, horizon, costs):
    """The same labels, one bar at a time as the trading loop labels a decision (resolve_trade)."""
    o, h, l, c = (x.tolist() for x in (candles.open, candles.high, candles.low, candles.close))
    win = np.full(len(c), np.nan)
    for t in range(len(c)):
        if np.isfinite(stop[t]):
            end = t + horizon + 1
            found = resolve_trade(o[t:end], h[t:end], l[t:end], c[t:end], side, stop[t],
                                  None if np.isnan(tp[t]) else tp[t], horizon, costs)
            if found is not None:
                win[t] = float(found[0] > 0)
    return win


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bars", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--horizon", type=int, default=24)
    args = parser.parse_args()
    candles = load_candles(bundled_path("BTC/USDT"), symbol="BTC/USDT")
    candles = candles.slice(max(len(candles) - args.bars, 0), len(candles))
    costs = BacktestConfig()
    positions = ExitManager().prepare(build_market_data(candles))
    bars = np.arange(len(candles))
    level_times, label_times = [], []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        levels = {s: hypothetical_levels(positions, candles.close, s, bars) for s in (Side.LONG, Side.SHORT)}
        t1 = time.perf_counter()
        labels = {s: trade_labels(candles.open, candles.high, candles.low, candles.close, bars, int(s), *levels[s],
                                  args.horizon, costs.fee_taker, costs.slippage) for s in (Side.LONG, Side.SHORT)}
        t2 = time.perf_counter()
        level_times.append(t1 - t0)
        label_times.append(t2 - t1)
    t0 = time.perf_counter()
    slow = replay(candles, 1, *levels[Side.LONG], args.horizon, CostModel.from_config(costs))
    replay_time = time.perf_counter() - t0
    same = np.isnan(slow) == np.isnan(labels[Side.LONG].win)
    assert same.all() and np.array_equal(slow[~np.isnan(slow)], labels[Side.LONG].win[~np.isnan(slow)])
    print(f"{len(candles):,} bars x 2 sides, horizon {args.horizon}, median of {args.runs}:")
    print(f"  exit manager initial levels   {statistics.median(level_times):.3f} s")
    print(f"  vectorised barriers           {statistics.median(label_times) * 1000:.1f} ms")
    print(f"  bar by bar, long side only     {replay_time:.2f} s ({replay_time / len(candles) * 1e6:.1f} us a bar)")
    for s in (Side.LONG, Side.SHORT):
        w = labels[s].win
        print(f"  {s.name.lower():<5} win rate {np.nanmean(w):.3f} over {int(np.isfinite(w).sum()):,} labelled bars")


if __name__ == "__main__":
    main()
