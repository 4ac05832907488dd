"""The store's round trips on the order placement path, counted with a SQLAlchemy event listener:
what placing one order costs the store (statements and commits), so that a change which adds
round trips to the hot path fails here instead of only in a benchmark."""

from __future__ import annotations

from contextlib import contextmanager

from sqlalchemy import event

from exchange_sim import exchange_server, futures_client  # noqa: F401 (fixture)
from mlcoord.live.broker import Broker
from mlcoord.live.records import OrderState
from mlcoord.live.retry import ExchangeHealth, ManualClock, RetryPolicy
from mlcoord.live.store import Store
from mlcoord.model import Order, OrderKind, Side

T0 = 1_600_000_000_000_000_000


@contextmanager
def counted(store: Store):
    """Statements (their first word) and commits the store sends while the block runs."""
    seen: list[str] = []
    commits: list[int] = []

    def statement(conn, cursor, text, params, context, executemany):
        seen.append(text.split()[0].upper())

    def commit(conn):
        commits.append(1)

    event.listen(store.engine, "before_cursor_execute", statement)
    event.listen(store.engine, "commit", commit)
    try:
        yield seen, commits
    finally:
        event.remove(store.engine, "before_cursor_execute", statement)
        event.remove(store.engine, "commit", commit)


def _broker(server, tmp_path):
    store = Store.open(f"sqlite:///{tmp_path / 'store'}.db")
    health = ExchangeHealth(RetryPolicy(max_attempts=8, max_outage=1e9), ManualClock())
    broker = Broker(futures_client(server, timeout_ms=250), store, "futures", health=health)
    broker.setup(["BTC/USDT"], leverage=3)
    return broker, store


def _limit(broker, k: int, below: float = 0.95) -> Order:
    last = broker.exchange.fetch_ticker("BTC/USDT")["last"]
    return Order(broker.client_id("BTC/USDT", T0, f"entry:{k}"), "BTC/USDT", Side.LONG, OrderKind.LIMIT,
                 broker.amount("BTC/USDT", 200 / last), broker.price("BTC/USDT", last * below), T0, tag=f"entry:{k}")


def test_a_placed_order_costs_a_journal_insert_and_one_locked_read_and_update(exchange_server, tmp_path):
    """A new order: journaled (BEGIN IMMEDIATE, INSERT, commit) before it is sent, then the
    create's answer merged (BEGIN IMMEDIATE, the row read under the write lock, UPDATE, commit).
    Before: 11 statements (a read before the journal, and the answer as an INSERT attempt, a
    second read and a savepoint inside the transaction that had read the row already)."""
    broker, store = _broker(exchange_server, tmp_path)
    order = _limit(broker, 1)
    with counted(store) as (seen, commits):
        record = broker.place(order, plan_id="p1")
    assert record.state == OrderState.OPEN and record.exchange_order_id
    assert seen == ["BEGIN", "INSERT", "BEGIN", "SELECT", "UPDATE"], seen
    assert len(commits) == 2
    assert store.order(order.id) == record


def test_placing_an_order_already_sent_reads_it_and_sends_nothing(exchange_server, tmp_path):
    """The journal's INSERT finds the row: the stored order is returned as before, nothing is sent."""
    broker, store = _broker(exchange_server, tmp_path)
    order = _limit(broker, 1)
    first = broker.place(order, plan_id="p1")
    sent = broker.sent
    with counted(store) as (seen, commits):
        again = broker.place(order, plan_id="p1")
    assert again == first and broker.sent == sent
    assert seen == ["BEGIN", "INSERT", "SELECT"], seen


def test_merge_order_writes_what_upsert_order_writes_and_needs_its_transaction(tmp_path):
    """merge_order is upsert_order for a row read under the same write lock: same result, same row."""
    import pytest
    from mlcoord.live.database import StoreError
    from mlcoord.live.records import OrderRecord

    order = Order("c1", "BTC/USDT", Side.LONG, OrderKind.LIMIT, 1.0, 100.0, T0, tag="entry:1")
    reports = [OrderRecord(order, "p1", OrderState.OPEN, 0.0, None, "x1", T0 + 1),
               OrderRecord(order, "p1", OrderState.PARTIALLY_FILLED, 0.4, 99.0, "x1", T0 + 2),
               OrderRecord(order, "p1", OrderState.OPEN, 0.2, 98.0, None, T0 + 1),        # stale: ignored
               OrderRecord(order, "p1", OrderState.FILLED, 1.0, 99.5, "x1", T0 + 3, "done")]
    with Store.open(tmp_path / "a.db") as a, Store.open(tmp_path / "b.db") as b:
        for s in (a, b):
            assert s.journal_order(OrderRecord(order, "p1", updated_at=T0)) is None
        with pytest.raises(StoreError):
            b.merge_order(b.order("c1"), reports[0])
        for report in reports:
            expected = a.upsert_order(report)
            with b.transaction():
                merged = b.merge_order(b.order("c1", for_update=True), report)
            assert merged == expected == a.order("c1") == b.order("c1")


