"""The domain model: values that cross plugin boundaries, orders, instruments, events, intents.

Every name plugins and the engine use is re-exported here (``from mlcoord.model import Fill``);
the submodules say where each concern lives. Nothing here imports the rest of mlcoord.
"""

from mlcoord.model.values import *  # noqa: F401,F403
from mlcoord.model.values import __all__ as _values
from mlcoord.model.events import ExitReason, FundingPayment, GuardActionKind, plugin_reason
from mlcoord.model.intents import (
    CancelEntries,
    ClosePosition,
    EntryOrder,
    Intent,
    OpenHedge,
    CloseHedge,
    PlaceEntryPlan,
    SetLevels,
)

__all__ = list(_values) + [
    "ExitReason", "FundingPayment", "GuardActionKind", "plugin_reason",
    "Intent", "EntryOrder", "PlaceEntryPlan", "CancelEntries", "SetLevels", "OpenHedge", "CloseHedge",
    "ClosePosition",
]
