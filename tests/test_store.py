"""The persistence store: idempotent writes, order/fill/position consistency, plans and their
stops, migrations from an older schema, and kill -9 at random points losing and duplicating
nothing. Every store test runs on SQLite (WAL) and on a real PostgreSQL server."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import attrs
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import inspect, text

from conftest_pg import postgres_database, postgres_server  # noqa: F401  (fixtures)
from mlcoord.live import (
    FillRecord,
    HedgeLeg,
    OrderConflict,
    OrderRecord,
    OrderState,
    PlanRecord,
    PlanStatus,
    SchemaError,
    Store,
    StoreError,
    TrailingStop,
    UnknownOrder,
    client_order_id,
    is_own_order,
)
from mlcoord.live.database import create_engine_for, database_url, write_transaction
from mlcoord.live.migrations import LATEST, MIGRATIONS, upgrade
from mlcoord.live.schema import metadata
from mlcoord.model import EntryLeg, EntryPlan, ExitLevels, Fill, Order, OrderKind, Side

BINANCE_ID = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")
T0 = 1_700_000_000_000_000_000
SYMBOL = "BTC/USDT"
ENGINE_PATH = os.pathsep.join(p for p in sys.path if p)   # for the writer subprocess


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("postgres_database")


@pytest.fixture
def store(db_url):
    with Store.open(db_url) as s:
        yield s


def order(cid, *, side=Side.LONG, qty=1.0, price=100.0, tag="entry:1/1", reduce_only=False, hedge=False,
          kind=OrderKind.LIMIT):
    return Order(id=cid, symbol=SYMBOL, side=side, kind=kind, quantity=qty, price=price, created_at=T0,
                 reduce_only=reduce_only, tag=tag, hedge=hedge)


def fill(o: Order, qty, price, *, t=T0 + 1, fee=0.0):
    return Fill(order_id=o.id, symbol=o.symbol, side=o.side, time=t, price=price, quantity=qty, fee=fee,
                reduce_only=o.reduce_only, tag=o.tag, hedge=o.hedge)


def plan_record(plan_id="p1", *, stop_on_exchange=True, side=Side.LONG):
    entry = EntryPlan(side, (EntryLeg(100.0, 0.5, market=True), EntryLeg(95.0, 0.5)), planner="dca")
    return PlanRecord(plan_id=plan_id, symbol=SYMBOL, decision_time=T0, quantity=2.0, entry=entry,
                      levels=ExitLevels(stop=90.0, take_profit=120.0, reasons=("atr",)),
                      trailing=TrailingStop(callback_rate=0.01, activation_price=110.0),
                      hedge=HedgeLeg(side=side.opposite, quantity=1.0, leverage=2.0),
                      stop_on_exchange=stop_on_exchange)


# -- client order ids -------------------------------------------------------------------------

def test_client_order_id_is_deterministic_short_and_distinct():
    a = client_order_id(SYMBOL, T0, "entry:1/3")
    assert a == client_order_id(SYMBOL, T0, "entry:1/3")            # a retry sends the same id
    assert BINANCE_ID.match(a) and len(a) == 28 and is_own_order(a)
    others = {client_order_id(SYMBOL, T0, "entry:2/3"), client_order_id(SYMBOL, T0 + 1, "entry:1/3"),
              client_order_id("ETH/USDT", T0, "entry:1/3"), client_order_id(SYMBOL, T0, "entry:1/3", 1),
              client_order_id(SYMBOL, T0, "entry:1/3", namespace="bot2")}
    assert a not in others and len(others) == 5
    assert not is_own_order("web_abc123")
    for bad in (dict(symbol="", decision_time_ns=T0, tag="x"), dict(symbol=SYMBOL, decision_time_ns=1.5, tag="x"),
                dict(symbol=SYMBOL, decision_time_ns=T0, tag=""), dict(symbol=SYMBOL, decision_time_ns=T0, tag="x",
                                                                       attempt=-1)):
        with pytest.raises((ValueError, TypeError)):
            client_order_id(**bad)


@settings(max_examples=30, deadline=None)
@given(st.text(min_size=1, max_size=40), st.integers(0, 2**63 - 1), st.text(min_size=1, max_size=40),
       st.integers(0, 1000))
def test_client_order_id_always_fits_binance(symbol, t, tag, attempt):
    assert BINANCE_ID.match(client_order_id(symbol, t, tag, attempt))


# -- orders -----------------------------------------------------------------------------------

def test_upsert_order_twice_keeps_one_row(store):
    o = order("mcA")
    store.upsert_order(OrderRecord(o, plan_id="p1"))
    store.upsert_order(OrderRecord(o, plan_id="p1"))
    store.upsert_order(OrderRecord(o, state=OrderState.OPEN, exchange_order_id="77"))
    assert [r.client_order_id for r in store.open_orders()] == ["mcA"]
    stored = store.order("mcA")
    assert (stored.state, stored.plan_id, stored.exchange_order_id) == (OrderState.OPEN, "p1", "77")


def test_upsert_order_never_moves_backwards(store):
    o = order("mcB")
    store.upsert_order(OrderRecord(o, state=OrderState.PARTIALLY_FILLED, filled_quantity=0.5, average_price=99.0))
    # a stale "open, nothing filled" report arriving late changes nothing
    assert store.upsert_order(OrderRecord(o, state=OrderState.OPEN)).filled_quantity == 0.5
    # an amendment while live is kept
    assert store.upsert_order(OrderRecord(attrs.evolve(o, price=98.0), state=OrderState.OPEN)).order.price == 98.0
    store.upsert_order(OrderRecord(o, state=OrderState.CANCELLED, filled_quantity=0.5, average_price=99.0))
    assert store.upsert_order(OrderRecord(o, state=OrderState.OPEN)).state is OrderState.CANCELLED
    # the exchange may still report a fill that raced the cancel: FILLED wins over CANCELLED
    final = store.upsert_order(OrderRecord(o, state=OrderState.FILLED, filled_quantity=1.0, average_price=98.5))
    assert (final.state, final.filled_quantity, final.average_price) == (OrderState.FILLED, 1.0, 98.5)
    assert store.open_orders() == []


def test_conflicting_order_write_is_refused_and_changes_nothing(store):
    store.upsert_order(OrderRecord(order("mcC"), exchange_order_id="1"))
    with pytest.raises(OrderConflict, match="symbol|side"):
        store.upsert_order(OrderRecord(order("mcC", side=Side.SHORT)))
    with pytest.raises(OrderConflict, match="exchange_order_id"):
        store.upsert_order(OrderRecord(order("mcC"), exchange_order_id="2"))
    assert store.order("mcC") == OrderRecord(order("mcC"), exchange_order_id="1")


# -- fills and positions ----------------------------------------------------------------------

def test_fills_are_idempotent_and_keep_order_and_position_consistent(store):
    entry = order("mcE", qty=1.0)
    store.upsert_order(OrderRecord(entry, plan_id="p1", state=OrderState.OPEN))
    assert store.record_fill(FillRecord(fill(entry, 0.4, 100.0, fee=0.04), trade_id="T1"))
    assert not store.record_fill(FillRecord(fill(entry, 0.4, 100.0, fee=0.04), trade_id="T1"))   # replay
    assert store.order("mcE").state is OrderState.PARTIALLY_FILLED
    assert store.record_fill(FillRecord(fill(entry, 0.6, 95.0), sequence=1))                       # no trade id
    assert not store.record_fill(FillRecord(fill(entry, 0.6, 95.0), sequence=1))
    stored = store.order("mcE")
    assert stored.state is OrderState.FILLED and stored.filled_quantity == pytest.approx(1.0)
    assert stored.average_price == pytest.approx(97.0)
    (pos,) = store.positions()
    assert (pos.quantity, pos.entry_price, pos.fees, pos.plan_id) == (pytest.approx(1.0), pytest.approx(97.0),
                                                                      pytest.approx(0.04), "p1")
    exit_ = order("mcX", qty=1.0, price=110.0, tag="take_profit", reduce_only=True)
    store.upsert_order(OrderRecord(exit_, plan_id="p1", state=OrderState.OPEN))
    store.record_fill(FillRecord(fill(exit_, 0.25, 110.0), trade_id="T3"))
    (pos,) = store.positions()
    assert pos.quantity == pytest.approx(0.75) and pos.realised_pnl == pytest.approx(0.25 * 13.0)
    store.record_fill(FillRecord(fill(exit_, 0.75, 110.0), trade_id="T4"))
    assert store.positions() == []
    assert len(store.fills()) == 4 and len(store.fills("mcE")) == 2


def test_fill_of_unknown_order_or_with_other_content_is_refused(store):
    o = order("mcF")
    with pytest.raises(UnknownOrder):
        store.record_fill(FillRecord(fill(o, 1.0, 100.0), trade_id="T1"))
    store.upsert_order(OrderRecord(o))
    store.record_fill(FillRecord(fill(o, 0.5, 100.0), trade_id="T1"))
    with pytest.raises(OrderConflict, match="different content"):
        store.record_fill(FillRecord(fill(o, 0.7, 100.0), trade_id="T1"))
    with pytest.raises(OrderConflict, match="does not match"):
        store.record_fill(FillRecord(attrs.evolve(fill(o, 0.5, 100.0), side=Side.SHORT), trade_id="T2"))
    assert store.positions()[0].quantity == 0.5


def test_hedge_and_short_positions_are_separate(store):
    long_, hedge = order("mcL"), order("mcH", side=Side.SHORT, tag="hedge", hedge=True, kind=OrderKind.MARKET)
    for o in (long_, hedge):
        store.upsert_order(OrderRecord(o))
        store.record_fill(FillRecord(fill(o, 1.0, 100.0), trade_id=o.id))
    assert [(p.side, p.hedge) for p in store.positions()] == [(Side.SHORT, True), (Side.LONG, False)]
    assert store.mark_position(SYMBOL, Side.SHORT, hedge=True, liquidation_price=150.0, funding=0.3)
    assert store.mark_position(SYMBOL, Side.SHORT, hedge=True, funding=0.2)
    assert not store.mark_position(SYMBOL, Side.SHORT)
    short = store.positions()[0]
    assert short.funding == pytest.approx(0.5) and short.liquidation_price == 150.0   # a funding mark keeps it


# -- transactions -----------------------------------------------------------------------------

def test_transaction_is_all_or_nothing_and_nested_blocks_are_savepoints(store):
    o = order("mcT")
    with pytest.raises(RuntimeError):
        with store.transaction():
            store.upsert_order(OrderRecord(o))
            store.record_fill(FillRecord(fill(o, 1.0, 100.0), trade_id="T1"))
            raise RuntimeError("crash before commit")
    assert store.order("mcT") is None and store.fills() == [] and store.positions() == []
    with store.transaction():
        store.upsert_order(OrderRecord(o))
        with pytest.raises(UnknownOrder):
            store.record_fill(FillRecord(fill(order("mcNope"), 1.0, 100.0), trade_id="T9"))
        with pytest.raises(RuntimeError):
            with store.transaction():
                store.save_state("inner", {"x": 1})
                raise RuntimeError("inner only")
        store.record_fill(FillRecord(fill(o, 1.0, 100.0), trade_id="T1"))
    assert store.order("mcT").state is OrderState.FILLED and store.load_state("inner") is None


# -- plans ------------------------------------------------------------------------------------

def test_plan_round_trips_with_ladder_stop_trailing_and_hedge(store):
    plan = plan_record()
    store.save_plan(plan)
    assert store.plan("p1") == plan and store.plan("nope") is None
    moved = attrs.evolve(plan, levels=attrs.evolve(plan.levels, stop=96.0), updated_at=5)
    store.save_plan(moved)
    assert store.plan("p1") == moved and store.active_plans() == [moved]
    store.save_plan(attrs.evolve(moved, status=PlanStatus.CLOSED))
    assert store.active_plans() == []


def test_plans_without_stop_finds_every_unprotected_position(store):
    for pid, on_exchange in (("p1", True), ("p2", True), ("p3", False), ("p4", True)):
        store.save_plan(plan_record(pid, stop_on_exchange=on_exchange))
    for pid in ("p1", "p2", "p3"):           # p4: nothing filled yet, no position to protect
        o = order(f"mc{pid}e")
        store.upsert_order(OrderRecord(o, plan_id=pid, state=OrderState.OPEN))
        store.record_fill(FillRecord(fill(o, 1.0, 100.0), trade_id=o.id))
    assert [p.plan_id for p in store.plans_without_stop()] == ["p1", "p2"]
    stop = order("mcp1s", price=90.0, tag="stop", reduce_only=True, kind=OrderKind.STOP)
    store.upsert_order(OrderRecord(stop, plan_id="p1"))                   # PENDING: maybe never sent
    assert [p.plan_id for p in store.plans_without_stop()] == ["p1", "p2"]
    store.upsert_order(OrderRecord(stop, plan_id="p1", state=OrderState.OPEN))
    assert [p.plan_id for p in store.plans_without_stop()] == ["p2"]
    # p2 is closed by a take profit: nothing left to protect; a hedge fill alone never counts
    tp = order("mcp2t", price=120.0, tag="take_profit", reduce_only=True)
    store.upsert_order(OrderRecord(tp, plan_id="p2"))
    store.record_fill(FillRecord(fill(tp, 1.0, 120.0), trade_id="tp"))
    hedge = order("mcp4h", side=Side.SHORT, tag="hedge", hedge=True)
    store.upsert_order(OrderRecord(hedge, plan_id="p4"))
    store.record_fill(FillRecord(fill(hedge, 1.0, 100.0), trade_id="h"))
    assert store.plans_without_stop() == []
    store.upsert_order(OrderRecord(stop, plan_id="p1", state=OrderState.CANCELLED))
    assert [p.plan_id for p in store.plans_without_stop()] == ["p1"]


# -- plugin state and decisions ---------------------------------------------------------------

def test_state_and_decisions(store):
    assert store.load_state("bayes") is None
    store.save_state("bayes", {"weights": np.array([0.25, 0.75]), "n": np.int64(3), "nan": float("nan")})
    store.save_state("bayes", {"weights": [0.5, 0.5], "n": 4})
    assert store.load_state("bayes") == {"weights": [0.5, 0.5], "n": 4}
    with pytest.raises(TypeError):
        store.save_state("bad", [1, 2])
    d = {"time": "2024-01-01T00:00:00+00:00", "symbol": SYMBOL, "outcome": "entered", "confidence": 0.7,
         "votes": [{"component": "technical", "signal": "BUY"}]}
    assert store.record_decision(d) and not store.record_decision(d)
    assert store.record_decision({**d, "symbol": "ETH/USDT"})
    assert store.decisions(SYMBOL) == [d] and len(store.decisions()) == 2
    with pytest.raises(ValueError, match="symbol"):
        store.record_decision({"time": "x"})


# -- schema and migrations --------------------------------------------------------------------

V1_ORDER = ("INSERT INTO orders (client_order_id, symbol, side, kind, quantity, price, created_at, reduce_only, tag,"
            " hedge, expires_at, state, filled_quantity, average_price, exchange_order_id, updated_at, reason)"
            " VALUES (:id, 'BTC/USDT', 1, 'limit', 2.0, 100.0, 1, :ro, :tag, false, NULL, 'filled', :q, 100.0,"
            " NULL, 1, '')")
V1_FILL = ("INSERT INTO fills (fill_key, client_order_id, trade_id, sequence, symbol, side, time, price, quantity,"
           " fee, fee_currency, reduce_only, tag, hedge, recorded_at)"
           " VALUES ('t:BTC/USDT:' || :key, :id, :key, 0, 'BTC/USDT', 1, :t, :price, :q, 0.1, 'USDT', :ro, :tag, false,"
           " :t)")


def test_v1_database_upgrades_to_current(db_url):
    engine = create_engine_for(db_url)
    assert upgrade(engine, target=1) == [1]
    with write_transaction(engine) as conn:       # a v1 bot's data: an entry of 2, half sold since
        conn.execute(text(V1_ORDER), {"id": "old1", "ro": False, "tag": "entry", "q": 2.0})
        conn.execute(text(V1_ORDER), {"id": "old2", "ro": True, "tag": "take_profit", "q": 1.0})
        conn.execute(text(V1_FILL), {"key": "t1", "id": "old1", "t": 10, "price": 100.0, "q": 2.0, "ro": False,
                                     "tag": "entry"})
        conn.execute(text(V1_FILL), {"key": "t2", "id": "old2", "t": 20, "price": 110.0, "q": 1.0, "ro": True,
                                     "tag": "take_profit"})
    assert {"plans", "positions"}.isdisjoint(inspect(engine).get_table_names())
    engine.dispose()
    with Store.open(db_url) as s:
        assert s.schema_version() == LATEST == 6
        assert s.order("old1").plan_id is None and s.order("old1").state is OrderState.FILLED
        (pos,) = s.positions()                   # v3 rebuilt the position from the v1 fills
        assert (pos.quantity, pos.entry_price, pos.realised_pnl) == (1.0, 100.0, pytest.approx(10.0))
        replay = FillRecord(fill(order("old1", tag="entry"), 2.0, 100.0, t=10, fee=0.1), trade_id="t1",
                            fee_currency="USDT")
        assert not s.record_fill(replay)         # the v1 fill keys still deduplicate
        s.save_plan(plan_record())
    with Store.open(db_url) as s:                # re-opening applies nothing
        assert upgrade(s.engine) == [] and s.plan("p1") == plan_record()
        with write_transaction(s.engine) as conn:  # each step is idempotent on its own too
            for m in MIGRATIONS:
                m.apply(conn)
        assert len(s.positions()) == 1 and len(s.fills()) == 2


def test_migrated_schema_matches_the_declared_tables(store):
    insp = inspect(store.engine)
    for table in metadata.sorted_tables:
        reflected = {c["name"]: c["nullable"] for c in insp.get_columns(table.name)}
        declared = {c.name: c.nullable for c in table.columns}
        assert {k: bool(v) for k, v in reflected.items()} == {k: bool(v) for k, v in declared.items()}, table.name
        assert set(insp.get_pk_constraint(table.name)["constrained_columns"]) == {c.name for c in table.primary_key}
        assert {i["name"] for i in insp.get_indexes(table.name)} >= {i.name for i in table.indexes}


def test_newer_schema_is_refused(db_url):
    Store.open(db_url).close()
    engine = create_engine_for(db_url)
    with write_transaction(engine) as conn:
        conn.execute(text("INSERT INTO schema_version VALUES (99, 'from the future', 0)"))
    engine.dispose()
    with pytest.raises(SchemaError, match="newer"):
        Store.open(db_url)


def test_sqlite_runs_in_wal_mode_with_full_sync(tmp_path):
    with Store.open(tmp_path / "s.db") as s, s.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2      # FULL
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_database_urls():
    assert database_url("/tmp/x.db").render_as_string() == "sqlite:////tmp/x.db"
    assert database_url("postgresql://u:p@h/db").drivername == "postgresql+psycopg"
    with pytest.raises(StoreError, match="unsupported"):
        create_engine_for("mysql://u@h/db")


# -- crash safety -----------------------------------------------------------------------------

# The crash test's victim, run with ``python -c`` (importing this test module would triple its
# start-up). Each step, in one transaction, journals an order, records its fills (an entry in two
# parts, or an exit), a decision and a plugin state; it prints the id once committed. Starting a
# little before the last acknowledged step replays writes already made. Each commit waits 10 ms
# first, so many kills land with a whole step written but not yet committed.
WRITER = """
import sys, time
from sqlalchemy import event
from mlcoord.live import FillRecord, OrderRecord, OrderState, Store, client_order_id
from mlcoord.model import Fill, Order, OrderKind, Side

