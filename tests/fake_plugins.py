"""Tiny fake plugins for the engine tests: an alternative sizer, broken and misbehaving plugins.

This module is itself the ``altrisk`` plugin (its module-level hook registers the ``altsizer``
sizer); the other fakes are plugin classes, registered as instances via
``load_plugins(extra_plugins={name: Class()})``.
"""

from __future__ import annotations

import threading

import numpy as np

import mlcoord
from mlcoord import GuardAction, Signal, Sizing, SizingRequest, Vote
from mlcoord.components import SignalSeries

MLCOORD_HOOKS_VERSION = 1


# -- the alternative risk manager (this module is the plugin) ----------------------------------
class AltSizer:
    """Risks a fixed 0.5 % of equity per trade, nothing else."""

    def __init__(self, options=None):
        self.calls = 0

    def size(self, request: SizingRequest) -> Sizing:
        self.calls += 1
        loss_per_unit = abs(request.plan.average_price - request.stop)
        qty = 0.005 * request.equity / loss_per_unit if loss_per_unit > 0 else 0.0
        qty = min(qty, 0.2 * request.equity / request.plan.average_price)
        return Sizing(quantity=qty, risk=qty * loss_per_unit, reasons=("altsizer: 0.5% risk",))


@mlcoord.hookimpl
def register_sizers(register):
    register("altsizer", AltSizer, description="fixed 0.5% risk (test double)")


# -- fake entry points -----------------------------------------------------------------------
class FakeEntryPoint:
    """Looks enough like an ``importlib.metadata.EntryPoint``: ``.name`` and ``.load()``."""

    def __init__(self, name: str, target=None, error: BaseException | None = None):
        self.name, self._target, self._error = name, target, error
        self.value = f"fake_{name}"

    def load(self):
        if self._error is not None:
            raise self._error
        return self._target


# -- plugins that break the hook contract ----------------------------------------------------
class MisspelledHook:
    """``register_signal_source`` (singular) is not a hook: pluggy's check_pending rejects it."""

    @mlcoord.hookimpl
    def register_signal_source(self, register):  # pragma: no cover - must never be called
        raise AssertionError("a misspelled hook must never run")


class FutureHooks:
    """Written for a hooks version this engine does not have."""

    MLCOORD_HOOKS_VERSION = 99

    @mlcoord.hookimpl
    def register_sizers(self, register):  # pragma: no cover - must never be called
        register("futuresizer", AltSizer)


class Duplicate:
    """Registers a component under a name another plugin already uses."""

    def __init__(self, name: str = "dca"):
        self.component = name

    @mlcoord.hookimpl
    def register_entry_planners(self, register):
        register(self.component, AltSizer)


# -- components that fail at run time ------------------------------------------------------------
class RaisingSource:
    def __init__(self, options=None):
        pass

    def prepare(self, data):
        raise RuntimeError("boom in prepare")


class SilentSource:
    """A valid source that never has an opinion (HOLD on every bar)."""

    def __init__(self, options=None):
        pass

    def prepare(self, data):
        n = len(data)
        return SignalSeries(np.zeros(n, dtype=np.int8), np.zeros(n), lambda i: [])


