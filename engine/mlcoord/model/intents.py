"""Intents: what the trading loop asks a venue to do after a closed bar.

The loop (:mod:`mlcoord.loop`) decides; a venue (:mod:`mlcoord.venue`) executes. An intent never
carries a fill or a balance: a simulated venue fills it from the next bar, an exchange venue turns
it into orders. Every intent names the symbol it acts on and, where it closes something, why.
"""

from __future__ import annotations

from typing import Optional, Union

import attrs

from mlcoord.model.values import Decision, ExitLevels, Side


def _positive(instance, attribute, value):
    if not (isinstance(value, (int, float)) and value > 0 and value < float("inf")):
        raise ValueError(f"{type(instance).__name__}.{attribute.name} must be a finite number > 0, got {value!r}")


def _fraction(instance, attribute, value):
    if not (isinstance(value, (int, float)) and 0 < value <= 1):
        raise ValueError(f"{type(instance).__name__}.{attribute.name} must be in (0, 1], got {value!r}")


@attrs.frozen
class EntryOrder:
    """One rung of a plan's ladder as an order: at ``price`` (a limit) or at market."""

    order_id: str
    price: float
    quantity: float = attrs.field(validator=_positive)
    market: bool
    tag: str                         # "entry:1/3"


@attrs.frozen
class PlaceEntryPlan:
    """Enter ``symbol`` on ``side`` with ``orders``; unfilled limit orders expire after
    ``expires_after_bars`` bars from the deciding bar ``bar_index``. ``levels`` protect the
    position from its first fill."""

    symbol: str
    plan_id: str
    side: Side
    orders: tuple[EntryOrder, ...]
    levels: ExitLevels
    decision: Decision
    bar_index: int
    time: int
    expires_after_bars: int
    entry_reason: str = ""           # the signal's decisive reason (trade breakdowns group by it)


@attrs.frozen
class CancelEntries:
    """Cancel the plan's unfilled entry orders (what is filled stays). ``beyond``: only the limit
    legs the stop has passed, at or beyond that price (a long's buy legs at or below it, a short's
    sell legs at or above it): the loop asks for it the bar a stop moves past a resting leg, so no
    venue fills a leg its own stop would close at once (issue 14)."""

    symbol: str
    reason: str
    beyond: Optional[float] = None

    def covers(self, side: int, price: Optional[float], market: bool = False) -> bool:
        """Whether a working entry leg of a ``side`` plan at ``price`` is cancelled by this intent."""
        if self.beyond is None:
            return True
        if market or price is None:
            return False
        return price <= self.beyond if side > 0 else price >= self.beyond


#: the reason of a :class:`CancelEntries` for legs a moved stop has passed
STOP_PASSED = "stop_passed"


@attrs.frozen
class SetLevels:
    """Protect ``symbol``'s position with these levels from the next bar (stop, take profit,
    partial take profit, trailing distance)."""

    symbol: str
    levels: ExitLevels


@attrs.frozen
class OpenHedge:
    """Hold a hedge leg of ``quantity`` on the side opposite ``symbol``'s position (resizing an
    existing leg to it)."""

    symbol: str
    quantity: float = attrs.field(validator=_positive)
    reason: str = ""


@attrs.frozen
class CloseHedge:
    symbol: str
    reason: str


@attrs.frozen
class ClosePosition:
    """Close ``fraction`` of ``symbol``'s position at market, for ``reason`` (an
    :class:`~mlcoord.model.events.ExitReason` value or a plugin's namespaced reason)."""

    symbol: str
    reason: str
    fraction: float = attrs.field(default=1.0, validator=_fraction)
    cancel_entries: bool = True


Intent = Union[PlaceEntryPlan, CancelEntries, SetLevels, OpenHedge, CloseHedge, ClosePosition]

__all__ = ["EntryOrder", "PlaceEntryPlan", "CancelEntries", "STOP_PASSED", "SetLevels", "OpenHedge", "CloseHedge",
           "ClosePosition", "Intent"]
