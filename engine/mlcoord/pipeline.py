"""One bar's entry decision, the same code for backtest and live.

signal sources -> coordinator (ML votes, only when not HOLD) -> calibration -> threshold ->
entry planner -> exit manager's initial levels -> guards' entry checks -> sizer. Every call into
plugin code goes through :class:`Guarded`: an exception or a nonsense answer becomes a logged,
typed error and that component is left out of the decision (the engine carries on).
"""

from __future__ import annotations

import math
import numbers
import time
from typing import Any, Optional, Sequence, Union

import attrs
import numpy as np
import structlog

from mlcoord.components import MarketData, SignalSeries
from mlcoord.config import Settings, plugin_options
from mlcoord.coordinator import DEFAULT_WEIGHT, Coordinator
from mlcoord.errors import ConfigError, PluginError
from mlcoord import trace
from mlcoord.journal import iso_time
from mlcoord.learning import Outcome, event_happened
from mlcoord.trace import Traced
from mlcoord.model import (
    Action, Decision, EntryLeg, EntryPlan, ExitLevels, GuardAction, PositionExit, Side, Signal, Sizing, SizingRequest,
    Trade, Vote, plugin_reason,
)
from mlcoord.profile import LIST_ROLES, ROLE_LABELS, SINGLE_ROLES, Profile, load_profile
from mlcoord.registry import ComponentSpec, PluginSet, build_object, check_names, check_protocol

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


class ComponentFailure(PluginError):
    """A component raised or returned nonsense during a call."""


class Guarded:
    """Counts and logs component failures (first few in full, then only counted)."""

    LOG_FIRST = 3

    def __init__(self):
        self.counts: dict[str, int] = {}

    def failed(self, component: str, call: str, error: BaseException | str, **where: Any) -> None:
        key = f"{component}.{call}"
        n = self.counts.get(key, 0) + 1
        self.counts[key] = n
        if n <= self.LOG_FIRST:
            text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
            log.error("component_failed", component=component, call=call, error=text,
                      occurrence=n, note="left out of this decision" if n < self.LOG_FIRST
                      else "further failures of this call are only counted", **where)


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
                self._voter = self._built.obj.prepare(self._data)
            except Exception as exc:
                self._failed = True
                self._errors.failed(self._built.name, "prepare", exc, symbol=self._data.symbol)
        return None if self._failed else self._voter.vote(i, signal)


