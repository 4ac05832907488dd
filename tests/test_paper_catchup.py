"""`mlcoord paper` after a pause or an outage: every missed closed bar is replayed, in order,
through the per-bar code (paper is a simulation), fetched page by page; a hole beyond
``[live] history_bars`` is named; an empty or malformed candle answer is retried, then the symbol
is skipped for the cycle with a warning, never the end of the bot (paper and live)."""

from __future__ import annotations

import numpy as np
import pytest
from structlog.testing import capture_logs

from exchange_sim import exchange_server, futures_client, spot_client  # noqa: F401 (fixture)
from live_helpers import BarClock, live_config
from mlcoord.candles import timeframe_to_ns
from mlcoord.live.retry import ExchangeHealth, ManualClock, RetryPolicy
from mlcoord.live.runner import fetch_closed, load_live_settings, run_paper
from mlcoord.registry import load_plugins

HOUR = timeframe_to_ns("1h")


class PausingClock(BarClock):
    """One bar per poll, except the wait after poll ``at`` which lasts ``bars`` bars (a paused
    laptop, an outage of the bot's host)."""

    def __init__(self, server, at: int, bars: int):
        super().__init__(server)
        self.at, self.bars, self.polls = at, bars, 0

    def sleep(self, seconds):
        self.polls += 1
        if self.polls == self.at:
            self.sleeps.append(float(seconds))
            self.t += seconds * self.bars
            self.server.advance(self.bars)
        else:
            super().sleep(seconds)


def _config(tmp_path, extra="", history_bars=300):
    return live_config(tmp_path, "spot", extra, leverage=None, history_bars=history_bars, poll_seconds=3600)


def _no_hole(times) -> bool:
    t = np.asarray(times, dtype=np.int64)
    return bool(len(t) > 1 and np.all(np.diff(t) == HOUR))


def _events(logs, name):
    return [e for e in logs if e["event"] == name]


def test_a_paper_session_paused_30_bars_replays_every_missed_bar(exchange_server, tmp_path):
    """The bug: the poll asked for the last 5 closed bars, so after a pause of 30 bars it stepped
    5 and left a hole of 26, silently."""
    settings, options = load_live_settings(_config(tmp_path))
    clock = PausingClock(exchange_server, at=4, bars=31)     # 30 bars more than a poll's one
    with capture_logs() as logs:
        trader = run_paper(settings, options, spot_client(exchange_server), load_plugins(), clock=clock, cycles=8)
    times = trader.engine.loop.times
    history = trader.history["BTC/USDT"]
    assert _no_hole(times) and len(times) == 3 + 31 + 3 and len(set(times)) == len(times)
    assert _no_hole(history.time) and trader.last_time == times[-1] == int(history.time[-1])
    replayed = _events(logs, "catch_up_bar")
    assert [e["symbol"] for e in replayed] == ["BTC/USDT"] * 30
    assert [e["bar_time_ns"] for e in replayed] == list(times[3:33])            # in order, each once
    [summary] = _events(logs, "catch_up")
    assert summary["symbol"] == "BTC/USDT" and summary["bars"] == 31 and summary["replayed"] == 30


