"""What registered components look like: the protocols the engine calls on the hot path.

"Prepare once, decide per bar": per-symbol components have a vectorised, causal
``prepare(data)`` that the engine calls once per series (a backtest) or once per cycle on a
rolling window (live). Whatever ``prepare`` computes for bar ``i`` may use bars ``0..i`` only; the
conformance checks compare ``prepare(data.head(k))`` with the first ``k`` rows of
``prepare(data)``. The cheap, stateful part then runs per bar.
"""

from __future__ import annotations


from typing import Callable, Mapping, Optional, Protocol, Sequence, runtime_checkable

import attrs
import numpy as np

from mlcoord.candles import Candles, higher_timeframe_index
from mlcoord.context import ContextSeries
from mlcoord.learning import EventSpec, Outcome
from mlcoord.market_inputs import MarketInputs
from mlcoord.model import (
    Action,
    Decision,
    EntryPlan,
    ExitLevels,
    GuardAction,
    MarketContext,
    Side,
    Signal,
    Sizing,
    SizingRequest,
    Trade,
    Vote,
)


def _readonly(array) -> np.ndarray:
    array = np.asarray(array)
    if array.flags.writeable:
        array = array.view()
        array.flags.writeable = False
    return array


@attrs.frozen(eq=False)
class MarketData:
    """One symbol's closed base bars, their market context and higher timeframes.

    ``timeframes`` maps e.g. ``"4h"`` to candles built from completed base bars only, and
    ``timeframe_index[tf][i]`` is the last higher bar complete at the close of base bar ``i``
    (-1 if none), so a component indexing through it cannot see an unfinished 4h or 1d bar.
    ``inputs`` (:class:`~mlcoord.market_inputs.MarketInputs`) holds what else the run has for the
    symbol (funding, spot and perpetual prices, other symbols' candles), each possibly absent;
    :func:`mlcoord.feature_matrix.feature_table` reads them causally.
    """

    candles: Candles
    context: ContextSeries
    timeframes: Mapping[str, Candles] = attrs.field(factory=dict)
    timeframe_index: Mapping[str, np.ndarray] = attrs.field(factory=dict)
    event: EventSpec = attrs.field(factory=EventSpec)   # what ML probabilities refer to
    #: bars where votes may be asked (the non-HOLD signal bars), so a voter can batch its work;
    #: None means any bar. A hint only: answers must not depend on it.
    focus: Optional[np.ndarray] = None
    inputs: MarketInputs = attrs.field(factory=MarketInputs, kw_only=True)

    def __attrs_post_init__(self) -> None:
        # what every plugin is handed: mappings and arrays that refuse writes (a plugin that wrote
        # into them would change what the next plugin, or the engine, sees)
        from mlcoord.views import FrozenDict

        object.__setattr__(self, "timeframes", FrozenDict(self.timeframes))
        object.__setattr__(self, "timeframe_index", FrozenDict({k: _readonly(v) for k, v in self.timeframe_index.items()}))
        if self.focus is not None:
            object.__setattr__(self, "focus", _readonly(self.focus))

    @property
    def symbol(self) -> str:
        return self.candles.symbol

    def __len__(self) -> int:
        return len(self.candles)

    def head(self, k: int) -> "MarketData":
        """The first ``k`` bars, as if the data ended there (what a live run would have seen)."""
        from mlcoord.context import market_context  # local: avoid a cycle at import

        candles = self.candles.slice(0, k, own=True)     # a plugin that writes to it reaches nothing else
        context = market_context(candles.high, candles.low, candles.close, self.context.options)
        frames, index = {}, {}
        for tf, higher in self.timeframes.items():
            end = int(np.searchsorted(higher.time, candles.time[-1] + candles.timeframe_ns, "right")) if k else 0
            frames[tf] = higher.slice(0, end, own=True)
            index[tf] = self.timeframe_index[tf][:k]
        focus = None if self.focus is None else self.focus[self.focus < k]
        inputs = self.inputs.until(int(candles.time[-1]) + candles.timeframe_ns if k else -(1 << 62))
        return MarketData(candles, context, frames, index, self.event, focus, inputs=inputs)


