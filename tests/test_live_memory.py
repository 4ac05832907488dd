"""What a live bot keeps besides orders and plans (:mod:`mlcoord.live.memory`), against the
loopback Binance: every decision stored once, the plugins' learning state, the guards' state
(cooldowns, locks) and the account's equity peak survive a restart."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from exchange_sim import exchange_server, futures_client  # noqa: F401 (fixture)
from mlcoord.times import iso
from mlcoord.live.memory import ACCOUNT, GUARDS, PIPELINE
from mlcoord.live.retry import ManualClock
from mlcoord.live.runner import load_live_settings
from mlcoord.live.session import run_live
from mlcoord.live.store import Store
from mlcoord.registry import load_plugins
from live_helpers import BarClock, live_config


def _guards(trader):
    return {b.name: b.obj for b in trader.pipeline.components.guards}


def test_decisions_and_state_are_stored_every_cycle_and_restored_after_a_crash(exchange_server, tmp_path):
    server = exchange_server
    extra = "[plugins.protections]\ncooldown_after_stop_hours = 48\npair_lock_losses = 1\npair_lock_hours = 48"
    settings, options = load_live_settings(live_config(tmp_path, extra=extra))
    seen = {}

    def crash_once_locked(trader):
        store = trader.store
        decisions = trader.engine.journal.decisions
        stored = store.decisions()
        assert len(stored) == len(decisions)                         # every decision, once, as it was made
        assert [(d["symbol"], d["time"]) for d in stored] == [(d.symbol, iso(d.time)) for d in decisions]
        if store.load_state(ACCOUNT) is None:                        # saved from the first stepped bar on
            assert len(trader.history["BTC/USDT"]) == 300 and not decisions     # no bar stepped yet
            return
        assert store.load_state(GUARDS) == trader.pipeline.guard_state()
        assert store.load_state(ACCOUNT)["peak_equity"] == trader.portfolio.peak_equity
        assert store.load_state(ACCOUNT)["bar_time"] == trader.last_time
        if _guards(trader)["protections"].state()["locks"]:
            seen.update(guards=trader.pipeline.guard_state(), peak=trader.portfolio.peak_equity,
                        decisions=len(stored), time=trader.last_time)
            raise KeyboardInterrupt                                   # the process dies with a pair locked

    with pytest.raises(KeyboardInterrupt):
        run_live(settings, options, futures_client(server), load_plugins(), clock=BarClock(server),
                 health_clock=ManualClock(), cycles=300, on_cycle=crash_once_locked)
    assert seen, "no trade closed with a loss or a stop in 300 bars"
    store = Store.open(options.store)
    assert store.load_state(PIPELINE) is not None
    with capture_logs() as logs:
        trader = run_live(settings, options, futures_client(server), load_plugins(), clock=BarClock(server),
                          health_clock=ManualClock(), cycles=1, store=store)
    restored = [e for e in logs if e["event"] == "session_state_restored"]
    assert restored and restored[0]["guard_state"] == ["protections"]
    # the lock the dead process held is still in force (it was not lifted by the restart) ...
    locks = _guards(trader)["protections"].state()["locks"]
    assert locks and all(pair in locks for pair in seen["guards"]["guards"]["protections"]["locks"])
    pair, (until, why) = next(iter(seen["guards"]["guards"]["protections"]["locks"].items()))
    assert trader.last_time < until                       # 48 h locks: the restart is one bar later
    assert _guards(trader)["protections"].allow_entry(pair, 1, trader.engine.portfolio).startswith(why)
    # ... the equity peak is the larger of the stored one and today's equity, not reset ...
    assert trader.portfolio.peak_equity == pytest.approx(max(seen["peak"], trader.portfolio.equity))
    # ... and decisions keep being stored once (the restart's replayed bar is not a second row)
    stored = store.decisions()
    assert len({(d["symbol"], d["time"]) for d in stored}) == len(stored) >= seen["decisions"]


def test_a_restart_in_a_drawdown_keeps_the_peak(exchange_server, tmp_path):
    """The drawdown hedge and the daily-loss limit measure from the stored peak / day start: a
    restart while down 12 % must still see 12 %, not 0 %, and a restart within the day keeps the
    day's starting equity."""
    server = exchange_server
    settings, options = load_live_settings(live_config(tmp_path))
    trader = run_live(settings, options, futures_client(server), load_plugins(), clock=BarClock(server),
                      health_clock=ManualClock(), cycles=3)
    store = trader.store
    equity = trader.portfolio.equity
    account = store.load_state(ACCOUNT)
    store.save_state(ACCOUNT, {**account, "peak_equity": equity / 0.88,          # it had been 12 % higher
                               "day_start_equity": equity / 0.97})               # and 3 % higher this morning
    with capture_logs() as logs:
        again = run_live(settings, options, futures_client(server), load_plugins(), clock=BarClock(server),
                         health_clock=ManualClock(), cycles=1, store=store)
    assert again.portfolio.peak_equity == pytest.approx(equity / 0.88)
    day = 86_400 * 10**9
    if again.last_time // day == account["day"]:          # restarted the same UTC day: the same base
        assert again.portfolio.day_start_equity == pytest.approx(equity / 0.97)
    else:                                                 # a new day starts from its first bar's equity
        assert again.portfolio.day_start_equity != pytest.approx(equity / 0.97)
    assert again.portfolio.drawdown == pytest.approx(1 - again.portfolio.equity * 0.88 / equity, abs=1e-6)
    assert [e for e in logs if e["event"] == "session_state_restored"][0]["peak_equity"] == pytest.approx(equity / 0.88)


