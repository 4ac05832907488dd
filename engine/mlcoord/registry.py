"""Plugin loading and the component registry.

``load_plugins`` builds a fresh pluggy manager (never a module global, so tests stay isolated),
loads the ``mlcoord`` entry points one by one, blocks disabled names, skips plugins that fail to
import or do not match the hook specs (with a warning saying how to fix it) and collects the
components every plugin registers, each with its owner and typed options.
"""

from __future__ import annotations

import difflib
import re
import importlib.metadata
from functools import partial
from typing import Any, Callable, Iterable, Mapping, Optional

import attrs
import pluggy
import structlog

from mlcoord import hookspecs
from mlcoord.components import ROLE_PROTOCOLS
from mlcoord.errors import ConfigError, PluginError

log = structlog.get_logger("mlcoord.plugins")

ENTRY_POINT_GROUP = "mlcoord"

#: register hook -> role name used in ``[pipeline]`` and in ``ROLE_PROTOCOLS``
REGISTER_HOOKS = {
    "register_signal_sources": "signal_sources",
    "register_ml_components": "ml_components",
    "register_calibrators": "calibrators",
    "register_entry_planners": "entry_planners",
    "register_sizers": "sizers",
    "register_exit_managers": "exit_managers",
    "register_entry_guards": "entry_guards",
    "register_portfolio_watchers": "portfolio_watchers",
}

#: roles one component may play together (registered under one name with one factory in both)
GUARD_ROLES = ("entry_guards", "portfolio_watchers")

#: what to tell a user when a plugin's import fails for a missing module
EXTRA_FOR_MODULE = {"torch": "ml", "river": "ml", "ccxt": "exchange"}


@attrs.frozen
class ComponentSpec:
    """A registered component: how to build it and who registered it."""

    name: str
    role: str
    factory: Callable[[Any], Any]
    options: Optional[type]
    owner: str
    description: str = ""
    extra_roles: tuple[str, ...] = ()     # a guard registered as entry guard and portfolio watcher

    @property
    def roles(self) -> tuple[str, ...]:
        return (self.role, *self.extra_roles)


@attrs.frozen
class PluginStatus:
    """What happened to one discovered plugin (for ``mlcoord plugins list`` and warnings)."""

    name: str
    distribution: str
    version: str
    enabled: bool
    reason: str = ""          # why disabled / why it failed
    hooks: tuple[str, ...] = ()


class Register:
    """The ``register`` callable handed to ``register_*`` hooks; records owner and role."""

    def __init__(self, registry: dict[str, ComponentSpec], role: str, owner: str):
        self._registry, self._role, self._owner = registry, role, owner

    def __call__(self, name: str, factory: Callable[[Any], Any], options: Optional[type] = None,
                 description: str = "") -> None:
        if not isinstance(name, str) or not name.isidentifier():
            raise PluginError(f"plugin {self._owner!r} registered a component with invalid name {name!r}")
        if options is not None and not attrs.has(options):
            raise PluginError(f"plugin {self._owner!r}: options of {name!r} must be an attrs class, got {options!r}")
        previous = self._registry.get(name)
        if previous is not None and previous.owner == self._owner and {previous.role, self._role} == set(GUARD_ROLES) \
                and previous.factory == factory and previous.options is options:
            # one guard playing both roles (vetoing entries and acting on every bar): one component
            self._registry[name] = attrs.evolve(previous, extra_roles=previous.extra_roles + (self._role,))
            return
        if previous is not None:
            raise PluginError(
                f"component name {name!r} registered twice: by plugin {previous.owner!r} "
                f"({previous.role}) and by plugin {self._owner!r} ({self._role})"
            )
        self._registry[name] = ComponentSpec(name, self._role, factory, options, self._owner, description)


@attrs.define
class PluginSet:
    """The loaded plugins: their manager, their statuses and the components they registered."""

    manager: pluggy.PluginManager
    statuses: dict[str, PluginStatus]
    components: dict[str, ComponentSpec]

    def by_role(self, role: str) -> list[ComponentSpec]:
        return sorted((c for c in self.components.values() if role in c.roles), key=lambda c: c.name)

    @property
    def hook(self):
        return self.manager.hook


def new_plugin_manager() -> pluggy.PluginManager:
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    return manager


def discover_entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    """Entry points of the ``mlcoord`` group, by name (first wins, duplicates warned)."""
    found: dict[str, importlib.metadata.EntryPoint] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in found:
            log.warning("plugin_duplicate_entry_point", plugin=ep.name, value=ep.value)
            continue
        found[ep.name] = ep
    return found


def check_names(names: Iterable[str], known: Iterable[str], what: str) -> None:
    """Unknown names are an error that suggests close matches."""
    known = sorted(set(known))
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise ConfigError(f"unknown {what} {name!r}{hint} (known: {', '.join(known) or 'none'})")


