"""The hook trace shows which plugin answered which call for a decision."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from mlcoord.backtest.run import run_backtest
from mlcoord.config import Settings, structure

pytestmark = pytest.mark.usefixtures("builtin_plugins_only")


def test_trace_lists_every_component_call_of_a_decision(short_candles):
    with capture_logs() as logs:
        result = run_backtest(structure({"engine": {"trace_hooks": True}}, Settings), candles=[short_candles])
    traces = [e for e in logs if e["event"] == "hook_trace"]
    assert len(traces) == len(result.raw.decisions) > 0
    entered = next(t for t in traces if t["outcome"] == "entered")
    calls = [(c["component"], c["plugin"], c["call"]) for c in entered["calls"]]
    assert ("dca", "dca", "plan") in calls
    assert ("exits", "exits", "initial") in calls
    assert ("risk", "risk", "size") in calls
    assert ("protections", "protections", "allow_entry") in calls
    assert ("hedging", "hedging", "allow_entry") not in calls      # a portfolio watcher only (hooks version 2)
    assert all(c["us"] >= 0 and c["answer"] for c in entered["calls"])


def test_tracing_changes_no_decision(short_candles):
    plain = run_backtest(Settings(), candles=[short_candles])
    traced = run_backtest(structure({"engine": {"trace_hooks": True}}, Settings), candles=[short_candles])
    assert plain.raw.decisions == traced.raw.decisions
    assert plain.raw.trades == traced.raw.trades
