"""How the backtest and its HTML report scale with one big run of 1m bars (issue 14). Prints
numbers; asserts nothing.

Usage: python benchmarks/bench_report_scale.py [--sizes 50000,100000,200000,400000] [--cache DIR]
       [--profile N] [--skip-backtest]

Data: real BTC/USDT 1h candles (nic-tradingstrategyga, MIT, read from ../shared/data; benchmarks may
use it, the product never bundles it), each hour expanded into 60 one-minute bars by a seeded
Brownian bridge from the hour's open to its close (so the minute path follows the real hourly
path and calendar; per-minute volatility is scaled from the hour's range). 3.5M minutes are
available; the last N are used.

Each size runs in a fresh subprocess (peak RSS is per process): the technical pipeline (the ML
plugins disabled; the default drawdown hedging guard stays on, so there are hedge periods), then
``write_json``, ``load_result`` and the report (``build_report`` and the file write, which together
are ``write_report``). Memory: RSS before the backtest (candles built) and the peak RSS after it;
their difference over the bars is the backtest's bytes per bar (prepared indicators, the loop's
per-bar lists, the result arrays).

Measured (2 cores, Python 3.11, technical pipeline; the 2M "before" report was not run: 204 hedges
took 49 s and the cost grew with the square of the hedge count, 2,233 hedges would be over an hour):

    bars     hedges  build_report before -> after   backtest peak RSS before -> after (B/bar over start)
    50,000        7  0.4 s -> 0.4 s                  206 MB (1166) -> 195 MB (957)
    100,000      23  1.0 s -> 0.4 s                  276 MB (1235) -> 254 MB (1006)
    200,000      46  2.9 s -> 0.4 s                  329 MB (789)  -> 286 MB (563)
    400,000     204  49.3 s -> 0.8 s                 522 MB (834)  -> 428 MB (591)
    2,000,000  2233  (> 1 h) -> 3.9 s                2057 MB (820) -> 1555 MB (558)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data" / "nic-tradingstrategyga" / "BTC_USDT-1h.feather"
ML = ("bayes", "lstm", "attention", "mtf", "rl_selector")


def minute_candles(n: int, path: Path = SHARED, seed: int = 14):
    """The last ``n`` one-minute bars made from the real hourly bars (see the module doc)."""
    import numpy as np
    import pandas as pd

    from mlcoord.candles import candles_from_frame, load_candles

    hours = load_candles(path)
    need = -(-n // 60) + 1
    hours = hours.slice(max(0, len(hours) - need), len(hours))
    h_open, h_close, h_high, h_low = hours.open, hours.close, hours.high, hours.low
    m = len(hours)
    rng = np.random.default_rng(seed)
    sigma = (np.log(h_high / h_low) / 4.0)[:, None] / np.sqrt(60)        # per-minute log vol from the range
    steps = rng.standard_normal((m, 60)) * sigma
    walk = np.concatenate([np.zeros((m, 1)), np.cumsum(steps, axis=1)], axis=1)   # 61 points per hour
    k = np.arange(61) / 60.0
    bridge = walk - k[None, :] * walk[:, -1:]                                    # 0 at both ends
    logp = np.log(h_open)[:, None] + k[None, :] * np.log(h_close / h_open)[:, None] + bridge
    p = np.exp(logp)
    o, c = p[:, :-1], p[:, 1:]
    wick = np.abs(rng.standard_normal((m, 60, 2))) * sigma[:, :, None] * 0.5
    hi = np.maximum(o, c) * np.exp(wick[..., 0])
    lo = np.minimum(o, c) * np.exp(-wick[..., 1])
    t = (hours.time[:, None] + np.arange(60)[None, :] * 60_000_000_000).ravel()
    vol = np.repeat(hours.volume / 60.0, 60)
    frame = pd.DataFrame({"date": pd.to_datetime(t, utc=True), "open": o.ravel(), "high": hi.ravel(),
                          "low": lo.ravel(), "close": c.ravel(), "volume": vol})
    frame = frame.iloc[len(frame) - n:]
    return candles_from_frame(frame, symbol="BTC/USDT", timeframe="1m", source="bench 1m from 1h")


def rss_now() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0


def disabled() -> dict[str, str]:
    from mlcoord.registry import discover_entry_points

    out = {n: "bench" for n, ep in discover_entry_points().items() if getattr(ep.dist, "name", "") != "mlcoord"}
    out.update({n: "bench" for n in ML})
    return out


def one(n: int, cache: Path | None, profile: bool, skip_backtest: bool, no_report: bool = False) -> dict:
    from mlcoord import logs
    from mlcoord.files import write_atomic
    from mlcoord.report import build_report, load_result

    logs.configure("error", json=True)
    out: dict = {"bars": n}
    json_path = (cache or Path("/tmp")) / f"bench_report_{n}.json"
    if not (skip_backtest and json_path.exists()):
        from mlcoord.backtest.run import run_backtest
        from mlcoord.config import Settings

        candles = minute_candles(n)
        settings, off = Settings(), disabled()
        before = rss_now()
        t0 = time.perf_counter()
        result = run_backtest(settings, candles=[candles], disabled=off)
        out["backtest_s"] = time.perf_counter() - t0
        out["loop_s"] = result.elapsed.get("loop")
        out["rss_before_mb"] = before / 2**20
        out["peak_after_backtest_mb"] = peak_rss() / 2**20
        out["backtest_bytes_per_bar"] = (peak_rss() - before) / n
        out["trades"] = len(result.raw.trades)
        out["hedges"] = sum(1 for t in result.raw.trades if t.hedge)
        out["fills"] = len(result.raw.fills)
        out["decisions"] = len(result.raw.decisions)
        t0 = time.perf_counter()
        result.write_json(json_path)
        out["write_json_s"] = time.perf_counter() - t0
        del result, candles
    if no_report:
        return out
    t0 = time.perf_counter()
    data = load_result(json_path)
    out["load_result_s"] = time.perf_counter() - t0
    out["hedges_in_file"] = sum(1 for t in data["trades"] if t.get("hedge"))
    if profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.enable()
    t0 = time.perf_counter()
    html = build_report(data)
    out["build_report_s"] = time.perf_counter() - t0
    if profile:
        prof.disable()
        pstats.Stats(prof, stream=sys.stderr).sort_stats("cumulative").print_stats(35)
    t1 = time.perf_counter()
    write_atomic(Path("/tmp") / f"bench_report_{n}.html", html)
    out["write_report_s"] = out["build_report_s"] + time.perf_counter() - t1
    out["html_mb"] = len(html) / 2**20
    out["peak_total_mb"] = peak_rss() / 2**20
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="50000,100000,200000,400000")
    parser.add_argument("--cache", type=Path, default=None, help="keep the result files here (reused with "
                        "--skip-backtest to time only the report)")
    parser.add_argument("--skip-backtest", action="store_true")
    parser.add_argument("--profile", action="store_true", help="cProfile build_report (to stderr)")
    parser.add_argument("--no-report", action="store_true", help="the backtest and its result file only")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.cache, args.profile, args.skip_backtest, args.no_report)))
        return
    if args.cache:
        args.cache.mkdir(parents=True, exist_ok=True)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores; 1m bars from nic BTC/USDT 1h")
    for n in (int(s) for s in args.sizes.split(",")):
        cmd = [sys.executable, __file__, "--one", str(n)]
        if args.cache:
            cmd += ["--cache", str(args.cache)]
        if args.skip_backtest:
            cmd.append("--skip-backtest")
        if args.profile:
            cmd.append("--profile")
        if args.no_report:
            cmd.append("--no-report")
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
        if proc.returncode:
            print(f"{n:>9,} bars: failed ({proc.returncode})")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        line = f"{n:>9,} bars:"
        if "backtest_s" in r:
            line += (f" backtest {r['backtest_s']:.1f} s (loop {r['loop_s']:.1f} s), peak {r['peak_after_backtest_mb']:.0f} MB"
                     f" ({r['backtest_bytes_per_bar']:.0f} B/bar over {r['rss_before_mb']:.0f} MB before);"
                     f" {r['trades']} trades, {r['hedges']} hedges, {r['decisions']} decisions;"
                     f" write_json {r['write_json_s']:.1f} s;")
        if "build_report_s" not in r:
            print(line, flush=True)
            continue
        line += (f" load_result {r['load_result_s']:.1f} s, build_report {r['build_report_s']:.1f} s,"
                 f" write_report {r['write_report_s']:.1f} s, html {r['html_mb']:.1f} MB,"
                 f" hedges drawn {r['hedges_in_file']}, peak total {r['peak_total_mb']:.0f} MB")
        print(line, flush=True)


if __name__ == "__main__":
    main()
