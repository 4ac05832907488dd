"""A live cycle against the loopback Binance USD-M server: fetch, the exchange venue, the store.

Usage: python benchmarks/bench_live_loopback.py [--symbols 10] [--bars 43800] [--cycles 200]
       [--prepare-bars 5000] [--technical]

``mlcoord live``'s own loop (:func:`mlcoord.live.session.run_live`) with real ccxt objects on a
loopback server (tests/exchange_sim) that replays the bundled BTC/USDT 1h candles under ``--symbols``
names (real prices; every symbol costs what a real one costs). Each symbol starts with ``--bars``
closed candles of history (as if warmed up from the data store; symbol k's prices and volumes
are BTC's times 1 + k/1000: correlated signals, distinct numbers); each cycle fetches the newest
closed bars of every symbol, steps the trading loop (default pipeline: every ML component), sends
and refreshes orders, books fills in the ledger and writes the store (SQLite) and the heartbeat.
A cycle's time excludes the server's own replay of the next bar (the exchange's time, not the
bot's); the requests the server received per cycle are counted too. Prints numbers; asserts nothing. The issue's target: p99 under 200 ms for 10 symbols x
43,800 bars with the default pipeline, at least 200 cycles.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import structlog

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--symbols", type=int, default=10)
    ap.add_argument("--bars", type=int, default=43_800 - 260)
    ap.add_argument("--cycles", type=int, default=200)
    ap.add_argument("--prepare-bars", type=int, default=5000, help="0: the whole history every cycle")
    ap.add_argument("--technical", action="store_true", help="without the ML plugins")
    args = ap.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))

    from exchange_sim import ExchangeServer, futures_client
    from exchange_sim.markets import MarketSpec, Series
    from exchange_sim.state import ExchangeState
    from live_helpers import BarClock
    from mlcoord.candles import Candles, load_candles
    from mlcoord.datasets import bundled_path
    from mlcoord.live.retry import ManualClock
    from mlcoord.live.runner import load_live_settings
    from mlcoord.live.session import run_live
    from mlcoord.registry import load_plugins

    names = [f"S{k:02d}/USDT" for k in range(args.symbols)]
    btc = load_candles(bundled_path("BTC/USDT"), symbol="BTC/USDT")
    bars = min(args.bars, len(btc) - args.cycles - 2)
    specs = tuple(MarketSpec(n, tick=Decimal("0.10"), step=Decimal("0.001"), min_notional=Decimal(100),
                             max_qty=Decimal(1000)) for n in names)
    # every symbol its own numbers (BTC's real path scaled by 1 + k/1000, volume too): the same
    # bars signal everywhere (correlated markets, the costly case), but no symbol's indicators can
    # be served from another's cached results as they could from byte-identical copies
    scaled = [Candles(n, btc.timeframe, btc.frame * (1.0 + k / 1000)) for k, n in enumerate(names)]
    history = [c.slice(0, bars) for c in scaled]
    state = ExchangeState(series={c.symbol: Series.from_candles(c) for c in scaled}, spot_markets=(),
                          futures_markets=specs, start=bars + 1)
    work = Path(tempfile.mkdtemp(prefix="mlcoord-bench-"))
    ml = "" if not args.technical else 'ml_components = []\nsignal_sources = ["technical"]\n'
    (work / "live.toml").write_text(f"""
[engine]
min_confidence = 0.5
[pipeline]
{ml}entry_guards = ["protections"]
portfolio_watchers = ["protections"]
[data]
symbols = {names!r}
[exchange]
market = "futures"
[backtest]
leverage = 3
[live]
store = "{work / 'live.db'}"
heartbeat = "{work / 'beat.json'}"
kill_switch = "{work / 'STOP'}"
history_bars = 1000
poll_seconds = 3600
prepare_bars = {args.prepare_bars}
""".replace("'", '"'))
    settings, options = load_live_settings(work / "live.toml")
    took: list[float] = []
    replay = {"s": 0.0}

    class TimedClock(BarClock):
        def sleep(self, seconds):
            t = time.perf_counter()
            super().sleep(seconds)
            replay["s"] = time.perf_counter() - t

    marks = {"last": None}
    asked: list[int] = []          # requests the loopback exchange received per cycle

    def on_cycle(trader):
        now = time.perf_counter()
        calls = sum(n for (_, path), n in server.calls.items() if not path.startswith("/__control"))
        if marks["last"] is not None:
            took.append(now - marks["last"] - replay["s"])
            asked.append(calls - marks["calls"])
        marks["last"], marks["calls"] = now, calls

    with ExchangeServer(state) as server:
        t0 = time.perf_counter()
        trader = run_live(settings, options, futures_client(server), load_plugins(), clock=TimedClock(server),
                          health_clock=ManualClock(), cycles=args.cycles + 1, on_cycle=on_cycle, history=history)
        total = time.perf_counter() - t0
    took.sort()
    pick = lambda q: took[min(len(took) - 1, int(round(q * (len(took) - 1))))]      # noqa: E731
    print(f"{args.symbols} symbols x {bars} bars of history, prepare_bars {args.prepare_bars}, "
          f"{'technical' if args.technical else 'default'} pipeline, loopback exchange, {len(took)} cycles: "
          f"p50 {pick(0.5) * 1000:.0f} ms, p90 {pick(0.9) * 1000:.0f} ms, p99 {pick(0.99) * 1000:.0f} ms, "
          f"max {took[-1] * 1000:.0f} ms; {len(trader.engine.trades)} trades, "
          f"{len(trader.store.orders())} orders; exchange requests per cycle: mean {sum(asked) / len(asked):.1f}, "
          f"max {max(asked)}; whole run {total:.1f} s")


if __name__ == "__main__":
    main()
