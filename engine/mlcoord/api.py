"""mlcoord.api: everything a plugin may use, in one import.

Plugins (the built-ins included) import from here and nowhere else in mlcoord; an import
contract checks it in CI, and ``tests/test_api_surface.py`` keeps a snapshot of ``__all__``, so a
change to this surface is a deliberate, reviewed diff. Nothing here imports the backtest, live
trading or the command line.

A signal source needs five names::

    from mlcoord.api import MarketData, SignalSeries, hookimpl

    class Breakout:
        def prepare(self, data: MarketData) -> SignalSeries:
            ...                                   # one action and confidence per bar, causally

    @hookimpl
    def register_signal_sources(register):        # the hook, and the register callable
        register("breakout", lambda options: Breakout())

The conformance kit (``parametrize_with_checks``, ``plugin_checks``, ``ConformanceError``) is
imported from here on first use, so a plugin's runtime does not load it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlcoord import features
from mlcoord.candles import Candles, load_candles
from mlcoord.components import (
    Calibrator,
    EntryGuard,
    EntryPlanner,
    ExitManager,
    MarketData,
    MLComponent,
    PortfolioView,
    PortfolioWatcher,
    PositionManager,
    PositionView,
    SignalSeries,
    SignalSource,
    Sizer,
    Voter,
    build_market_data,
)
from mlcoord.context import ContextSeries
from mlcoord.datasets import bundled_path
from mlcoord.feature_matrix import (ALL_FEATURES, FEATURES, MARKET_FEATURES, available_features, feature_matrix,
                                    feature_table)
from mlcoord.funding import FundingSeries
from mlcoord.hookspecs import HOOKS_VERSION, hookimpl
from mlcoord.learning import EventSpec, Outcome, TradeLabel, auc, event_happened, event_labels, log_loss
from mlcoord.market_inputs import MarketInputs
from mlcoord.model import (
    Action,
    Decision,
    EntryLeg,
    EntryPlan,
    ExitLevels,
    ExitReason,
    GuardAction,
    GuardActionKind,
    MarketContext,
    PositionExit,
    Regime,
    Side,
    Signal,
    Sizing,
    SizingRequest,
    Trade,
    Vote,
    plugin_reason,
)
from mlcoord.option_checks import AccountSettings, ChecksAccount, flag, fraction, integer, number
from mlcoord.protocols import (ExposesFeatures, ExposesLocks, Learner, OutcomeLearner, Reconfigurable, ReleasesLocks,
                               SkipsFlatBars, Stateful, TradeObserver, Trainable)
from mlcoord.registry import ComponentContext
from mlcoord.river_state import river_weights, set_river_weights
from mlcoord.trade_label import atr_trade_labels, trade_labels
from mlcoord.views import ReadOnlyViewError

if TYPE_CHECKING:  # pragma: no cover - loaded on first use below; names for type checkers
    from mlcoord.sequence import (
        FitOptions,
        SequenceComponent,
        SequenceModel,
        SequenceOptions,
        SequenceVoter,
        import_torch,
        sigmoid,
    )
    from mlcoord.testing import CHECKS, ConformanceError, component_checks, parametrize_with_checks, plugin_checks

_KIT = ("parametrize_with_checks", "plugin_checks", "component_checks", "ConformanceError", "CHECKS")
_SEQUENCE = ("SequenceModel", "SequenceComponent", "SequenceOptions", "SequenceVoter", "FitOptions",
             "import_torch", "sigmoid")


def __getattr__(name: str) -> Any:
    """Parts only some plugins need, loaded on first use: the conformance kit
    (``from mlcoord.api import parametrize_with_checks``) and the sequence-model helpers (only a
    sequence-model plugin pays for importing them)."""
    if name in _KIT:
        from mlcoord import testing

        return getattr(testing, name)
    if name in _SEQUENCE:
        from mlcoord import sequence

        return getattr(sequence, name)
    raise AttributeError(f"module 'mlcoord.api' has no attribute {name!r}")


__all__ = [
    # hooks
    "hookimpl", "HOOKS_VERSION", "ComponentContext",
    # what components receive
    "MarketData", "Candles", "ContextSeries", "MarketInputs", "FundingSeries", "PortfolioView", "PositionView",
    "ReadOnlyViewError",
    # what components return
    "SignalSeries", "Signal", "Vote", "EntryLeg", "EntryPlan", "ExitLevels", "PositionExit", "Sizing",
    "SizingRequest", "GuardAction", "GuardActionKind", "ExitReason", "plugin_reason",
    # domain values
    "Action", "Side", "Regime", "MarketContext", "Decision", "Trade",
    # component protocols (required methods) and optional ones
    "SignalSource", "MLComponent", "Voter", "Calibrator", "EntryPlanner", "Sizer", "ExitManager",
    "PositionManager", "EntryGuard", "PortfolioWatcher",
    "Stateful", "Learner", "OutcomeLearner", "TradeObserver", "Trainable", "ExposesFeatures", "SkipsFlatBars",
    "ExposesLocks", "ReleasesLocks", "Reconfigurable",
    # causal features and learning targets
    "features", "FEATURES", "feature_matrix", "MARKET_FEATURES", "ALL_FEATURES", "feature_table", "available_features",
    "EventSpec", "Outcome", "TradeLabel", "trade_labels", "atr_trade_labels", "event_labels", "event_happened",
    "auc", "log_loss",
    # options and online-learning state
    "number", "fraction", "integer", "flag", "AccountSettings", "ChecksAccount", "river_weights",
    "set_river_weights",
    # sequence-model voters (mlcoord.sequence): a plugin brings the network, the engine the rest
    "SequenceModel", "SequenceComponent", "SequenceOptions", "SequenceVoter", "FitOptions", "import_torch",
    "sigmoid",
    # data for training scripts and checks on real bars
    "bundled_path", "load_candles", "build_market_data",
    # the conformance kit (loaded on first use)
    *_KIT,
]