class _Trader:
    """What SessionMemory.save reads of a live trader."""

    class _Pipeline:
        def __init__(self):
            self.fail = False

        def state(self):
            if self.fail:
                raise TypeError("not JSON-able")
            return {"components": {"x": [1.0]}}

        def guard_state(self):
            return {"guards": {}}

    def __init__(self, decisions):
        from types import SimpleNamespace

        self.pipeline = self._Pipeline()
        self.last_time = 7
        self.engine = SimpleNamespace(journal=SimpleNamespace(decisions=decisions), loop=SimpleNamespace(current_day=3),
                                      ledger=SimpleNamespace(peak_equity=10.0, day_start_equity=9.0))


def test_a_cycles_decisions_and_state_are_saved_in_one_commit(tmp_path):
    """Ten symbols' decisions and the three states: one commit (was 13, each an fsync); a save
    that fails midway writes nothing and is done whole by the next one."""
    from sqlalchemy import event

    from mlcoord.live.memory import SessionMemory

    store = Store.open(tmp_path / "live.db")
    commits = []
    event.listen(store.engine, "commit", lambda conn: commits.append(1))
    decisions = [{"symbol": f"S{k}/USDT", "time": iso(3_600_000_000_000), "outcome": "hold"} for k in range(10)]
    trader = _Trader(list(decisions))
    memory = SessionMemory(store)
    trader.pipeline.fail = True
    with pytest.raises(TypeError):
        memory.save(trader)
    assert store.decisions() == [] and store.load_state(GUARDS) is None
    trader.pipeline.fail = False
    commits.clear()
    assert memory.save(trader) == 10
    assert len(commits) == 1
    assert len(store.decisions()) == 10 and store.load_state(ACCOUNT)["bar_time"] == 7
    trader.engine.journal.decisions.append({"symbol": "S0/USDT", "time": iso(7_200_000_000_000)})
    assert memory.save(trader) == 1 and len(store.decisions()) == 11


def test_a_garbage_saved_state_is_set_aside_not_fatal(exchange_server, tmp_path):
    """Issue 14: a learning-state row that is not JSON, a guard's state its load_state refuses and
    an account row with a missing figure end in a warning each; the rows are kept aside for a
    look, the refused guard starts as a fresh one would, the rest restores and the bot trades on."""
    from sqlalchemy import update

    from mlcoord.live.schema import component_state

    server = exchange_server
    settings, options = load_live_settings(live_config(tmp_path))
    trader = run_live(settings, options, futures_client(server), load_plugins(), clock=BarClock(server),
                      health_clock=ManualClock(), cycles=3)
    store = trader.store
    guards = store.load_state(GUARDS)
    assert "protections" in guards["guards"]
    with store.engine.begin() as conn:
        conn.execute(update(component_state).where(component_state.c.component == PIPELINE)
                     .values(body='{"components": {"bayes": [1, 2'))                  # cut off mid-write
    store.save_state(GUARDS, {**guards, "guards": {**guards["guards"], "protections": {"version": 99}}})
    store.save_state(ACCOUNT, {"day": 3})                                             # no peak
    with capture_logs() as logs:
        again = run_live(settings, options, futures_client(server), load_plugins(), clock=BarClock(server),
                         health_clock=ManualClock(), cycles=2, store=store)
    aside = {(e["state"], e["component"]) for e in logs if e["event"] == "saved_state_set_aside"}
    assert aside == {(PIPELINE, "all"), (GUARDS, "protections"), (ACCOUNT, "all")}
    assert store.load_state(f"{PIPELINE}.set_aside")["body"] == '{"components": {"bayes": [1, 2'
    kept = store.load_state(f"{GUARDS}.set_aside.protections")                   # the refused part only
    assert kept["body"] == {"version": 99} and kept["error"] == "ValueError: protections state version 99 is not 1"
    fresh = _guards(again)["protections"].state()
    assert fresh["version"] == 1 and fresh["locks"] == {}
    assert again.last_time > trader.last_time                                         # it traded on
    restored = [e for e in logs if e["event"] == "session_state_restored"]
    assert restored and "peak_equity" not in restored[0] and "day_start_equity" not in restored[0]
