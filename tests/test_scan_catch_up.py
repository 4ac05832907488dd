"""Catch-up in scan mode (``[live] scan = true``, issue 14): a bot paused for 30 bars fetches every
bar it missed for each scanned symbol (page by page, through the scanner's worker threads) and
replays them in order, one ``catch_up_bar`` line per replayed bar; more missed bars than
``[live] history_bars`` leave a hole that is named (``candles_hole``), never a silent one."""

from __future__ import annotations

import numpy as np
import pytest
from structlog.testing import capture_logs

from exchange_sim import exchange_server, futures_client  # noqa: F401 (fixture)
from live_helpers import BarClock, live_config
from mlcoord.live.retry import ManualClock
from mlcoord.live.runner import load_live_settings
from mlcoord.live.session import run_live
from mlcoord.registry import load_plugins

TF = 3_600_000_000_000
SCAN = "scan = true\ncandle_page = 7\n[live.scanner]\ntop_n = 2\nmin_quote_volume = 0\ntimeframes = [\"1h\"]\n"


def _paused_scan_session(server, tmp_path, *, pause: int, history_bars: int = 300):
    """Two scanned pairs (BTC, ETH); the bot is away for ``pause`` bars after its third bar."""
    settings, options = load_live_settings(live_config(tmp_path, extra=SCAN, history_bars=history_bars))
    paused = {}

    def on_cycle(trader):
        if not paused and len(trader.engine.loop.times) == 3:
            paused["at"] = trader.last_time
            server.advance(pause)

    with capture_logs() as logs:
        trader = run_live(settings, options, futures_client(server), load_plugins(), clock=BarClock(server),
                          health_clock=ManualClock(), cycles=7, on_cycle=on_cycle)
    assert paused
    return trader, logs, paused["at"]


def test_a_paused_scan_bot_replays_every_missed_bar(exchange_server, tmp_path):
    """The bug: scan mode fetched the last 5 closed bars a cycle, so after a pause of 30 bars it
    stepped 5 and left a hole of 26 in every scanned symbol's history, silently."""
    trader, logs, at = _paused_scan_session(exchange_server, tmp_path, pause=30)
    assert sorted(trader.history) == ["BTC/USDT", "ETH/USDT"]
    for symbol, candles in trader.history.items():
        assert np.all(np.diff(candles.time) == TF), symbol                   # no hole in any history
    times = trader.engine.loop.times
    assert np.all(np.diff(times) == TF) and len(times) == 3 + 31 + 2        # every bar stepped once
    replayed = [e for e in logs if e["event"] == "catch_up_bar"]
    assert [e["time"] for e in replayed] == [at + k * TF for k in range(1, 31)]
    assert all(e["symbols"] == ["BTC/USDT", "ETH/USDT"] for e in replayed)
    pages = [e for e in logs if e["event"] == "catch_up_fetched"]
    assert sorted(e["symbol"] for e in pages) == ["BTC/USDT:USDT", "ETH/USDT:USDT"]
    assert all(e["bars"] == 31 and e["pages"] == 5 for e in pages)          # 31 bars, 7 a request
    assert not [e for e in logs if e["event"] == "candles_hole"]


def test_a_scan_bot_away_longer_than_history_bars_names_the_hole(exchange_server, tmp_path):
    trader, logs, at = _paused_scan_session(exchange_server, tmp_path, pause=100, history_bars=60)
    holes = sorted((e["symbol"], e["count"], e["fetched"]) for e in logs if e["event"] == "candles_hole")
    assert holes == [("BTC/USDT", 41, 60), ("ETH/USDT", 41, 60)]       # 101 missed, the newest 60 fetched
    times = trader.engine.loop.times
    assert times[3] - times[2] == 42 * TF and np.all(np.diff(times[3:]) == TF)
