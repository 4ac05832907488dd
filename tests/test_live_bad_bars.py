"""Bad live data never stops risk management (issue 15).

The probe behind the issue: one malformed candle from the exchange (high below low, a zero price,
a duplicate timestamp) ended live trading with a position open, and every restart failed the same
way while the bad bar lay inside ``history_bars``; an implausible tick that passes validation
(``high = 1e300``) moved the exit manager's stop to nowhere and the bot died on it. Now such a bar
is left out with a warning and a count (the heartbeat's ``bad_bars``), the exchange-side stop
stays and the loop steps its exit updates on the sound bars, the symbol's entries wait for a sound
bar, and a restart with the bad bar in its history starts. The exchange here is the loopback
Binance; its market data (not its matching) sends the bad bar, every time it is asked.
"""

from __future__ import annotations

import json

import pytest
from structlog.testing import capture_logs

from exchange_sim import ExchangeServer, futures_client
from exchange_sim.state import ExchangeState
from fake_plugins import Components
from live_helpers import BarClock, live_config, planted_pipeline, with_pipeline
from mlcoord.times import iso
from mlcoord.live.bar_screen import screen_rows
from mlcoord.live.retry import ManualClock
from mlcoord.live.runner import PaperTrader, load_live_settings
from mlcoord.live.session import run_live
from mlcoord.pipeline import build_pipeline
from mlcoord.registry import load_plugins
from test_live_spot import PlantedSource
from test_live_trader import stops_cover_positions

H_MS = 3_600_000


def _spoil(row, mode):
    if mode == "high_below_low":
        row[2], row[3] = row[3], row[2]
    elif mode == "zero_price":
        row[4] = "0"
    elif mode == "implausible_high":
        row[2] = "1e300"
    return row


@pytest.fixture
def bad_bar(monkeypatch):
    """``bad["time"]`` (ms), once set, is the bar the exchange's klines send spoiled as
    ``bad["mode"]`` once it has closed; ``duplicate`` sends its row twice."""
    bad: dict = {}
    klines = ExchangeState.klines

    def spoiled(self, *args, **kwargs):
        rows = klines(self, *args, **kwargs)
        t = bad.get("time")
        if t is None or self.now_ms <= t:
            return rows
        if bad["mode"] == "duplicate":
            return [x for r in rows for x in ([r, list(r)] if r[0] == t else [r])]
        return [_spoil(r, bad["mode"]) if r[0] == t else r for r in rows]

    monkeypatch.setattr(ExchangeState, "klines", spoiled)
    return bad


def _events(logs, name):
    return [e for e in logs if e["event"] == name]


@pytest.mark.parametrize("mode, event", [("high_below_low", "candle_dropped"), ("zero_price", "candle_dropped"),
                                         ("implausible_high", "candles_implausible")])
def test_a_bad_bar_with_a_position_open_and_after_a_restart(tmp_path, bad_bar, mode, event):
    settings, options = load_live_settings(live_config(tmp_path))
    with ExchangeServer() as server:
        checked = []

        def on_cycle(trader):
            assert not stops_cover_positions(server.state.futures), "a position without its stop"
            if "time" not in bad_bar and trader.portfolio.positions:
                bad_bar.update(time=server.state.now_ms, mode=mode)      # the bar now forming closes bad
            checked.append(trader.last_time)

        with capture_logs() as logs:
            trader = run_live(settings, options, futures_client(server), load_plugins(), clock=BarClock(server),
                              health_clock=ManualClock(), cycles=32, on_cycle=on_cycle)
        trader.store.close()
        assert "time" in bad_bar, "no position was opened: the scenario needs one"
        bad_ns = bad_bar["time"] * 1_000_000
        times = trader.engine.loop.times
        assert bad_ns not in times and times[-1] > bad_ns + 2 * H_MS * 1_000_000   # stepped on past it
        [dropped] = _events(logs, event)                          # once, however often it was sent
        assert dropped["symbol"] == "BTC/USDT" and dropped["bar_time"] == iso(bad_ns)
        [paused] = _events(logs, "entries_paused")
        [resumed] = _events(logs, "entries_resumed")
        assert paused["bar_time"] == iso(bad_ns) and resumed["bar_time"] == iso(bad_ns + H_MS * 10**6)
        assert json.loads((tmp_path / "beat.json").read_text())["bad_bars"] == 1
        assert not server.errors

        # a restart with the bad bar inside its history starts, and trades on
        with capture_logs() as logs:
            trader = run_live(settings, options, futures_client(server), load_plugins(), clock=BarClock(server),
                              health_clock=ManualClock(), cycles=3, on_cycle=on_cycle)
        trader.store.close()
        [dropped] = _events(logs, event)
        assert dropped["bar_time"] == iso(bad_ns) and not _events(logs, "entries_paused")
        assert bad_ns not in trader.history["BTC/USDT"].time and len(trader.engine.loop.times) == 2  # 1st poll: none new