def build_market_data(candles: Candles, timeframes: Sequence[str] = (), context_options=None,
                      event: Optional[EventSpec] = None, inputs: Optional[MarketInputs] = None) -> MarketData:
    """Context plus higher timeframes resampled from completed base bars only; ``inputs``: the
    symbol's other series (none by default)."""
    from mlcoord.candles import resample, timeframe_to_ns
    from mlcoord.context import ContextOptions, market_context

    context = market_context(candles.high, candles.low, candles.close, context_options or ContextOptions())
    frames, index = {}, {}
    for tf in timeframes:
        if timeframe_to_ns(tf) <= candles.timeframe_ns:
            continue
        higher = resample(candles, tf)
        frames[tf] = higher
        index[tf] = higher_timeframe_index(candles, higher)
    return MarketData(candles, context, frames, index, event or EventSpec(), inputs=inputs or MarketInputs())


@attrs.frozen(eq=False)
class SignalSeries:
    """One signal per bar: ``action`` (int8 of :class:`Action`), ``confidence`` and reasons.

    ``explain(i)`` gives the reasons for bar ``i``; it is only called for bars that matter
    (non-HOLD), so building words for 50,000 bars is never on the hot path.
    """

    action: np.ndarray
    confidence: np.ndarray
    explain: Callable[[int], Sequence[str]]

    def __len__(self) -> int:
        return len(self.action)

    def at(self, i: int, source: str = "") -> Signal:
        return Signal(Action(int(self.action[i])), float(self.confidence[i]), tuple(self.explain(i)), source)


class PositionView(Protocol):
    """Read-only view of an open position handed to exit managers (valid during the call)."""

    symbol: str
    side: Side
    entry_price: float          # average of filled entries
    quantity: float             # currently open, base units
    opened_index: int           # bar index of the first fill
    best_price: float           # highest high (long) / lowest low (short) since the first fill
    entries_filled: int
    entries_planned: int
    hedge: bool                 # a hedge leg (guards see them in ``portfolio.positions``; exit managers never do)


class PortfolioView(Protocol):
    """Read-only view of the portfolio handed to guards and sizers (valid during the call)."""

    equity: float
    peak_equity: float
    cash: float
    day_start_equity: float
    time: int                   # ns since epoch of the current bar

    @property
    def drawdown(self) -> float: ...
    def open_positions(self) -> int:
        """Filled directional positions (hedge legs are not counted)."""
    def committed_trades(self) -> int:
        """Open positions plus plans with working, unfilled entries (approved earlier in this bar
        included): the count entry caps use."""
    def committed_exposure(self) -> float:
        """Quote notional of positions net of their hedge legs plus every working entry order:
        the exposure entry caps use."""
    def exposure(self, symbol: Optional[str] = None) -> float:
        """Net notional (long minus short, hedges included), quote currency."""
    def gross_exposure(self) -> float: ...
    def hedged(self, symbol: Optional[str] = None) -> bool: ...
    def last_price(self, symbol: str) -> float: ...
    def symbols(self) -> Sequence[str]: ...


@runtime_checkable
class SignalSource(Protocol):
    def prepare(self, data: MarketData) -> SignalSeries:
        """Signals for every bar of ``data``, causally."""


class Voter(Protocol):
    def vote(self, i: int, signal: Signal) -> Optional[Vote]:
        """This component's vote on ``signal`` at bar ``i`` (None to abstain).

        Set ``Vote.p_up`` / ``Vote.p_down`` to the probabilities of ``data.event`` in each direction;
        ``action``/``confidence`` are the direction it favours and that direction's probability.
        """


