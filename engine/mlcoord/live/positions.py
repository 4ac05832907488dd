"""A position built by applying fills: the one rule the store and the v3 migration share."""

from __future__ import annotations

from typing import Optional

import attrs

from mlcoord.model import Fill
from mlcoord.live.records import PositionRecord

#: a remaining quantity below this fraction of the position before the fill counts as closed
#: (float residue of summing exchange quantities, never a real lot)
CLOSED_TOLERANCE = 1e-9


def apply_fill(position: Optional[PositionRecord], fill: Fill, plan_id: Optional[str],
               now: int) -> tuple[Optional[PositionRecord], float]:
    """The position after ``fill``, or None once it is closed; and the quantity the fill could not
    apply (a reduce-only fill larger than the position, or one with no position at all: the
    caller logs it; the fill itself stays recorded)."""
    if not fill.reduce_only:
        if position is None or position.quantity <= 0:
            return PositionRecord(symbol=fill.symbol, side=fill.side, quantity=fill.quantity,
                                  entry_price=fill.price, opened_at=fill.time, updated_at=now,
                                  hedge=fill.hedge, fees=fill.fee, plan_id=plan_id), 0.0
        quantity = position.quantity + fill.quantity
        entry = (position.entry_price * position.quantity + fill.price * fill.quantity) / quantity
        return attrs.evolve(position, quantity=quantity, entry_price=entry, updated_at=now,
                            fees=position.fees + fill.fee, plan_id=plan_id or position.plan_id), 0.0
    if position is None:
        return None, fill.quantity
    closed = min(fill.quantity, position.quantity)
    remaining = position.quantity - closed
    pnl = int(position.side) * (fill.price - position.entry_price) * closed
    if remaining <= CLOSED_TOLERANCE * position.quantity:
        return None, fill.quantity - closed
    return attrs.evolve(position, quantity=remaining, updated_at=now, fees=position.fees + fill.fee,
                        realised_pnl=position.realised_pnl + pnl), fill.quantity - closed
