"""`mlcoord data download`: pagination, incremental runs, dedupe, refusal of bad responses, atomic
writes, funding history, and the backtest reading the store.

Two exchanges: an in-test ccxt-like fake (exact control over each response) and, where the
loopback Binance server exists, a real ccxt object against it.
"""

from __future__ import annotations

import math
import os

import attrs
import numpy as np
import pytest
from click.testing import CliRunner

from mlcoord.costs import HOUR_NS, CostModel, FundingSeries
from mlcoord.candles import CandleError, resample
from mlcoord.cli import main as cli_main
from mlcoord.config import BacktestConfig, ExchangeConfig, load_settings
from mlcoord.errors import DataError
from mlcoord import datastore as data_mod   # the store writes the files
from mlcoord.datastore import (DownloadError, candles_path, funding_path, load_store_candles, load_store_funding,
                               mark_path, read_stored)
from mlcoord.live.data import Downloader, parse_since
from mlcoord.live.retry import ExchangeUnavailable, ManualClock, RetryPolicy
from exchange_sim import ExchangeServer, exchange_server, futures_client, spot_client  # noqa: F401 (fixture)

H_MS = 3_600_000
MS_NS = 1_000_000
N = 2500  # source bars


class FakeExchange:
    """Enough of a ccxt exchange for the downloader and scanner: markets, time, OHLCV, funding,
    tickers. ``calls`` records every request; ``faults`` (exceptions) are raised by the next calls;
    ``corrupt(rows)`` may rewrite an OHLCV response; ``overlap`` starts each page that many rows
    before ``since`` (as some exchanges do)."""

    id = "fake"
    rateLimit = 50

    def __init__(self, candles, now_ms: int, funding=None, tickers=None, markets=None):
        self.source = {}  # (symbol, timeframe) -> (ms, values)
        for symbol, c in candles.items():
            for tf in ("1h", "4h", "1d"):
                r = c if tf == "1h" else resample(c, tf)
                self.source[(symbol, tf)] = (r.time // 1_000_000, np.column_stack(
                    [r.open, r.high, r.low, r.close, r.volume]).copy())
        self.now = now_ms
        self.funding_source = funding or {}
        self.tickers = tickers or {}
        self.markets = markets or {s: {"symbol": s, "base": s.split("/")[0], "quote": s.split("/")[1].split(":")[0],
                                       "type": "swap" if ":" in s else "spot", "active": True, "linear": True}
                                   for s in candles}
        self.has = {"fetchTime": True, "fetchFundingRateHistory": bool(funding), "fetchMarkOHLCV": True}
        self.calls: list[tuple] = []
        self.faults: list[BaseException] = []
        self.corrupt = None
        self.overlap = 0
        self.last_response_headers = {}

    def _request(self, *call):
        self.calls.append(call)
        if self.faults:
            raise self.faults.pop(0)

    def count(self, name: str) -> int:
        return sum(1 for c in self.calls if c[0] == name)

    def load_markets(self):
        return self.markets

    def milliseconds(self):
        return self.now

    def fetch_time(self):
        self._request("fetch_time")
        return self.now

    def fetch_ohlcv(self, symbol, timeframe, since=None, limit=None):
        self._request("fetch_ohlcv", symbol, timeframe, since, limit)
        t, v = self.source[(symbol, timeframe)]
        visible = int(np.searchsorted(t, self.now, side="right"))  # includes the still-open candle
        if since is None:
            lo = max(visible - (limit or 500), 0)
        else:
            lo = max(int(np.searchsorted(t, since)) - self.overlap, 0)
        hi = min(lo + (limit or 500), visible)
        rows = [[int(t[i]), *map(float, v[i])] for i in range(lo, hi)]
        return self.corrupt(rows) if self.corrupt else rows

    def fetch_mark_ohlcv(self, symbol, timeframe, since=None, limit=None):
        """The trade candles' prices at a 0.1 % premium and no volume (None), as some exchanges send."""
        rows = self.fetch_ohlcv(symbol, timeframe, since, limit)
        self.calls[-1] = ("fetch_mark_ohlcv", *self.calls[-1][1:])
        return [[t, o * 1.001, h * 1.001, l * 1.001, c * 1.001, None] for t, o, h, l, c, _ in rows]

    def fetch_funding_rate_history(self, symbol, since=None, limit=None):
        self._request("fetch_funding_rate_history", symbol, since, limit)
        t, r = self.funding_source[symbol]
        lo = int(np.searchsorted(t, since or 0))
        hi = min(lo + (limit or 100), int(np.searchsorted(t, self.now, side="right")))
        return [{"symbol": symbol, "timestamp": int(t[i]), "fundingRate": float(r[i])} for i in range(lo, hi)]

    def fetch_tickers(self):
        self._request("fetch_tickers")
        return self.tickers


