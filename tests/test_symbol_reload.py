"""Reloading the traded symbols and the scanner's settings into a running session (issue 17,
:mod:`mlcoord.live.universe`): applied by the loop at a cycle's start, never abandoning a position,
and refused whole when it cannot be applied."""

from __future__ import annotations

import attrs
import numpy as np
from structlog.testing import capture_logs

from exchange_sim import exchange_server, futures_client, spot_client  # noqa: F401 (fixture)
from live_helpers import BarClock, live_config
from mlcoord.live.controls import Control, ControlChannel
from mlcoord.live.retry import ManualClock
from mlcoord.live.runner import load_live_settings, run_paper
from mlcoord.live.session import run_live
from mlcoord.registry import load_plugins

KEYS = ["data.symbols"]
HOUR = 3_600_000_000_000


def _reload(channel, settings, symbols, keys=KEYS, live=None):
    new = attrs.evolve(settings, data=attrs.evolve(settings.data, symbols=list(symbols)))
    if live is not None:
        new = attrs.evolve(new, live={**settings.live, **live})
    results: list[str] = []
    control = Control("reload", user="ada", payload=(new, [], keys))
    channel.results.append(lambda c, r: results.append(r) if c is control else None)
    channel.submit(control)
    return results


def _entries(trader, symbol, after):
    return [d for d in trader.engine.loop.journal.decisions
            if d.symbol == symbol and d.time > after and d.outcome == "entered"]


def test_paper_symbols_added_then_removed_keep_the_held_position_managed(exchange_server, tmp_path):
    """Cycle 2: ETH/USDT added (warm-up history, stepped only from its next bar). Once BTC/USDT holds
    a position: BTC taken out. Its bars keep coming and its exits keep being managed while it is
    held, with no new entry; forced flat, it leaves the fetch list."""
    settings, options = load_live_settings(live_config(tmp_path, "spot", leverage=None, history_bars=300))
    channel = ControlChannel()
    seen: dict = {}

    def on_cycle(trader):
        n = seen["cycles"] = seen.get("cycles", 0) + 1
        universe = channel.universe
        if n == 2:
            seen["added"] = _reload(channel, settings, ["BTC/USDT", "ETH/USDT"])
            seen["added_at"] = trader.last_time
        if "ETH/USDT" in trader.history and "eth_first" not in seen:
            seen["eth_first"] = (len(trader.history["ETH/USDT"]), int(trader.history["ETH/USDT"].time[-1]))
        if "removed" not in seen and "BTC/USDT" in trader.portfolio.positions and n > 3:
            seen["removed"] = _reload(channel, settings, ["ETH/USDT"])
            seen["removed_at"] = trader.last_time
            seen["btc_bars_at_removal"] = len(trader.history["BTC/USDT"])
        elif "removed" in seen and "exit_at" not in seen and trader.last_time >= seen["removed_at"] + 3 * 3_600_000_000_000:
            seen["managed"] = (list(universe.symbols), len(trader.history["BTC/USDT"]))
            channel.submit(Control("force_exit", symbol="BTC/USDT", user="ada"))
            seen["exit_at"] = trader.last_time
        elif "exit_at" in seen and "after_exit" not in seen and "BTC/USDT" not in trader.portfolio.positions:
            seen["after_exit"] = (list(universe.symbols), len(trader.history["BTC/USDT"]))
        elif "after_exit" in seen:
            seen["later"] = len(trader.history["BTC/USDT"])

    with capture_logs() as logs:
        trader = run_paper(settings, options, spot_client(exchange_server), load_plugins(),
                           clock=BarClock(exchange_server), cycles=160, channel=channel, on_cycle=on_cycle)
    assert seen["added"] == ["reloaded: symbols BTC/USDT, ETH/USDT (added ETH/USDT)"]
    eth_bars, eth_last = seen["eth_first"]
    assert eth_bars >= 300 and eth_last == seen["added_at"] + HOUR     # warm-up history, then the next bar
    eth_decided = [d.time for d in trader.engine.loop.journal.decisions if d.symbol == "ETH/USDT"]
    assert eth_decided and min(eth_decided) > seen["added_at"]          # no decision on the past
    assert "removed" in seen, "BTC/USDT never held a position: the scenario did not run"
    assert seen["removed"] == ["reloaded: symbols ETH/USDT; removed BTC/USDT (BTC/USDT managed without new "
                               "entries until flat)"]
    managed_symbols, managed_bars = seen["managed"]
    assert managed_symbols == ["ETH/USDT", "BTC/USDT"] and managed_bars > seen["btc_bars_at_removal"]
    assert not _entries(trader, "BTC/USDT", seen["removed_at"])
    btc_trades = [t for t in trader.engine.trades if t.symbol == "BTC/USDT"]
    assert btc_trades and btc_trades[-1].exit_reason == "api:force_exit"
    _, after_bars = seen["after_exit"]
    assert channel.universe.symbols == ["ETH/USDT"] and trader.summary["symbols"] == ["ETH/USDT"]
    assert seen["later"] == after_bars                                   # flat and taken out: no longer fetched
    assert [e for e in logs if e["event"] == "universe_symbols_left"][0]["symbols"] == ["BTC/USDT"]


