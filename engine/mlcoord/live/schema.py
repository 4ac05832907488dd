"""The tables of the current schema, as SQLAlchemy Core objects the store queries with.

These describe the schema that :mod:`mlcoord.live.migrations` builds; they never create it (a
fresh database is built by running every migration from version 0, so there is one path). A test
checks that the two agree column by column.

Times are int64 ns since epoch (UTC). Quantities and prices are doubles, as in the engine.
JSON payloads are text (portable across SQLite and PostgreSQL, and Python's NaN survives).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)

SCHEMA_VERSION = 6

metadata = MetaData()

schema_version = Table(
    "schema_version", metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("description", Text, nullable=False),
    Column("applied_at", BigInteger, nullable=False),
)

orders = Table(
    "orders", metadata,
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
    Column("plan_id", String(64)),                       # v2
    Column("callback_rate", Double),                     # v4: trailing stops only
    Index("ix_orders_state", "state"),
    Index("ix_orders_plan_id", "plan_id"),               # v2
)

fills = Table(
    "fills", metadata,
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
    Index("ix_fills_client_order_id", "client_order_id"),
)

# v2
plans = Table(
    "plans", metadata,
    Column("plan_id", String(64), primary_key=True),
    Column("symbol", String(64), nullable=False),
    Column("side", SmallInteger, nullable=False),
    Column("decision_time", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("stop", Double, nullable=False),
    Column("stop_on_exchange", Boolean, nullable=False),
    Column("body", Text, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Index("ix_plans_status", "status"),
)

component_state = Table(
    "component_state", metadata,
    Column("component", String(128), primary_key=True),
    Column("body", Text, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

decisions = Table(
    "decisions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("symbol", String(64), nullable=False),
    Column("time", String(40), nullable=False),
    Column("outcome", String(64), nullable=False),
    Column("body", Text, nullable=False),
    Column("recorded_at", BigInteger, nullable=False),
    UniqueConstraint("symbol", "time", name="uq_decisions_symbol_time"),
)

# v3
positions = Table(
    "positions", metadata,
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
    Column("plan_id", String(64)),
)

# v5: paper sessions (simulated fills), kept apart from the live account's tables
paper_sessions = Table(
    "paper_sessions", metadata,
    Column("session_id", String(64), primary_key=True),
    Column("started_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("status", String(32), nullable=False),
    Column("bars", Integer, nullable=False),
    Column("trades", Integer, nullable=False),
    Column("pnl", Double, nullable=False),
    Column("equity", Double, nullable=False),
    Column("body", Text, nullable=False),
)

paper_trades = Table(
    "paper_trades", metadata,
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
    Column("body", Text, nullable=False),
)

paper_fills = Table(
    "paper_fills", metadata,
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
    Column("hedge", Boolean, nullable=False),
)

# v6: the API (mlcoord.server)
api_users = Table(
    "api_users", metadata,
    Column("username", String(64), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("password_hash", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

api_audit = Table(
    "api_audit", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time", BigInteger, nullable=False),
    Column("username", String(64), nullable=False),
    Column("role", String(16), nullable=False),
    Column("action", String(64), nullable=False),
    Column("params", Text, nullable=False),
    Column("address", String(128), nullable=False),
    Column("result", Text, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Index("ix_api_audit_time", "time"),
)

api_secrets = Table(
    "api_secrets", metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
)
