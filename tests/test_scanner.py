"""The market scanner: ranking and filters, closed validated candles per (symbol, timeframe), one
ccxt instance per worker thread within the rate limit, bad pairs skipped, outages raised."""

from __future__ import annotations

import copy
import threading
import time

import ccxt
import numpy as np
import pytest

from exchange_sim import exchange_server, futures_client, spot_client  # noqa: F401 (fixture)
from mlcoord.candles import load_candles
from mlcoord.datasets import bundled_path
from mlcoord.live.retry import ExchangeUnavailable, ManualClock, RetryPolicy
from mlcoord.live.scanner import Scanner, ScannerOptions, is_leveraged, rank_pairs
from test_data_download import H_MS, FakeExchange


def market(symbol, active=True, kind="spot"):
    base, quote = symbol.split("/")
    return {"symbol": symbol, "base": base, "quote": quote.split(":")[0], "type": kind, "active": active,
            "linear": True}


MARKETS = {s: market(s) for s in ("BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT", "BNB/USDT", "JUP/USDT",
                                  "BTCUP/USDT", "ETHDOWN/USDT", "XRPBULL/USDT", "USDC/USDT", "ETH/BTC",
                                  "LUNA/USDT", "LUNC/USDT", "DOGE/USDT")}
MARKETS["OLD/USDT"] = market("OLD/USDT", active=False)
MARKETS["BTC/USDT:USDT"] = market("BTC/USDT:USDT", kind="swap")
VOLUMES = {"BTC/USDT": 9e9, "ETH/USDT": 5e9, "SOL/USDT": 2e9, "XRP/USDT": 2e9, "BNB/USDT": 8e8,
           "JUP/USDT": 3e7, "BTCUP/USDT": 4e9, "ETHDOWN/USDT": 3e9, "XRPBULL/USDT": 1e9, "USDC/USDT": 7e9,
           "ETH/BTC": 1e10, "LUNA/USDT": 6e8, "LUNC/USDT": 5e8, "DOGE/USDT": 5e5, "OLD/USDT": 1e11,
           "BTC/USDT:USDT": 2e10}
TICKERS = {s: {"symbol": s, "quoteVolume": v} for s, v in VOLUMES.items()}


def ranked(**options):
    return [s for s, _ in rank_pairs(TICKERS, MARKETS, ScannerOptions(**options))]


def test_ranking_by_quote_volume_with_filters():
    # no ETH/BTC (quote), USDC/USDT (stablecoins), BTCUP/ETHDOWN/XRPBULL (leveraged), OLD (inactive),
    # the perpetual (another market type), DOGE (below the minimum volume); SOL/XRP tie -> by name
    assert ranked() == ["BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT", "BNB/USDT", "LUNA/USDT", "LUNC/USDT",
                        "JUP/USDT"]
    assert ranked(top_n=3) == ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
    assert ranked(min_quote_volume=1e9) == ["BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT"]
    assert ranked(blacklist=("LUN*", "bnb/usdt")) == ["BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT", "JUP/USDT"]
    assert ranked(whitelist=("ETH/USDT", "J*", "DOGE/USDT")) == ["ETH/USDT", "JUP/USDT"]
    assert ranked(quote="BTC") == ["ETH/BTC"]
    assert ranked(exclude_leveraged=False, top_n=4) == ["BTC/USDT", "ETH/USDT", "BTCUP/USDT", "ETHDOWN/USDT"]
    assert "USDC/USDT" in ranked(exclude_stablecoins=False)
    futures = rank_pairs(TICKERS, MARKETS, ScannerOptions(), "futures")
    assert futures == [("BTC/USDT:USDT", 2e10)]


def test_leveraged_tokens_need_a_listed_base():
    bases = frozenset({"BTC", "ETH", "XRP"})
    assert is_leveraged("BTCUP", bases) and is_leveraged("ETHDOWN", bases) and is_leveraged("XRPBEAR", bases)
    assert is_leveraged("BTC3L", bases) and is_leveraged("ETH5S", bases)
    assert not is_leveraged("JUP", bases) and not is_leveraged("SUPER", bases) and not is_leveraged("BTC", bases)


