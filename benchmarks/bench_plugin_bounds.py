"""What issue 15's distrust of plugins costs. Prints numbers; asserts nothing.

Usage: python benchmarks/bench_plugin_bounds.py [--runs 5] [--data50k PATH]

* the 50,000-bar backtest (last 50,000 rows of nic-tradingstrategyga BTC/USDT 1h, read from
  ../shared/data; the bundled BTC/USDT 1h when absent), technical pipeline and with every ML
  plugin: median prepare and loop seconds in process (run it with ``PYTHONPATH`` at another
  checkout's ``engine:plugins`` to compare; the script needs nothing new);
* the candle frame a plugin reads (``data.candles.frame``, built on first use), on 50,000 bars:
  first access and a later access;
* one engine check per kind of answer (:mod:`mlcoord.bounds`) and one call under a time budget
  (:mod:`mlcoord.budget`: the hand-off to the component's worker thread and back), in
  microseconds per call, when this checkout has them.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data" / "nic-tradingstrategyga" / "BTC_USDT-1h.feather"
ML = ("bayes", "lstm", "attention", "mtf", "rl_selector")


def per_call_us(fn, n: int = 20_000) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1e6


def backtests(candles, runs: int) -> None:
    from bench_backtest import builtin_only
    from mlcoord.backtest.run import run_backtest
    from mlcoord.config import Settings

    for label, disabled in (("technical pipeline", builtin_only(ML)), ("every ML plugin", builtin_only())):
        prepares, loops = [], []
        for _ in range(runs):
            result = run_backtest(Settings(), candles=[candles], disabled=disabled)
            prepares.append(result.elapsed["prepare"])
            loops.append(result.elapsed["loop"])
        print(f"  {label}: prepare {statistics.median(prepares):.3f} s, loop {statistics.median(loops):.3f} s "
              f"(median of {runs}; {result.stats['trades']} trades, final equity {result.stats['final_equity']:.2f})")


def frame_access(candles) -> None:
    fresh = candles.slice(0, len(candles), own=True)
    t0 = time.perf_counter()
    fresh.frame
    first = time.perf_counter() - t0
    frame = fresh.frame
    t0 = time.perf_counter()
    for _ in range(20):
        frame["close"].rolling(20).mean()
    rolling = (time.perf_counter() - t0) / 20
    print(f"  data.candles.frame on {len(fresh):,} bars: first access {first * 1e3:.2f} ms, later "
          f"{per_call_us(lambda: fresh.frame, 2000):.2f} us; type {type(frame).__name__}; "
          f"frame['close'].rolling(20).mean() {rolling * 1e3:.2f} ms; frame.iloc[i, 3] "
          f"{per_call_us(lambda: frame.iloc[100, 3], 5000):.2f} us; frame.loc[t, 'close'] "
          f"{per_call_us(lambda: frame.loc[frame.index[100], 'close'], 5000):.2f} us")


def checks() -> None:
    try:
        from mlcoord import bounds
        from mlcoord.budget import Budget
    except ImportError:
        print("  (this checkout has no mlcoord.bounds / mlcoord.budget)")
        return
    from mlcoord.model import Action, EntryLeg, EntryPlan, ExitLevels, Side, Sizing, SizingRequest, Vote

    vote = Vote("x", Action.BUY, 0.7, p_up=0.7, p_down=0.2)
    plan = EntryPlan(Side.LONG, (EntryLeg(100.0, 0.5, market=True), EntryLeg(99.0, 0.5)))
    levels, moved = ExitLevels(stop=95.0, take_profit=110.0), ExitLevels(stop=96.0, take_profit=110.0)
    request = SizingRequest("X", Side.LONG, plan, 95.0, 0.7, 10_000.0, 0.0, 0, 0.0005, 0.0005, 1.0)
    sizing = Sizing(quantity=1.0, risk=5.0, reasons=("r",))
    for what, fn in (("vote", lambda: bounds.checked_vote(vote, "x")),
                     ("plan", lambda: bounds.checked_plan(plan, Side.LONG, 100.0)),
                     ("initial levels", lambda: bounds.checked_levels(levels, Side.LONG, plan, 100.0)),
                     ("exit update (moved)", lambda: bounds.checked_update(moved, levels, Side.LONG)),
                     ("sizing", lambda: bounds.checked_sizing(sizing, request)),
                     ("calibrated probability", lambda: bounds.checked_probability(0.61))):
        print(f"  check {what}: {per_call_us(fn):.2f} us")
    budget, plain = Budget(5000), (lambda: None)
    budget.call("warm", plain)
    print(f"  a call under a budget (worker thread hand-off): {per_call_us(lambda: budget.call('warm', plain), 5000):.1f}"
          f" us, plain call {per_call_us(plain):.2f} us")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--data50k", type=Path, default=SHARED)
    args = parser.parse_args()
    from mlcoord import logs
    from mlcoord.candles import load_candles
    from mlcoord.datasets import bundled_path

    logs.configure("error", json=True)
    if args.data50k.exists():
        candles = load_candles(args.data50k)
        candles = candles.slice(len(candles) - 50_000, len(candles))
    else:
        candles = load_candles(bundled_path("BTC/USDT"))
    print(f"{len(candles):,} bars:")
    backtests(candles, args.runs)
    frame_access(candles)
    checks()


if __name__ == "__main__":
    main()
