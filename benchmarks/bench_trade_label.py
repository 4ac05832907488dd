"""Time of the engine's trade label over history (issue 16): both sides of every bar of the last
``--bars`` bundled BTC/USDT 1h candles, with the default exit manager (``exits``) and cost model.
Prints numbers; asserts nothing.

Usage: python benchmarks/bench_trade_label.py [--bars 50000] [--runs 5]

Two parts, timed separately (median of ``--runs``): the exit manager's initial levels for a
direct long and short at every bar (plugin code, one call per bar and side) and the vectorised
barrier resolution (:func:`mlcoord.trade_label.trade_labels`), against a bar-by-bar Python
replay of the barriers on the same levels (run once) for scale.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from mlcoord.api import bundled_path, build_market_data, load_candles
from mlcoord.config import BacktestConfig
from mlcoord.trade_label import hypothetical_levels, trade_labels
from mlcoord.model import Side
from mlcoord_exits import ExitManager


def replay(o, h, l, c, side, stop, tp, horizon, fee, slip):
    """The same labels, one bar and one step at a time (the scale to beat)."""
    n = len(c)
    win = np.full(n, np.nan)
    for t in range(n - 1):
        if not np.isfinite(stop[t]):
            continue
        entry = o[t + 1] * (1 + side * slip)
        for j in range(t + 1, min(t + horizon, n - 1) + 1):
            if (side > 0 and l[j] <= stop[t]) or (side < 0 and h[j] >= stop[t]):
                price = (min(stop[t], o[j]) if side > 0 else max(stop[t], o[j])) * (1 - side * slip)
            elif np.isfinite(tp[t]) and ((side > 0 and h[j] >= tp[t]) or (side < 0 and l[j] <= tp[t])):
                price = max(tp[t], o[j]) if side > 0 else min(tp[t], o[j])
            elif j == t + horizon:
                price = c[j] * (1 - side * slip)
            else:
                continue
            win[t] = float(side * (price - entry) - fee * (entry + price) > 0)
            break
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
    slow = replay(candles.open, candles.high, candles.low, candles.close, 1, *levels[Side.LONG], args.horizon,
                  costs.fee_taker, costs.slippage)
    replay_time = time.perf_counter() - t0
    assert np.array_equal(np.isnan(slow), np.isnan(labels[Side.LONG].win))
    print(f"{len(candles):,} bars x 2 sides, horizon {args.horizon}, median of {args.runs}:")
    print(f"  exit manager initial levels   {statistics.median(level_times):.3f} s")
    print(f"  vectorised barriers           {statistics.median(label_times) * 1000:.1f} ms")
    print(f"  bar-by-bar replay (long only) {replay_time:.2f} s")
    for s in (Side.LONG, Side.SHORT):
        w = labels[s].win
        print(f"  {s.name.lower():<5} win rate {np.nanmean(w):.3f} over {int(np.isfinite(w).sum()):,} labelled bars")


if __name__ == "__main__":
    main()