def test_the_order_and_fill_path_builds_no_statement_per_call(tmp_path, monkeypatch):
    """Journal, merge, upsert, fill (with its order and position), plan and the reads of a plan's
    orders and an order's fills run statements built once: building one (``.values(**row)``,
    ``.where(...)``) cost more than running it on SQLite. Before: 2 or more built per call."""
    from sqlalchemy.sql import dml, selectable

    from mlcoord.live.records import FillRecord, OrderRecord, PlanRecord
    from mlcoord.model import EntryLeg, EntryPlan, ExitLevels, Fill

    built = []
    for cls, name in ((dml.ValuesBase, "values"), (dml.DMLWhereBase, "where"), (selectable.Select, "where"),
                      (selectable.Select, "order_by")):
        original = getattr(cls, name)
        monkeypatch.setattr(cls, name, lambda self, *a, _o=original, _n=name, **k: built.append(_n) or _o(self, *a, **k))
    entry = EntryPlan(Side.LONG, (EntryLeg(100.0, 1.0, market=True),), planner="dca")
    plan = PlanRecord("p1", "BTC/USDT", T0, 1.0, entry, ExitLevels(stop=90.0, take_profit=120.0))
    with Store.open(tmp_path / "s.db") as store:
        built.clear()
        for k in range(3):
            order = Order(f"c{k}", "BTC/USDT", Side.LONG, OrderKind.MARKET, 1.0, None, T0, tag="entry:1/1")
            store.save_plan(plan)
            assert store.journal_order(OrderRecord(order, "p1", updated_at=T0)) is None
            with store.transaction():
                stored = store.order(order.id, for_update=True)
                store.merge_order(stored, OrderRecord(order, "p1", OrderState.OPEN, 0.0, None, f"x{k}", T0 + 1))
                store.fills(order.id)
                fill = Fill(order.id, "BTC/USDT", Side.LONG, T0 + 2, 100.0, 1.0, 0.1, False, "entry:1/1")
                assert store.record_fill(FillRecord(fill, sequence=0))
            store.upsert_order(OrderRecord(order, "p1", OrderState.FILLED, 1.0, 100.0, f"x{k}", T0 + 3))
            store.orders("p1")
            store.plan("p1")
        assert built == [], built
        assert [r.state for r in store.orders("p1")] == [OrderState.FILLED] * 3
        assert store.positions()[0].quantity == 3.0


def test_in_a_deferring_scope_an_answer_commits_with_the_next_journal(exchange_server, tmp_path):
    """Two orders placed in ``store.deferring()`` (the trader's manage): 3 commits, not 4 (the first
    order's answer commits with the second's journal, the second's when the scope ends). At every
    exchange request the store on disk holds everything written so far: another connection sees
    the first order's answer when the second order is sent."""
    import sqlite3

    broker, store = _broker(exchange_server, tmp_path)
    first, second = _limit(broker, 1), _limit(broker, 2, below=0.94)
    seen_on_disk = []
    create = broker._create

    def create_checked(order):
        with sqlite3.connect(tmp_path / "store.db") as other:
            seen_on_disk.append(dict(other.execute("select client_order_id, state from orders").fetchall()))
        return create(order)

    broker._create = create_checked
    with counted(store) as (seen, commits):
        with store.deferring():
            a = broker.place(first, plan_id="p1")
            assert store.order(first.id) == a and a.state == OrderState.OPEN     # visible in-process
            b = broker.place(second, plan_id="p1")
        assert len(commits) == 3, seen
    assert seen_on_disk == [{first.id: "pending"}, {first.id: "open", second.id: "pending"}]
    assert store.order(second.id) == b and b.state == OrderState.OPEN


def test_a_kill_before_a_deferred_answer_commits_leaves_it_pending_and_a_restart_adopts_it(exchange_server,
                                                                                          tmp_path):
    """The database files as a kill -9 leaves them while an answer waits for its commit: the order
    is PENDING (journaled, committed before it was sent); a restarted broker asks the exchange by
    its client id and adopts it, sending nothing."""
    import shutil

    broker, store = _broker(exchange_server, tmp_path)
    order = _limit(broker, 1)
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    with store.deferring():
        assert broker.place(order, plan_id="p1").state == OrderState.OPEN
        for name in ("store.db", "store.db-wal"):
            shutil.copy(tmp_path / name, crashed / name)
    with Store.open(crashed / "store.db") as after:
        assert after.order(order.id).state == OrderState.PENDING
        health = ExchangeHealth(RetryPolicy(max_attempts=8, max_outage=1e9), ManualClock())
        again = Broker(futures_client(exchange_server, timeout_ms=250), after, "futures", health=health)
        again.setup(["BTC/USDT"], leverage=3)
        adopted = again.place(order, plan_id="p1")
        assert adopted.state == OrderState.OPEN and again.sent == 0
        assert adopted.exchange_order_id == store.order(order.id).exchange_order_id
