"""Issue 14's catch-up "done when": a paper and a live (spot and futures) session on the loopback
simulator, paused for 30 bars mid-run with a stop hit and a guard trigger inside the pause.

Real candles and built-in plugins, except the entry signal (planted, so the entry is at a known
bar): the ``exits`` exit manager trails the stop, the ``hedging`` guard hedges on drawdown
(futures) and ``protections`` locks entries after a daily loss (spot: a hedge leg is a short, so
the hedging guard is refused on spot, ``test_live_spot.py``). The simulator starts at bundled
bar 2980 (2021-01-22 10:00 UTC); history index = bundled bar - 2680:

* the planted BUY at 302 enters at 303's open (exchange stop 30588, take profit 33898);
* the bot steps 300-304, then is away for 30 bars (305-334) and comes back with 335 the newest;
* inside the pause the trailing stop moves up from 308 on (the exchange's stop stays at 30588:
  no bar of the pause reaches it, nor the take profit), the drawdown (2.1 %) passes the hedging
  guard's 1.5 % at 312, the loss of the day that starts at 314 (2021-01-23) passes the
  protections' 1 % at 316 (1.9 %), and bar 324 crosses the trailed stop;
* a BUY is planted on every bar of the pause and on the newest one: no entry may be decided on a
  replayed bar.

Paper replays the pause as history (it is a simulation): its trades are a backtest's, the stop
filled as ``trailing_stop`` at bar 324. Live replays the state updates and sends now, at market,
what they call for: the trailing stop's close with reason ``catch_up``, the guard's hedge."""

from __future__ import annotations

import attrs
import numpy as np
import pytest
from structlog.testing import capture_logs

from exchange_sim import ExchangeServer, futures_client, spot_client
from fake_plugins import Components
from live_helpers import BarClock, backtest_of_session, live_config, with_pipeline
from mlcoord.times import iso
from mlcoord.live.records import PlanStatus
from mlcoord.live.retry import ManualClock
from mlcoord.live.runner import load_live_settings, run_paper
from mlcoord.live.session import run_live
from mlcoord.live.store import Store
from mlcoord.registry import load_plugins
from test_live_spot import PlantedSource

TF = 3_600_000_000_000
START, SIGNAL, PAUSE_AFTER, PAUSE = 2980, 302, 304, 30
NEWEST = PAUSE_AFTER + PAUSE + 1
STOP_CROSSED, HEDGE_AT = 324, 312
OPTIONS = """[plugins.risk]
risk_per_trade = 0.03
max_position_fraction = 1.0
[plugins.hedging]
use_volatility = false
use_correlation = false
drawdown_trigger = 0.015
drawdown_release = 0.0075
[plugins.protections]
daily_loss_limit = 0.01
max_open_trades = 0
cooldown_after_stop_hours = 0
pair_lock_losses = 0
"""
WATCHERS = {"futures": '[]\nportfolio_watchers = ["hedging"]',
            "spot": '["protections"]\nportfolio_watchers = ["protections"]'}


def _session(tmp_path, market: str):
    signals = {SIGNAL: 1, **{k: 1 for k in range(PAUSE_AFTER + 1, NEWEST + 1)}}
    plugins = load_plugins(extra_plugins={"scenario": Components(
        signal_sources={"planted": lambda o: PlantedSource(signals)})})
    path = live_config(tmp_path, market=market, extra=OPTIONS, leverage=3 if market == "futures" else None)
    pipeline = (f'signal_sources = ["planted"]\nentry_guards = {WATCHERS[market]}\n'
                'exit_manager = "exits"\nentry_planner = ""\ncalibrator = ""')
    settings, options = load_live_settings(with_pipeline(path, pipeline))
    return settings, attrs.evolve(options, candle_page=7), plugins


def _run(mode: str, market: str, server, tmp_path):
    """The session, paused for ``PAUSE`` bars once bar ``PAUSE_AFTER`` is stepped; returns the
    trader, its settings, options, plugins and the log events."""
    settings, options, plugins = _session(tmp_path, market)
    paused = {}

    def on_cycle(trader):
        times = trader.history["BTC/USDT"].time
        if not paused and int(times[-1]) == int(times[0]) + PAUSE_AFTER * TF:
            paused["at"] = int(times[-1])
            server.advance(PAUSE)            # the bot is away for 30 bars; the exchange goes on

    client = futures_client(server) if market == "futures" else spot_client(server)
    cycles = PAUSE_AFTER - 300 + 4    # the first poll finds nothing new; the catch-up poll, one more
    run = run_paper if mode == "paper" else run_live
    with capture_logs() as logs:
        trader = run(settings, options, client, plugins, clock=BarClock(server), health_clock=ManualClock(),
                     cycles=cycles, on_cycle=on_cycle)
    assert paused, "the session never reached the bar it pauses after"
    return trader, settings, options, plugins, logs


def _events(logs, name):
    return [e for e in logs if e["event"] == name]


