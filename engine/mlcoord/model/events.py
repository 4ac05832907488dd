"""What happens to positions besides fills: exit reasons, guard action kinds, funding payments.

The built-in exit reasons and guard action kinds are enums (one spelling, checked); a plugin's
own reason is a namespaced string, ``"<component>:<reason>"`` (``"fixedexits:time_stop"``), so a
breakdown by exit reason never confuses a plugin's reason with the engine's.
"""

from __future__ import annotations

import enum
import re

import attrs


class ExitReason(str, enum.Enum):
    """Why the engine closed (part of) a position. The value is what reports and the JSON show."""

    STOP_LOSS = "stop_loss"
    TRAILING_STOP = "trailing_stop"
    TAKE_PROFIT = "take_profit"
    PARTIAL_TAKE_PROFIT = "partial_take_profit"
    LIQUIDATION = "liquidation"
    SELL_SIGNAL = "sell_signal"             # spot: a SELL signal closes the long
    END_OF_DATA = "end_of_data"             # a backtest closes what is open at its last bar
    HEDGED_POSITION_CLOSED = "hedged position closed"   # a hedge leg never outlives its position
    CATCH_UP = "catch_up"                   # live: a close decided on a bar replayed after an outage, sent at
    #                                         once: "catch_up:" + its own reason ("catch_up:trailing_stop")

    def __str__(self) -> str:
        return self.value


class GuardActionKind(str, enum.Enum):
    """What a portfolio guard may ask for on a bar (:class:`mlcoord.model.GuardAction`)."""

    OPEN_HEDGE = "open_hedge"
    CLOSE_HEDGE = "close_hedge"
    CLOSE_ALL = "close_all"

    def __str__(self) -> str:
        return self.value


_NAMESPACED = re.compile(r"^[A-Za-z0-9_.\-]+:[^\s:][^\n]*$")


def plugin_reason(component: str, reason: str) -> str:
    """A plugin's own exit reason, namespaced by its component name: ``"fixedexits:time_stop"``."""
    text = f"{component}:{reason}"
    if not _NAMESPACED.match(text):
        raise ValueError(f"exit reason {reason!r} of component {component!r} must be a non-empty single-line text")
    return text


@attrs.frozen
class FundingPayment:
    """Funding charged (``amount`` > 0) or paid out (< 0) on one position at one funding time."""

    symbol: str
    time: int
    amount: float
    hedge: bool = False
