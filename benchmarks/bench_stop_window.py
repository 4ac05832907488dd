"""The stop-less window: how long a held position has no stop on the exchange while the bot moves it.

Usage: python benchmarks/bench_stop_window.py [--cycles 30] [--seed 0]

``mlcoord live`` (:func:`mlcoord.live.session.run_live`, real ccxt objects) on the loopback Binance
(tests/exchange_sim) in the session of ``tests/stop_sessions.py``: one planted entry, then a stop
raised every bar, so every poll moves it. Three ways a stop moves: spot with Binance's atomic
cancel-replace, spot without it (cancel, then place), USD-M futures (place, then cancel); and the
first with the DCA planner's limit legs, which fill on later bars (the stop follows at the next
poll: the ``fill`` window). Each runs
once without faults and once with seeded faults on the order endpoints (429s, lost answers,
time-outs: a 0.6 s answer after the client's 0.5 s time-out); retries wait on the real clock.

The exchange itself measures (``exchange_sim.coverage``): after every request it processed and
every bar it replayed it checks whether each holding is covered by resting stops. A ``stop`` gap
opens when a stop is taken away, a ``fill`` gap when the holding grows past its stops (an entry
filled, its stop not placed yet). Per gap: wall seconds, bars of market time (a bar's fill counts
from the bar's open: the most it can have been bare), and requests the exchange processed
meanwhile (each a round trip a real exchange makes slower than the loopback). Prints numbers;
asserts nothing.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import structlog

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

PATHS = (("spot", True, "spot, cancel-replace", ""), ("spot", False, "spot, cancel then place", ""),
         ("futures", True, "futures, place then cancel", ""), ("spot", True, "spot, cancel-replace, DCA legs", "dca"))
#: the endpoints a stop move uses: where the faults go
MOVES = {("spot", True): ("/api/v3/order/cancelReplace", "POST"),
         ("spot", False): ("/api/v3/order", None),
         ("futures", True): ("/fapi/v1/algoOrder", None)}


def faulty(server, market: str, cancel_replace: bool) -> None:
    path, method = MOVES[market, cancel_replace]
    faults = server.faults
    faults.rate_limit(endpoint=path, method=method, probability=0.2)
    faults.timeout(delay=0.6, endpoint=path, method=method, probability=0.1)
    if method != "DELETE":
        faults.lose_response(mode="drop", endpoint=path, probability=0.15)


def run(market: str, cancel_replace: bool, cycles: int, seed: int, faults: bool, planner: str) -> dict:
    from mlcoord.live.retry import SystemClock
    from stop_sessions import run_session, server_for, window_figures

    with server_for(market, cancel_replace, seed=seed) as server:
        if faults:
            faulty(server, market, cancel_replace)
        t0 = time.perf_counter()
        trader, _ = run_session(server, Path(tempfile.mkdtemp(prefix="mlcoord-stops-")), market, cycles,
                                   health_clock=SystemClock(), entry_planner=planner)
        wall = time.perf_counter() - t0
        moves = sum(1 for r in trader.store.orders() if r.order.tag == "stop") - 1   # each a new client id
        return {"moves": moves, "faults": len(server.faults.log), "wall": wall, **window_figures(server)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cycles", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    print(f"stop-less window, {args.cycles} polls of 1h bars each (a poll interval is 3,600 s), seed {args.seed}")
    print(f"{'path':28} {'faults':>7} {'moves':>5} | {'stop gaps':>9} {'max s':>8} {'total s':>8} {'max req':>7} | "
          f"{'fill gaps':>9} {'max s':>6} {'max bars':>8} | {'run s':>6}")
    for market, cancel_replace, name, planner in PATHS:
        for with_faults in (False, True):
            r = run(market, cancel_replace, args.cycles, args.seed, with_faults, planner)
            stop, fill = r["stop"], r["fill"]
            print(f"{name:28} {r['faults'] if with_faults else 'none':>7} {r['moves']:>5} | {stop['gaps']:>9} "
                  f"{stop['max_seconds']:>8.4f} {stop['total_seconds']:>8.4f} {stop['max_requests']:>7} | "
                  f"{fill['gaps']:>9} {fill['max_seconds']:>6.3f} {fill['max_bars']:>8.2f} | {r['wall']:>6.1f}")


if __name__ == "__main__":
    main()
