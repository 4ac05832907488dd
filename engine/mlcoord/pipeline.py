"""One bar's entry decision, the same code for backtest and live.

signal sources -> coordinator (ML votes, only when not HOLD) -> calibration -> threshold ->
entry planner -> exit manager's initial levels -> guards' entry checks -> sizer. Every call into
plugin code goes through :class:`Guarded`: an exception or a nonsense answer becomes a logged,
typed error and that component is left out of the decision (the engine carries on). Every answer
passes the engine's own bounds first (:mod:`mlcoord.bounds`), and per-bar calls run under a time
budget when one is set (:mod:`mlcoord.budget`).
"""

from __future__ import annotations

from typing import Any, Callable, Collection, Optional, Sequence, Union

import attrs
import numpy as np
import structlog

from mlcoord.bounds import (
    ComponentFailure, checked_guard_actions, checked_levels, checked_plan, checked_probability, checked_reasons,
    checked_series, checked_sizing, checked_state, checked_trained_until, checked_update, checked_verdict,
    checked_vote, checked_voter,
)
from mlcoord.budget import Budget, budget_ms
from mlcoord.components import MarketData, SignalSeries
from mlcoord.config import Settings, plugin_options
from mlcoord.coordinator import DEFAULT_WEIGHT, Coordinator
from mlcoord.errors import ConfigError, PluginError
from mlcoord.expected_return import expected_return
from mlcoord import trace
from mlcoord.times import iso
from mlcoord.learning import Outcome, TradeLabel, event_happened
from mlcoord.ml_health import ReliabilityCounts
from mlcoord.trade_label import direct_plan
from mlcoord.trace import Traced
from mlcoord.model import (
    Action, Decision, EntryLeg, EntryPlan, ExitLevels, GuardAction, PositionExit, Side, Signal, Sizing, SizingRequest,
    Trade, Vote, plugin_reason,
)
from mlcoord.model.values import action_of
from mlcoord.observers import call_observers, observers
from mlcoord.profile import LIST_ROLES, ROLE_LABELS, SINGLE_ROLES, Profile, load_profile
from mlcoord.registry import ComponentSpec, PluginSet, build_object, check_names, check_protocol

#: the reason of an operator's forced entry (the decision's signal, the plan, the trade's entry reason)
FORCE_ENTER_REASON = "api:force_enter"

log = structlog.get_logger("mlcoord.pipeline")

#: 2: the state carries ``trained_until`` (ns of the newest bar its outcomes saw, or None)
STATE_VERSION = 2

#: ``[pipeline]`` key -> the registry's role name
ROLE_OF = {
    "signal_sources": "signal_sources", "ml_components": "ml_components", "calibrator": "calibrators",
    "entry_planner": "entry_planners", "sizer": "sizers", "exit_manager": "exit_managers",
    "entry_guards": "entry_guards",
    "portfolio_watchers": "portfolio_watchers",
}


class Guarded:
    """Counts and logs component failures (first few in full, then only counted), each under the
    component's name and, when ``owners`` (component -> plugin) knows it, its plugin's."""

    LOG_FIRST = 3

    def __init__(self, owners: Optional[dict[str, str]] = None) -> None:
        self.counts: dict[str, int] = {}
        self.owners = owners or {}

    def failed(self, component: str, call: str, error: BaseException | str, *,
               note: str = "left out of this decision", **where: Any) -> None:
        """``note`` says what the engine did instead (default: the component was left out)."""
        key = f"{component}.{call}"
        n = self.counts.get(key, 0) + 1
        self.counts[key] = n
        if n <= self.LOG_FIRST:
            text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
            if component in self.owners:
                where = {"plugin": self.owners[component], **where}
            log.error("component_failed", component=component, call=call, error=text,
                      occurrence=n, note=note if n < self.LOG_FIRST
                      else f"{note}; further failures of this call are only counted", **where)


#: told (component name, exception) when a saved state cannot be restored and is set aside
RestoreFailed = Callable[[str, Exception], None]


@attrs.define
class Built:
    """A component object with its registration."""

    spec: ComponentSpec
    obj: Any
    display_name: str = ""

    def __attrs_post_init__(self) -> None:
        if not self.display_name:
            self.display_name = self.spec.label

    @property
    def name(self) -> str:
        return self.spec.name


@attrs.define
class Components:
    """The resolved components for each role, in run order."""

    signal_sources: list[Built]
    ml_components: list[Built]
    calibrator: Optional[Built]
    entry_planner: Optional[Built]
    sizer: Built
    exit_manager: Built
    entry_guards: list[Built]
    portfolio_watchers: list[Built]

    @property
    def guards(self) -> list[Built]:
        """Entry guards and portfolio watchers, each object once (one may play both roles)."""
        seen: dict[int, Built] = {}
        for b in (*self.entry_guards, *self.portfolio_watchers):
            seen.setdefault(id(b.obj), b)
        return list(seen.values())

    def all(self) -> list[Built]:
        single = [self.calibrator, self.entry_planner, self.sizer, self.exit_manager]
        return [*self.signal_sources, *self.ml_components, *[b for b in single if b], *self.guards]

    def describe(self) -> dict[str, Any]:
        def names(items):
            return [b.name for b in items]
        return {
            "signal_sources": names(self.signal_sources), "ml_components": names(self.ml_components),
            "calibrator": self.calibrator.name if self.calibrator else None,
            "entry_planner": self.entry_planner.name if self.entry_planner else None,
            "sizer": self.sizer.name, "exit_manager": self.exit_manager.name,
            "entry_guards": names(self.entry_guards), "portfolio_watchers": names(self.portfolio_watchers),
        }