def test_quote_volume_falls_back_to_base_volume_times_price():
    tickers = {"BTC/USDT": {"quoteVolume": None, "baseVolume": 100.0, "last": 30_000.0},
               "ETH/USDT": {"quoteVolume": float("nan")}}
    assert rank_pairs(tickers, MARKETS, ScannerOptions(min_quote_volume=0)) == [("BTC/USDT", 3e6),
                                                                                ("ETH/USDT", 0.0)]


@pytest.fixture(scope="module")
def pair_candles():
    n = 2000
    return {s: load_candles(bundled_path(s), symbol=s).slice(0, n) for s in ("BTC/USDT", "ETH/USDT")}


class SlowFake(FakeExchange):
    """Every request takes 20 ms; the test records how many run at once and on which instance."""

    active = 0
    peak = 0
    lock = threading.Lock()
    instances: list = []

    def fetch_ohlcv(self, *args, **kw):
        with SlowFake.lock:
            SlowFake.active += 1
            SlowFake.peak = max(SlowFake.peak, SlowFake.active)
        try:
            time.sleep(0.02)  # network latency, not a retry wait
            return super().fetch_ohlcv(*args, **kw)
        finally:
            with SlowFake.lock:
                SlowFake.active -= 1


def make_factory(pair_candles, now_ms, cls=FakeExchange, setup=None):
    """A factory of independent fake instances sharing one (read-only) source of candles."""
    made = []
    template = cls(pair_candles, now_ms, tickers={"BTC/USDT": {"quoteVolume": 9e9}, "ETH/USDT": {"quoteVolume": 5e9}})

    def factory():
        ex = copy.copy(template)
        ex.calls, ex.faults = [], []
        if setup:
            setup(ex)
        made.append(ex)
        return ex
    return factory, made


