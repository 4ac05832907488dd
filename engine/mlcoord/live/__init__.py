"""Live and paper trading. This package's persistence layer: :class:`Store` (SQLite in WAL mode by
default, PostgreSQL by URL) keeps orders, fills, positions, plans, decisions and plugin state so
that a crash or a restart never loses an acknowledged write nor places an order twice; the key to
the latter is :func:`client_order_id`."""

from mlcoord.live.database import StoreError
from mlcoord.live.ids import client_order_id, is_own_order
from mlcoord.live.migrations import SchemaError
from mlcoord.live.records import (
    FillRecord,
    HedgeLeg,
    OrderRecord,
    OrderState,
    PlanRecord,
    PlanStatus,
    PositionRecord,
    TrailingStop,
)
from mlcoord.live.store import OrderConflict, Store, UnknownOrder

__all__ = [
    "FillRecord", "HedgeLeg", "OrderConflict", "OrderRecord", "OrderState", "PlanRecord", "PlanStatus",
    "PositionRecord", "SchemaError", "Store", "StoreError", "TrailingStop", "UnknownOrder", "client_order_id",
    "is_own_order",
]