def _failure_hint(exc: BaseException) -> str:
    name = getattr(exc, "name", None) if isinstance(exc, ModuleNotFoundError) else None
    if isinstance(exc, ModuleNotFoundError) and not name:
        match = re.search(r"No module named '([\w.]+)'", str(exc))
        name = match.group(1) if match else None
    if name:
        top = name.split(".")[0]
        extra = EXTRA_FOR_MODULE.get(top)
        if extra:
            return f"install it with: pip install 'mlcoord[{extra}]'"
        return f"install the missing module with: pip install {top}"
    if isinstance(exc, SyntaxError):
        return f"fix the syntax error in {exc.filename}:{exc.lineno}"
    return "fix the plugin or disable it with --disable"


def _distribution(dist: Any, described: dict[int, tuple[Any, str, str]]) -> tuple[str, str]:
    """A distribution's name and version, read once per distribution: every entry point of one
    package shares its distribution, and each read parses its metadata file again."""
    seen = described.get(id(dist))
    if seen is None or seen[0] is not dist:
        seen = described[id(dist)] = (dist, getattr(dist, "name", "") or "", getattr(dist, "version", "") or "")
    return seen[1], seen[2]


def _itself(obj: Any) -> Any:
    """An already-imported plugin object's loader (an entry point's is ``ep.load``)."""
    return obj


def load_plugins(
    disabled: Mapping[str, str] = {},
    *,
    entry_points: Optional[Mapping[str, Any]] = None,
    extra_plugins: Mapping[str, Any] = {},
) -> PluginSet:
    """Load plugins, skipping ``disabled`` (name -> where it was disabled) and broken ones.

    ``entry_points`` replaces discovery (tests); ``extra_plugins`` registers objects directly
    (name -> module or object), as if they had entry points.
    """
    eps = dict(discover_entry_points() if entry_points is None else entry_points)
    check_names(disabled, list(eps) + list(extra_plugins), "plugin name in disable list")
    manager = new_plugin_manager()
    statuses: dict[str, PluginStatus] = {}
    candidates: list[tuple[str, Callable[[], Any], str, str]] = []
    described: dict[int, tuple[Any, str, str]] = {}
    for name, ep in eps.items():
        candidates.append((name, ep.load, *_distribution(getattr(ep, "dist", None), described)))
    for name, obj in extra_plugins.items():
        candidates.append((name, partial(_itself, obj), "", ""))

    for name, load, dist_name, version in candidates:
        if name in disabled:
            manager.set_blocked(name)
            statuses[name] = PluginStatus(name, dist_name, version, False, f"disabled by {disabled[name]}")
            continue
        try:
            plugin = load()
            _check_hooks_version(name, plugin)
            manager.register(plugin, name=name)
            manager.check_pending()
        except Exception as exc:  # a broken plugin must never crash the engine
            if manager.get_plugin(name) is not None:
                manager.unregister(name=name)
            hint = _failure_hint(exc)
            reason = f"failed to load: {type(exc).__name__}: {exc}"
            log.warning("plugin_skipped", plugin=name, error=f"{type(exc).__name__}: {exc}", fix=hint)
            statuses[name] = PluginStatus(name, dist_name, version, False, f"{reason} ({hint})")
            continue
        hooks = tuple(sorted(h.name for h in manager.get_hookcallers(plugin) or ()))
        statuses[name] = PluginStatus(name, dist_name, version, True, "", hooks)

    components: dict[str, ComponentSpec] = {}
    for hook_name, role in REGISTER_HOOKS.items():
        for impl in getattr(manager.hook, hook_name).get_hookimpls():
            register = Register(components, role, impl.plugin_name)
            kwargs = {"register": register} if "register" in impl.argnames else {}
            try:
                impl.function(**kwargs)
            except PluginError:
                raise
            except Exception as exc:
                log.warning("plugin_register_failed", plugin=impl.plugin_name, hook=hook_name,
                            error=f"{type(exc).__name__}: {exc}")
    return PluginSet(manager, statuses, components)


def _check_hooks_version(name: str, plugin: Any) -> None:
    for hook, change in hookspecs.REMOVED_HOOKS.items():
        impl = getattr(plugin, hook, None)
        if impl is not None and hasattr(impl, f"{hookspecs.PROJECT}_impl"):
            raise PluginError(f"plugin {name!r} implements {hook}, which this engine no longer calls: {change}")
    wanted = getattr(plugin, "MLCOORD_HOOKS_VERSION", hookspecs.HOOKS_VERSION)
    if not isinstance(wanted, int) or wanted > hookspecs.HOOKS_VERSION:
        raise PluginError(
            f"plugin {name!r} needs hooks version {wanted!r}, this engine provides "
            f"{hookspecs.HOOKS_VERSION}; upgrade mlcoord"
        )


def check_protocol(spec: ComponentSpec, component: Any) -> None:
    """A built component must have the methods of each of its roles' protocols."""
    for role in spec.roles:
        _check_role(spec, ROLE_PROTOCOLS[role], component)


def _check_role(spec: ComponentSpec, protocol: Any, component: Any) -> None:
    if not isinstance(component, protocol):
        missing = [m for m in protocol.__protocol_attrs__ if not hasattr(component, m)] \
            if hasattr(protocol, "__protocol_attrs__") else []
        raise PluginError(
            f"component {spec.name!r} of plugin {spec.owner!r} does not implement "
            f"{protocol.__name__}" + (f" (missing: {', '.join(sorted(missing))})" if missing else "")
        )
