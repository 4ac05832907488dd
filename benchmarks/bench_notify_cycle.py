"""What notifications cost a paper/live cycle with their channels up, refusing connections, or
hanging (issue 18's target: a cycle with them down is not slower than with them up by more than
5 ms at p99). Prints numbers; asserts nothing.

Usage: python benchmarks/bench_notify_cycle.py [--symbols 10] [--bars 5000] [--seconds 60]

A paper session (technical pipeline, the bundled BTC/USDT 1h candles under ``--symbols`` names)
is stepped one bar per cycle, with the notifier subscribed to the session's ControlChannel as in
``mlcoord paper`` (Telegram with command polling, Discord and a webhook; every kind ``on``; short
backoff, so a dead channel's worker retries as often as it can). Each scenario runs for
``--seconds`` of wall time (a simulated minute by default): ``up`` against the loopback fakes of
``tests/notify_fakes.py``; ``refused`` with nothing listening; ``hanging`` with sockets that accept
and never answer (every request runs to its 2 s time-out). Printed per scenario: cycles, events
notified, the notifier's own time in the trading thread per event (``on_event``), and cycle
p50/p99/max over the cycles all scenarios ran; then each down scenario's p99 minus up's.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import structlog

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

TOKEN = "111:bench-telegram-token-abcdefghijklmnop"


def _p(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))] * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--symbols", type=int, default=10)
    ap.add_argument("--bars", type=int, default=5000)
    ap.add_argument("--seconds", type=float, default=60.0)
    args = ap.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))

    from notify_fakes import FakeTelegram, Hanging, Receiver, refused_url

    from mlcoord.candles import Candles, load_candles
    from mlcoord.config import Settings, structure
    from mlcoord.datasets import bundled_path
    from mlcoord.live.controls import ControlChannel
    from mlcoord.live.runner import PaperTrader
    from mlcoord.live.store import Store
    from mlcoord.live.supervisor import LiveOptions, Supervisor
    from mlcoord.notify.service import start_notify
    from mlcoord.pipeline import build_pipeline
    from mlcoord.registry import discover_entry_points, load_plugins

    btc = load_candles(bundled_path("BTC/USDT"), symbol="BTC/USDT")
    names = [f"S{k:02d}/USDT" for k in range(args.symbols)]
    full = [Candles(n, btc.timeframe, btc.frame) for n in names]
    bars = min(args.bars, len(btc) // 2)
    disabled = {n: "bench" for n, ep in discover_entry_points().items() if getattr(ep.dist, "name", "") != "mlcoord"}
    disabled.update({n: "bench" for n in ("lstm", "attention", "mtf", "rl_selector", "bayes")})
    every = {k: "on" for k in ("entry", "fill", "exit", "cancel", "guard_action", "warning", "drift_alert")}

    def settings_for(telegram_url: str) -> Settings:
        return structure({"data": {"symbols": names}, "notify": {
            "events": every, "backoff_seconds": 0.05, "backoff_max_seconds": 0.2, "timeout_seconds": 2.0,
            "max_attempts": 3, "telegram": {"base_url": telegram_url, "chats": {"1": "trader", "2": "viewer"},
                                            "poll_seconds": 1},
            "discord": {}, "webhook": {}}}, Settings)

    def scenario(telegram_url: str, discord_url: str, webhook_url: str, limit: int | None = None):
        settings = settings_for(telegram_url)
        trader = PaperTrader(build_pipeline(settings, load_plugins(disabled)), settings,
                             [c.slice(0, bars) for c in full], prepare_bars=None)
        with tempfile.TemporaryDirectory() as folder:
            db = str(Path(folder) / "bench.db")
            store = Store.open(db)
            channel = ControlChannel()
            env = {"MLCOORD_TELEGRAM_TOKEN": TOKEN, "MLCOORD_DISCORD_WEBHOOK_URL": discord_url,
                   "MLCOORD_WEBHOOK_URL": webhook_url}
            notifier = start_notify(settings, LiveOptions(store=db), store, channel, env=env)
            spent: list[float] = []
            on_event = notifier.on_event

            def timed(event):
                t = time.perf_counter()
                on_event(event)
                if event.get("type") != "cycle":
                    spent.append(time.perf_counter() - t)

            channel.events[channel.events.index(on_event)] = timed
            supervisor = Supervisor(LiveOptions(store=db))
            took: list[float] = []
            end = time.monotonic() + args.seconds
            k = bars
            while (time.monotonic() < end if limit is None else len(took) < limit) and k < len(btc) - 1:
                t = time.perf_counter()
                channel.apply(trader, supervisor)
                trader.on_candles([c.slice(k - 2, k + 1) for c in full])
                channel.cycle_done(trader, status="ok", seconds=time.perf_counter() - t, killed=False)
                took.append(time.perf_counter() - t)
                k += 1
            health = notifier.health()
            notifier.close()
            store.close()
        return took, spent, health

    results = {}
    with FakeTelegram(TOKEN) as tg, Receiver() as discord, Receiver() as hook:
        results["up"] = scenario(tg.url, discord.url, hook.url)
    n = len(results["up"][0])
    results["refused"] = scenario(refused_url(), refused_url(), refused_url(), n)
    with Hanging() as a, Hanging() as b, Hanging() as c:
        results["hanging"] = scenario(a.url, b.url, c.url, n)
    n = min(len(r[0]) for r in results.values())
    print(f"{args.symbols} symbols x {bars} bars, technical pipeline, {n} cycles compared "
          f"(up ran {args.seconds:g} s; telegram + discord + webhook, every kind on)")
    for name, (took, spent, health) in results.items():
        counts = {k: sum(c[k] for c in health["channels"].values()) for k in ("sent", "failed", "dropped", "retries")}
        print(f"{name:>8}: cycle p50 {_p(took[:n], .5):7.2f} ms  p99 {_p(took[:n], .99):7.2f} ms  "
              f"max {max(took[:n]) * 1000:7.2f} ms | {len(spent)} events, on_event p50 {_p(spent, .5) * 1000:.1f} µs "
              f"p99 {_p(spent, .99) * 1000:.1f} µs | {counts}")
    up99 = _p(results["up"][0][:n], .99)
    for name in ("refused", "hanging"):
        print(f"p99 {name} - up: {_p(results[name][0][:n], .99) - up99:+.2f} ms")


if __name__ == "__main__":
    main()
