"""Time of ``mlcoord check lookahead`` (and ``check recursive``) on 20,000 real 1h bars with the default
pipeline of built-ins (technical, attention, lstm, mtf, rl_selector, bayes, dca, risk, exits,
protections, hedging). Prints numbers; asserts nothing.

Usage: python benchmarks/bench_check_lookahead.py [--runs 3] [--bars 20000] [--data PATH]

The candles are the last ``--bars`` rows of nic-tradingstrategyga BTC/USDT 1h (read from
../shared/data, which benchmarks may use, never the product), written to a temporary Feather
file and checked by ``mlcoord check lookahead --data FILE`` as a subprocess (start-up included):
median wall and CPU (user + system) time over the runs. CPU time moves less than wall time on a
machine shared with other work.
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


def builtin_only() -> str:
    """Every installed plugin that is not a built-in (e.g. the template), for MLCOORD_DISABLE."""
    from mlcoord.registry import discover_entry_points

    return ",".join(n for n, ep in discover_entry_points().items() if getattr(ep.dist, "name", "") != "mlcoord")


def timed(args: list[str], runs: int) -> tuple[float, float, int, str]:
    """Median wall and CPU seconds of ``mlcoord check ARGS``, its exit code and last output line."""
    walls, cpus = [], []
    env = {**os.environ, "MLCOORD_DISABLE": builtin_only()}
    proc = None
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "mlcoord.cli", "check", *args], capture_output=True, text=True,
                              env=env)
        walls.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if proc.returncode not in (0, 1):
            raise SystemExit(f"check failed ({proc.returncode}): {proc.stderr[-2000:]}")
    assert proc is not None
    return statistics.median(walls), statistics.median(cpus), proc.returncode, proc.stdout.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--bars", type=int, default=20_000)
    parser.add_argument("--data", type=Path, default=SHARED)
    args = parser.parse_args()
    import pandas as pd

    frame = pd.read_feather(args.data).tail(args.bars).reset_index(drop=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "BTC_USDT-1h.feather"
        frame.to_feather(path)
        print(f"data: last {len(frame):,} rows of {args.data.name} ({frame['date'].iloc[0]} -> {frame['date'].iloc[-1]}); "
              f"{os.cpu_count()} CPUs; median of {args.runs} runs")
        for name, extra in (("lookahead", ["--samples", "50"]), ("recursive", [])):
            wall, cpu, code, last = timed([name, "--data", str(path), "--symbol", "BTC/USDT", *extra], args.runs)
            print(f"check {name:<10} wall {wall:6.2f} s  cpu {cpu:6.2f} s  exit {code}  | {last}")


if __name__ == "__main__":
    main()
