"""Issue 15: time budgets that bite. ``vote_timeout_ms`` was checked after the call returned (a 5 s
vote held the loop 5 s) and live trading had no budget at all.

No test here waits for a deadline: a slow plugin blocks on a :class:`fake_plugins.Gate` the test opens, and the
budget's wait is replaced by one that answers "over budget" as soon as the plugin is stuck.
"""

from __future__ import annotations

import contextvars
import threading

import pytest
import structlog

import fake_plugins
from mlcoord import budget as budget_module
from mlcoord.backtest.run import run_backtest
from mlcoord.budget import LIVE_BUDGET_MS, Budget, CallTimeout
from mlcoord.config import Settings, structure
from mlcoord.model import Action, Vote
from mlcoord.pipeline import build_pipeline
from mlcoord.registry import discover_entry_points, load_plugins

from conftest import BUILTINS
from fake_plugins import Gate


def finished(done, seconds):
    return done.wait(30)


# -- the budget ------------------------------------------------------------------------------------------
def test_a_call_within_its_budget_answers_on_its_worker_thread():
    budget = Budget(100, wait=finished)
    assert budget.call("x", lambda a, b=0: (a + b, threading.current_thread().name), 1, b=2) == (
        3, "mlcoord-plugin-x")
    with pytest.raises(ZeroDivisionError):                    # a plugin's own error comes back as it was
        budget.call("x", lambda: 1 / 0)


def test_a_stuck_call_is_left_then_skipped_until_it_returns():
    gate = Gate()
    budget = Budget(100, wait=gate.wait)
    with pytest.raises(CallTimeout, match="ran over its 100 ms budget: left out, the call goes on in its thread"):
        budget.call("slow", gate.block, "late answer")
    assert not gate.returned.is_set()                          # the caller did not wait for it
    calls = []
    with pytest.raises(CallTimeout, match="skipped: its call that ran over its budget has not returned yet"):
        budget.call("slow", calls.append, 1)
    assert calls == []                                          # never run twice at once
    assert budget.call("other", lambda: "fine") == "fine"      # other components are not held up
    gate.opened.set()
    assert gate.returned.wait(30)
    budget._workers["slow"].last.done.wait(30)
    budget.wait = finished
    assert budget.call("slow", lambda: "back") == "back"       # returned: called as usual again


def test_a_component_stuck_under_one_budget_is_busy_under_the_other():
    """A vote still running (vote budget) is not joined by a learn call (call budget) on a second
    thread: the pipeline's two budgets share one worker per component."""
    gate = Gate()
    votes = Budget(100, wait=gate.wait)
    calls = Budget(100, wait=finished, workers=votes._workers)
    with pytest.raises(CallTimeout):
        votes.call("ml", gate.block)
    learned = []
    with pytest.raises(CallTimeout, match="has not returned yet"):
        calls.call("ml", learned.append, 1)
    assert learned == []
    gate.opened.set()
    assert gate.returned.wait(30)
    votes._workers["ml"].last.done.wait(30)
    calls.call("ml", learned.append, 1)
    assert learned == [1]

def test_workers_are_daemons_and_carry_the_callers_context():
    var = contextvars.ContextVar("symbol")
    var.set("BTC/USDT")
    budget = Budget(100, wait=finished)
    assert budget.call("x", var.get) == "BTC/USDT"
    assert budget._workers["x"].thread.daemon              # a call that never returns cannot block the exit


def test_an_idle_worker_ends_and_the_next_call_starts_one():
    budget = Budget(100, wait=finished, idle=0.0)
    assert budget.call("x", lambda: 1) == 1
    worker = budget._workers["x"]
    thread = worker.thread
    if thread is not None:
        thread.join(30)
    assert worker.thread is None and (thread is None or not thread.is_alive())
    assert [budget.call("x", lambda k=k: k) for k in range(50)] == list(range(50))   # no call lost in between


