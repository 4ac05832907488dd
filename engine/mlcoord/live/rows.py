"""Records to table rows and back, and the JSON text the store keeps payloads in."""

from __future__ import annotations

import json
from typing import Any, Mapping

import cattrs

from mlcoord.model import Fill, Order, OrderKind, Side
from mlcoord.live.records import FillRecord, OrderRecord, OrderState, PlanRecord, PositionRecord

_plans = cattrs.Converter()

#: a table row by column name: SQLAlchemy's RowMapping (whose keys may also be Column objects) or a dict
Row = Mapping[Any, Any]


def dumps(value: Any) -> str:
    """JSON text; numpy scalars and arrays become Python numbers and lists; NaN is kept (Python
    reads it back), and keys are sorted so equal data gives equal text."""
    return json.dumps(value, sort_keys=True, default=_plain, separators=(",", ":"))


def loads(text: str) -> Any:
    return json.loads(text)


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):           # numpy arrays and scalars
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"cannot store {type(value).__name__} as JSON: convert it to plain data first")


def order_values(rec: OrderRecord) -> dict[str, Any]:
    o = rec.order
    return {"client_order_id": o.id, "symbol": o.symbol, "side": int(o.side), "kind": o.kind.value,
            "quantity": o.quantity, "price": o.price, "created_at": o.created_at, "reduce_only": o.reduce_only,
            "tag": o.tag, "hedge": o.hedge, "expires_at": o.expires_at, "state": rec.state.value,
            "filled_quantity": rec.filled_quantity, "average_price": rec.average_price,
            "exchange_order_id": rec.exchange_order_id, "updated_at": rec.updated_at, "reason": rec.reason,
            "plan_id": rec.plan_id, "callback_rate": o.callback_rate}


def order_record(row: Row) -> OrderRecord:
    order = Order(id=row["client_order_id"], symbol=row["symbol"], side=Side(row["side"]),
                  kind=OrderKind(row["kind"]), quantity=row["quantity"], price=row["price"],
                  created_at=row["created_at"], reduce_only=bool(row["reduce_only"]), tag=row["tag"],
                  hedge=bool(row["hedge"]), expires_at=row["expires_at"], callback_rate=row["callback_rate"])
    return OrderRecord(order=order, plan_id=row["plan_id"], state=OrderState(row["state"]),
                       filled_quantity=row["filled_quantity"], average_price=row["average_price"],
                       exchange_order_id=row["exchange_order_id"], updated_at=row["updated_at"],
                       reason=row["reason"])


def fill_values(rec: FillRecord, recorded_at: int) -> dict[str, Any]:
    f = rec.fill
    return {"fill_key": rec.key, "client_order_id": f.order_id, "trade_id": rec.trade_id,
            "sequence": rec.sequence, "symbol": f.symbol, "side": int(f.side), "time": f.time, "price": f.price,
            "quantity": f.quantity, "fee": f.fee, "fee_currency": rec.fee_currency, "reduce_only": f.reduce_only,
            "tag": f.tag, "hedge": f.hedge, "recorded_at": recorded_at}


def fill_record(row: Row) -> FillRecord:
    fill = Fill(order_id=row["client_order_id"], symbol=row["symbol"], side=Side(row["side"]), time=row["time"],
                price=row["price"], quantity=row["quantity"], fee=row["fee"],
                reduce_only=bool(row["reduce_only"]), tag=row["tag"], hedge=bool(row["hedge"]))
    return FillRecord(fill=fill, trade_id=row["trade_id"], sequence=row["sequence"],
                      fee_currency=row["fee_currency"])


def plan_values(plan: PlanRecord) -> dict[str, Any]:
    return {"plan_id": plan.plan_id, "symbol": plan.symbol, "side": int(plan.side),
            "decision_time": plan.decision_time, "status": plan.status.value, "stop": plan.levels.stop,
            "stop_on_exchange": plan.stop_on_exchange, "body": dumps(_plans.unstructure(plan)),
            "updated_at": plan.updated_at}


def plan_record(body: str) -> PlanRecord:
    return _plans.structure(loads(body), PlanRecord)


def position_values(p: PositionRecord) -> dict[str, Any]:
    return {"symbol": p.symbol, "side": int(p.side), "hedge": p.hedge, "quantity": p.quantity,
            "entry_price": p.entry_price, "opened_at": p.opened_at, "updated_at": p.updated_at,
            "realised_pnl": p.realised_pnl, "fees": p.fees, "funding": p.funding,
            "liquidation_price": p.liquidation_price, "plan_id": p.plan_id}


def position_record(row: Row) -> PositionRecord:
    return PositionRecord(symbol=row["symbol"], side=Side(row["side"]), quantity=row["quantity"],
                          entry_price=row["entry_price"], opened_at=row["opened_at"], updated_at=row["updated_at"],
                          hedge=bool(row["hedge"]), realised_pnl=row["realised_pnl"], fees=row["fees"],
                          funding=row["funding"], liquidation_price=row["liquidation_price"],
                          plan_id=row["plan_id"])
