"""mlcoord: a plugin-based trading engine in which ML improves entries.

This module is the public face for plugin authors: the hook marker, the domain types, the
component protocols and the causal feature helpers. Plugins import from here (and
``mlcoord.features``), never from ``mlcoord.backtest``, ``mlcoord.cli`` or ``mlcoord.live``.
"""

from mlcoord.hookspecs import HOOKS_VERSION, hookimpl
from mlcoord.model import (
    Action,
    Decision,
    EntryLeg,
    EntryPlan,
    ExitLevels,
    Fill,
    GuardAction,
    MarketContext,
    Order,
    PortfolioState,
    PositionExit,
    PositionState,
    Regime,
    Side,
    Signal,
    Sizing,
    SizingRequest,
    Trade,
    Vote,
)

__version__ = "0.1.0"

__all__ = [
    "HOOKS_VERSION", "hookimpl", "__version__",
    "Action", "Decision", "EntryLeg", "EntryPlan", "ExitLevels", "Fill", "GuardAction",
    "MarketContext", "Order", "PortfolioState", "PositionExit", "PositionState", "Regime", "Side", "Signal", "Sizing", "SizingRequest", "Trade", "Vote",
]