class NonsenseSource:
    """``kind``: "confidence" (7.0 on a BUY), "action" (5) or "length" (one bar short)."""

    def __init__(self, kind: str):
        self.kind = kind

    def prepare(self, data):
        n = len(data)
        action = np.zeros(n, dtype=np.int8)
        confidence = np.zeros(n)
        action[n // 2] = 1
        confidence[n // 2] = 0.9
        if self.kind == "confidence":
            confidence[n // 2] = 7.0
        elif self.kind == "action":
            action[n // 2] = 5
        elif self.kind == "length":
            action, confidence = action[:-1], confidence[:-1]
        return SignalSeries(action, confidence, lambda i: ["nonsense"])


class RaisingVoter:
    def vote(self, i: int, signal: Signal):
        raise RuntimeError("boom in vote")


class NonsenseVoter:
    """Returns a Vote whose confidence (7.0) slipped past validation, or a plain int."""

    def __init__(self, kind: str):
        self.kind = kind

    def vote(self, i: int, signal: Signal):
        if self.kind == "int":
            return 5
        vote = Vote("nonsense", signal.action, 0.5)
        object.__setattr__(vote, "confidence", 7.0)
        return vote


class VoterComponent:
    def __init__(self, voter):
        self.voter = voter

    def prepare(self, data):
        return self.voter


class RaisingGuard:
    def __init__(self, options=None):
        self.on_bar_calls = 0

    def on_bar(self, portfolio):
        self.on_bar_calls += 1
        raise RuntimeError("boom in on_bar")

    def allow_entry(self, symbol, side, portfolio):
        return None


class NonsenseGuard:
    """Answers ``on_bar`` with ``answer`` (not a list of GuardAction) on every bar."""

    def __init__(self, answer):
        self.answer = answer

    def on_bar(self, portfolio):
        return self.answer

    def allow_entry(self, symbol, side, portfolio):
        return None


class RaisingUpdates:
    """Wraps the real exits' position manager; ``update`` always raises."""

    def __init__(self, inner):
        self.inner = inner

    def initial(self, i, side, plan):
        return self.inner.initial(i, side, plan)

    def update(self, i, position, levels):
        raise RuntimeError("boom in update")


class BrokenExits:
    def __init__(self, options=None):
        from mlcoord_exits import ExitManager

        self.inner = ExitManager()

    def prepare(self, data):
        return RaisingUpdates(self.inner.prepare(data))


class Components:
    """One plugin registering any fakes by role: ``Components(signal_sources={"x": factory})``.

    Roles: ``signal_sources``, ``ml_components``, ``exit_managers``, ``entry_planners``,
    ``sizers``, ``entry_guards``, ``portfolio_watchers``, and ``portfolio_guards`` (a fake guard
    playing both guard roles: the same factory in both hooks is one component)."""

    def __init__(self, **by_role):
        self.by_role = by_role

    def _register(self, register, *roles):
        for role in roles:
            for name, factory in self.by_role.get(role, {}).items():
                register(name, factory)

    @mlcoord.hookimpl
    def register_signal_sources(self, register):
        self._register(register, "signal_sources")

    @mlcoord.hookimpl
    def register_ml_components(self, register):
        self._register(register, "ml_components")

    @mlcoord.hookimpl
    def register_exit_managers(self, register):
        self._register(register, "exit_managers")

    @mlcoord.hookimpl
    def register_entry_planners(self, register):
        self._register(register, "entry_planners")

    @mlcoord.hookimpl
    def register_sizers(self, register):
        self._register(register, "sizers")

    @mlcoord.hookimpl
    def register_entry_guards(self, register):
        self._register(register, "entry_guards", "portfolio_guards")

    @mlcoord.hookimpl
    def register_portfolio_watchers(self, register):
        self._register(register, "portfolio_watchers", "portfolio_guards")


class AllRoles(Components):
    """:class:`Components` that registers calibrators too (``calibrators={...}``)."""

    @mlcoord.hookimpl
    def register_calibrators(self, register):
        self._register(register, "calibrators")


def always_guard_action(kind: str = "open_hedge", fraction: float = 5.0):
    """A GuardAction nobody validated the fraction of."""
    return GuardAction(kind, "test", None, fraction)


class Gate:
    """A plugin call that blocks until the test opens the gate (never longer than ``limit`` s)."""

    def __init__(self, limit: float = 30.0):
        self.entered, self.opened, self.returned = threading.Event(), threading.Event(), threading.Event()
        self.limit = limit
        self.left = False

    def block(self, answer=None):
        self.entered.set()
        self.opened.wait(self.limit)
        self.returned.set()
        return answer

    def wait(self, done: threading.Event, seconds: float) -> bool:
        """The budget's wait: over budget the moment the gated call is stuck (the engine calls one
        plugin at a time, so the wait under way then is the gated call's); every other call is
        waited for until it is done."""
        if self.left:
            return done.wait(30)
        while not done.wait(0.001):
            if self.entered.is_set():
                self.left = True
                return False
        return True