url, start, T0 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
store = Store.open(url)
event.listen(store.engine, "commit", lambda conn: time.sleep(0.01))
for i in range(start, start + 100_000):
    cid = client_order_id("BTC/USDT", T0 + i, "step")
    exit_ = i % 2 == 1
    o = Order(id=cid, symbol="BTC/USDT", side=Side.LONG, kind=OrderKind.LIMIT, quantity=0.5 if exit_ else 1.0,
              price=100.0, created_at=T0, reduce_only=exit_, tag="take_profit" if exit_ else "entry")
    def fill(qty, price):
        return Fill(order_id=cid, symbol=o.symbol, side=o.side, time=T0 + i, price=price, quantity=qty, fee=0.0,
                    reduce_only=o.reduce_only, tag=o.tag)
    with store.transaction():
        store.upsert_order(OrderRecord(o, plan_id="crash"))
        store.upsert_order(OrderRecord(o, plan_id="crash", state=OrderState.OPEN, exchange_order_id=str(i)))
        if exit_:
            store.record_fill(FillRecord(fill(0.5, 101.0), trade_id=f"T{i}"))
        else:
            store.record_fill(FillRecord(fill(0.4, 100.0), trade_id=f"T{i}a"))
            store.record_fill(FillRecord(fill(0.6, 99.0), sequence=1))
        store.record_decision({"symbol": "BTC/USDT", "time": str(T0 + i), "outcome": "entered"})
        store.save_state("crash", {"step": i})
    print("ACK", cid, flush=True)   # structlog writes to stdout too, hence the marker