def test_the_missed_bars_come_page_by_page_at_the_exchange_cap(exchange_server, tmp_path):
    """``[live] candle_page`` is the exchange's cap per request: 30 missed bars at 7 a page take
    five requests, and every bar arrives."""
    settings, options = load_live_settings(_config(tmp_path, "candle_page = 7"))
    clock = PausingClock(exchange_server, at=2, bars=31)
    calls = []

    def count(_trader):
        calls.append(exchange_server.calls[("GET", "/api/v3/klines")])

    with capture_logs():
        trader = run_paper(settings, options, spot_client(exchange_server), load_plugins(), clock=clock, cycles=3,
                           on_cycle=count)
    times = trader.engine.loop.times
    assert _no_hole(times) and len(times) == 1 + 31
    assert calls[0] == -(-300 // 7)                # the history: 300 bars, 7 a request
    assert np.diff(calls).tolist() == [1, 5]       # a poll's one bar; then 31 bars in 5 pages


def test_a_hole_longer_than_history_bars_is_named(exchange_server, tmp_path):
    """More missed bars than ``[live] history_bars``: the newest ones are processed and the hole
    before them is named (first and last missing bar, count), never silently."""
    settings, options = load_live_settings(_config(tmp_path, history_bars=60))
    clock = PausingClock(exchange_server, at=2, bars=101)     # 100 missed bars, 60 kept
    with capture_logs() as logs:
        trader = run_paper(settings, options, spot_client(exchange_server), load_plugins(), clock=clock, cycles=3)
    [hole] = _events(logs, "candles_hole")
    assert hole["symbol"] == "BTC/USDT" and hole["count"] == 41 and hole["fetched"] == 60
    times = trader.engine.loop.times
    assert len(times) == 1 + 60 and _no_hole(times[1:]) and times[1] - times[0] == 42 * HOUR
    assert hole["first"] < hole["last"] and "41 closed bars missed" in hole["note"]


@pytest.mark.parametrize("mode", ["empty", "malformed"])
def test_a_bad_candle_answer_once_is_retried(exchange_server, tmp_path, mode):
    """``malformed`` cuts the answer's last row, the still-open bar, which the bot never uses: since
    issue 15 (bad bars never stop risk management) only closed rows are judged, so that answer
    is taken as it is, with no retry."""
    settings, options = load_live_settings(_config(tmp_path))
    exchange_server.faults.bad_klines(mode, at_call=2)       # the history, the first poll, then this
    with capture_logs() as logs:
        trader = run_paper(settings, options, spot_client(exchange_server), load_plugins(),
                           clock=BarClock(exchange_server), health_clock=ManualClock(), cycles=6)
    assert exchange_server.faults.log == [("bad_klines", "GET", "/api/v3/klines")]
    retries = _events(logs, "exchange_retry")
    if mode == "empty":
        [retry] = retries
        assert retry["reason"] == "malformed" and retry["what"] == "candles BTC/USDT"
    else:
        assert not retries and not _events(logs, "candle_dropped")
    assert not _events(logs, "candles_skipped") and not _events(logs, "trading_paused")
    assert len(trader.engine.loop.times) == 5 and _no_hole(trader.engine.loop.times)


@pytest.mark.parametrize("mode", ["empty", "malformed"])
def test_a_bad_candle_answer_that_persists_skips_the_symbol_for_the_cycle(exchange_server, tmp_path, mode):
    """The bug: an answer with no rows (``no rows``) ended the bot. Now: retried, then the symbol
    waits for the next cycle (a warning naming it and the cause), which catches its bar up. (A
    malformed row of the still-open bar is not judged: the closed bars are stepped at once.)"""
    settings, options = load_live_settings(_config(tmp_path))
    for k in (2, 3, 4):                                       # every attempt of the third poll
        exchange_server.faults.bad_klines(mode, at_call=k)
    with capture_logs() as logs:
        trader = run_paper(settings, options, spot_client(exchange_server), load_plugins(),
                           clock=BarClock(exchange_server), health_clock=ManualClock(), cycles=6)
    assert not _events(logs, "trading_paused")
    times = trader.engine.loop.times
    assert len(times) == 5 and _no_hole(times)                # the next poll brought both bars
    if mode == "malformed":
        assert not _events(logs, "candles_skipped") and not _events(logs, "catch_up_bar")
        return
    [skipped] = _events(logs, "candles_skipped")
    assert skipped["symbol"] == "BTC/USDT" and skipped["log_level"] == "warning"
    assert "binance BTC/USDT 1h" in skipped["cause"] and "3 attempts" in skipped["cause"]
    assert "no closed candle" in skipped["cause"]
    [caught] = _events(logs, "catch_up_bar")
    assert caught["bar_time_ns"] == times[1]


@pytest.mark.parametrize("mode", ["empty", "malformed"])
def test_the_live_session_survives_a_bad_candle_answer(exchange_server, tmp_path, mode):
    """The live loop's poll carries on after bad candle answers and catches the bar up next cycle."""
    from mlcoord.live.session import run_live

    settings, options = load_live_settings(live_config(tmp_path, "futures"))
    for k in (2, 3, 4):
        exchange_server.faults.bad_klines(mode, endpoint="/fapi/v1/klines", at_call=k)
    with capture_logs():
        trader = run_live(settings, options, futures_client(exchange_server), load_plugins(),
                          clock=BarClock(exchange_server), health_clock=ManualClock(), cycles=6)
    assert exchange_server.faults.log
    times = trader.engine.loop.times
    assert len(times) == 5 and _no_hole(times)


def test_fetch_closed_pages_through_an_exchange_that_caps_pages_silently(exchange_server):
    """An exchange sending fewer rows than asked (no error): the next page starts after its last row."""
    exchange = spot_client(exchange_server)
    exchange.load_markets()
    health = ExchangeHealth(RetryPolicy(max_attempts=2), ManualClock())
    [c] = fetch_closed(exchange, health, ["BTC/USDT"], {"BTC/USDT": "BTC/USDT"}, "1h", 20, page=10)
    known = {"BTC/USDT": int(c.time[-1])}
    exchange_server.advance(25)
    exchange_server.faults.bad_klines("short", rows=4, probability=1.0)
    [new] = fetch_closed(exchange, health, ["BTC/USDT"], {"BTC/USDT": "BTC/USDT"}, "1h", 100, known, page=10)
    assert len(new) == 25 and int(new.time[0]) == known["BTC/USDT"] + HOUR and _no_hole(new.time)
    assert len(exchange_server.faults.log) == 7                # 25 bars, 4 a page