def test_a_symbol_the_exchange_does_not_list_is_refused_whole(exchange_server, tmp_path):
    settings, options = load_live_settings(live_config(tmp_path, "spot", leverage=None, history_bars=100))
    channel = ControlChannel()
    seen: dict = {}

    def on_cycle(trader):
        if "refused" not in seen:
            seen["refused"] = _reload(channel, settings, ["BTC/USDT", "NOPE/USDT"])
        elif "scan" not in seen:
            seen["scan"] = _reload(channel, settings, ["BTC/USDT"], keys=["live.scan"], live={"scan": True})
        seen["symbols"] = list(channel.universe.symbols)

    trader = run_paper(settings, options, spot_client(exchange_server), load_plugins(),
                       clock=BarClock(exchange_server), cycles=4, channel=channel, on_cycle=on_cycle)
    [refused] = seen["refused"]
    assert refused.startswith("refused:") and "NOPE/USDT" in refused
    [scan] = seen["scan"]
    assert scan.startswith("refused: a paper session trades [data] symbols")
    assert seen["symbols"] == ["BTC/USDT"] and sorted(trader.history) == ["BTC/USDT"]


SCAN = "[live.scanner]\ntop_n = 1\nmin_quote_volume = 0\ntimeframes = [\"1h\"]\n"


def test_live_reload_adds_a_futures_symbol_with_its_leverage_and_turns_the_scanner_on(exchange_server, tmp_path):
    """Live (USD-M futures): ETH/USDT added gets its leverage set before any order; then the scanner
    is turned on by a reload ([live] scan = true, top 1 pair), then off again."""
    settings, options = load_live_settings(live_config(tmp_path, extra=SCAN, history_bars=120))
    channel = ControlChannel()
    seen: dict = {}

    def on_cycle(trader):
        n = seen["n"] = seen.get("n", 0) + 1
        if n == 1:
            seen["add"] = _reload(channel, settings, ["BTC/USDT", "ETH/USDT"])
        elif n == 3:
            seen["scan_on"] = _reload(channel, settings, ["BTC/USDT", "ETH/USDT"], keys=["live.scan"],
                                      live={"scan": True})
        elif n == 5:
            seen["symbols_on"] = (list(channel.universe.symbols), set(trader.entry_symbols))
            seen["scan_off"] = _reload(channel, settings, ["BTC/USDT"], keys=["live.scan", "data.symbols"],
                                       live={"scan": False})
        elif n == 7:
            seen["symbols_off"] = list(channel.universe.symbols)

    trader = run_live(settings, options, futures_client(exchange_server), load_plugins(),
                      clock=BarClock(exchange_server), health_clock=ManualClock(), cycles=8, channel=channel,
                      on_cycle=on_cycle)
    assert seen["add"] == ["reloaded: symbols BTC/USDT, ETH/USDT (added ETH/USDT)"]
    assert exchange_server.state.futures.leverage["ETHUSDT"] == 3      # set by the reload (the default is 20)
    assert len(trader.history["ETH/USDT"]) >= 120
    [on] = seen["scan_on"]
    assert on.startswith("reloaded: scanner on; trading ")
    picked_symbols, entry = seen["symbols_on"]
    assert len(entry) == 1 and set(entry) <= set(picked_symbols)
    [off] = seen["scan_off"]
    assert off.startswith("reloaded: scanner off; symbols BTC/USDT"), off
    assert seen["symbols_off"][0] == "BTC/USDT" and channel.universe.scanner is None
    times = trader.engine.loop.times
    assert np.all(np.diff(times) > 0)


def test_live_reload_refuses_a_symbol_the_exchange_holds_unknown_to_the_store(exchange_server, tmp_path):
    """ETH/USDT holds a position the store has no record of (opened by hand): adding ETH/USDT
    is refused as a start would be (restart with --adopt or --ignore), and nothing changes."""
    hand = futures_client(exchange_server)
    hand.load_markets()
    hand.set_position_mode(True)
    hand.create_order("ETH/USDT:USDT", "market", "buy", 0.5, None, {"positionSide": "LONG"})
    settings, options = load_live_settings(live_config(tmp_path, history_bars=100))
    channel = ControlChannel()
    seen: dict = {}

    def on_cycle(trader):
        if "add" not in seen:
            seen["add"] = _reload(channel, settings, ["BTC/USDT", "ETH/USDT"])
        seen["symbols"] = list(channel.universe.symbols)

    trader = run_live(settings, options, futures_client(exchange_server), load_plugins(),
                      clock=BarClock(exchange_server), health_clock=ManualClock(), cycles=3, channel=channel,
                      on_cycle=on_cycle)
    [refused] = seen["add"]
    assert refused.startswith("refused: the exchange holds what the store has no record of") and "ETH" in refused
    assert "--adopt" in refused
    assert seen["symbols"] == ["BTC/USDT"] and "ETH/USDT" not in trader.history
    assert "ETHUSDT" not in exchange_server.state.futures.leverage       # the account untouched


def test_paper_refuses_the_scanner_instead_of_ignoring_it(exchange_server, tmp_path):
    """The bug: ``[live] scan = true`` in a paper session was silently ignored (it traded
    [data] symbols as if the scanner were off)."""
    import pytest

    from mlcoord.errors import MlcoordError

    settings, options = load_live_settings(live_config(tmp_path, "spot", leverage=None, history_bars=100,
                                                       extra="scan = true"))
    with pytest.raises(MlcoordError, match=r"not yet supported: the market scanner in paper sessions"):
        run_paper(settings, options, spot_client(exchange_server), load_plugins(),
                  clock=BarClock(exchange_server), cycles=1)
