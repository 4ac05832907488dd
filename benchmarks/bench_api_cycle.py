"""What the API adds to a paper/live cycle (issue 17's target: under 5 ms at p99). Prints numbers;
asserts nothing.

Usage: python benchmarks/bench_api_cycle.py [--symbols 10] [--bars 5000] [--cycles 300] [--clients 2]

A paper session (technical pipeline, the bundled BTC/USDT 1h candles under ``--symbols`` names) is
stepped one bar per cycle twice: without the API, then with the real server running (uvicorn on
127.0.0.1, in its thread), a websocket client reading the event stream and ``--clients`` threads
polling ``/api/v1/status``, ``/api/v1/trades`` and ``/metrics`` at ``--rate`` requests a second
each (0: without pause, a stress test). Printed: the
API's own work per cycle in the trading thread (controls applied, the snapshot built, the
events handed over: what the session calls), and each run's cycle p50/p99 (the difference
includes the server thread's share of the GIL).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import threading
import time
from pathlib import Path

import structlog


def _p(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))] * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--symbols", type=int, default=10)
    ap.add_argument("--bars", type=int, default=5000)
    ap.add_argument("--cycles", type=int, default=300)
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--rate", type=float, default=5.0, help="requests per second per client (0: no pause)")
    args = ap.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))

    import httpx

    from mlcoord.candles import Candles, load_candles
    from mlcoord.config import Settings, structure
    from mlcoord.datasets import bundled_path
    from mlcoord.live.controls import ControlChannel
    from mlcoord.live.runner import PaperTrader
    from mlcoord.live.store import Store
    from mlcoord.live.supervisor import LiveOptions, Supervisor
    from mlcoord.pipeline import build_pipeline
    from mlcoord.registry import discover_entry_points, load_plugins
    from mlcoord.server.accounts import Accounts
    from mlcoord.server.run import start_api

    btc = load_candles(bundled_path("BTC/USDT"), symbol="BTC/USDT")
    bars = min(args.bars, len(btc) - 2 * args.cycles - 2)
    names = [f"S{k:02d}/USDT" for k in range(args.symbols)]
    full = [Candles(n, btc.timeframe, btc.frame) for n in names]
    disabled = {n: "bench" for n, ep in discover_entry_points().items() if getattr(ep.dist, "name", "") != "mlcoord"}
    disabled.update({n: "bench" for n in ("lstm", "attention", "mtf", "rl_selector", "bayes")})
    settings = structure({"data": {"symbols": names}, "api": {"listen": "127.0.0.1:0"}}, Settings)

    def session():
        return PaperTrader(build_pipeline(settings, load_plugins(disabled)), settings,
                           [c.slice(0, bars) for c in full], prepare_bars=None)

    def run(trader, start, channel=None, supervisor=None):
        took, hooks = [], []
        for k in range(start, start + args.cycles):
            t = time.perf_counter()
            if channel is not None:
                channel.apply(trader, supervisor)
            h = time.perf_counter() - t
            trader.on_candles([c.slice(k - 2, k + 1) for c in full])
            if channel is not None:
                t1 = time.perf_counter()
                channel.cycle_done(trader, status="ok", seconds=t1 - t, killed=False)
                h += time.perf_counter() - t1
                hooks.append(h)
            took.append(time.perf_counter() - t)
        return took, hooks

    plain, _ = run(session(), bars)
    with tempfile.TemporaryDirectory() as folder:
        db = str(Path(folder) / "bench.db")
        store = Store.open(db)
        Accounts(store).add_user("bench", "bench-password-1", "viewer")
        channel = ControlChannel()
        server = start_api(settings, LiveOptions(store=db), store, channel)
        stop = threading.Event()
        served = [0]

        def poll():
            with httpx.Client(base_url=server.url) as http:
                token = http.post("/api/v1/auth/login", json={"username": "bench", "password": "bench-password-1"}
                                  ).json()["access_token"]
                headers = {"Authorization": f"Bearer {token}"}
                while not stop.is_set():
                    for path in ("/api/v1/status", "/api/v1/trades", "/metrics"):
                        try:
                            http.get(path, headers=headers)
                        except httpx.HTTPError:
                            return                # the server stopped
                        served[0] += 1
                        if args.rate:
                            stop.wait(1.0 / args.rate)

        def listen():
            from websockets.sync.client import connect

            with httpx.Client(base_url=server.url) as http:
                token = http.post("/api/v1/auth/login", json={"username": "bench", "password": "bench-password-1"}
                                  ).json()["access_token"]
                ws = http.post("/api/v1/auth/ws-token", headers={"Authorization": f"Bearer {token}"}).json()["ws_token"]
            with connect(server.url.replace("http", "ws") + "/api/v1/ws?token=" + ws) as sock:
                while not stop.is_set():
                    try:
                        sock.recv(timeout=0.5)
                    except TimeoutError:
                        continue
                    except Exception:
                        return

        threads = [threading.Thread(target=poll, daemon=True) for _ in range(args.clients)]
        threads.append(threading.Thread(target=listen, daemon=True))
        for th in threads:
            th.start()
        time.sleep(1.0)                           # the clients are connected and polling
        with_api, hooks = run(session(), bars, channel, Supervisor(LiveOptions(store=db)))
        stop.set()
        server.stop()
        store.close()
    print(f"{args.symbols} symbols x {bars} bars, technical pipeline, {args.cycles} cycles")
    print(f"API work in the trading thread per cycle: p50 {_p(hooks, .5):.3f} ms, p99 {_p(hooks, .99):.3f} ms, "
          f"max {max(hooks) * 1000:.3f} ms")
    print(f"cycle without API: p50 {_p(plain, .5):.2f} ms, p99 {_p(plain, .99):.2f} ms")
    print(f"cycle with API and {args.clients} clients polling at {args.rate or 'full speed'}/s + 1 websocket ({served[0]} requests served): "
          f"p50 {_p(with_api, .5):.2f} ms, p99 {_p(with_api, .99):.2f} ms "
          f"(mean difference {1000 * (statistics.mean(with_api) - statistics.mean(plain)):+.2f} ms)")


if __name__ == "__main__":
    main()
