"""Reproduce the README's walk-forward table on the real multi-year 1h data in ../shared/data.

Usage: python benchmarks/walkforward_shared.py [--symbols BTC,ETH,SOL,XRP,ADA] [--json out.json]

Data: roshan7869-algotrading/{SYM}_USDT-1h.feather (Binance spot 1h, 2018 -> 2026-05, GPL-3.0:
read for evaluation only, never bundled). Models retrained per window (lstm, attention), online
learners refitted before each window; see mlcoord.evaluate. Prints the table and the wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "roshan7869-algotrading"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--symbols", default="BTC,ETH,SOL,XRP,ADA")
    parser.add_argument("--train-bars", type=int, default=17_520)
    parser.add_argument("--fit-bars", type=int, default=4_380)
    parser.add_argument("--test-bars", type=int, default=8_760)
    parser.add_argument("--windows", type=int, default=None)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    os.environ.setdefault("MALLOC_TRIM_THRESHOLD_", str(1 << 30))
    os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", str(1 << 30))

    from mlcoord import logs
    from mlcoord.candles import load_candles
    from mlcoord.config import Settings
    from mlcoord.evaluate import WalkForward, evaluate, render
    from mlcoord.registry import discover_entry_points, load_plugins

    logs.configure("error", json=True)
    started = time.perf_counter()
    candles = [load_candles(DATA / f"{s}_USDT-1h.feather", symbol=f"{s}/USDT") for s in args.symbols.split(",")]
    builtin = {n: ep for n, ep in discover_entry_points().items() if getattr(ep.dist, "name", "") == "mlcoord"}
    plugins = load_plugins({}, entry_points=builtin)
    wf = WalkForward(args.train_bars, args.fit_bars, args.test_bars, args.windows, True)
    result = evaluate(Settings(), plugins, candles, wf,
                      progress=lambda m: print(f"  {m} ({time.perf_counter() - started:.0f} s)", file=sys.stderr))
    print(f"data: roshan7869-algotrading 1h {', '.join(c.symbol for c in candles)} "
          f"({sum(len(c) for c in candles):,} bars)")
    print(render(result))
    print(f"wall time {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