@runtime_checkable
class MLComponent(Protocol):
    """An ML voter. Optional methods the engine calls when present:

    * ``learn(outcome: Outcome)`` - a past vote's outcome, handed over only once its horizon closed;
    * ``on_trade_closed(trade, decision)`` - a closed trade (realised PnL);
    * ``state() -> dict`` / ``load_state(state: dict)`` - JSON-able learning state, persisted
      between runs and restored at start;
    * ``trained_until() -> int | None`` - the last bar time (ns) its model was trained on, so a
      backtest's statistics can start after it (no in-sample results).
    """

    def prepare(self, data: MarketData) -> Voter:
        """Precompute (causally) what votes at any bar of ``data`` need."""


@runtime_checkable
class Calibrator(Protocol):
    """Maps the ensemble's raw confidence to the probability of the event. May also define
    ``state()`` / ``load_state(state)`` like ML components."""

    def calibrate(self, raw: float, signal: Signal) -> float:
        """The probability, in [0, 1], that ``signal``'s move happens given raw confidence."""

    def learn(self, raw: float, hit: bool, direction: int) -> None:
        """Outcome feedback: the event a past ``raw`` confidence predicted in ``direction``
        (+1 / -1) did (not) happen. A calibrator may instead define ``learn_outcome(outcome)``
        (the whole :class:`~mlcoord.learning.Outcome`, trade labels included: its
        ``raw_confidence`` and ``direction`` are the decision's); the engine then calls that."""


@runtime_checkable
class EntryPlanner(Protocol):
    def plan(self, signal: Signal, price: float, context: MarketContext) -> EntryPlan:
        """Entry ladder for an approved signal at ``price`` (the decision bar's close)."""


@runtime_checkable
class Sizer(Protocol):
    def size(self, request: SizingRequest) -> Sizing:
        """Quantity for the whole plan, or a veto. Has the final say."""


class PositionManager(Protocol):
    def initial(self, i: int, side: Side, plan: EntryPlan) -> ExitLevels:
        """Stop loss and take profit for a new plan decided at bar ``i``."""

    def update(self, i: int, position: PositionView, levels: ExitLevels) -> ExitLevels:
        """Levels after bar ``i`` closed. The stop may only tighten; the engine enforces it."""


@runtime_checkable
class ExitManager(Protocol):
    def prepare(self, data: MarketData) -> PositionManager:
        """Precompute (causally) support, resistance, volatility... for ``data``."""


@runtime_checkable
class EntryGuard(Protocol):
    """A rule that may refuse an entry. Optional methods the engine calls when present:
    ``on_trade_closed(trade, decision)``, and ``state() -> dict`` / ``load_state(state: dict)``:
    what it must not forget when a live bot restarts (locks, cooldowns), JSON-able."""

    def allow_entry(self, symbol: str, side: Side, portfolio: PortfolioView) -> Optional[str]:
        """``None`` to allow an entry, or the reason it is refused."""


@runtime_checkable
class PortfolioWatcher(Protocol):
    """A portfolio-level rule that sees every bar, independent of signals. Optional methods as for
    :class:`EntryGuard`. Price statistics need not be saved: a live session first replays its
    warm-up history through ``on_bar`` as flat bars (actions ignored)."""

    def on_bar(self, portfolio: PortfolioView) -> Sequence[GuardAction]:
        """Called after every bar's fills and marking; returns actions (usually none)."""


ROLE_PROTOCOLS = {
    "signal_sources": SignalSource,
    "ml_components": MLComponent,
    "calibrators": Calibrator,
    "entry_planners": EntryPlanner,
    "sizers": Sizer,
    "exit_managers": ExitManager,
    "entry_guards": EntryGuard,
    "portfolio_watchers": PortfolioWatcher,
}

__all__ = [
    "MarketData", "build_market_data", "SignalSeries", "PositionView", "PortfolioView",
    "SignalSource", "Voter", "MLComponent", "Calibrator", "EntryPlanner", "Sizer",
    "PositionManager", "ExitManager", "EntryGuard", "PortfolioWatcher", "ROLE_PROTOCOLS",
    "Action", "Decision", "Trade", "EventSpec", "Outcome",
]
