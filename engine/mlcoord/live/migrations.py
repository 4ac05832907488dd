"""Ordered, idempotent schema migrations.

A database records each applied version in ``schema_version``. :func:`upgrade` applies the
missing ones in order, each in its own transaction together with its version row, so a crash
mid-migration leaves the database at the previous version (SQLite and PostgreSQL both have
transactional DDL). Each step also checks what exists before changing it, so re-running one on a
database that already has it changes nothing. A fresh database is built by running every step
from version 0: there is one way to reach the current schema.

Each step's table definitions are frozen copies (never import :mod:`mlcoord.live.schema` here):
a later schema change is a new step, never an edit of an old one.
"""

from __future__ import annotations

import time
from typing import Callable, NamedTuple

import structlog
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Double,
    Engine,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    inspect,
    select,
    text,
)

from mlcoord.live.database import StoreError, write_transaction
from mlcoord.model import Fill, Side

log = structlog.get_logger("mlcoord.store")

_PG_LOCK_KEY = 0x6D6C636F6F7264  # "mlcoord": serialises concurrent upgrades on PostgreSQL


class SchemaError(StoreError):
    """The database's schema cannot be used by this version of mlcoord."""


class Migration(NamedTuple):
    version: int
    description: str
    apply: Callable[[Connection], None]


def _version_table(md: MetaData) -> Table:
    return Table("schema_version", md,
                 Column("version", Integer, primary_key=True, autoincrement=False),
                 Column("description", Text, nullable=False),
                 Column("applied_at", BigInteger, nullable=False))


def _v1_orders_and_fills(conn: Connection) -> None:
    md = MetaData()
    Table("orders", md,
          Column("client_order_id", String(64), primary_key=True),
          Column("symbol", String(64), nullable=False),
          Column("side", SmallInteger, nullable=False),
          Column("kind", String(16), nullable=False),
          Column("quantity", Double, nullable=False),
          Column("price", Double),
          Column("created_at", BigInteger, nullable=False),
          Column("reduce_only", Boolean, nullable=False),
          Column("tag", String(64), nullable=False),
          Column("hedge", Boolean, nullable=False),
          Column("expires_at", BigInteger),
          Column("state", String(24), nullable=False),
          Column("filled_quantity", Double, nullable=False),
          Column("average_price", Double),
          Column("exchange_order_id", String(64)),
          Column("updated_at", BigInteger, nullable=False),
          Column("reason", Text, nullable=False),
          Index("ix_orders_state", "state"))
    Table("fills", md,
          Column("fill_key", String(200), primary_key=True),
          Column("client_order_id", String(64), ForeignKey("orders.client_order_id"), nullable=False),
          Column("trade_id", String(64)),
          Column("sequence", Integer, nullable=False),
          Column("symbol", String(64), nullable=False),
          Column("side", SmallInteger, nullable=False),
          Column("time", BigInteger, nullable=False),
          Column("price", Double, nullable=False),
          Column("quantity", Double, nullable=False),
          Column("fee", Double, nullable=False),
          Column("fee_currency", String(16), nullable=False),
          Column("reduce_only", Boolean, nullable=False),
          Column("tag", String(64), nullable=False),
          Column("hedge", Boolean, nullable=False),
          Column("recorded_at", BigInteger, nullable=False),
          Index("ix_fills_client_order_id", "client_order_id"))
    md.create_all(conn, checkfirst=True)


def _v2_plans_state_decisions(conn: Connection) -> None:
    if "plan_id" not in {c["name"] for c in inspect(conn).get_columns("orders")}:
        conn.execute(text("ALTER TABLE orders ADD COLUMN plan_id VARCHAR(64)"))
    md = MetaData()
    orders = Table("orders", md, Column("client_order_id", String(64), primary_key=True),
                   Column("plan_id", String(64)))
    Index("ix_orders_plan_id", orders.c.plan_id).create(conn, checkfirst=True)
    Table("plans", md,
          Column("plan_id", String(64), primary_key=True),
          Column("symbol", String(64), nullable=False),
          Column("side", SmallInteger, nullable=False),
          Column("decision_time", BigInteger, nullable=False),
          Column("status", String(16), nullable=False),
          Column("stop", Double, nullable=False),
          Column("stop_on_exchange", Boolean, nullable=False),
          Column("body", Text, nullable=False),
          Column("updated_at", BigInteger, nullable=False),
          Index("ix_plans_status", "status"))
    Table("component_state", md,
          Column("component", String(128), primary_key=True),
          Column("body", Text, nullable=False),
          Column("updated_at", BigInteger, nullable=False))
    Table("decisions", md,
          Column("id", Integer, primary_key=True, autoincrement=True),
          Column("symbol", String(64), nullable=False),
          Column("time", String(40), nullable=False),
          Column("outcome", String(64), nullable=False),
          Column("body", Text, nullable=False),
          Column("recorded_at", BigInteger, nullable=False),
          UniqueConstraint("symbol", "time", name="uq_decisions_symbol_time"))
    md.create_all(conn, tables=[md.tables[n] for n in ("plans", "component_state", "decisions")],
                  checkfirst=True)


