"""Speed and memory of the technical pipeline (no ML plugin). Prints numbers; asserts nothing.

Usage: python benchmarks/bench_backtest.py [--runs 5] [--data50k PATH]

* whole process: ``mlcoord backtest`` as a subprocess (start-up included), median wall time and
  peak RSS over runs, for the bundled default (43,803 BTC/USDT 1h bars) and for the last 50,000
  rows of nic-tradingstrategyga BTC/USDT 1h (the candles freqtrade's anchor uses; read from
  ../shared/data, which evaluations may use, never the product);
* in process: the bar loop alone (after preparing signals), as bars per second.
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


def whole_process(args: list[str], runs: int) -> tuple[float, float, str]:
    times, peaks, out = [], [], ""
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "mlcoord.cli", "backtest", "--no-progress", *args],
                              capture_output=True, text=True, env={**os.environ, "MLCOORD_DISABLE": ""})
        times.append(time.perf_counter() - t0)
        if proc.returncode:
            raise SystemExit(f"backtest failed: {proc.stderr}")
        peaks.append(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
        out = proc.stdout
        del before
    return statistics.median(times), max(peaks) / 1024, out


def in_process(candles, runs: int) -> tuple[float, int, dict]:
    from mlcoord import logs
    from mlcoord.backtest.run import run_backtest
    from mlcoord.config import Settings

    logs.configure("error", json=True)
    loops, result = [], None
    for _ in range(runs):
        result = run_backtest(Settings(), candles=[candles])
        loops.append(result.elapsed["loop"])
    return statistics.median(loops), len(candles), result.elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--data50k", type=Path, default=SHARED)
    args = parser.parse_args()
    from mlcoord.backtest.run import bundled_path
    from mlcoord.candles import load_candles

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, runs={args.runs}")
    wall, rss, _ = whole_process([], args.runs)
    default = load_candles(bundled_path("BTC/USDT"))
    loop, n, elapsed = in_process(default, args.runs)
    print(f"default backtest (bundled BTC/USDT 1h, {n} bars): whole process {wall:.2f} s median, "
          f"peak RSS {rss:.0f} MB; loop {loop:.3f} s = {n / loop:,.0f} bars/s; "
          f"load {elapsed['load']:.3f} s, prepare {elapsed['prepare']:.3f} s")
    if args.data50k.exists():
        candles = load_candles(args.data50k)
        candles = candles.slice(len(candles) - 50_000, len(candles))
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "BTC_USDT-1h.feather"
            candles.frame.reset_index().rename(columns={"time": "date"}).to_feather(path)
            wall, rss, _ = whole_process(["--data", str(path)], args.runs)
        loop, n, elapsed = in_process(candles, args.runs)
        print(f"50,000 bars (nic BTC/USDT 1h, last 50,000 rows): whole process {wall:.2f} s median, "
              f"peak RSS {rss:.0f} MB; loop {loop:.3f} s = {n / loop:,.0f} bars/s; "
              f"prepare {elapsed['prepare']:.3f} s")
    else:
        print(f"skipped the 50,000-bar run: {args.data50k} not found")


if __name__ == "__main__":
    main()