@pytest.fixture(scope="module")
def source(btc_candles):
    return btc_candles.slice(0, N)


def bar_ms(source, i: int) -> int:
    return int(source.time[i] // 1_000_000)


def fake_for(source, open_bar: int, **kw) -> FakeExchange:
    """An exchange whose clock is half-way through bar ``open_bar`` (that bar is still open)."""
    return FakeExchange({"BTC/USDT": source}, bar_ms(source, open_bar) + H_MS // 2, **kw)


def downloader(exchange, root, market="spot", limit=500) -> Downloader:
    return Downloader(exchange, root, market, policy=RetryPolicy(base_delay=0.5), clock=ManualClock(), limit=limit)


def test_pagination_stores_exactly_the_closed_source_candles(tmp_path, source):
    ex = fake_for(source, 2400)
    report = downloader(ex, tmp_path).candles("BTC/USDT", "1h", bar_ms(source, 0))
    stored = read_stored(candles_path(tmp_path, "fake", "spot", "BTC/USDT", "1h"), "BTC/USDT", "1h")
    assert len(stored) == 2400 and report.stored == 2400 and report.added == 2400
    np.testing.assert_array_equal(stored.time, source.time[:2400])
    for col in ("open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(getattr(stored, col), getattr(source, col)[:2400])
    # 5 pages of <= 500 rows (+ the exchange's clock); the open candle (bar 2400) came in the last
    # page and was dropped
    assert ex.count("fetch_ohlcv") == 5 and report.requests == 6
    assert stored.time[-1] // 1_000_000 + H_MS <= ex.now


def test_second_run_fetches_only_new_candles_and_replaces_the_last(tmp_path, source):
    ex = fake_for(source, 2400)
    dl = downloader(ex, tmp_path)
    dl.candles("BTC/USDT", "1h", bar_ms(source, 0))
    path = candles_path(tmp_path, "fake", "spot", "BTC/USDT", "1h")
    mtime = path.stat().st_mtime_ns
    ex.calls.clear()
    report = dl.candles("BTC/USDT", "1h", bar_ms(source, 0))  # nothing closed since: no page request
    assert ex.count("fetch_ohlcv") == 0 and report.added == 0 and path.stat().st_mtime_ns == mtime

    ex.now += 10 * H_MS
    t, v = ex.source[("BTC/USDT", "1h")]
    v[2399, 3] = v[2399, 1]  # the exchange corrected the last stored candle's close (= its high)
    ex.calls.clear()
    report = dl.candles("BTC/USDT", "1h", bar_ms(source, 0))
    assert ex.count("fetch_ohlcv") == 1
    assert ex.calls[-1][3] == bar_ms(source, 2399)  # starts at the last stored candle
    assert report.added == 10 and report.stored == 2410
    stored = read_stored(path, "BTC/USDT", "1h")
    np.testing.assert_array_equal(stored.time, source.time[:2410])
    assert stored.close[2399] == v[2399, 3]


def test_overlapping_pages_are_deduplicated(tmp_path, source):
    ex = fake_for(source, 1300)
    ex.overlap = 7
    report = downloader(ex, tmp_path, limit=300).candles("BTC/USDT", "1h", bar_ms(source, 0))
    stored = read_stored(candles_path(tmp_path, "fake", "spot", "BTC/USDT", "1h"), "BTC/USDT", "1h")
    np.testing.assert_array_equal(stored.time, source.time[:1300])
    assert report.fetched > 1300  # the overlaps were received, and dropped


def test_since_before_the_store_backfills_the_head(tmp_path, source):
    ex = fake_for(source, 1000)
    dl = downloader(ex, tmp_path)
    dl.candles("BTC/USDT", "1h", bar_ms(source, 600))
    report = dl.candles("BTC/USDT", "1h", bar_ms(source, 100))
    stored = read_stored(candles_path(tmp_path, "fake", "spot", "BTC/USDT", "1h"), "BTC/USDT", "1h")
    np.testing.assert_array_equal(stored.time, source.time[100:1000])
    assert report.added == 500


def _nan(rows):
    rows[3][4] = float("nan")
    return rows


def _negative(rows):
    rows[5][2] = -1.0
    return rows


def _short(rows):
    rows[7] = rows[7][:5]
    return rows


def _swapped(rows):
    rows[9], rows[10] = rows[10], rows[9]
    return rows


def _text(rows):
    rows[2][1] = "abc"
    return rows


@pytest.mark.parametrize("corrupt,row,what", [
    (_nan, 3, "NaN"), (_negative, 5, "negative"), (_short, 7, "wrong shape"),
    (_swapped, 10, "not increasing"), (_text, 2, "non-numeric"),
])
def test_malformed_responses_are_refused_naming_symbol_timeframe_row(tmp_path, source, corrupt, row, what):
    ex = fake_for(source, 400)
    dl = downloader(ex, tmp_path)
    dl.candles("BTC/USDT", "1h", bar_ms(source, 0))
    path = candles_path(tmp_path, "fake", "spot", "BTC/USDT", "1h")
    before = path.read_bytes()
    ex.now += 30 * H_MS
    ex.corrupt = corrupt
    with pytest.raises(DownloadError) as info:
        dl.candles("BTC/USDT", "1h", bar_ms(source, 0))
    message = str(info.value)
    assert "BTC/USDT" in message and "1h" in message and f"row {row}" in message and what in message
    assert path.read_bytes() == before  # nothing of the bad response reached the store


def test_inconsistent_candle_is_refused_with_its_timestamp(tmp_path, source):
    ex = fake_for(source, 300)

    def high_below_low(rows):
        rows[4][2] = rows[4][3] * 0.5
        return rows
    ex.corrupt = high_below_low
    with pytest.raises(CandleError, match=r"high below.*BTC/USDT|BTC/USDT.*high below"):
        downloader(ex, tmp_path).candles("BTC/USDT", "1h", bar_ms(source, 0))
    assert not candles_path(tmp_path, "fake", "spot", "BTC/USDT", "1h").exists()


def test_crash_while_writing_leaves_the_previous_file_intact(tmp_path, source, monkeypatch):
    ex = fake_for(source, 500)
    dl = downloader(ex, tmp_path)
    dl.candles("BTC/USDT", "1h", bar_ms(source, 0))
    path = candles_path(tmp_path, "fake", "spot", "BTC/USDT", "1h")
    before = path.read_bytes()

    def crashing_writer(frame, fh):
        fh.write(b"PAR1" + b"\0" * 1000)  # half a file...
        raise OSError("disk full")  # ...then the crash
    monkeypatch.setattr(data_mod, "_write_frame", crashing_writer)
    ex.now += 50 * H_MS
    with pytest.raises(OSError, match="disk full"):
        dl.candles("BTC/USDT", "1h", bar_ms(source, 0))
    assert path.read_bytes() == before
    assert sorted(os.listdir(path.parent)) == [path.name, "instruments.json"]  # no temporary file left behind
    assert len(read_stored(path, "BTC/USDT", "1h")) == 500


def test_several_symbols_and_timeframes_one_file_each(tmp_path, btc_candles):
    from mlcoord.candles import load_candles
    from mlcoord.datasets import bundled_path

    eth = load_candles(bundled_path("ETH/USDT"), symbol="ETH/USDT")
    ex = FakeExchange({"BTC/USDT": btc_candles.slice(0, 1200), "ETH/USDT": eth.slice(0, 1200)},
                      bar_ms(btc_candles, 1100) + 1)
    reports = downloader(ex, tmp_path, limit=1000).download(["BTC/USDT", "ETH/USDT"], ["1h", "4h", "1d"],
                                                            bar_ms(btc_candles, 0))
    assert [(r.symbol, r.timeframe) for r in reports] == [(s, tf) for s in ("BTC/USDT", "ETH/USDT")
                                                          for tf in ("1h", "4h", "1d")]
    assert sorted(p.name for p in (tmp_path / "fake" / "spot").iterdir()) == sorted(
        [f"{s}-{tf}.parquet" for s in ("BTC_USDT", "ETH_USDT") for tf in ("1h", "4h", "1d")] + ["instruments.json"])
    one_day = read_stored(candles_path(tmp_path, "fake", "spot", "ETH/USDT", "1d"), "ETH/USDT", "1d")
    assert one_day.time[-1] + 86_400 * 10**9 <= ex.now * 1_000_000  # only closed days
    assert ex.count("fetch_time") == 1  # one clock reading for the whole run


def test_unknown_symbol_suggests_close_matches(tmp_path, source):
    with pytest.raises(DownloadError, match="unknown symbol 'BTC/USDC'.*BTC/USDT"):
        downloader(fake_for(source, 100), tmp_path).candles("BTC/USDC", "1h", 0)


# -- funding ----------------------------------------------------------------------------------------
def _funding_source(source, n_bars: int):
    times = np.arange(bar_ms(source, 0), bar_ms(source, n_bars - 1) + H_MS, 8 * H_MS) + 3  # Binance: a few ms late
    rates = 0.0001 * (1 + np.sin(np.arange(len(times)) / 5.0))
    return times.astype(np.int64), rates


def test_funding_history_is_paginated_incremental_and_stored(tmp_path, source):
    funding = _funding_source(source, N)
    ex = FakeExchange({"BTC/USDT:USDT": source}, bar_ms(source, 1500), funding={"BTC/USDT:USDT": funding})
    dl = downloader(ex, tmp_path, market="futures", limit=50)
    reports = dl.download(["BTC/USDT"], ["1h"], bar_ms(source, 0))
    assert [r.timeframe for r in reports] == ["1h", "funding"]
    expected = int(np.searchsorted(funding[0], ex.now, side="right"))
    assert reports[1].stored == expected and ex.count("fetch_funding_rate_history") == math.ceil(expected / 50) + 1
    assert candles_path(tmp_path, "fake", "futures", "BTC/USDT:USDT", "1h").name == "BTC_USDT_USDT-1h.parquet"
    ex.now += 48 * H_MS
    ex.calls.clear()
    reports = dl.download(["BTC/USDT"], ["1h"], bar_ms(source, 0))
    assert reports[1].added == 6 and ex.count("fetch_funding_rate_history") == 2
    series = load_store_funding(tmp_path, ExchangeConfig(id="fake", market="futures"), ["BTC/USDT"])["BTC/USDT"]
    np.testing.assert_allclose(series.rate, funding[1][:expected + 6])
    assert (series.time % 10**9 == 0).all()  # rounded to the second: 08:00:00.003 pays on the 08:00 bar


def test_mark_prices_are_stored_beside_the_perpetual_and_incremental(tmp_path, source):
    ex = FakeExchange({"BTC/USDT:USDT": source}, bar_ms(source, 600))
    dl = downloader(ex, tmp_path, market="futures", limit=250)
    reports = dl.download(["BTC/USDT"], ["1h"], bar_ms(source, 0), funding=False, mark=True)
    assert [r.timeframe for r in reports] == ["1h", "1h mark"] and reports[1].stored == 600
    assert reports[1].path == mark_path(tmp_path, "fake", "BTC/USDT:USDT", "1h")
    assert reports[1].path.name == "BTC_USDT_USDT-1h-mark.parquet"
    mark = read_stored(reports[1].path, "BTC/USDT", "1h")
    np.testing.assert_allclose(mark.close, source.close[:600] * 1.001)
    assert (mark.volume == 0).all() and ex.count("fetch_mark_ohlcv") == 3
    ex.now += 5 * H_MS
    ex.calls.clear()
    assert dl.download(["BTC/USDT"], ["1h"], bar_ms(source, 0), funding=False, mark=True)[1].added == 5
    assert ex.count("fetch_mark_ohlcv") == 1


def test_mark_prices_need_futures_and_an_exchange_that_has_them(tmp_path, source):
    ex = FakeExchange({"BTC/USDT": source}, bar_ms(source, 100))
    with pytest.raises(DataError, match="mark prices are a perpetual's; download them with --market futures"):
        downloader(ex, tmp_path).download(["BTC/USDT"], ["1h"], 0, mark=True)
    ex.has["fetchMarkOHLCV"] = False
    with pytest.raises(DataError, match=r"no fetchMarkOHLCV\); leave out --mark"):
        downloader(ex, tmp_path, market="futures").download(["BTC/USDT"], ["1h"], 0, mark=True)
    assert not ex.calls and not any(tmp_path.iterdir())
    result = CliRunner().invoke(cli_main, ["data", "download", "--market", "spot", "--mark", "--symbols", "BTC/USDT",
                                           "--store", str(tmp_path / "s")])
    assert result.exit_code == 2 and "--mark downloads a perpetual's mark prices: use it with --market futures" \
        in result.output


def test_malformed_funding_is_refused(tmp_path, source):
    ex = FakeExchange({"BTC/USDT:USDT": source}, bar_ms(source, 500),
                      funding={"BTC/USDT:USDT": (np.array([bar_ms(source, 8)], np.int64), np.array([np.nan]))})
    with pytest.raises(DownloadError, match=r"BTC/USDT:USDT funding.*row 0"):
        downloader(ex, tmp_path, market="futures").funding("BTC/USDT", 0)
    assert not funding_path(tmp_path, "fake", "futures", "BTC/USDT:USDT").exists()


def test_cost_model_uses_recorded_funding_where_present_else_constant():
    t0 = 100 * 8 * HOUR_NS
    series = FundingSeries(np.array([t0, t0 + 8 * HOUR_NS, t0 + 16 * HOUR_NS]) + 3_000_000,
                           np.array([0.001, -0.002, 0.0005]))
    costs = CostModel.from_config(BacktestConfig(funding_rate=0.0001), {"BTC/USDT": series})
    assert costs.funding_between("BTC/USDT", t0 - HOUR_NS, t0) == pytest.approx(0.001)
    assert costs.funding_between("BTC/USDT", t0, t0 + 16 * HOUR_NS) == pytest.approx(-0.0015)
    assert costs.funding_between("BTC/USDT", t0 + HOUR_NS, t0 + 2 * HOUR_NS) == 0.0
    # before the history: the constant rate at 8 h boundaries, then the recorded ones
    assert costs.funding_between("BTC/USDT", t0 - 17 * HOUR_NS, t0) == pytest.approx(2 * 0.0001 + 0.001)
    # after it: the constant again
    assert costs.funding_between("BTC/USDT", t0 + 16 * HOUR_NS, t0 + 32 * HOUR_NS) == pytest.approx(2 * 0.0001)
    # another symbol, or spot: the configured model
    assert costs.funding_between("ETH/USDT", t0 - HOUR_NS, t0) == pytest.approx(0.0001)
    spot = CostModel.from_config(BacktestConfig(market="spot", funding_rate=0.0), {"BTC/USDT": series})
    assert spot.funding_events(0, 1 << 62) == 0
    assert "recorded funding rates for BTC/USDT" in costs.describe()


# -- the store feeds backtest and evaluate ----------------------------------------------------------
def test_cli_download_then_backtest_reads_the_store_with_funding(tmp_path, source, monkeypatch, builtin_plugins_only):
    from mlcoord import cli
    from mlcoord.backtest.run import run_backtest
    from mlcoord.live import exchange as exchange_mod

    funding = (np.arange(bar_ms(source, 0), bar_ms(source, N - 1) + H_MS, 8 * H_MS, dtype=np.int64), None)
    funding = (funding[0], np.full(len(funding[0]), 0.003))  # expensive funding: visible in the PnL
    ex = FakeExchange({"BTC/USDT:USDT": source}, bar_ms(source, N - 1) + 1, funding={"BTC/USDT:USDT": funding})
    monkeypatch.setattr(exchange_mod, "create_exchange", lambda config, credentials=None: ex)
    store = tmp_path / "store"
    result = CliRunner().invoke(cli.main, ["data", "download", "--exchange", "fake", "--market", "futures",
                                           "--symbols", "BTC/USDT", "--timeframes", "1h,4h",
                                           "--since", str(source.frame.index[0].date()), "--store", str(store)])
    assert result.exit_code == 0, result.output
    assert "BTC/USDT:USDT 1h: +2499 new" in result.output and "BTC/USDT:USDT funding" in result.output

    config = tmp_path / "c.toml"
    config.write_text(f'[data]\nstore = "{store}"\nsymbols = ["BTC/USDT"]\n[exchange]\nid = "fake"\n'
                      f'market = "futures"\n', encoding="utf-8")
    settings = load_settings(config)
    candles = load_store_candles(store, settings.exchange, ["BTC/USDT"], "4h")
    assert candles[0].timeframe == "4h" and candles[0].symbol == "BTC/USDT"
    with_funding = run_backtest(settings)
    assert len(with_funding.candles[0]) == 2499
    paid = sum(t.funding for t in with_funding.raw.trades)
    (funding_path(store, "fake", "futures", "BTC/USDT:USDT")).unlink()
    paid_constant = sum(t.funding for t in run_backtest(settings).raw.trades)
    assert with_funding.raw.trades and abs(paid) > 5 * abs(paid_constant)

    result = CliRunner().invoke(cli.main, ["backtest", "--config", str(config), "--timeframe", "4h",
                                           "--no-progress", "--trades", "0"])
    assert result.exit_code == 0, result.output


def test_store_missing_symbol_says_what_is_stored(tmp_path, source):
    ex = fake_for(source, 300)
    downloader(ex, tmp_path).candles("BTC/USDT", "1h", 0)
    with pytest.raises(Exception, match=r"no candles for ETH/USDT.*download"):
        load_store_candles(tmp_path, ExchangeConfig(id="fake"), ["ETH/USDT"], "1h")
    with pytest.raises(Exception, match=r"stored for it: spot 1h"):
        load_store_candles(tmp_path, ExchangeConfig(id="fake"), ["BTC/USDT"], "1m")


def test_a_spot_only_store_gives_the_spot_series_and_no_funding_or_basis(tmp_path, source):
    from mlcoord.config import Settings
    from mlcoord.feature_matrix import available_features
    from mlcoord.market_sources import market_datasets

    downloader(fake_for(source, 300), tmp_path).candles("BTC/USDT", "1h", 0)
    settings = Settings(data=attrs.evolve(Settings().data, store=str(tmp_path)), exchange=ExchangeConfig(id="fake"))
    [data] = market_datasets(settings, load_store_candles(tmp_path, settings.exchange, ["BTC/USDT"], "1h"))
    i = data.inputs
    assert len(i.spot) == 300 and i.funding is None and i.perpetual is None and i.mark is None
    assert not {"funding_rate", "funding_24h", "basis"} & set(available_features(data))


def test_parse_since():
    assert parse_since("2021-01-01") == parse_since("20210101") == 1609459200000
    with pytest.raises(Exception, match="2021-01-01"):
        parse_since("yesterday-ish")


def test_backtest_without_store_does_not_import_ccxt():
    import subprocess
    import sys

    code = ("import sys; import mlcoord.backtest.run, mlcoord.live.data, mlcoord.live.scanner, "
            "mlcoord.live.exchange, mlcoord.cli; assert 'ccxt' not in sys.modules, 'ccxt imported'")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(["engine", "plugins", os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-c", code], check=True, env=env,
                   cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# -- against the loopback Binance (real ccxt objects) -------------------------------------------------
def klines_calls(server, futures=False) -> int:
    return server.calls[("GET", "/fapi/v1/klines" if futures else "/api/v3/klines")]


def test_server_download_paginates_then_fetches_only_new(tmp_path, exchange_server, btc_candles):
    server = exchange_server  # clock at the open of bar 1000 of the bundled BTC/USDT data
    dl = downloader(spot_client(server), tmp_path, limit=300)
    reports = dl.download(["BTC/USDT"], ["1h", "4h"], bar_ms(btc_candles, 0))
    assert klines_calls(server) == 4 + 1  # 1h: 300+300+300+101 rows (the last one still open); 4h: one page
    one_hour = read_stored(candles_path(tmp_path, "binance", "spot", "BTC/USDT", "1h"), "BTC/USDT", "1h")
    np.testing.assert_array_equal(one_hour.time, btc_candles.time[:1000])
    np.testing.assert_allclose(one_hour.close, btc_candles.close[:1000], rtol=1e-12)
    np.testing.assert_allclose(one_hour.volume, btc_candles.volume[:1000], rtol=1e-12)
    four_hours = read_stored(reports[1].path, "BTC/USDT", "4h")
    np.testing.assert_allclose(four_hours.high, resample(btc_candles.slice(0, 1000), "4h").high[:len(four_hours)])
    assert four_hours.time[-1] + four_hours.timeframe_ns <= server.now_ms * MS_NS

    server.advance(30)
    before = klines_calls(server)
    reports = dl.download(["BTC/USDT"], ["1h", "4h"], bar_ms(btc_candles, 0))
    assert klines_calls(server) - before == 2  # one page per file, from its last stored candle
    assert reports[0].added == 30 and reports[0].stored == 1030
    assert reports[1].added in (7, 8)
    np.testing.assert_array_equal(read_stored(reports[0].path, "BTC/USDT", "1h").time, btc_candles.time[:1030])


def test_server_futures_candles_and_funding_history(tmp_path, btc_candles):
    def rate(symbol, time_ms):
        return 0.0001 * (1 + (time_ms // (8 * H_MS)) % 3)  # 1, 2, 3 bp in turn

    with ExchangeServer(funding_rate=rate) as server:
        dl = downloader(futures_client(server), tmp_path, market="futures", limit=100)
        reports = dl.download(["BTC/USDT"], ["1h"], bar_ms(btc_candles, 0))
        assert [r.symbol for r in reports] == ["BTC/USDT:USDT"] * 2
        series = load_store_funding(tmp_path, ExchangeConfig(id="binanceusdm", market="futures"),
                                    ["BTC/USDT"])["BTC/USDT"]
        times_ms = series.time // MS_NS
        assert (np.diff(times_ms) == 8 * H_MS).all() and times_ms[-1] <= server.now_ms
        np.testing.assert_allclose(series.rate, [rate("BTC/USDT", int(t)) for t in times_ms])
        pages = server.calls[("GET", "/fapi/v1/fundingRate")]
        # an extra (empty) page only when the last event is older than the clock
        assert pages == math.ceil(len(times_ms) / 100) + (times_ms[-1] < server.now_ms)
        server.advance(24)
        reports = dl.download(["BTC/USDT"], ["1h"], bar_ms(btc_candles, 0))
        assert reports[0].added == 24 and reports[1].added == 3
        times_ms = load_store_funding(tmp_path, ExchangeConfig(id="binanceusdm", market="futures"),
                                      ["BTC/USDT"])["BTC/USDT"].time // MS_NS
        assert server.calls[("GET", "/fapi/v1/fundingRate")] - pages == 1 + (times_ms[-1] < server.now_ms)


def test_server_spot_and_perpetual_store_feeds_the_basis_and_funding_features(tmp_path, btc_candles):
    """One store, both markets (Binance's one exchange id; ccxt's ``binance`` with defaultType
    future speaks /fapi): spot candles, perpetual candles, mark prices and funding, then a
    backtest's MarketData carries them and the features read them."""
    from mlcoord.config import Settings
    from mlcoord.feature_matrix import available_features, feature_table
    from mlcoord.market_sources import market_datasets

    def rate(symbol, time_ms):
        return 0.0001 * (1 + (time_ms // (8 * H_MS)) % 3)

    with ExchangeServer(funding_rate=rate) as server:
        since = bar_ms(btc_candles, 0)
        downloader(spot_client(server), tmp_path).download(["BTC/USDT"], ["1h"], since)
        perpetual = spot_client(server, options={"defaultType": "future", "fetchMarkets": {"types": ["linear"]}})
        reports = downloader(perpetual, tmp_path, market="futures").download(["BTC/USDT"], ["1h"], since, mark=True)
        assert [r.timeframe for r in reports] == ["1h", "1h mark", "funding"]
        assert server.calls[("GET", "/fapi/v1/markPriceKlines")] == 2      # two pages of 500 closed bars
        assert reports[1].stored == reports[0].stored == 1000

    exchange = ExchangeConfig(id="binance", market="futures")
    settings = Settings(data=attrs.evolve(Settings().data, store=str(tmp_path)), exchange=exchange,
                        backtest=attrs.evolve(Settings().backtest, market="futures"))
    [data] = market_datasets(settings, load_store_candles(tmp_path, exchange, ["BTC/USDT"], "1h"))
    i = data.inputs
    assert len(i.spot) == len(i.perpetual) == len(i.mark) == 1000 and len(i.funding) == 126   # every 8 h
    assert (i.mark.volume == 0).all()
    assert {"funding_rate", "funding_24h", "basis"} <= set(available_features(data))
    table = feature_table(data, ["basis", "funding_rate", "funding_24h"])
    assert (table[:, 0] == 0).all()                # the emulator's perpetual trades at its spot price
    close_ms = (data.candles.time + data.candles.timeframe_ns) // MS_NS
    last_event = close_ms // (8 * H_MS) * (8 * H_MS)
    known = close_ms >= int(i.funding.time[0] // MS_NS)
    np.testing.assert_allclose(table[known, 1], [rate("", int(t)) for t in last_event[known]], rtol=1e-6)
    assert np.isfinite(table[known, 2][24:]).all()


def test_server_faults_are_retried_with_backoff_then_exchange_unavailable(tmp_path, exchange_server, btc_candles):
    from test_retry import expected_delays

    server = exchange_server
    clock = ManualClock()
    policy = RetryPolicy(max_attempts=5, seed=11)
    dl = Downloader(spot_client(server, timeout_ms=300), tmp_path, policy=policy, clock=clock, limit=1000)
    dl.resolve("BTC/USDT")
    server.faults.rate_limit(retry_after=7, endpoint="/api/v3/klines")
    server.faults.server_error(503, endpoint="/api/v3/klines")
    server.faults.server_error(502, endpoint="/api/v3/klines")
    server.faults.timeout(delay=0.5, endpoint="/api/v3/klines")
    report = dl.candles("BTC/USDT", "1h", bar_ms(btc_candles, 0))
    assert report.stored == 1000 and [f[0] for f in server.faults.log] == [
        "rate_limit", "server_error", "server_error", "timeout"]
    backoff = expected_delays(policy, 4)
    assert clock.sleeps[0] == 7.0  # Retry-After: 7 beat the 1 s backoff
    assert clock.sleeps[1:] == pytest.approx(backoff[1:])

    server.faults.server_error(503, endpoint="/api/v3/klines", probability=1.0)
    server.advance(5)
    clock.sleeps.clear()
    with pytest.raises(ExchangeUnavailable, match="5 attempts"):
        dl.candles("BTC/USDT", "1h", bar_ms(btc_candles, 0))
    assert len(clock.sleeps) == 4
    assert len(read_stored(report.path, "BTC/USDT", "1h")) == 1000  # the store is untouched



def test_download_stores_the_exchange_instrument_rules_and_backtests_use_them(tmp_path, source):
    """The exchange's tick, lot and minimum order land beside the candles; a backtest of the store
    rounds and refuses orders by them."""
    from mlcoord.config import ExchangeConfig
    from mlcoord.datastore import load_store_instruments

    ex = fake_for(source, 50)
    ex.markets["BTC/USDT"] = {**ex.markets.get("BTC/USDT", {}), "precision": {"price": 0.01, "amount": 0.00001},
                              "limits": {"cost": {"min": 5.0}}}
    downloader(ex, tmp_path).candles("BTC/USDT", "1h", bar_ms(source, 0))
    rules = load_store_instruments(tmp_path, ExchangeConfig(id="fake", market="spot"), ["BTC/USDT"])
    assert rules["BTC/USDT"].lot_size == 0.00001 and rules["BTC/USDT"].min_notional == 5.0
    assert rules["BTC/USDT"].source == "exchange"


def test_an_unreadable_stored_file_is_a_clear_error_not_a_name_error(tmp_path):
    """The store's reader moved out of the live package; a corrupt file must still raise the
    store's error naming the file (it once referenced a name that module did not define)."""
    from mlcoord.config import ExchangeConfig
    from mlcoord.datastore import DownloadError, load_store_funding

    path = funding_path(tmp_path, "fake", "futures", "BTC/USDT:USDT")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a parquet file")
    with pytest.raises(DownloadError, match="unreadable"):
        load_store_funding(tmp_path, ExchangeConfig(id="fake", market="futures"), ["BTC/USDT"])


def test_bybit_download_candles_funding_history_and_instrument_rules(tmp_path, btc_candles):
    """``data download`` on Bybit (the loopback v5 emulator): the same closed candles, funding every
    8 h, and Bybit's own tick, lot and minimum order per market beside them, as on Binance."""
    from exchange_sim import BYBIT_LINEAR_MARKETS, BYBIT_SPOT_MARKETS, bybit_client, bybit_exchange_server
    from mlcoord.datastore import load_store_instruments

    with bybit_exchange_server() as server:
        perp = bybit_client(server, "linear", timeout_ms=3000)
        dl = downloader(perp, tmp_path, market="futures", limit=200)
        reports = dl.download(["BTC/USDT"], ["1h"], bar_ms(btc_candles, 0))
        assert [r.symbol for r in reports] == ["BTC/USDT:USDT"] * 2
        stored = read_stored(reports[0].path, "BTC/USDT", "1h")
        np.testing.assert_array_equal(stored.time, btc_candles.time[:1000])
        np.testing.assert_allclose(stored.close, btc_candles.close[:1000], rtol=1e-12)
        series = load_store_funding(tmp_path, ExchangeConfig(id="bybit", market="futures"), ["BTC/USDT"])["BTC/USDT"]
        times_ms = series.time // MS_NS
        assert len(times_ms) >= 125 and (np.diff(times_ms) == 8 * H_MS).all() and times_ms[-1] <= server.now_ms
        np.testing.assert_allclose(series.rate, 0.0001)
        spot = bybit_client(server, "spot", timeout_ms=3000)
        downloader(spot, tmp_path, limit=1000).download(["BTC/USDT"], ["1h"], bar_ms(btc_candles, 900))
        assert not server.errors
    for market, spec in (("futures", BYBIT_LINEAR_MARKETS[0]), ("spot", BYBIT_SPOT_MARKETS[0])):
        rules = load_store_instruments(tmp_path, ExchangeConfig(id="bybit", market=market), ["BTC/USDT"])["BTC/USDT"]
        assert rules.source == "exchange", market
        assert (rules.tick_size, rules.lot_size, rules.min_quantity, rules.min_notional) == \
            (float(spec.tick), float(spec.step), float(spec.lot_min), float(spec.min_notional)), (market, rules)


def test_okx_download_candles_and_funding_history(tmp_path, btc_candles):
    """``data download`` on OKX (the loopback v5 emulator: candles newest first, paged with
    ``after``/``before``; funding history of the swap): the same closed candles, funding every 8 h."""
    from exchange_sim import okx_client, okx_exchange_server

    with okx_exchange_server() as server:
        perp = okx_client(server, "swap", timeout_ms=3000)
        dl = downloader(perp, tmp_path, market="futures", limit=100)
        reports = dl.download(["BTC/USDT"], ["1h"], bar_ms(btc_candles, 0))
        assert [r.symbol for r in reports] == ["BTC/USDT:USDT"] * 2
        stored = read_stored(reports[0].path, "BTC/USDT", "1h")
        np.testing.assert_array_equal(stored.time, btc_candles.time[:1000])
        np.testing.assert_allclose(stored.close, btc_candles.close[:1000], rtol=1e-12)
        series = load_store_funding(tmp_path, ExchangeConfig(id="okx", market="futures"), ["BTC/USDT"])["BTC/USDT"]
        times_ms = series.time // MS_NS
        assert len(times_ms) >= 125 and (np.diff(times_ms) == 8 * H_MS).all() and times_ms[-1] <= server.now_ms
        np.testing.assert_allclose(series.rate, 0.0001)
        assert not server.errors
