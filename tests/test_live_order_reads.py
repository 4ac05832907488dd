"""The live trader's reads of a plan's orders within a cycle: an order it placed is put into the
shared plan orders (no re-read of them all), and what it serves is always what the store holds."""

from __future__ import annotations

from collections import Counter

from exchange_sim import exchange_server, futures_client  # noqa: F401 (fixture)
from mlcoord.live.cycle import CycleShare
from mlcoord.live.retry import ManualClock
from mlcoord.live.runner import load_live_settings
from mlcoord.live.session import run_live
from mlcoord.live.store import Store
from mlcoord.live.trader import LiveTrader
from mlcoord.registry import load_plugins
from live_helpers import BarClock, live_config


def _session(server, tmp_path, monkeypatch, cycles: int):
    settings, options = load_live_settings(live_config(tmp_path, extra="[plugins.protections]\n"
                                                       "cooldown_after_stop_hours = 0\npair_lock_losses = 0"))
    return run_live(settings, options, futures_client(server), load_plugins(), clock=BarClock(server),
                    health_clock=ManualClock(), cycles=cycles)


def test_shared_plan_orders_after_a_placed_order_are_what_the_store_holds(exchange_server, tmp_path, monkeypatch):
    """Under partial fills and rejections, every time a placed order is put into the shared plan
    orders, they equal a fresh read of the store (same records, same order)."""
    exchange_server.faults.partial_fill(fraction=0.5, probability=0.2)
    exchange_server.faults.reject(probability=0.05)
    carried = Counter()
    placed = CycleShare._placed

    def checked(self, before, record):
        placed(self, before, record)
        for what, (writes, rows) in self._stored.items():
            if writes == self.store.writes and isinstance(what, tuple) and what[0] == "orders":
                assert rows == self.store.orders(what[1]), what
                carried[what[1] == record.plan_id] += 1
            elif writes == self.store.writes and what == "active":
                assert rows == self.store.active_plans()

    monkeypatch.setattr(CycleShare, "_placed", checked)
    _session(exchange_server, tmp_path, monkeypatch, cycles=200)
    assert carried[True] >= 10, carried


def test_opening_a_plan_reads_its_orders_once(exchange_server, tmp_path, monkeypatch):
    """A new plan's entry legs, stop and take profit, placed in one cycle: its orders are read from
    the store once (the first tally); every later tally of the same manage is served from what the
    trader placed. Before: 4 reads of its orders and 13 of single orders for 5 orders sent;
    after: 1 and 8."""
    reads: list[Counter] = []
    orders, order = Store.orders, Store.order
    counting: dict = {}

    def counted_orders(self, plan_id=None):
        if counting:
            counting["c"]["orders"] += 1
        return orders(self, plan_id)

    def counted_order(self, cid, **kw):
        if counting:
            counting["c"]["order"] += 1
        return order(self, cid, **kw)

    open_plan = LiveTrader.open_plan

    def opened(self, intent):
        counting["c"] = Counter(sent=-self.broker.sent)
        try:
            open_plan(self, intent)
        finally:
            c = counting.pop("c")
            c["sent"] += self.broker.sent
            reads.append(c)

    monkeypatch.setattr(Store, "orders", counted_orders)
    monkeypatch.setattr(Store, "order", counted_order)
    monkeypatch.setattr(LiveTrader, "open_plan", opened)
    _session(exchange_server, tmp_path, monkeypatch, cycles=120)
    assert reads, "no plan was opened"
    for c in reads:
        assert c["orders"] == 1, reads
        # per order sent: the answer's row read under the write lock; per stop / take profit its
        # attempt looked up; per fill the order read back (a market leg): never a read per tally
        assert c["order"] <= c["sent"] + 3, reads


def test_opening_a_plan_commits_once_per_order_sent(exchange_server, tmp_path, monkeypatch):
    """A new plan and its orders: the plan commits with its first order's journal and each answer
    with the next journal (or when manage ends): one commit per order sent, plus the last answer.
    Before: the plan, and a journal and an answer per order (2 x orders + 1)."""
    from sqlalchemy import Engine, event

    per_plan: list[tuple[int, int]] = []
    state = {"commits": 0}

    def commit(conn):
        state["commits"] += 1

    open_plan = LiveTrader.open_plan

    def opened(self, intent):
        commits, sent = state["commits"], self.broker.sent
        open_plan(self, intent)
        per_plan.append((state["commits"] - commits, self.broker.sent - sent))

    monkeypatch.setattr(LiveTrader, "open_plan", opened)
    event.listen(Engine, "commit", commit)
    try:
        _session(exchange_server, tmp_path, monkeypatch, cycles=120)
    finally:
        event.remove(Engine, "commit", commit)
    assert per_plan and all(sent > 0 for _, sent in per_plan), per_plan
    assert all(commits == sent + 1 for commits, sent in per_plan), per_plan
