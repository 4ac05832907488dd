"""How long one paper/live cycle takes: every symbol's newest closed bar through the session
(re-preparing its history, deciding, the simulated venue, the ledger). Prints numbers; asserts
nothing.

Usage: python benchmarks/bench_live_cycle.py [--symbols 10] [--bars 43800] [--cycles 20] [--technical]

The symbols are the bundled BTC/USDT 1h candles under ten names (real prices; every symbol costs
what a real one costs). A cycle steps one new bar per symbol, as ``mlcoord paper`` does after each
poll; the exchange fetch and the store's writes are not included (the loopback exchange's share
is measured by the live tests). The issue's target: p99 under 200 ms for 10 symbols x 43,800 bars
with the default pipeline.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time

import structlog


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--symbols", type=int, default=10)
    ap.add_argument("--bars", type=int, default=43_800)
    ap.add_argument("--cycles", type=int, default=20)
    ap.add_argument("--technical", action="store_true", help="without the ML plugins")
    args = ap.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))

    from mlcoord.candles import Candles, load_candles
    from mlcoord.config import Settings, structure
    from mlcoord.datasets import bundled_path
    from mlcoord.live.runner import PaperTrader
    from mlcoord.pipeline import build_pipeline
    from mlcoord.registry import discover_entry_points, load_plugins

    btc = load_candles(bundled_path("BTC/USDT"), symbol="BTC/USDT")
    bars = min(args.bars, len(btc) - args.cycles)
    names = [f"S{k:02d}/USDT" for k in range(args.symbols)]
    full = [Candles(n, btc.timeframe, btc.frame) for n in names]
    disabled = {n: "bench" for n, ep in discover_entry_points().items() if getattr(ep.dist, "name", "") != "mlcoord"}
    if args.technical:
        disabled.update({n: "bench" for n in ("lstm", "attention", "mtf", "rl_selector", "bayes")})
    settings = structure({"data": {"symbols": names}}, Settings)
    history = [c.slice(0, bars) for c in full]
    t0 = time.perf_counter()
    session = PaperTrader(build_pipeline(settings, load_plugins(disabled)), settings, history)
    start = time.perf_counter() - t0
    took = []
    for k in range(bars, bars + args.cycles):
        fresh = [c.slice(k - 2, k + 1) for c in full]
        t = time.perf_counter()
        session.on_candles(fresh)
        took.append(time.perf_counter() - t)
    took.sort()
    p99 = took[min(len(took) - 1, int(round(0.99 * (len(took) - 1))))]
    print(f"{args.symbols} symbols x {bars} bars, {'technical' if args.technical else 'default'} pipeline: "
          f"session start {start:.2f} s; {args.cycles} cycles: p50 {statistics.median(took) * 1000:.0f} ms, "
          f"p99 {p99 * 1000:.0f} ms, max {took[-1] * 1000:.0f} ms")


if __name__ == "__main__":
    main()