def test_a_duplicate_timestamp_in_the_history_does_not_block_the_start(tmp_path, bad_bar):
    settings, options = load_live_settings(live_config(tmp_path))
    with ExchangeServer() as server:
        bad_bar.update(time=server.state.now_ms - 100 * H_MS, mode="duplicate")
        with capture_logs() as logs:
            trader = run_live(settings, options, futures_client(server), load_plugins(), clock=BarClock(server),
                              health_clock=ManualClock(), cycles=3)
        trader.store.close()
    [dropped] = _events(logs, "candle_dropped")
    assert "duplicate timestamp" in dropped["reason"]
    assert bad_bar["time"] * 1_000_000 in trader.history["BTC/USDT"].time      # its first row is kept
    assert len(trader.engine.loop.times) == 2


def test_screen_rows_keeps_the_sound_rows_and_names_the_others():
    rows = [[0, 10, 11, 9, 10, 1], [H_MS, 10, 9, 11, 10, 1], [2 * H_MS, 10, 11, 9, 0, 1],
            [3 * H_MS, 10, 11, 9, 10, 1], [3 * H_MS, 10, 12, 9, 10, 1], [H_MS // 2, 10, 11, 9, 10, 1],
            [4 * H_MS + 5, 10, 11, 9, 10, 1], [5 * H_MS, "x", 11, 9, 10, 1], [6 * H_MS, 10, 11, 9, 10, 1]]
    t, v, bad = screen_rows(rows, "test", H_MS)
    assert t.tolist() == [0, 3 * H_MS, 6 * H_MS] and v[1].tolist() == [10, 11, 9, 10, 1]
    reasons = [(b.time_ms, b.reason.split(":")[0]) for b in bad]
    assert reasons == [(H_MS, "high 9 below open/close/low"), (2 * H_MS, "negative or zero price, or negative volume"),
                       (3 * H_MS, "duplicate timestamp (the first row is kept)"),
                       (H_MS // 2, "timestamp off the timeframe's grid"),
                       (4 * H_MS + 5, "timestamp off the timeframe's grid"),
                       (5 * H_MS, "a missing or non-numeric value")]
    t, _, bad = screen_rows(rows, "test", H_MS, skip=frozenset({H_MS, 2 * H_MS}))   # reported already
    assert len(t) == 3 and [b.time_ms for b in bad][:1] == [3 * H_MS]


def test_entries_wait_for_a_sound_bar(tmp_path):
    """Bars T1 and T2 arrive together (the bot fell behind); T2, the newest, is implausible. T1 is
    sound and signals, but an entry decided on it would be decided on a bar that is no longer the
    newest: none is made until a sound bar after T2."""
    from mlcoord.candles import load_candles
    from mlcoord.datasets import bundled_path

    btc = load_candles(bundled_path("BTC/USDT"), symbol="BTC/USDT").slice(0, 700)
    signal = 600
    plugins = load_plugins(extra_plugins={"s": Components(signal_sources={"planted": lambda o: PlantedSource(
        {k: 1 for k in range(signal, signal + 3)})})})      # by position: T3 is 601 once T2 is left out
    path = with_pipeline(live_config(tmp_path), planted_pipeline("exits"))
    settings, _ = load_live_settings(path)
    frame = btc.frame.copy()
    frame.iloc[signal + 1, frame.columns.get_loc("high")] = 1e300
    from mlcoord.candles import candles_from_frame

    spoiled = candles_from_frame(frame, symbol="BTC/USDT", timeframe="1h")
    trader = PaperTrader(build_pipeline(settings, plugins), settings, [spoiled.slice(0, signal)])
    with capture_logs() as logs:
        trader.on_candles([spoiled.slice(0, signal + 2)])       # T1 (signals) and T2 (implausible)
        decided_while_paused = list(trader.engine.journal.decisions)
        trader.on_candles([spoiled.slice(0, signal + 3)])       # T3: sound, signals again
    assert list(trader.engine.loop.times) == [int(btc.time[signal]), int(btc.time[signal + 2])]
    assert decided_while_paused == [] and [e["event"] for e in logs if e["event"].startswith("entries_")] == \
        ["entries_paused", "entries_resumed"]
    assert [d.time for d in trader.engine.journal.decisions] == [int(btc.time[signal + 2])]