def build_component(settings: Settings, spec: ComponentSpec, *, display_name: str = "",
                    **option_changes: Any) -> Built:
    """Build one component with its options from ``[plugins.NAME]`` (plus ``option_changes``)."""
    options = plugin_options(settings, spec.name, spec.options)
    if option_changes and options is not None:
        options = attrs.evolve(options, **option_changes)
    label = display_name or spec.label
    try:
        obj = build_object(spec, options, label)
    except Exception as exc:
        raise PluginError(f"component {spec.name!r} of plugin {spec.owner!r} failed to start: "
                          f"{type(exc).__name__}: {exc}") from exc
    check_protocol(spec, obj)
    return Built(spec, obj, label)


def resolve_components(settings: Settings, plugins: PluginSet,
                       option_changes: Optional[dict[str, dict[str, Any]]] = None, *,
                       strict: bool = False) -> Components:
    """Pick and build the components for every role: ``[pipeline]``, else the profile, plus the
    list-role components of ``[engine] enable``'s plugins. Nothing else runs (an allow-list).

    A named component whose plugin failed to load (an extra not installed) or that is not
    installed at all is skipped with a warning; with ``strict`` (live trading) it is an error.
    A disabled plugin's components are left out; an essential role left empty is an error.
    ``option_changes`` (component name -> option values) adjusts options after the config, e.g.
    a walk-forward evaluation pointing a model component at the artifact of its window."""
    if plugins.clashes:
        raise ConfigError(plugins.clashes[0])
    profile = load_profile(settings.engine.profile)
    pipeline = settings.pipeline
    option_changes = option_changes or {}
    disabled = {n for n, st in plugins.statuses.items() if not st.enabled}
    for name in settings.plugins:
        if name in disabled and name not in plugins.components:
            log.info("options_of_disabled_plugin_ignored", plugin=name)
    known = set(plugins.components) | set(plugins.statuses) | profile.names()
    check_names([n for n in settings.plugins if n not in disabled or n in plugins.components],
                set(plugins.components) | profile.names(), "component in [plugins.*]")
    for name in settings.plugins:   # a typo in options of a component not selected still fails
        if name in plugins.components:
            plugin_options(settings, name, plugins.components[name].options)
    check_names([n for n in pipeline.weights if "+" not in n], known, "component in [pipeline] weights")
    check_names(settings.engine.enable, plugins.statuses, "plugin in [engine] enable / --enable")

    shared: dict[tuple[str, str], Built] = {}

    def build(spec: ComponentSpec) -> Built:
        label = profile.display_name(spec.name, spec.display_name)
        if spec.extra_roles:    # one object for a guard registered in both guard roles
            key = (spec.owner, spec.name)
            if key not in shared:
                shared[key] = build_component(settings, spec, display_name=label,
                                              **option_changes.get(spec.name, {}))
            return shared[key]
        return build_component(settings, spec, display_name=label, **option_changes.get(spec.name, {}))

    def missing(key: str, name: str, from_config: bool) -> None:
        """``name`` is not registered in ``key``'s role: skip it, or say why it cannot be."""
        role = ROLE_OF[key]
        spec = plugins.components.get(name)
        if spec is not None:
            raise ConfigError(f"[pipeline] {key}: {name!r} is a {', '.join(spec.roles)} component, "
                              f"not a {ROLE_LABELS[key]}")
        status = plugins.statuses.get(name)
        if status is not None and status.reason.startswith("disabled by"):
            return                                       # the user left it out on purpose
        if status is None and from_config:
            check_names([name], [c.name for c in plugins.by_role(role)], f"{key} component")
        why = status.reason if status is not None else "no installed plugin registers it"
        where = "[pipeline]" if from_config else f"profile {profile.name!r}"
        if strict:
            raise ConfigError(f"{ROLE_LABELS[key]} {name!r} (from {where}) cannot run: {why}. Live trading "
                              "refuses a pipeline that differs from the one configured: install it, or remove it "
                              f"from [pipeline] {key}")
        log.warning("component_skipped", component=name, role=key, source=where, reason=why,
                    fix=f"install it, or set [pipeline] {key} without it")

    named = pipeline_names(settings, plugins, profile)

    def pick_list(key: str) -> list[Built]:
        role = ROLE_OF[key]
        configured = getattr(pipeline, key)
        out = []
        for name in named[key]:
            spec = plugins.components.get(name)
            if spec is None or role not in spec.roles:
                missing(key, name, configured is not None)
            else:
                out.append(build(spec))
        return out

    def pick_one(key: str) -> Optional[Built]:
        role = ROLE_OF[key]
        configured = getattr(pipeline, key)
        if not named[key]:
            return None
        name = named[key][0]
        spec = plugins.components.get(name)
        if spec is None or role not in spec.roles:
            if key not in profile.essential:
                missing(key, name, configured is not None)
            return None
        return build(spec)

    chosen = {key: pick_one(key) for key in SINGLE_ROLES}
    for key in profile.essential:
        if chosen[key] is None:
            configured = getattr(pipeline, key)
            name = configured if configured is not None else profile.singles[key]
            status = plugins.statuses.get(name or "")
            if name and plugins.components.get(name) is not None:
                why = f"{name!r} is a {', '.join(plugins.components[name].roles)} component"
            elif status is not None and not status.enabled:
                why = f"plugin {name!r} is {status.reason}"
            elif configured is None or not name:
                why = f"no {ROLE_LABELS[key]} is selected" + (f" ({name!r} is not installed)" if name else "")
            else:
                check_names([name], [c.name for c in plugins.by_role(ROLE_OF[key])], f"{key} component")
                why = f"{name!r} is not registered"
            raise ConfigError(f"the {ROLE_LABELS[key]} is essential and cannot be disabled: {why}. Enable it, or "
                              f"name another plugin's component with [pipeline] {key} = \"NAME\"")
    sizer, exit_manager = chosen["sizer"], chosen["exit_manager"]
    if sizer is None or exit_manager is None:
        raise ConfigError("a pipeline needs a sizer and an exit manager: name them in [pipeline] sizer and "
                          "[pipeline] exit_manager")
    components = Components(pick_list("signal_sources"), pick_list("ml_components"), chosen["calibrator"],
                            chosen["entry_planner"], sizer, exit_manager, pick_list("entry_guards"),
                            pick_list("portfolio_watchers"))
    market = settings.backtest.market
    for b in components.all():
        markets = getattr(b.obj, "markets", None)
        if markets is not None and market not in markets:
            raise ConfigError(f"component {b.name!r} ({b.display_name}) needs a {' or '.join(markets)} account, "
                              f"this config trades {market}: set [exchange] market = \"{markets[0]}\" or disable "
                              f"{b.spec.owner!r}")
    return components