def validate_series(name: str, series: Any, n: int) -> SignalSeries:
    """A signal source must return one finite action/confidence per bar."""
    if not isinstance(series, SignalSeries):
        raise ComponentFailure(f"returned {type(series).__name__}, expected SignalSeries")
    action = np.asarray(series.action)
    confidence = np.asarray(series.confidence, dtype=float)
    if len(action) != n or len(confidence) != n:
        raise ComponentFailure(f"returned {len(action)} actions / {len(confidence)} confidences for {n} bars")
    bad = ~np.isin(action, (-1, 0, 1))
    if bad.any():
        raise ComponentFailure(f"action {action[bad][0].item()!r} at bar {int(np.argmax(bad))} is not -1, 0 or 1")
    live = action != 0
    bad = live & ~((confidence >= 0) & (confidence <= 1))
    if bad.any():
        i = int(np.argmax(bad))
        raise ComponentFailure(f"confidence {float(confidence[i])!r} at bar {i} is not in [0, 1]")
    return series


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

    def __init__(self, settings: Settings, plugins: PluginSet, components: Components):
        self.settings = settings
        self.plugins = plugins
        self.components = components
        self.threshold = settings.engine.min_confidence
        self.vote_budget = settings.engine.vote_timeout_ms / 1000.0
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
        self.errors = Guarded()
        self.market = settings.backtest.market
        #: time (ns) of the newest bar whose price entered an outcome the learners saw (this run or
        #: a restored state): learning state is never used on bars at or before it
        self.learned_until: Optional[int] = None
        self._bar_times: dict[str, np.ndarray] = {}

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
                sources.append((b.name, validate_series(b.name, b.obj.prepare(data), n)))
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
                voters.append((b.name, b.obj.prepare(focused)))
            except Exception as exc:
                self.errors.failed(b.name, "prepare", exc, symbol=data.symbol)
        try:
            positions = self.components.exit_manager.obj.prepare(data)
        except Exception as exc:
            raise PluginError(f"exit manager {self.components.exit_manager.name!r} failed to prepare "
                              f"{data.symbol}: {type(exc).__name__}: {exc}; no entries can be protected") from exc
        return PreparedSymbol(data, action, confidence, sources, voters, positions)

    # -- decide per bar ----------------------------------------------------------------
    def technical_signal(self, sym: PreparedSymbol, i: int) -> Signal:
        action = Action(int(sym.action[i]))
        reasons: list[str] = []
        prefix = len(sym.sources) > 1
        for name, series in sym.sources:
            if int(series.action[i]) != 0:
                try:
                    said = series.explain(i)
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
                started = time.perf_counter() if budget else 0.0
                vote = voter.vote(i, signal)
                if budget and time.perf_counter() - started > budget:
                    raise ComponentFailure(f"timed out: took {(time.perf_counter() - started) * 1000:.0f} ms, "
                                           f"budget {budget * 1000:.0f} ms")
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
            value = float(cal.obj.calibrate(raw, signal))
        except Exception as exc:
            self.errors.failed(cal.name, "calibrate", exc)
            return raw
        if not 0.0 <= value <= 1.0:
            self.errors.failed(cal.name, "calibrate", f"returned {value!r}, outside [0, 1]")
            return raw
        return value

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
            log.info("hook_trace", symbol=sym.data.symbol, time=iso_time(decision.time), outcome=decision.outcome,
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
        levels = self._initial_levels(sym, i, side, plan)
        if levels is None:
            return made("vetoed:exit_manager", plan=plan,
                        veto=f"exit manager {self.components.exit_manager.name} gave no valid stop")
        for guard in self.components.entry_guards:
            try:
                reason = guard.obj.allow_entry(data.symbol, side, portfolio)
            except Exception as exc:
                self.errors.failed(guard.name, "allow_entry", exc, symbol=data.symbol)
                reason = f"guard {guard.name} failed ({type(exc).__name__}), entry refused to be safe"
            if reason:
                return made(f"vetoed:{guard.name}", plan=plan, levels=levels, veto=str(reason))
        request = SizingRequest(
            symbol=data.symbol, side=side, plan=plan, stop=levels.stop, confidence=combined.confidence,
            equity=portfolio.equity, exposure=portfolio.committed_exposure(),
            open_positions=portfolio.committed_trades(),
            fee_rate=fee_rate, slippage=slippage, leverage=leverage, context=context)
        sizer = self.components.sizer
        try:
            sizing = sizer.obj.size(request)
            if not isinstance(sizing, Sizing):
                raise ComponentFailure(f"returned {type(sizing).__name__}, expected Sizing")
            if not (math.isfinite(sizing.quantity) and sizing.quantity >= 0):
                raise ComponentFailure(f"returned quantity {sizing.quantity!r}")
        except Exception as exc:
            self.errors.failed(sizer.name, "size", exc, symbol=data.symbol)
            sizing = Sizing(veto=f"sizer {sizer.name} failed: {type(exc).__name__}: {exc}")
        if not sizing.approved:
            return made(f"vetoed:{sizer.name}", plan=plan, levels=levels, sizing=sizing,
                        veto=sizing.veto or "zero quantity")
        return made("entered", plan=plan, levels=levels, sizing=sizing)

    def _plan(self, signal: Signal, price: float, context, side: Side) -> EntryPlan:
        planner = self.components.entry_planner
        if planner is not None:
            try:
                plan = planner.obj.plan(signal, price, context)
                if not isinstance(plan, EntryPlan):
                    raise ComponentFailure(f"returned {type(plan).__name__}, expected EntryPlan")
                if plan.side != side:
                    raise ComponentFailure(f"planned a {plan.side.name} entry for a {signal.action.name} signal")
                return plan
            except Exception as exc:
                self.errors.failed(planner.name, "plan", exc)
                return EntryPlan(side, (EntryLeg(price, 1.0, market=True),), planner="direct",
                                 reasons=(f"planner {planner.name} failed; direct entry",))
        return EntryPlan(side, (EntryLeg(price, 1.0, market=True),), planner="direct",
                         reasons=("no entry planner: direct entry",))

    def initial_levels(self, sym: PreparedSymbol, i: int, side: Side, plan: EntryPlan) -> Optional[ExitLevels]:
        """The exit manager's levels for a position entered by ``plan`` at bar ``i``, checked as an
        entry's are (None, logged, when the manager fails): also what a live bot gives a position it
        takes over at start (``mlcoord live --adopt``)."""
        return self._initial_levels(sym, i, side, plan)

    def _initial_levels(self, sym: PreparedSymbol, i: int, side: Side, plan: EntryPlan) -> Optional[ExitLevels]:
        manager = self.components.exit_manager
        try:
            levels = sym.positions.initial(i, side, plan)
            check_levels(levels, side, plan.worst_price)
            return levels
        except Exception as exc:
            self.errors.failed(manager.name, "initial", exc, symbol=sym.data.symbol, bar=i)
            return None

    def update_levels(self, sym: PreparedSymbol, i: int, position: Any, levels: ExitLevels
                      ) -> Union[ExitLevels, PositionExit]:
        """Per-bar exit update; the stop may only tighten, whatever the plugin says. A
        :class:`PositionExit` (the manager closes the position itself) comes back with its reason
        namespaced by the manager's name."""
        try:
            new = sym.positions.update(i, position, levels)
            if new is levels:
                return levels
            if isinstance(new, PositionExit):
                return attrs.evolve(new, reason=plugin_reason(self.components.exit_manager.name, new.reason))
            if not isinstance(new, ExitLevels):
                raise ComponentFailure(f"returned {type(new).__name__}, expected ExitLevels or PositionExit")
        except Exception as exc:
            self.errors.failed(self.components.exit_manager.name, "update", exc, symbol=sym.data.symbol, bar=i)
            return levels
        if position.side == Side.LONG and new.stop < levels.stop:
            new = attrs.evolve(new, stop=levels.stop)
        elif position.side == Side.SHORT and new.stop > levels.stop:
            new = attrs.evolve(new, stop=levels.stop)
        return new

    # -- feedback ----------------------------------------------------------------------
    def learn(self, symbol: str, index: int, decision: Decision, forward_return: float) -> None:
        """A decision's horizon has closed: feed the ensemble, the ML components, the calibrator."""
        direction = int(decision.technical.action)
        judged = int(decision.signal.action) or direction
        hit = event_happened(judged, forward_return, self.event.threshold)
        outcome = Outcome(symbol, index, decision.time, judged, forward_return, hit,
                          decision.raw_confidence, decision.confidence, decision.votes)
        self._note_learned(symbol, index, decision.time)
        try:
            self.coordinator.learn(decision.votes, forward_return, self.event.threshold)
        except Exception as exc:
            self.errors.failed("ensemble", "learn", exc)
        for b in self.components.ml_components:
            learn = getattr(b.obj, "learn", None)
            if learn is not None:
                try:
                    learn(outcome)
                except Exception as exc:
                    self.errors.failed(b.name, "learn", exc, symbol=symbol)
        cal = self.components.calibrator
        if cal is not None and decision.signal.action != Action.HOLD:
            try:
                cal.obj.learn(decision.raw_confidence, hit, judged)
            except Exception as exc:
                self.errors.failed(cal.name, "learn", exc)

    def _note_learned(self, symbol: str, index: int, decided_at: int) -> None:
        """The outcome's last price is bar ``index + horizon``: the learners now know up to it."""
        times = self._bar_times.get(symbol)      # the latest prepared bars (a live window, maybe)
        k = int(np.searchsorted(times, decided_at)) + self.event.horizon if times is not None else -1
        until = int(times[k]) if times is not None and 0 <= k < len(times) else int(decided_at)
        self.learned_until = until if self.learned_until is None else max(self.learned_until, until)

    def trained_until(self) -> Optional[int]:
        """The latest training-data time of any ML component (a backtest's stats start after it)."""
        times = []
        for b in self.components.ml_components:
            fn = getattr(b.obj, "trained_until", None)
            if fn is not None:
                try:
                    t = fn()
                except Exception as exc:
                    self.errors.failed(b.name, "trained_until", exc)
                    continue
                if t is not None:
                    times.append(int(t))
        return max(times) if times else None

    def state(self) -> dict[str, Any]:
        """Learning state of the ensemble and of every component that has one (JSON-able).
        Portfolio guards are left out: their state (locks, active triggers) belongs to one
        account's timeline, see :meth:`guard_state`."""
        out: dict[str, Any] = {"version": STATE_VERSION, "components": {}, "trained_until": self.learned_until}
        if self.coordinator.active is not None:
            out["ensemble"] = self.coordinator.active.state()
        guards = {id(b.obj) for b in self.components.guards}
        for b in self.components.all():
            fn = getattr(b.obj, "state", None)
            if fn is not None and id(b.obj) not in guards:
                out["components"][b.name] = fn()
        return out

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state`. Whether it may be used on the bars to come is the caller's check
        (:func:`mlcoord.learning_state.restore`): ``learned_until`` says what it has seen."""
        until = state.get("trained_until")
        self.learned_until = None if until is None else int(until)
        if "ensemble" in state:
            names = list(state["ensemble"].get("weights", {}))
            self.coordinator.ensemble(names).load_state(state["ensemble"])
        guards = {id(b.obj) for b in self.components.guards}
        self._restore([b for b in self.components.all() if id(b.obj) not in guards], state.get("components", {}))

    def guard_state(self) -> dict[str, Any]:
        """What the portfolio guards must not forget across a live bot's restart (cooldowns, pair
        locks, active hedge triggers): stored by the live loop after every cycle, not by backtests
        (a backtest's locks would lie in another run's future)."""
        out: dict[str, Any] = {"version": 1, "guards": {}}
        for b in self.components.guards:
            fn = getattr(b.obj, "state", None)
            if fn is not None:
                out["guards"][b.name] = fn()
        return out

    def load_guard_state(self, state: dict[str, Any]) -> None:
        self._restore(self.components.guards, state.get("guards", {}))

    @staticmethod
    def _restore(built: list[Built], saved_by_name: dict[str, Any]) -> None:
        for b in built:
            saved = saved_by_name.get(b.name)
            fn = getattr(b.obj, "load_state", None)
            if saved is not None and fn is not None:
                try:
                    fn(saved)
                except Exception as exc:
                    raise PluginError(f"component {b.name!r} could not restore its saved state: "
                                      f"{type(exc).__name__}: {exc}") from exc

    def trade_closed(self, trade: Trade, decision: Optional[Decision]) -> None:
        for b in self.components.all():
            hook = getattr(b.obj, "on_trade_closed", None)
            if hook is None:
                continue
            try:
                hook(trade, decision)
            except Exception as exc:
                self.errors.failed(b.name, "on_trade_closed", exc)
        try:
            self.plugins.hook.on_trade_closed(trade=trade, decision=decision)
        except Exception as exc:
            self.errors.failed("plugins", "on_trade_closed", exc)

    def checked_guard_actions(self, guard: str, result: Any) -> list[GuardAction]:
        """A guard's answer must be a list of GuardAction; anything else is logged and ignored."""
        if not isinstance(result, (list, tuple)) or not all(isinstance(a, GuardAction) for a in result):
            self.errors.failed(guard, "on_bar", f"returned {result!r:.80}, expected a list of GuardAction")
            return []
        return list(result)


def checked_vote(vote: Any, name: str, label: str = "") -> Vote:
    """A vote must be a Vote with finite probabilities in [0, 1] (any real number type, numpy's
    included; not a bool); it is stamped with its component's registered and display names."""
    if not isinstance(vote, Vote):
        raise ComponentFailure(f"returned {type(vote).__name__}, expected Vote")
    changes: dict[str, Any] = {"component": name, "display_name": label or name}
    for field in ("confidence", "p_up", "p_down"):
        value = getattr(vote, field)
        if value is None:
            continue
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise ComponentFailure(f"vote {field} {value!r} is a {type(value).__name__}, not a probability "
                                   "(a number in [0, 1])")
        if not 0.0 <= float(value) <= 1.0:
            raise ComponentFailure(f"vote {field} {value!r} is not a probability in [0, 1]")
        if type(value) is not float:
            changes[field] = float(value)
    return attrs.evolve(vote, **changes)


def check_levels(levels: Any, side: Side, worst_price: float) -> None:
    if not isinstance(levels, ExitLevels):
        raise ComponentFailure(f"returned {type(levels).__name__}, expected ExitLevels")
    if side == Side.LONG and not levels.stop < worst_price:
        raise ComponentFailure(f"long stop {levels.stop} is not below the entry {worst_price}")
    if side == Side.SHORT and not levels.stop > worst_price:
        raise ComponentFailure(f"short stop {levels.stop} is not above the entry {worst_price}")


def trace_hooks(plugins: PluginSet) -> None:
    """Send every pluggy hook call (which plugin answered which hook) to structlog."""
    def before(hook_name, impls, kwargs):
        log.info("hook_call", hook=hook_name, plugins=[impl.plugin_name for impl in impls])

    def after(outcome, hook_name, impls, kwargs):
        log.info("hook_done", hook=hook_name, error=repr(outcome.exception) if outcome.exception else None)

    plugins.manager.add_hookcall_monitoring(before, after)


def build_pipeline(settings: Settings, plugins: PluginSet,
                   option_changes: Optional[dict[str, dict[str, Any]]] = None, *, strict: bool = False) -> Pipeline:
    """The pipeline a run uses; ``strict`` (live trading) refuses to skip a configured component."""
    if settings.engine.trace_hooks:
        trace_hooks(plugins)
    components = resolve_components(settings, plugins, option_changes, strict=strict)
    if settings.engine.trace_hooks:
        for built in components.all():
            built.obj = Traced(built.obj, built.name, built.spec.owner, built.spec.role)
    pipeline = Pipeline(settings, plugins, components)
    plugins.hook.on_startup(settings=settings, components=components)
    return pipeline
