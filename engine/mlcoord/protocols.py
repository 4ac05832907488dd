"""Optional protocols: methods the engine calls on a component when it has them.

The role protocols in :mod:`mlcoord.components` list what a component must implement; these list
what it may add. They are ``runtime_checkable`` (the engine and the conformance kit test
``isinstance(component, Stateful)``) and a type checker understands them, so a plugin can declare
``class MyVoter(MLComponent, Stateful)`` and have its signatures checked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Protocol, Sequence, runtime_checkable

from mlcoord.learning import Outcome
from mlcoord.model import Decision, Trade


@runtime_checkable
class Stateful(Protocol):
    """What a component must not forget across runs (``--state``) or a live bot's restart:
    ``state()`` returns JSON-able data, ``load_state`` restores it (and may refuse an unknown
    version with a ``ValueError``)."""

    def state(self) -> dict[str, Any]: ...

    def load_state(self, state: dict[str, Any]) -> None: ...


@runtime_checkable
class OutcomeLearner(Protocol):
    """An ML component learning online: ``learn(outcome)`` once a voted-on decision's outcome is
    known (its price horizon has closed, so learning from it cannot look ahead)."""

    def learn(self, outcome: Outcome) -> None: ...


@runtime_checkable
class Learner(Protocol):
    """Reports how recent its training data is: ``trained_until()`` is the time (ns) of the newest
    bar it learned from, or None; a backtest's statistics start after it."""

    def trained_until(self) -> Optional[int]: ...


@runtime_checkable
class Trainable(Protocol):
    """Has a model ``mlcoord train --component NAME`` fits: ``train(datasets, out, progress)``
    writes the artifact to ``out`` and returns a report (printed key by key)."""

    def train(self, datasets: Sequence[Any], out: Path,
              progress: Optional[Callable[[dict], None]] = None) -> dict[str, Any]: ...


@runtime_checkable
class TradeObserver(Protocol):
    """Told when a position fully closes, with the decision that opened it (None if adopted)."""

    def on_trade_closed(self, trade: Trade, decision: Optional[Decision]) -> None: ...


@runtime_checkable
class ExposesFeatures(Protocol):
    """A signal source showing the indicator series behind its signals (one float per bar each,
    computed as in ``prepare``), so ``mlcoord check recursive`` can measure how much each depends
    on the warm-up length."""

    def features(self, data: Any) -> Mapping[str, Any]: ...


@runtime_checkable
class SkipsFlatBars(Protocol):
    """A portfolio watcher that takes a stretch of *flat* bars at once.

    Most of a backtest's bars pass with nothing held, no order working, no hedge to cover and no
    entry signal; stepping them one by one costs more than everything else in a plain backtest.
    After a bar where the portfolio was flat, a backtest asks every watcher
    ``can_skip_flat_bars(portfolio)``: True promises that ``on_bar`` on each of the next flat bars
    would return no action and change nothing but the prices the watcher keeps (the portfolio's
    equity, drawdown, exposure and day-start equity cannot move while it is flat, and the day's
    start equity only resets to that same equity). If every watcher says so, the backtest calls
    ``skip_flat_bars(portfolio, times, closes)`` with the stretch's bar times (ns) and each priced
    symbol's closes (read-only arrays, in ``portfolio.symbols()`` order) instead of ``on_bar`` per
    bar; the portfolio still shows the bar before the stretch. A watcher without these methods is
    stepped bar by bar, as paper and live sessions always are; both paths must leave the watcher
    in the same state (the conformance kit and the engine's tests compare them)."""

    def can_skip_flat_bars(self, portfolio: Any) -> bool: ...

    def skip_flat_bars(self, portfolio: Any, times: Any, closes: Mapping[str, Any]) -> None: ...


@runtime_checkable
class ExposesLocks(Protocol):
    """A guard showing the pairs it refuses entries on (the API's ``/locks``): pair -> (until ns,
    why); ``*`` stands for every pair (a daily loss limit, say)."""

    def locks(self) -> Mapping[str, tuple[int, str]]: ...


@runtime_checkable
class ReleasesLocks(Protocol):
    """A guard letting an operator lift one of its locks early (``DELETE /api/v1/locks/PAIR``):
    ``unlock(pair)`` returns True if a lock was lifted. Without it, a guard's own locks are
    listed but only lapse by themselves."""

    def unlock(self, pair: str) -> bool: ...


@runtime_checkable
class Reconfigurable(Protocol):
    """A component taking new options in place, keeping what it learned or holds (a running bot's
    config reload, ``POST /api/v1/reload``): ``reconfigure(options)`` gets the options object its
    factory would get from the new ``[plugins.NAME]`` table. Without it, a change of its options
    needs a restart."""

    def reconfigure(self, options: Any) -> None: ...


__all__ = ["Stateful", "OutcomeLearner", "Learner", "Trainable", "TradeObserver", "ExposesFeatures",
           "SkipsFlatBars", "ExposesLocks", "ReleasesLocks", "Reconfigurable"]