def pipeline_names(settings: Settings, plugins: PluginSet, profile: Optional[Profile] = None
                   ) -> dict[str, list[str]]:
    """``[pipeline]`` key -> the component names it asks for: the config's list, else the
    profile's, plus (list roles) the components of ``[engine] enable``'s plugins in that role.
    Single roles give a list of at most one name. Nothing is checked or built here."""
    profile = profile or load_profile(settings.engine.profile)
    out: dict[str, list[str]] = {}
    for key in LIST_ROLES:
        configured = getattr(settings.pipeline, key)
        names = list(configured if configured is not None else profile.lists[key])
        for plugin in settings.engine.enable:
            names.extend(c.name for c in plugins.by_role(ROLE_OF[key]) if c.owner == plugin and c.name not in names)
        out[key] = names
    for key in SINGLE_ROLES:
        configured = getattr(settings.pipeline, key)
        name = configured if configured is not None else profile.singles[key]
        out[key] = [name] if name else []
    return out


def selected_components(settings: Settings, plugins: PluginSet) -> tuple[dict[str, tuple[str, ...]], dict[str, str]]:
    """Without building anything: component name -> the ``[pipeline]`` roles it fills in this
    config, and component name -> the essential role it fills (for ``plugins list``)."""
    profile = load_profile(settings.engine.profile)
    selected: dict[str, tuple[str, ...]] = {}
    essential: dict[str, str] = {}
    for key, names in pipeline_names(settings, plugins, profile).items():
        for name in names:
            spec = plugins.components.get(name)
            if spec is not None and ROLE_OF[key] in spec.roles:
                selected[name] = selected.get(name, ()) + (key,)
                if key in profile.essential:
                    essential[name] = ROLE_LABELS[key]
    return selected, essential


def pipeline_weights(settings: Settings) -> dict[str, float]:
    """The ensemble's starting weights: the profile's, overridden key by key by ``[pipeline] weights``."""
    return {**load_profile(settings.engine.profile).weights, **settings.pipeline.weights}


@attrs.define(slots=True)
class PreparedSymbol:
    """A symbol's data with everything ``prepare`` computed for it."""

    data: MarketData
    action: np.ndarray          # combined signal action per bar (int8)
    confidence: np.ndarray
    sources: list[tuple[str, SignalSeries]]
    voters: list[tuple[str, Any]]
    positions: Any              # the exit manager's PositionManager for this symbol


class PreparedOnFirstVote:
    """An ML component's voter for ``data``, prepared when a vote is first asked for; a failed
    prepare is reported as one and the component abstains, as an eager prepare's failure does."""

    def __init__(self, built: Built, data: MarketData, errors: Guarded):
        self._built, self._data, self._errors = built, data, errors
        self._voter: Any = None
        self._failed = False

    def vote(self, i: int, signal=None):
        if self._voter is None and not self._failed:
            try:
                self._voter = checked_voter(self._built.obj.prepare(self._data))
            except Exception as exc:
                self._failed = True
                self._errors.failed(self._built.name, "prepare", exc, symbol=self._data.symbol)
        return None if self._failed else self._voter.vote(i, signal)