def _v3_positions(conn: Connection) -> None:
    """Positions become stored rows kept in step with fills; existing fills are replayed into them."""
    from mlcoord.live.positions import apply_fill

    md = MetaData()
    positions = Table("positions", md,
                      Column("symbol", String(64), primary_key=True),
                      Column("side", SmallInteger, primary_key=True, autoincrement=False),
                      Column("hedge", Boolean, primary_key=True),
                      Column("quantity", Double, nullable=False),
                      Column("entry_price", Double, nullable=False),
                      Column("opened_at", BigInteger, nullable=False),
                      Column("updated_at", BigInteger, nullable=False),
                      Column("realised_pnl", Double, nullable=False),
                      Column("fees", Double, nullable=False),
                      Column("funding", Double, nullable=False),
                      Column("liquidation_price", Double),
                      Column("plan_id", String(64)))
    if inspect(conn).has_table("positions"):
        return
    positions.create(conn)
    fills = Table("fills", MetaData(), autoload_with=conn)
    orders = Table("orders", MetaData(), autoload_with=conn)
    book: dict = {}
    rows = conn.execute(select(fills, orders.c.plan_id)
                        .join(orders, fills.c.client_order_id == orders.c.client_order_id)
                        .order_by(fills.c.recorded_at, fills.c.time, fills.c.fill_key))
    for r in rows:
        fill = Fill(order_id=r.client_order_id, symbol=r.symbol, side=Side(r.side), time=r.time, price=r.price,
                    quantity=r.quantity, fee=r.fee, reduce_only=bool(r.reduce_only), tag=r.tag, hedge=bool(r.hedge))
        key = (fill.symbol, int(fill.side), fill.hedge)
        book[key], _ = apply_fill(book.get(key), fill, r.plan_id, r.recorded_at)
    for p in book.values():
        if p is not None:
            conn.execute(positions.insert().values(
                symbol=p.symbol, side=int(p.side), hedge=p.hedge, quantity=p.quantity, entry_price=p.entry_price,
                opened_at=p.opened_at, updated_at=p.updated_at, realised_pnl=p.realised_pnl, fees=p.fees,
                funding=p.funding, liquidation_price=p.liquidation_price, plan_id=p.plan_id))


def _v4_trailing_callback_rate(conn: Connection) -> None:
    """Exchange-side trailing stops: ``orders.callback_rate``, the distance a trailing stop keeps
    behind the best price (fraction of it). NULL for every other order, so existing rows need nothing."""
    if "callback_rate" not in {c["name"] for c in inspect(conn).get_columns("orders")}:
        conn.execute(text("ALTER TABLE orders ADD COLUMN callback_rate DOUBLE PRECISION"))


def _v5_paper_runs(conn: Connection) -> None:
    """Paper sessions keep their work: a summary row per session, its closed trades and its fills
    (simulated). New tables only, so existing stores need nothing else."""
    md = MetaData()
    Table("paper_sessions", md,
          Column("session_id", String(64), primary_key=True),
          Column("started_at", BigInteger, nullable=False),
          Column("updated_at", BigInteger, nullable=False),
          Column("status", String(32), nullable=False),
          Column("bars", Integer, nullable=False),
          Column("trades", Integer, nullable=False),
          Column("pnl", Double, nullable=False),
          Column("equity", Double, nullable=False),
          Column("body", Text, nullable=False))
    Table("paper_trades", md,
          Column("session_id", String(64), primary_key=True),
          Column("sequence", Integer, primary_key=True, autoincrement=False),
          Column("trade_id", String(64), nullable=False),
          Column("symbol", String(64), nullable=False),
          Column("side", SmallInteger, nullable=False),
          Column("opened_at", BigInteger, nullable=False),
          Column("closed_at", BigInteger, nullable=False),
          Column("entry_price", Double, nullable=False),
          Column("exit_price", Double, nullable=False),
          Column("quantity", Double, nullable=False),
          Column("pnl", Double, nullable=False),
          Column("fees", Double, nullable=False),
          Column("funding", Double, nullable=False),
          Column("exit_reason", Text, nullable=False),
          Column("hedge", Boolean, nullable=False),
          Column("body", Text, nullable=False))
    Table("paper_fills", md,
          Column("session_id", String(64), primary_key=True),
          Column("sequence", Integer, primary_key=True, autoincrement=False),
          Column("order_id", String(64), nullable=False),
          Column("symbol", String(64), nullable=False),
          Column("side", SmallInteger, nullable=False),
          Column("time", BigInteger, nullable=False),
          Column("price", Double, nullable=False),
          Column("quantity", Double, nullable=False),
          Column("fee", Double, nullable=False),
          Column("reduce_only", Boolean, nullable=False),
          Column("tag", String(64), nullable=False),
          Column("hedge", Boolean, nullable=False))
    md.create_all(conn, checkfirst=True)


