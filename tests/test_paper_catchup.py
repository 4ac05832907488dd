"""`mlcoord paper` after a pause or an outage: every missed closed bar is replayed, in order,
through the per-bar code (paper is a simulation), fetched page by page; a hole beyond
``[live] history_bars`` is named; an empty or malformed candle answer is retried, then the symbol
is skipped for the cycle with a warning, never the end of the bot (paper and live)."""

from __future__ import annotations

import numpy as np
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
