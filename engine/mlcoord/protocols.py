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


__all__ = ["Stateful", "OutcomeLearner", "Learner", "Trainable", "TradeObserver", "ExposesFeatures"]