def _fill_rows(fills, first):
    return [((f.time - first) // TF, f.tag, f.price, f.quantity, f.hedge) for f in fills]


@pytest.mark.parametrize("mode, market", [("paper", "futures"), ("live", "spot"), ("live", "futures")])
def test_a_session_paused_for_30_bars_processes_every_bar_once(tmp_path, mode, market):
    with ExchangeServer(start=START) as server:
        trader, settings, options, plugins, logs = _run(mode, market, server, tmp_path)
    assert not server.errors, server.errors
    history = trader.history["BTC/USDT"].time
    first = int(history[0])
    bar = lambda k: first + k * TF                                      # noqa: E731
    # every bar processed once, in order, no hole: the history, the stepped bars
    assert np.all(np.diff(history) == TF)
    assert list(trader.engine.loop.times) == [bar(k) for k in range(300, NEWEST + 2)]
    # one line per replayed bar, in order
    replayed = _events(logs, "catch_up_bar")
    assert [e.get("bar_time_ns", e.get("time")) for e in replayed] == [bar(k) for k in range(PAUSE_AFTER + 1, NEWEST)]
    # the run a backtest makes of the same candles: the stop and the guard inside the pause
    raw, _ = backtest_of_session(trader, settings, options, plugins)
    stopped = raw.trades[0]
    assert (stopped.exit_reason, stopped.closed_at) == ("trailing_stop", bar(STOP_CROSSED))
    decisions = [(d.time, d.outcome) for d in trader.engine.journal.decisions]
    if mode == "paper":
        _paper_is_history(trader, raw, options, first)
        return
    # no entry decided on a replayed bar (a BUY on each): the deciding bar and the newest only
    assert [t for t, _ in decisions] == [bar(SIGNAL), bar(NEWEST)]
    assert [(d["time"], d["outcome"]) for d in trader.store.decisions()] == [
        (iso(t), outcome) for t, outcome in decisions]             # the store holds each once
    assert trader.store.load_state("account")["bar_time"] == bar(NEWEST + 1)
    # the stop the replayed bars crossed: closed now at market, reason catch_up, on the backtest's bar
    [crossed] = [e for e in replayed if e["stops_crossed"]]
    assert crossed["time"] == bar(STOP_CROSSED) and crossed["stops_crossed"] == ["BTC/USDT"]
    plan = min(trader.store.plans(), key=lambda p: p.decision_time)
    assert plan.decision_time == bar(SIGNAL) and plan.status == PlanStatus.CLOSED
    trade = next(t for t in trader.engine.trades if not t.hedge)
    assert trade.exit_reason == "catch_up:trailing_stop"          # sent late, and why: the backtest's reason
    # dated as a backtest dates a market close asked on that bar: the next bar; spot's dust (the
    # exchange takes its fee in the base asset) is written off with it, never before the close
    assert trade.closed_at == bar(STOP_CROSSED + 1)
    fills = [f.time for f in trader.engine.fills]
    assert fills == sorted(fills)
    orders = trader.plan_orders(plan.plan_id)
    [close] = [r for r in orders if r.order.tag == "close"]
    assert close.filled_quantity > 0 and close.order.kind.value == "market"
    exits = [r for r in orders if r.order.tag in ("stop", "take_profit")]
    assert exits and all(r.filled_quantity == 0 for r in exits)        # the exchange's never triggered
    backtest_decisions = {d.time: d for d in raw.decisions}
    if market == "futures":
        # the hedging guard fired on its replayed bar, as in the backtest; its hedge was opened at
        # market after that bar and closed with the position
        [guard] = [e for e in _events(logs, "guard_action") if e["time"] < iso(bar(NEWEST))]
        hedge = next(t for t in raw.trades if t.hedge)
        assert guard["action"] == "open_hedge" and guard["guard"] == "hedging"
        assert guard["time"] == iso(bar(HEDGE_AT)) == iso(hedge.opened_at - TF)
        [opened] = [r for r in orders if r.order.tag.startswith("hedge:open")]
        assert opened.filled_quantity > 0 and opened.order.hedge
        [leg] = [t for t in trader.engine.trades if t.hedge]
        assert leg.exit_reason == "hedged position closed" and leg.closed_at == trade.closed_at
        assert decisions[-1][1] == "entered"                             # the newest bar may enter
    else:
        # spot: the protections' daily loss limit, passed on a replayed bar (the day began inside
        # the pause), vetoes the newest bar's entry as it does in the backtest
        newest = trader.store.decision("BTC/USDT", bar(NEWEST))
        assert newest["outcome"] == "vetoed:protections" == backtest_decisions[bar(NEWEST)].outcome
        assert newest["veto"].startswith("daily_loss_limit")


def _paper_is_history(trader, raw, options, first):
    """Paper replays the pause as history: every fill and trade is the backtest's (the stop filled
    as ``trailing_stop`` at its price on the bar that crossed it, the hedge opened on the bar after
    the guard's); the store holds the session's every bar, trade and fill."""
    assert _fill_rows(trader.engine.fills, first) == _fill_rows(raw.fills[:len(trader.engine.fills)], first)
    assert list(trader.engine.trades) == list(raw.trades[:len(trader.engine.trades)])
    hedge = next(t for t in trader.engine.trades if t.hedge)
    assert hedge.opened_at == first + (HEDGE_AT + 1) * TF
    with Store.open(options.store) as store:
        [session] = store.paper_sessions()
        assert session["bars"] == len(trader.engine.loop.times)
        assert session["last_bar"] == iso(trader.engine.loop.times[-1])
        assert store.paper_trades(session["session_id"]) == list(trader.engine.trades)
        assert store.paper_fills(session["session_id"]) == list(trader.engine.fills)
