"""The hook contract between the engine and its plugins: every hook, one documented function.

A plugin is a module (or object) registered under the ``mlcoord`` entry-point group. Its name is
the entry point's name (``technical``, ``dca``, ...). It implements any of the hooks below with
``@mlcoord.hookimpl``; an implementation may accept a subset of a hook's arguments, so adding an
argument later breaks no plugin.

Two kinds of hook:

* **register hooks** (``register_*``) are called once at start-up. A plugin hands component
  objects to ``register(name, factory, options=OptionsClass)``; the engine then calls those
  objects directly on the hot path, in the order the config lists them (faster than a hook call
  per bar, deterministic, and every component has a name, an owner plugin and typed options).
  The protocols the components implement are documented in :mod:`mlcoord.components`.
* **observer hooks** (``on_*``) are plain pluggy calls for events.

``HOOKS_VERSION`` is the version of this contract. A plugin may declare the version it was
written for as a module attribute ``MLCOORD_HOOKS_VERSION``; a plugin written for a newer major
version than the running engine is skipped with a warning instead of failing at run time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import pluggy

if TYPE_CHECKING:  # pragma: no cover - typing only
    from mlcoord.config import Settings
    from mlcoord.model import Decision, Trade
    from mlcoord.pipeline import Components
    from mlcoord.registry import Register

PROJECT = "mlcoord"
HOOKS_VERSION = 2

#: hooks a newer contract removed -> what replaced them (a plugin still implementing one is refused
#: at load with this text, instead of silently never being called)
REMOVED_HOOKS = {
    "register_portfolio_guards": (
        "hooks version 2 split portfolio guards in two: register_entry_guards (allow_entry: may veto an "
        "entry) and register_portfolio_watchers (on_bar: sees every bar, returns hedge and close actions). "
        "Register the component in each role it plays (the same name and factory in both gives one object); "
        "declare MLCOORD_HOOKS_VERSION = 2"),
}

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_signal_sources(register: "Register") -> None:
    """Register signal sources: components that turn candles into BUY/SELL/HOLD signals.

    ``register(name, factory, options=None, description="", *, display_name="", examples=())``:
    ``factory(options)`` (or ``factory(options, context=...)`` when it has a ``context``
    parameter: a :class:`mlcoord.api.ComponentContext` with its registered name) returns an
    object implementing :class:`mlcoord.api.SignalSource`, whose ``prepare(data)`` returns one
    signal per bar (action, confidence in [0, 1], reasons), computed causally.

    A component runs only when the profile, ``[pipeline]`` or ``[engine] enable`` names it.
    When several sources run, the direction is the sign of their confidence-weighted sum and the
    confidence the strongest agreeing source's, plus 0.05 per further agreeing source, minus half
    the strongest opposing one (see ``mlcoord.pipeline.combine_sources``): not an average.

    .. versionadded:: 1
    """


@hookspec
def register_ml_components(register: "Register") -> None:
    """Register ML components: voters that enhance a non-HOLD signal.

    ``factory(options)`` returns an :class:`mlcoord.components.MLComponent`. The coordinator asks
    every enabled component for a :class:`mlcoord.model.Vote` only when the signal sources say
    BUY or SELL, weighs the votes, and may confirm, flip or veto the signal (to HOLD). A component
    that raises or returns nonsense is left out of that decision and the others carry on; with
    none at all the technical signal passes through unchanged.

    .. versionadded:: 1
    """


@hookspec
def register_calibrators(register: "Register") -> None:
    """Register confidence calibrators.

    ``factory(options)`` returns an :class:`mlcoord.components.Calibrator` mapping the ensemble's
    raw confidence to the probability that the signal's move happens; it learns from outcomes.
    At most one runs (``[pipeline] calibrator``).

    .. versionadded:: 1
    """


@hookspec
def register_entry_planners(register: "Register") -> None:
    """Register entry planners: how an approved signal becomes an entry ladder.

    ``factory(options)`` returns an :class:`mlcoord.components.EntryPlanner` whose
    ``plan(signal, price, context)`` returns an :class:`mlcoord.model.EntryPlan` (legs with prices
    and size fractions). With no planner, the entry is one market order.

    .. versionadded:: 1
    """


@hookspec
def register_sizers(register: "Register") -> None:
    """Register position sizers (risk managers). Essential role: one must run.

    ``factory(options)`` returns an :class:`mlcoord.components.Sizer` whose ``size(request)``
    returns an :class:`mlcoord.model.Sizing`: a quantity, or a veto with its reason. The sizer has
    the final say on every entry.

    .. versionadded:: 1
    """


@hookspec
def register_exit_managers(register: "Register") -> None:
    """Register exit managers (initial stop loss / take profit and their per-bar updates).

    Essential role: one must run. ``factory(options)`` returns an
    :class:`mlcoord.components.ExitManager`. Exit managers never see ML output: once a position
    is open its exits depend on price data only.

    .. versionadded:: 1
    """


@hookspec
def register_entry_guards(register: "Register") -> None:
    """Register entry guards: rules that may refuse an entry (trade caps, cooldowns, pair locks,
    daily loss limits), independent of signals.

    ``factory(options)`` returns an :class:`mlcoord.components.EntryGuard` whose
    ``allow_entry(symbol, side, portfolio)`` returns ``None`` or the reason it refuses. Its
    portfolio counts commitments (``committed_trades()``, ``committed_exposure()``): working
    entries and plans approved earlier in the same bar, so a cap holds however many symbols
    signal together. A component registered under the same name as an entry guard and a
    portfolio watcher is one object playing both roles.

    .. versionadded:: 2
    """


@hookspec
def register_portfolio_watchers(register: "Register") -> None:
    """Register portfolio watchers: rules that see the whole portfolio on every bar and act on it
    (hedging on drawdown, volatility or correlation; closing everything on a daily loss).

    ``factory(options)`` returns an :class:`mlcoord.components.PortfolioWatcher` whose
    ``on_bar(portfolio)`` returns :class:`mlcoord.model.GuardAction` values (usually none). Hedge
    legs are independent of signals: entry caps never block a hedge.

    .. versionadded:: 2
    """


@hookspec
def on_startup(settings: "Settings", components: "Components") -> None:
    """Called once after plugins are loaded and components built, before the first bar.

    ``settings`` is the validated :class:`mlcoord.config.Settings`; ``components`` the resolved
    :class:`mlcoord.pipeline.Components` (each role's built components, with ``.name``,
    ``.display_name`` and ``.obj``). Use it to warm caches or log the set-up.

    .. versionadded:: 1
    """


@hookspec
def on_trade_closed(trade: "Trade", decision: Optional["Decision"]) -> None:
    """Called when a position is fully closed: learning feedback.

    ``trade`` is the closed :class:`mlcoord.model.Trade` (net PnL, exit reason, entries filled);
    ``decision`` the :class:`mlcoord.model.Decision` that opened it (``None`` when the position was
    adopted without one). Hedge legs are portfolio protection, not trades: they are not reported. The
    outcome is known at this point, so learning from it cannot look ahead. Components that define
    ``on_trade_closed(trade, decision)`` are also told directly.

    .. versionadded:: 1
    """