def combine_sources(sources: Sequence[tuple[str, SignalSeries]], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Several signal sources vote; one source passes through unchanged.

    The direction is the sign of the confidence-weighted sum of actions. Its confidence is the
    strongest agreeing source's, plus 0.05 for each further source that agrees, minus half the
    strongest opposing source's (clipped to [0, 1]): a signal only one source sees keeps its
    confidence, agreement adds a little, disagreement costs.
    """
    if not sources:
        return np.zeros(n, dtype=np.int8), np.zeros(n)
    if len(sources) == 1:
        series = sources[0][1]
        return np.asarray(series.action, dtype=np.int8), np.nan_to_num(np.asarray(series.confidence, float))
    actions = np.vstack([np.asarray(s.action, dtype=np.int8) for _, s in sources])
    confs = np.vstack([np.nan_to_num(np.asarray(s.confidence, float)) for _, s in sources]) * (actions != 0)
    action = np.sign((actions * confs).sum(axis=0)).astype(np.int8)
    agree = (actions == action) & (action != 0)
    oppose = (actions == -action) & (action != 0)
    best = np.where(agree, confs, 0.0).max(axis=0)
    extra = np.maximum(agree.sum(axis=0) - 1, 0) * 0.05
    against = np.where(oppose, confs, 0.0).max(axis=0)
    confidence = np.where(action != 0, np.clip(best + extra - 0.5 * against, 0.0, 1.0), 0.0)
    return action, confidence


class Pipeline:
    """Resolved components plus the decision logic shared by backtest and live runs."""

    def __init__(self, settings: Settings, plugins: PluginSet, components: Components, *, live: bool = False):
        self.settings = settings
        self.plugins = plugins
        self.components = components
        self.threshold = settings.engine.min_confidence
        self.min_expected_return = settings.engine.min_expected_return
        #: time budgets of votes and of the other per-bar calls (off in backtests unless set)
        #: one worker per component for both: a component whose vote still runs is not called
        #: on another thread to learn
        self.vote_budget = Budget(budget_ms(settings.engine.vote_timeout_ms, live))
        self.call_budget = Budget(budget_ms(settings.engine.call_timeout_ms, live), workers=self.vote_budget._workers)
        self._trade_observers = observers(plugins.manager, "on_trade_closed")
        #: problems met saving the learning state (a component left out of it), for the run's notes
        self.state_problems: list[str] = []
        self.tracing = settings.engine.trace_hooks
        sources = components.signal_sources
        #: the signal sources' vote: one source's own name, several joined by "+"
        self.signal_name = "+".join(b.name for b in sources) or "signals"
        self.signal_label = " + ".join(b.display_name for b in sources) or "Signals"
        weights = pipeline_weights(settings)
        if len(sources) > 1 and self.signal_name not in weights:
            weights[self.signal_name] = sum(weights.get(b.name, DEFAULT_WEIGHT) for b in sources)
        self.labels = {b.name: b.display_name for b in components.all()}
        self.coordinator = Coordinator(weights, settings.ensemble)
        self.event = settings.learning.event
        self.errors = Guarded({b.name: b.spec.owner for b in components.all()})
        self.market = settings.backtest.market
        #: time (ns) of the newest bar whose price entered an outcome the learners saw (this run or
        #: a restored state): learning state is never used on bars at or before it
        self.learned_until: Optional[int] = None
        self._bar_times: dict[str, np.ndarray] = {}
        #: called with every :class:`~mlcoord.learning.Outcome` learned (the API's ML health)
        self.outcome_listeners: list[Callable[[Outcome], None]] = []
        #: reliability of the decisions' confidence over every outcome learned (restored state
        #: included): saved with the learning state as the reference live calibration is compared to
        self.calibration = ReliabilityCounts()
        #: the reference restored with a learning state (None: the state had none)
        self.calibration_reference: Optional[ReliabilityCounts] = None

    # -- prepare once per series --------------------------------------------------------
    def prepare(self, data: MarketData, since: Optional[int] = None) -> PreparedSymbol:
        """Every component's series for ``data``. ``since``: only bars from this index on will be
        asked about (a live session's newest bars), so the ML components need compute no earlier
        vote; every bar stays askable (votes are computed on demand)."""
        n = len(data)
        self._bar_times[data.symbol] = data.candles.time
        sources = []
        for b in self.components.signal_sources:
            try:
                sources.append((b.name, checked_series(b.obj.prepare(data), n)))
            except Exception as exc:
                self.errors.failed(b.name, "prepare", exc, symbol=data.symbol)
        if self.components.signal_sources and not sources:
            log.error("no_signal_source_left", symbol=data.symbol, note="every bar is HOLD")
        action, confidence = combine_sources(sources, n)
        voters = []
        focus = np.flatnonzero(action)
        if since is not None:
            focus = focus[focus >= since]
        focused = attrs.evolve(data, focus=focus) if self.components.ml_components else data
        # a live bar without a signal asks for no vote: the ML components prepare when first asked
        defer = since is not None and not len(focus)
        for b in self.components.ml_components:
            if defer:
                voters.append((b.name, PreparedOnFirstVote(b, focused, self.errors)))
                continue
            try:
                voters.append((b.name, checked_voter(b.obj.prepare(focused))))
            except Exception as exc:
                self.errors.failed(b.name, "prepare", exc, symbol=data.symbol)
        manager = self.components.exit_manager
        try:
            positions = manager.obj.prepare(data)
            if not (callable(getattr(positions, "initial", None)) and callable(getattr(positions, "update", None))):
                raise ComponentFailure(f"prepare returned {type(positions).__name__}, which lacks initial(i, side, "
                                       "plan) and update(i, position, levels)")
        except Exception as exc:
            raise PluginError(f"exit manager {manager.name!r} failed to prepare "
                              f"{data.symbol}: {type(exc).__name__}: {exc}; no entries can be protected") from exc
        return PreparedSymbol(data, action, confidence, sources, voters, positions)

    # -- decide per bar ----------------------------------------------------------------
    def technical_signal(self, sym: PreparedSymbol, i: int) -> Signal:
        action = action_of(int(sym.action[i]))
        reasons: list[str] = []
        prefix = len(sym.sources) > 1
        for name, series in sym.sources:
            if int(series.action[i]) != 0:
                try:
                    said = checked_reasons(self.call_budget.timed(name, series.explain)(i))
                    reasons.extend(f"{name}: {r}" for r in said) if prefix else reasons.extend(said)
                except Exception as exc:
                    self.errors.failed(name, "explain", exc, symbol=sym.data.symbol)
        source = sym.sources[0][0] if len(sym.sources) == 1 else "signals"
        return Signal(action, float(min(max(sym.confidence[i], 0.0), 1.0)), tuple(reasons), source)

    def votes(self, sym: PreparedSymbol, i: int, signal: Signal) -> list[Vote]:
        votes = []
        budget = self.vote_budget
        for name, voter in sym.voters:
            try:
                vote = budget.call(name, voter.vote, i, signal) if budget else voter.vote(i, signal)
                if vote is None:
                    continue
                votes.append(checked_vote(vote, name, self.labels.get(name, "")))
            except Exception as exc:
                self.errors.failed(name, "vote", exc, symbol=sym.data.symbol, bar=i)
        return votes

    def _calibrate(self, raw: float, signal: Signal) -> float:
        cal = self.components.calibrator
        if cal is None:
            return raw
        try:
            return checked_probability(self.call_budget.timed(cal.name, cal.obj.calibrate)(raw, signal))
        except Exception as exc:
            self.errors.failed(cal.name, "calibrate", exc, note="the raw confidence is used")
            return raw

    def decide(self, sym: PreparedSymbol, i: int, portfolio: Any, *, time: int,
               leverage: float, fee_rate: float, slippage: float) -> Decision:
        """The entry decision at bar ``i`` for a symbol without a position or pending plan."""
        if self.tracing:
            trace.start()
            try:
                decision = self._decide(sym, i, portfolio, time=time, leverage=leverage, fee_rate=fee_rate,
                                        slippage=slippage)
            finally:
                calls = trace.stop()
            log.info("hook_trace", symbol=sym.data.symbol, time=iso(decision.time), outcome=decision.outcome,
                     calls=calls)
            return decision
        return self._decide(sym, i, portfolio, time=time, leverage=leverage, fee_rate=fee_rate, slippage=slippage)

    def _decide(self, sym: PreparedSymbol, i: int, portfolio: Any, *, time: int,
                leverage: float, fee_rate: float, slippage: float) -> Decision:
        data = sym.data
        technical = self.technical_signal(sym, i)
        votes = self.votes(sym, i, technical) if technical.action != Action.HOLD else []
        calibrator = self.components.calibrator
        combined = self.coordinator.combine(technical, votes, self._calibrate if calibrator else None,
                                            signal_name=self.signal_name, signal_label=self.signal_label)
        signal = combined.signal
        def made(outcome: str, **found: Any) -> Decision:
            return Decision(time=time, symbol=data.symbol, signal=signal, technical=technical, votes=combined.votes,
                            raw_confidence=combined.raw_confidence, confidence=combined.confidence,
                            threshold=self.threshold, p_signal=combined.p_signal, outcome=outcome,
                            calibrator=calibrator.display_name if calibrator else "", **found)
        if signal.action == Action.HOLD:
            return made("hold")
        if self.market == "spot" and signal.action == Action.SELL:
            return made("no_short_on_spot")
        if combined.confidence < self.threshold:
            return made("below_threshold")
        side = signal.action.side
        price = float(data.candles.close[i])
        context = data.context.at(i)
        plan = self._plan(signal, price, context, side)
        levels = self._initial_levels(sym, i, side, plan, price)
        if levels is None:
            return made("vetoed:exit_manager", plan=plan,
                        veto=f"exit manager {self.components.exit_manager.name} gave no valid stop")
        expected = expected_return(plan, levels, combined.confidence, fee_taker=fee_rate, slippage=slippage,
                                   fee_maker=self.settings.backtest.fee_maker, minimum=self.min_expected_return)
        if expected is not None:
            # made() reads it; ``attrs.evolve`` spelled out (a test checks every field is carried)
            signal = Signal(signal.action, signal.confidence, (*signal.reasons, expected.describe()), signal.source)
            if not expected.passed:
                return made("below_expected_return", plan=plan, levels=levels, expected_return=expected,
                            veto=expected.refusal())
        return self._checked_entry(made, data.symbol, side, plan, levels, expected, portfolio, context,
                                   combined.confidence, fee_rate=fee_rate, slippage=slippage, leverage=leverage)

    def force_decide(self, sym: PreparedSymbol, i: int, portfolio: Any, side: Side, *, time: int,
                     leverage: float, fee_rate: float, slippage: float) -> Decision:
        """An operator's market entry at bar ``i`` (the API's force-enter, reason
        :data:`FORCE_ENTER_REASON`): no signal source or vote is asked, but the exit manager's
        levels, every entry guard and the sizer (with its bounds and risk caps) decide as for any
        entry. Its confidence is the entry threshold (a confidence-scaled sizer gives the smallest
        size an entry can have); the expected-return filter, a judgement of the strategy's own
        signal, is not applied."""
        data = sym.data
        confidence = min(max(float(self.threshold), 0.0), 1.0)
        action = Action.BUY if side == Side.LONG else Action.SELL
        signal = Signal(action, confidence, (FORCE_ENTER_REASON,), source=FORCE_ENTER_REASON)
        price = float(data.candles.close[i])
        plan = EntryPlan(side, (EntryLeg(price, 1.0, market=True),), planner=FORCE_ENTER_REASON,
                         reasons=(FORCE_ENTER_REASON,))

        def made(outcome: str, **found: Any) -> Decision:
            return Decision(time=time, symbol=data.symbol, signal=signal, technical=signal, votes=(),
                            raw_confidence=confidence, confidence=confidence, threshold=self.threshold,
                            outcome=outcome, **found)
        if self.market == "spot" and side == Side.SHORT:
            return made("no_short_on_spot", plan=plan)
        levels = self._initial_levels(sym, i, side, plan, price)
        if levels is None:
            return made("vetoed:exit_manager", plan=plan,
                        veto=f"exit manager {self.components.exit_manager.name} gave no valid stop")
        return self._checked_entry(made, data.symbol, side, plan, levels, None, portfolio, data.context.at(i),
                                   confidence, fee_rate=fee_rate, slippage=slippage, leverage=leverage)

    def _checked_entry(self, made: Callable[..., Decision], symbol: str, side: Side, plan: EntryPlan,
                       levels: ExitLevels, expected: Any, portfolio: Any, context: Any, confidence: float, *,
                       fee_rate: float, slippage: float, leverage: float) -> Decision:
        """The entry guards, then the sizer: the checks every entry passes once it has levels."""
        for guard in self.components.entry_guards:
            try:
                reason = checked_verdict(self.call_budget.timed(guard.name, guard.obj.allow_entry)(
                    symbol, side, portfolio))
            except Exception as exc:
                self.errors.failed(guard.name, "allow_entry", exc, note="entry refused to be safe", symbol=symbol)
                reason = f"guard {guard.name} failed ({type(exc).__name__}), entry refused to be safe"
            if reason:
                return made(f"vetoed:{guard.name}", plan=plan, levels=levels, veto=str(reason),
                            expected_return=expected)
        request = SizingRequest(
            symbol=symbol, side=side, plan=plan, stop=levels.stop, confidence=confidence,
            equity=portfolio.equity, exposure=portfolio.committed_exposure(),
            open_positions=portfolio.committed_trades(),
            fee_rate=fee_rate, slippage=slippage, leverage=leverage, context=context)
        sizer = self.components.sizer
        try:
            sizing, cut = checked_sizing(self.call_budget.timed(sizer.name, sizer.obj.size)(request), request)
            if cut is not None:
                self.errors.failed(sizer.name, "size", cut, note="cut down to what the account can carry",
                                   symbol=symbol)
        except Exception as exc:
            self.errors.failed(sizer.name, "size", exc, note="entry vetoed", symbol=symbol)
            sizing = Sizing(veto=f"sizer {sizer.name} failed: {type(exc).__name__}: {exc}")
        if not sizing.approved:
            return made(f"vetoed:{sizer.name}", plan=plan, levels=levels, sizing=sizing,
                        veto=sizing.veto or "zero quantity", expected_return=expected)
        return made("entered", plan=plan, levels=levels, sizing=sizing, expected_return=expected)

    def _plan(self, signal: Signal, price: float, context, side: Side) -> EntryPlan:
        planner = self.components.entry_planner
        if planner is not None:
            try:
                return checked_plan(self.call_budget.timed(planner.name, planner.obj.plan)(signal, price, context),
                                    side, price)
            except Exception as exc:
                self.errors.failed(planner.name, "plan", exc, note="direct entry instead")
                return EntryPlan(side, (EntryLeg(price, 1.0, market=True),), planner="direct",
                                 reasons=(f"planner {planner.name} failed; direct entry",))
        return EntryPlan(side, (EntryLeg(price, 1.0, market=True),), planner="direct",
                         reasons=("no entry planner: direct entry",))

    def initial_levels(self, sym: PreparedSymbol, i: int, side: Side, plan: EntryPlan, price: float
                       ) -> Optional[ExitLevels]:
        """The exit manager's levels for a position entered by ``plan`` at bar ``i`` (the market at
        ``price``), checked as an entry's are (None, logged, when the manager fails): also what a
        live bot gives a position it takes over at start (``mlcoord live --adopt``)."""
        return self._initial_levels(sym, i, side, plan, price)

    def _initial_levels(self, sym: PreparedSymbol, i: int, side: Side, plan: EntryPlan, price: float
                        ) -> Optional[ExitLevels]:
        manager = self.components.exit_manager
        try:
            return checked_levels(self.call_budget.timed(manager.name, sym.positions.initial)(i, side, plan),
                                  side, plan, price)
        except Exception as exc:
            self.errors.failed(manager.name, "initial", exc, note="entry vetoed", symbol=sym.data.symbol, bar=i)
            return None

    def label_levels(self, sym: PreparedSymbol, i: int) -> tuple[Optional[ExitLevels], Optional[ExitLevels]]:
        """The exit manager's initial levels for a direct long and a direct short at bar ``i``'s
        close: the barriers of that bar's trade labels (:mod:`mlcoord.trade_label`)."""
        price = float(sym.data.candles.close[i])
        return (self._initial_levels(sym, i, Side.LONG, direct_plan(Side.LONG, price), price),
                self._initial_levels(sym, i, Side.SHORT, direct_plan(Side.SHORT, price), price))

    def update_levels(self, sym: PreparedSymbol, i: int, position: Any, levels: ExitLevels
                      ) -> Union[ExitLevels, PositionExit]:
        """Per-bar exit update; the stop may only tighten, whatever the plugin says. A
        :class:`PositionExit` (the manager closes the position itself) comes back with its reason
        namespaced by the manager's name."""
        manager = self.components.exit_manager
        try:
            new = checked_update(self.call_budget.timed(manager.name, sym.positions.update)(i, position, levels),
                                 levels, position.side)
        except Exception as exc:
            self.errors.failed(manager.name, "update", exc, note="the levels stay", symbol=sym.data.symbol, bar=i)
            return levels
        if isinstance(new, PositionExit):
            return attrs.evolve(new, reason=plugin_reason(manager.name, new.reason))
        return new

    # -- feedback ----------------------------------------------------------------------
    def learn(self, symbol: str, index: int, decision: Decision, forward_return: float,
              trade: tuple[Optional[TradeLabel], Optional[TradeLabel]] = (None, None)) -> None:
        """A decision's horizon has closed: feed the ensemble, the ML components, the calibrator.
        ``trade``: the long and short trade labels of the decision bar, resolved by now."""
        direction = int(decision.technical.action)
        judged = int(decision.signal.action) or direction
        hit = event_happened(judged, forward_return, self.event.threshold)
        outcome = Outcome(symbol, index, decision.time, judged, forward_return, hit,
                          decision.raw_confidence, decision.confidence, decision.votes, *trade)
        self._note_learned(symbol, index, decision.time)
        if judged:
            self.calibration.add(decision.confidence, hit)
        for listener in self.outcome_listeners:
            try:
                listener(outcome)
            except Exception as exc:     # an observer never stops learning
                self.errors.failed("outcome_listener", "observe", exc)
        try:
            self.coordinator.learn(decision.votes, forward_return, self.event.threshold, trade)
        except Exception as exc:
            self.errors.failed("ensemble", "learn", exc)
        for b in self.components.ml_components:
            learn = getattr(b.obj, "learn", None)
            if learn is not None:
                try:
                    self.call_budget.timed(b.name, learn)(outcome)
                except Exception as exc:
                    self.errors.failed(b.name, "learn", exc, symbol=symbol)
        cal = self.components.calibrator
        if cal is not None and decision.signal.action != Action.HOLD:
            # a calibrator with the optional learn_outcome(outcome) sees the whole outcome (the
            # trade labels too); the others get (raw, hit, direction)
            by_outcome = getattr(cal.obj, "learn_outcome", None)
            try:
                if by_outcome is not None:
                    self.call_budget.timed(cal.name, by_outcome)(outcome)
                else:
                    self.call_budget.timed(cal.name, cal.obj.learn)(decision.raw_confidence, hit, judged)
            except Exception as exc:
                self.errors.failed(cal.name, "learn", exc)

    def _note_learned(self, symbol: str, index: int, decided_at: int) -> None:
        """The outcome's last price is bar ``index + horizon``: the learners now know up to it."""
        times = self._bar_times.get(symbol)      # the latest prepared bars (a live window, maybe)
        k = int(np.searchsorted(times, decided_at)) + self.event.horizon if times is not None else -1
        until = int(times[k]) if times is not None and 0 <= k < len(times) else int(decided_at)
        self.learned_until = until if self.learned_until is None else max(self.learned_until, until)

    def ml_contributors(self) -> list[str]:
        """The names of the ML components (the ensemble also weighs the signal sources' vote)."""
        return [b.name for b in self.components.ml_components]

    def ensemble_coefficients(self) -> dict[str, float]:
        """Each contributor's signed ensemble coefficient ({} before the first ML vote)."""
        ensemble = self.coordinator.active
        if ensemble is None:
            return {}
        return ensemble.coefficients(sorted(set(ensemble.model.weights) | set(self.ml_contributors())))

    def trained_until(self) -> Optional[int]:
        """The latest training-data time of any ML component (a backtest's stats start after it)."""
        times = []
        for b in self.components.ml_components:
            fn = getattr(b.obj, "trained_until", None)
            if fn is not None:
                try:
                    t = checked_trained_until(fn())
                except Exception as exc:
                    self.errors.failed(b.name, "trained_until", exc)
                    continue
                if t is not None:
                    times.append(t)
        return max(times) if times else None

    def state(self) -> dict[str, Any]:
        """Learning state of the ensemble and of every component that has one (JSON-able).
        Portfolio guards are left out: their state (locks, active triggers) belongs to one
        account's timeline, see :meth:`guard_state`."""
        out: dict[str, Any] = {"version": STATE_VERSION, "components": {}, "trained_until": self.learned_until}
        if self.coordinator.active is not None:
            out["ensemble"] = self.coordinator.active.state()
        if self.calibration.n:
            out["calibration_reference"] = self.calibration.to_dict()
        guards = {id(b.obj) for b in self.components.guards}
        out["components"] = self._states([b for b in self.components.all() if id(b.obj) not in guards])
        return out

    def _states(self, built: list[Built]) -> dict[str, Any]:
        """Each component's ``state()``; one that raises or is not plain JSON is left out of the
        saved state (logged, and noted in :attr:`state_problems`), the others are saved."""
        out: dict[str, Any] = {}
        for b in built:
            fn = getattr(b.obj, "state", None)
            if fn is None:
                continue
            try:
                out[b.name] = checked_state(fn())
            except Exception as exc:
                self.errors.failed(b.name, "state", exc, note="its learning state is not saved")
                problem = (f"component {b.name!r} (plugin {b.spec.owner!r}): state() failed, its state was not saved: "
                           f"{type(exc).__name__}: {exc}")
                if problem not in self.state_problems:
                    self.state_problems.append(problem)
        return out

    def load_state(self, state: dict[str, Any], on_error: Optional[RestoreFailed] = None) -> None:
        """Restore :meth:`state`. Whether it may be used on the bars to come is the caller's check
        (:func:`mlcoord.learning_state.restore`): ``learned_until`` says what it has seen.
        ``on_error(name, exc)``: a component (or the ensemble) that cannot restore its part is put
        back as it was and reported there, instead of failing the whole restore."""
        until = state.get("trained_until")
        self.learned_until = None if until is None else int(until)
        if "calibration_reference" in state:
            try:
                self.calibration_reference = ReliabilityCounts.from_dict(state["calibration_reference"])
                self.calibration = ReliabilityCounts.from_dict(state["calibration_reference"])
            except ValueError as exc:
                if on_error is None:
                    raise
                on_error("calibration_reference", exc)
        if "ensemble" in state:
            try:
                names = list(state["ensemble"].get("weights", {}))
                ensemble = self.coordinator.ensemble(names)
            except Exception as exc:
                if on_error is None:
                    raise
                on_error("ensemble", exc)
            else:
                self._restore_one("ensemble", ensemble, state["ensemble"], on_error)
        guards = {id(b.obj) for b in self.components.guards}
        self._restore([b for b in self.components.all() if id(b.obj) not in guards], state.get("components", {}),
                      on_error)

    def guard_state(self) -> dict[str, Any]:
        """What the portfolio guards must not forget across a live bot's restart (cooldowns, pair
        locks, active hedge triggers): stored by the live loop after every cycle, not by backtests
        (a backtest's locks would lie in another run's future)."""
        return {"version": 1, "guards": self._states(self.components.guards)}

    def load_guard_state(self, state: dict[str, Any], on_error: Optional[RestoreFailed] = None) -> None:
        self._restore(self.components.guards, state.get("guards", {}), on_error)

    @classmethod
    def _restore(cls, built: list[Built], saved_by_name: dict[str, Any],
                 on_error: Optional[RestoreFailed] = None) -> None:
        for b in built:
            saved = saved_by_name.get(b.name)
            if saved is not None:
                cls._restore_one(b.name, b.obj, saved, on_error)

    @staticmethod
    def _restore_one(name: str, obj: Any, saved: Any, on_error: Optional[RestoreFailed]) -> None:
        """``obj.load_state(saved)``; on failure, with ``on_error``, ``obj`` gets back the state it
        had (a half-applied state is worse than none) and ``on_error`` is told."""
        load = getattr(obj, "load_state", None)
        if load is None:
            return
        before = obj.state() if on_error is not None and callable(getattr(obj, "state", None)) else None
        try:
            load(saved)
        except Exception as exc:
            if on_error is None:
                raise PluginError(f"component {name!r} could not restore its saved state: "
                                  f"{type(exc).__name__}: {exc}") from exc
            if before is not None:
                load(before)
            on_error(name, exc)

    def trade_closed(self, trade: Trade, decision: Optional[Decision]) -> None:
        for b in self.components.all():
            hook = getattr(b.obj, "on_trade_closed", None)
            if hook is None:
                continue
            try:
                self.call_budget.timed(b.name, hook)(trade, decision)
            except Exception as exc:
                self.errors.failed(b.name, "on_trade_closed", exc)
        for name, call in self._trade_observers:
            try:
                self.call_budget.timed(f"plugin {name}", call)(trade=trade, decision=decision)
            except Exception as exc:
                self.errors.failed(name, "on_trade_closed", exc)

    def checked_guard_actions(self, guard: str, result: Any, symbols: Optional[Collection[str]] = None
                              ) -> list[GuardAction]:
        """A watcher's actions (:func:`mlcoord.bounds.checked_guard_actions`, against the run's
        ``symbols``); nonsense is logged, ignored."""
        try:
            return checked_guard_actions(result, symbols)
        except ComponentFailure as exc:
            self.errors.failed(guard, "on_bar", exc, note="its actions are ignored")
            return []