def test_cycle_returns_closed_validated_candles_per_symbol_and_timeframe(pair_candles):
    btc = pair_candles["BTC/USDT"]
    now = int(btc.time[1900] // 1_000_000) + H_MS // 2  # half-way through bar 1900
    factory, made = make_factory(pair_candles, now, SlowFake)
    SlowFake.peak = 0
    options = ScannerOptions(candles=200, workers=3)
    with Scanner(factory, options, clock=ManualClock()) as scanner:
        result = scanner.cycle()
    assert result.symbols == ("BTC/USDT", "ETH/USDT") and not result.errors
    assert set(result.candles) == {(s, tf) for s in result.symbols for tf in ("1h", "4h", "1d")}
    one_hour = result.candles[("BTC/USDT", "1h")]
    assert len(one_hour) == 200 and one_hour.time[-1] == btc.time[1899]  # bar 1900 is still open
    np.testing.assert_array_equal(one_hour.close, btc.close[1700:1900])
    for (symbol, tf), c in result.candles.items():
        assert c.symbol == symbol and c.timeframe == tf and c.time[-1] + c.timeframe_ns <= now * 1_000_000
    # the scanner's own instance + one per worker thread; each worker's rate limit scaled by the workers
    assert len(made) <= 1 + options.workers and SlowFake.peak > 1
    assert all(ex.rateLimit == 50 * 3 for ex in made[1:]) and made[0].rateLimit == 50
    assert sum(ex.count("fetch_ohlcv") for ex in made) == 6 and made[0].count("fetch_tickers") == 1


def test_concurrency_is_faster_than_one_pair_at_a_time(pair_candles):
    now = int(pair_candles["BTC/USDT"].time[1900] // 1_000_000)
    durations = {}
    for workers in (1, 6):
        factory, _ = make_factory(pair_candles, now, SlowFake)
        with Scanner(factory, ScannerOptions(workers=workers), clock=ManualClock()) as scanner:
            t0 = time.perf_counter()
            scanner.fetch(["BTC/USDT", "ETH/USDT"] * 3, now_ms=now)
            durations[workers] = time.perf_counter() - t0
    assert durations[6] < durations[1] / 2


def test_a_malformed_pair_is_skipped_and_reported(pair_candles):
    now = int(pair_candles["BTC/USDT"].time[1900] // 1_000_000)

    def setup(ex):
        def corrupt(rows):
            if rows and ex.calls[-1][1] == "ETH/USDT" and ex.calls[-1][2] == "4h":
                rows[-3][4] = float("nan")
            return rows
        ex.corrupt = corrupt
    factory, _ = make_factory(pair_candles, now, setup=setup)
    with Scanner(factory, ScannerOptions(workers=2), clock=ManualClock()) as scanner:
        result = scanner.fetch(["BTC/USDT", "ETH/USDT"], now_ms=now)
    assert set(result.errors) == {("ETH/USDT", "4h")} and "NaN" in result.errors[("ETH/USDT", "4h")]
    assert len(result.candles) == 5


def test_fetch_closed_one_timeframe_for_many_symbols_concurrently(pair_candles):
    """The live loop's per-cycle fetch in scan mode: ``limit`` closed bars of one timeframe per
    symbol, requests overlapping, a malformed symbol left out and the others kept."""
    btc = pair_candles["BTC/USDT"]
    now = int(btc.time[1900] // 1_000_000) + H_MS // 2

    def setup(ex):
        def corrupt(rows):
            if rows and ex.calls[-1][1] == "ETH/USDT":
                rows[-2][2] = -1.0               # a negative high
            return rows
        ex.corrupt = corrupt
    factory, made = make_factory(pair_candles, now, SlowFake)
    SlowFake.peak = 0
    with Scanner(factory, ScannerOptions(workers=4), clock=ManualClock()) as scanner:
        got = scanner.fetch_closed(["BTC/USDT", "ETH/USDT"] * 2, "1h", 5, now_ms=now)
    assert set(got) == {"BTC/USDT", "ETH/USDT"} and SlowFake.peak > 1
    np.testing.assert_array_equal(got["BTC/USDT"].close, btc.close[1895:1900])   # bar 1900 still open
    factory, _ = make_factory(pair_candles, now, setup=setup)
    with Scanner(factory, ScannerOptions(workers=2), clock=ManualClock()) as scanner:
        got = scanner.fetch_closed(["BTC/USDT", "ETH/USDT"], "1h", 5, now_ms=now)
    assert set(got) == {"BTC/USDT"} and len(got["BTC/USDT"]) == 5


def test_retries_inside_workers_and_outage_raises(pair_candles):
    now = int(pair_candles["BTC/USDT"].time[1900] // 1_000_000)

    def flaky(ex):
        ex.faults = [ccxt.RequestTimeout("t"), ccxt.ExchangeNotAvailable("503")]
    factory, _ = make_factory(pair_candles, now, setup=flaky)
    clock = ManualClock()
    with Scanner(factory, ScannerOptions(workers=1), clock=clock) as scanner:
        result = scanner.fetch(["BTC/USDT"], now_ms=now)
    assert len(result.candles) == 3 and len(clock.sleeps) == 2

    def down(ex):
        ex.faults = [ccxt.OnMaintenance("maintenance")] * 100
    factory, _ = make_factory(pair_candles, now, setup=down)
    with Scanner(factory, ScannerOptions(workers=2), policy=RetryPolicy(max_attempts=3), clock=ManualClock()) as sc:
        with pytest.raises(ExchangeUnavailable, match="maintenance"):
            sc.cycle()


@pytest.mark.parametrize("kind", ["spot", "futures"])
def test_scanner_against_the_loopback_exchange(exchange_server, kind):
    server = exchange_server
    server.advance(3)
    client = spot_client if kind == "spot" else futures_client
    options = ScannerOptions(min_quote_volume=0, candles=30, workers=3)
    # a generous time-out: the request count below must not depend on a loaded machine's retries
    with Scanner(lambda: client(server, timeout_ms=30_000), options, kind, clock=ManualClock()) as scanner:
        result = scanner.cycle()
    suffix = "" if kind == "spot" else ":USDT"
    assert set(result.symbols) == {f"BTC/USDT{suffix}", f"ETH/USDT{suffix}"} and not result.errors
    btc = load_candles(bundled_path("BTC/USDT"), symbol="BTC/USDT")
    last_closed = int(np.searchsorted(btc.time, server.now_ms * 1_000_000)) - 1
    one_hour = result.candles[(f"BTC/USDT{suffix}", "1h")]
    assert len(one_hour) == 30 and one_hour.time[-1] == btc.time[last_closed]
    np.testing.assert_allclose(one_hour.close, btc.close[last_closed - 29:last_closed + 1])
    for c in result.candles.values():
        assert c.time[-1] + c.timeframe_ns <= server.now_ms * 1_000_000
    route = "/api/v3/klines" if kind == "spot" else "/fapi/v1/klines"
    assert server.calls[("GET", route)] == 6
