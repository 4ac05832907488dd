"""mlcoord: a plugin-based trading engine in which ML improves entries.

Plugins import from :mod:`mlcoord.api`, the one public module (its ``__all__`` is the reviewed
surface). The names below stay importable from the package itself for plugins written before
that module existed; new code should not rely on them.
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
