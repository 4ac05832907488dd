"""A decision is in the store before its first order goes out (issue 14).

The journal's decisions used to be written after the cycle (:class:`SessionMemory.save`), while
the plan it opened was committed with its first order's journal: a kill -9 between the two left a
plan, and orders on the exchange, without their decision; after the restart the trade reached the
learners unlabelled (``trade_feedback_without_decision``). The crash here is exact: when the
exchange has received the first order, the store's committed state is copied (SQLite's backup
reads only committed transactions: what a kill -9 leaves) and the process "dies" (an exception no
handler catches); the restart runs on that copy.
"""

from __future__ import annotations

import sqlite3

import pytest
from structlog.testing import capture_logs

from exchange_sim import exchange_server, futures_client  # noqa: F401 (fixture)
from mlcoord.live.retry import ManualClock
from mlcoord.live.runner import load_live_settings
from mlcoord.live.session import run_live
from mlcoord.live.store import Store
from mlcoord.registry import load_plugins
from live_helpers import BarClock, live_config


class Killed(BaseException):
    """kill -9: nothing after it runs in the process that is gone (no handler catches it)."""


def test_a_kill_between_the_decision_and_its_first_order_keeps_the_decision(exchange_server, tmp_path):
    server = exchange_server
    settings, options = load_live_settings(live_config(tmp_path))
    exchange = futures_client(server)
    create = exchange.create_order
    snapshot = tmp_path / "at-kill.db"
    sent = []

    def create_then_die(symbol, kind, side, amount, price=None, params=None):
        answer = create(symbol, kind, side, amount, price, params)      # the exchange has it
        sent.append(params["clientOrderId"])
        with sqlite3.connect(options.store) as live, sqlite3.connect(snapshot) as copy:
            live.backup(copy)                                          # what is committed now
        raise Killed

    exchange.create_order = create_then_die
    store = Store.open(options.store)
    with pytest.raises(Killed), capture_logs():
        run_live(settings, options, exchange, load_plugins(), clock=BarClock(server),
                 health_clock=ManualClock(), cycles=300, store=store)
    store.close()
    assert len(sent) == 1
    after = Store.open(f"sqlite:///{snapshot}")
    (plan,) = after.active_plans()
    assert after.order(sent[0]) is not None and after.order(sent[0]).plan_id == plan.plan_id
    assert after.decision(plan.symbol, plan.decision_time) is not None, "the decision died with the process"

    with capture_logs() as logs:
        run_live(settings, options, futures_client(server), load_plugins(), clock=BarClock(server),
                 health_clock=ManualClock(), cycles=200, store=after)
    events = [e["event"] for e in logs]
    assert "trade_feedback_without_decision" not in events
    fed = [e for e in logs if e["event"] == "trade_feedback" and e["plan"] == plan.plan_id]
    assert fed and fed[0]["decision"] == "stored", fed
    after.close()