def test_no_budget_calls_plainly():
    fn = lambda: threading.current_thread()   # noqa: E731
    assert Budget(0).timed("x", fn) is fn and not Budget(0)


def test_paper_and_live_have_a_budget_by_default_backtests_none():
    plugins = load_plugins({}, entry_points={n: ep for n, ep in discover_entry_points().items() if n in BUILTINS})
    backtest, live = build_pipeline(Settings(), plugins), build_pipeline(Settings(), plugins, live=True)
    assert (backtest.vote_budget.ms, backtest.call_budget.ms) == (0, 0)
    assert (live.vote_budget.ms, live.call_budget.ms) == (LIVE_BUDGET_MS, LIVE_BUDGET_MS) == (5000, 5000)
    off = structure({"engine": {"vote_timeout_ms": 0, "call_timeout_ms": 250}}, Settings)
    assert (build_pipeline(off, plugins, live=True).vote_budget.ms, build_pipeline(off, plugins).call_budget.ms) == (
        0, 250)


# -- in a run ----------------------------------------------------------------------------------------------
class GatedVoter:
    def __init__(self, gate):
        self.gate = gate

    def vote(self, i, signal):
        return self.gate.block(Vote("slow", Action.BUY, 0.9, p_up=0.9, p_down=0.05))


def run_with(candles, monkeypatch, gate, engine, pipeline=None, **by_role):
    monkeypatch.setattr(budget_module, "wait_for", gate.wait)
    eps = {n: ep for n, ep in discover_entry_points().items() if n in BUILTINS}
    plugins = load_plugins({}, entry_points=eps, extra_plugins={"fakes": fake_plugins.Components(**by_role)})
    settings = structure({"engine": {**engine, "enable": ["fakes"]}, "pipeline": pipeline or {}}, Settings)
    with structlog.testing.capture_logs() as logs:
        result = run_backtest(settings, plugins=plugins, candles=[candles])
    return result, [e for e in logs if e["event"] == "component_failed"]


def test_a_vote_over_its_budget_does_not_hold_the_run(short_candles, monkeypatch):
    gate = Gate()
    result, failures = run_with(short_candles, monkeypatch, gate, {"vote_timeout_ms": 50},
                                ml_components={"slow": lambda _: fake_plugins.VoterComponent(GatedVoter(gate))})
    asked = [d for d in result.raw.decisions if d.technical.action != 0]
    assert not gate.returned.is_set()                 # the run ended while the first vote was still stuck
    assert asked and result.raw.errors == {"slow.vote": len(asked)}
    assert all([v.component for v in d.votes] == ["technical"] for d in result.raw.decisions)
    assert failures[0]["component"] == "slow" and "ran over its 50 ms budget" in failures[0]["error"]
    assert "has not returned yet" in failures[1]["error"]
    gate.opened.set()
    assert gate.returned.wait(30)


class GatedUpdates(fake_plugins.RaisingUpdates):
    gate: Gate

    def update(self, i, position, levels):
        return self.gate.block(levels)


def test_an_exit_update_over_its_budget_keeps_the_levels(short_candles, monkeypatch):
    gate = Gate()

    class GatedExits(fake_plugins.BrokenExits):
        def prepare(self, data):
            updates = GatedUpdates(self.inner.prepare(data))
            updates.gate = gate
            return updates

    result, _ = run_with(short_candles, monkeypatch, gate, {"call_timeout_ms": 50}, {"exit_manager": "gated"},
                         exit_managers={"gated": GatedExits})
    gate.opened.set()
    # the first position keeps the levels it had; while the manager is stuck no new entry gets
    # levels from it, so none is made (an entry is never left without a stop)
    assert result.raw.errors["gated.update"] > 0 and set(result.raw.errors) == {"gated.update", "gated.initial"}
    [first, *later] = [t for t in result.raw.trades if not t.hedge]
    assert first.exit_reason in ("stop_loss", "take_profit") and not later
    assert {d.outcome for d in result.raw.decisions if d.time > first.opened_at} >= {"vetoed:exit_manager"}