def _v6_api_users_audit(conn: Connection) -> None:
    """The API's users (argon2 hashes), its audit log and its token signing key (issue 17)."""
    md = MetaData()
    Table("api_users", md,
          Column("username", String(64), primary_key=True),
          Column("role", String(16), nullable=False),
          Column("password_hash", Text, nullable=False),
          Column("created_at", BigInteger, nullable=False),
          Column("updated_at", BigInteger, nullable=False))
    Table("api_audit", md,
          Column("id", Integer, primary_key=True, autoincrement=True),
          Column("time", BigInteger, nullable=False),
          Column("username", String(64), nullable=False),
          Column("role", String(16), nullable=False),
          Column("action", String(64), nullable=False),
          Column("params", Text, nullable=False),
          Column("address", String(128), nullable=False),
          Column("result", Text, nullable=False),
          Column("updated_at", BigInteger, nullable=False),
          Index("ix_api_audit_time", "time"))
    Table("api_secrets", md,
          Column("name", String(64), primary_key=True),
          Column("value", Text, nullable=False),
          Column("created_at", BigInteger, nullable=False))
    md.create_all(conn, checkfirst=True)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "orders and fills", _v1_orders_and_fills),
    Migration(2, "plans, orders.plan_id, component state, decisions", _v2_plans_state_decisions),
    Migration(3, "positions built from fills", _v3_positions),
    Migration(4, "orders.callback_rate (exchange-side trailing stops)", _v4_trailing_callback_rate),
    Migration(5, "paper sessions, their trades and fills", _v5_paper_runs),
    Migration(6, "API users, audit log and signing key", _v6_api_users_audit),
)
LATEST = MIGRATIONS[-1].version


def current_version(conn: Connection) -> int:
    """The highest applied version; 0 for an empty database."""
    if not inspect(conn).has_table("schema_version"):
        return 0
    return conn.execute(select(func.max(_version_table(MetaData()).c.version))).scalar() or 0


def upgrade(engine: Engine, target: int = LATEST, clock: Callable[[], int] = time.time_ns) -> list[int]:
    """Apply the missing migrations up to ``target``, in order. Returns the versions applied.

    Safe to call from several processes at once: each step re-reads the version under a lock
    (SQLite's write lock, a PostgreSQL advisory lock) before applying anything.
    """
    ordered = [m.version for m in MIGRATIONS]
    if ordered != list(range(1, len(MIGRATIONS) + 1)):
        raise SchemaError(f"migrations must be numbered 1..n without gaps, got {ordered}")
    with engine.connect() as conn:
        found = current_version(conn)
        conn.rollback()
    if found > LATEST:
        raise SchemaError(f"the database is at schema version {found}, newer than this mlcoord knows "
                          f"({LATEST}); upgrade mlcoord rather than open it with an older version")
    applied: list[int] = []
    for migration in MIGRATIONS:
        if migration.version <= found or migration.version > target:
            continue
        with write_transaction(engine) as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
            versions = _version_table(MetaData())
            versions.create(conn, checkfirst=True)
            now_at = current_version(conn)
            if migration.version <= now_at:      # another process got there first
                continue
            if migration.version != now_at + 1:
                raise SchemaError(f"cannot apply migration {migration.version} to schema version {now_at}")
            migration.apply(conn)
            conn.execute(versions.insert().values(version=migration.version, description=migration.description,
                                                  applied_at=clock()))
        applied.append(migration.version)
        log.info("schema_migrated", version=migration.version, description=migration.description)
    return applied