def trace_hooks(plugins: PluginSet) -> None:
    """Send every pluggy hook call (which plugin answered which hook) to structlog."""
    def before(hook_name, impls, kwargs):
        log.info("hook_call", hook=hook_name, plugins=[impl.plugin_name for impl in impls])

    def after(outcome, hook_name, impls, kwargs):
        log.info("hook_done", hook=hook_name, error=repr(outcome.exception) if outcome.exception else None)

    plugins.manager.add_hookcall_monitoring(before, after)


def build_pipeline(settings: Settings, plugins: PluginSet,
                   option_changes: Optional[dict[str, dict[str, Any]]] = None, *, strict: bool = False,
                   live: bool = False) -> Pipeline:
    """The pipeline a run uses; ``strict`` (live trading) refuses to skip a configured component;
    ``live`` (paper and live trading) gives plugin calls the live time budgets by default.
    A plugin whose ``on_startup`` raises stops the run with an error naming it."""
    if settings.engine.trace_hooks:
        trace_hooks(plugins)
    components = resolve_components(settings, plugins, option_changes, strict=strict)
    if settings.engine.trace_hooks:
        for built in components.all():
            built.obj = Traced(built.obj, built.name, built.spec.owner, built.spec.role)
    pipeline = Pipeline(settings, plugins, components, live=live)
    for name, exc in call_observers(observers(plugins.manager, "on_startup"), settings=settings, components=components):
        raise PluginError(f"plugin {name!r} failed at start-up (on_startup): {type(exc).__name__}: {exc}") from exc
    return pipeline
