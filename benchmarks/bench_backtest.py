"""Speed and memory of the pipeline, technical-only and with every ML plugin. Prints numbers;
asserts nothing.

Usage: python benchmarks/bench_backtest.py [--runs 5] [--data50k PATH] [--loop-only]

* whole process: ``mlcoord backtest`` as a subprocess (start-up included), median wall and CPU
  time and peak RSS over runs, for the bundled default (43,803 BTC/USDT 1h bars) and for the last
  50,000 rows of nic-tradingstrategyga BTC/USDT 1h (the candles freqtrade's anchor uses; read from
  ../shared/data, which benchmarks may use, never the product), the latter also with ``--json``;
* in process: the bar loop alone (after preparing signals), as bars per second;
* one live decision: prepare a rolling window of 1,000 bars and decide its last bar (what a live
  cycle does per symbol), p50 and p99 over 100 windows.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data" / "nic-tradingstrategyga" / "BTC_USDT-1h.feather"
ML = ("bayes", "lstm", "attention", "mtf", "rl_selector")


def builtin_only(extra_disabled=()) -> dict[str, str]:
    """Disable every installed plugin that is not a built-in (e.g. the template), plus extras."""
    from mlcoord.registry import discover_entry_points

    out = {n: "bench" for n, ep in discover_entry_points().items() if getattr(ep.dist, "name", "") != "mlcoord"}
    out.update({n: "bench" for n in extra_disabled})
    return out


def whole_process(args: list[str], runs: int, disabled: dict) -> tuple[float, float, float]:
    """Median wall and CPU (user + system) seconds of the process, and its peak RSS in MB. CPU time
    moves less than wall time on a machine shared with other work."""
    times, cpus, peaks = [], [], []
    env = {**os.environ, "MLCOORD_DISABLE": ",".join(disabled)}
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "mlcoord.cli", "backtest", "--no-progress", *args],
                              capture_output=True, text=True, env=env)
        times.append(time.perf_counter() - t0)
        if proc.returncode:
            raise SystemExit(f"backtest failed: {proc.stderr}")
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        peaks.append(after.ru_maxrss)
    return statistics.median(times), statistics.median(cpus), max(peaks) / 1024


def in_process(candles, runs: int, disabled: dict) -> tuple[float, dict]:
    from mlcoord.backtest.run import run_backtest
    from mlcoord.config import Settings

    loops, result = [], None
    for _ in range(runs):
        result = run_backtest(Settings(), candles=[candles], disabled=disabled)
        loops.append(result.elapsed["loop"])
    return statistics.median(loops), result


def live_latency(candles, disabled: dict, n: int = 100) -> tuple[float, float]:
    """p50/p99 seconds of one live decision on a rolling 1,000-bar window."""
    from mlcoord.views import PortfolioSnapshot
    from mlcoord.components import build_market_data
    from mlcoord.config import Settings
    from mlcoord.pipeline import build_pipeline
    from mlcoord.registry import load_plugins

    settings = Settings()
    pipeline = build_pipeline(settings, load_plugins(disabled))
    portfolio = PortfolioSnapshot(equity=10_000.0, peak_equity=10_000.0, cash=10_000.0, day_start_equity=10_000.0,
                                  time=0)
    took = []
    end = len(candles)
    for k in range(n):
        window = candles.slice(end - 1000 - k * 7, end - k * 7)
        t0 = time.perf_counter()
        sym = pipeline.prepare(build_market_data(window, settings.data.higher_timeframes,
                                                 event=settings.learning.event))
        i = len(window) - 1
        if sym.action[i]:
            pipeline.decide(sym, i, portfolio, time=int(window.time[i]), leverage=1.0, fee_rate=0.0005,
                            slippage=0.0005)
        took.append(time.perf_counter() - t0)
    took.sort()
    return took[len(took) // 2], took[min(len(took) - 1, int(len(took) * 0.99))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--data50k", type=Path, default=SHARED)
    parser.add_argument("--loop-only", action="store_true",
                        help="only the technical pipeline's bar loop on the 50,000 bars (for interleaving "
                             "with benchmarks/bench_backtesting_py.py under the same machine load)")
    args = parser.parse_args()
    from mlcoord import logs
    from mlcoord.candles import load_candles
    from mlcoord.datasets import bundled_path

    logs.configure("error", json=True)
    if args.loop_only:
        big = load_candles(args.data50k)
        big = big.slice(len(big) - 50_000, len(big))
        loop, result = in_process(big, args.runs, builtin_only(ML))
        print(f"technical pipeline loop on 50,000 bars: {loop:.3f} s median = {result.stats['bars'] / loop:,.0f} bars/s")
        return
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, runs={args.runs}")
    default = load_candles(bundled_path("BTC/USDT"))
    sets = [("technical pipeline (no ML plugin)", builtin_only(ML)), ("all ML plugins (default)", builtin_only())]
    big = None
    if args.data50k.exists():
        big = load_candles(args.data50k)
        big = big.slice(len(big) - 50_000, len(big))
    for label, disabled in sets:
        print(f"\n{label}:")
        wall, cpu, rss = whole_process([], args.runs, disabled)
        loop, result = in_process(default, args.runs, disabled)
        bars = result.stats["bars"]
        print(f"  default backtest (bundled BTC/USDT 1h, {bars} bars traded of {len(default)}): whole process "
              f"{wall:.2f} s median (CPU {cpu:.2f} s), peak RSS {rss:.0f} MB; loop {loop:.3f} s = "
              f"{bars / loop:,.0f} bars/s; prepare {result.elapsed['prepare']:.3f} s")
        if big is not None:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "BTC_USDT-1h.feather"
                big.frame.reset_index().rename(columns={"time": "date"}).to_feather(path)
                wall, cpu, rss = whole_process(["--data", str(path)], args.runs, disabled)
                json_wall, json_cpu, _ = whole_process(["--data", str(path), "--json", str(Path(tmp) / "r.json")],
                                                       args.runs, disabled)
            loop, result = in_process(big, args.runs, disabled)
            bars = result.stats["bars"]
            print(f"  50,000 bars (nic BTC/USDT 1h, last 50,000 rows; {bars} traded): whole process {wall:.2f} s "
                  f"median (CPU {cpu:.2f} s), with --json {json_wall:.2f} s (CPU {json_cpu:.2f} s), peak RSS "
                  f"{rss:.0f} MB; loop {loop:.3f} s = {bars / loop:,.0f} bars/s; "
                  f"prepare {result.elapsed['prepare']:.3f} s")
        p50, p99 = live_latency(default, disabled)
        print(f"  one live decision (prepare 1,000-bar window + decide): p50 {p50 * 1000:.1f} ms, "
              f"p99 {p99 * 1000:.1f} ms")


if __name__ == "__main__":
    main()
