"""How far real bars move, in ATRs: the evidence for ``mlcoord.jumps.MAX_JUMP_ATR``.

Usage: PYTHONPATH=engine:plugins python benchmarks/bench_jumps.py [--dir ../shared/data] [--limit 50]

For every candle file under ``--dir`` that :func:`mlcoord.candles.load_candles` reads (CSV,
Feather, freqtrade JSON), each bar's largest distance of its high, low or close from the previous
close, in units of the ATR of the 14 bars before it (:mod:`mlcoord.jumps`' reference), and among
the bars that also moved more than ``MIN_JUMP`` of the price (both must hold for a bar to be
implausible). Then the bars the default bound flags (each one printed, with whether the next bar
confirmed its level: a real move) and the time the check takes. Prints numbers only; asserts nothing.
"""

from __future__ import annotations

import argparse
import math
import time
from collections import deque
from pathlib import Path

from mlcoord.candles import load_candles
from mlcoord.jumps import ATR_PERIOD, MAX_JUMP_ATR, MIN_JUMP, find_jumps


def largest_moves(c) -> tuple[float, float]:
    """(largest move in ATRs, largest among moves above MIN_JUMP of the price)."""
    ranges: deque[float] = deque(maxlen=ATR_PERIOD)
    worst = worst_big = 0.0
    prev = None
    for h, low, close in zip(c.high.tolist(), c.low.tolist(), c.close.tolist()):
        if prev is not None and len(ranges) >= 5:
            atr = sum(ranges) / len(ranges)
            move = max(abs(h - prev), abs(low - prev), abs(close - prev))
            if atr > 0:
                worst = max(worst, move / atr)
                if move > MIN_JUMP * prev:
                    worst_big = max(worst_big, move / atr)
        ranges.append(max(h, prev) - min(low, prev) if prev is not None else h - low)
        prev = close
    return worst, worst_big


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", default=str(Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
    parser.add_argument("--limit", type=int, default=60, help="files at most")
    args = parser.parse_args()
    files = sorted(p for p in Path(args.dir).rglob("*") if p.suffix in (".csv", ".feather", ".gz", ".json")
                   and "funding" not in p.name and "mark" not in p.name)[: args.limit]
    print(f"{'file':60s} {'bars':>7s} {'max ATRs':>9s} {'max ATRs >5%':>13s} {'flagged':>8s} {'unconf.':>8s} {'ms':>6s}")
    overall = overall_big = 0.0
    for path in files:
        try:
            c = load_candles(path)
        except Exception as exc:        # a file the loader refuses is not this check's business
            print(f"{str(path.relative_to(args.dir)):60s} unreadable: {type(exc).__name__}")
            continue
        worst, worst_big = largest_moves(c)
        start = time.perf_counter()
        flagged = find_jumps(c, MAX_JUMP_ATR)
        ms = (time.perf_counter() - start) * 1000
        overall, overall_big = max(overall, worst), max(overall_big, worst_big)
        print(f"{str(path.relative_to(args.dir)):60s} {len(c):7d} {worst:9.1f} {worst_big:13.1f} "
              f"{len(flagged):8d} {sum(not j.confirmed for j in flagged):8d} {ms:6.0f}")
        for j in flagged:
            print(f"    flagged {j.describe()}{' (confirmed by the next bar: a real move)' if j.confirmed else ''}")
    print(f"largest move of any bar: {overall:.1f} ATRs; of a bar moving more than {MIN_JUMP:.0%}: "
          f"{overall_big:.1f} ATRs (default bound {MAX_JUMP_ATR:g}, infinite: {math.isinf(overall)})")


if __name__ == "__main__":
    main()