"""


def _run_until_killed(url: str, known: set[str], rng: random.Random) -> list[str]:
    """Start the writer just before the last acknowledged step; SIGKILL it either during start-up
    or a random moment after a random number (1-12) of new acknowledgements, so the kill lands at
    a random point of a step (counting steps, not seconds, keeps the test fast on a slow machine)."""
    start = max(0, len(known) - 3)
    proc = subprocess.Popen([sys.executable, "-c", WRITER, url, str(start), str(T0)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env={**os.environ, "PYTHONPATH": ENGINE_PATH})
    acked: list[str] = []
    wanted = rng.randint(1, 12)
    enough = threading.Event()

    def read():
        for line in proc.stdout:
            if line.startswith("ACK ") and line.endswith("\n"):
                acked.append(line.split()[1])
                if len(set(acked) - known) >= wanted:
                    enough.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if rng.random() < 0.2:                   # during start-up (imports, migrations, replays)
        time.sleep(rng.uniform(0.0, 0.6))
    else:
        assert enough.wait(60), "the writer stopped acknowledging writes"
        time.sleep(rng.uniform(0.0, 0.04))
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    reader.join(10)
    return acked


def test_kill_9_at_random_points_loses_and_duplicates_nothing(db_url):
    rng = random.Random(20240505)
    acked: list[str] = []
    for _ in range(8):
        acked += _run_until_killed(db_url, set(acked), rng)
    assert len(set(acked)) >= 20, "the writer made too little progress to test anything"
    with Store.open(db_url) as s:
        stored = s.fills()
        orders = {f.fill.order_id for f in stored}
        assert set(acked) <= orders                                 # nothing acknowledged is lost
        per_order = {}
        for f in stored:
            per_order[f.fill.order_id] = per_order.get(f.fill.order_id, 0) + 1
        for cid in orders:                                          # each step whole, and once
            o = s.order(cid)
            assert per_order[cid] == (1 if o.order.reduce_only else 2), cid
            assert o.state is OrderState.FILLED and o.filled_quantity == pytest.approx(o.order.quantity)
        assert len(s.decisions()) == len(orders) and s.load_state("crash")["step"] == len(orders) - 1
        net = sum(-f.fill.quantity if f.fill.reduce_only else f.fill.quantity for f in stored)
        (pos,) = s.positions()
        assert pos.quantity == pytest.approx(net)                   # the position agrees with its fills
        with s.engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
                assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []
            counts = conn.execute(text("SELECT COUNT(*), COUNT(DISTINCT client_order_id) FROM orders")).one()
            assert counts[0] == counts[1] == len(orders)

