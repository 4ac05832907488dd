"""Plugin loading and the component registry.

``load_plugins`` builds a fresh pluggy manager (never a module global, so tests stay isolated),
loads the ``mlcoord`` entry points one by one, blocks disabled names, skips plugins that fail to
import or do not match the hook specs (with a warning saying how to fix it) and collects the
components every plugin registers, each with its owner and typed options.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import importlib.util
import inspect
import re
import sys
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Union

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
    factory: Callable[..., Any]
    options: Optional[type]
    owner: str
    description: str = ""
    extra_roles: tuple[str, ...] = ()     # a guard registered as entry guard and portfolio watcher
    #: how decision blocks and reports name it (a profile may override it; default: ``name``)
    display_name: str = ""
    #: option sets besides the defaults that the conformance kit also checks (``{option: value}``)
    examples: tuple[Mapping[str, Any], ...] = ()
    distribution: str = ""                # the installed distribution that owns the plugin

    @property
    def roles(self) -> tuple[str, ...]:
        return (self.role, *self.extra_roles)

    @property
    def label(self) -> str:
        return self.display_name or self.name


@attrs.frozen
class ComponentContext:
    """What a factory learns about the component it builds, when it asks for it (a parameter
    named ``context``): the same class registered twice under two names builds two components
    that know their own names (the name keys their votes, weights and saved state)."""

    name: str
    role: str
    plugin: str
    distribution: str
    display_name: str
    options: Any


def build_object(spec: ComponentSpec, options: Any, display_name: str = "") -> Any:
    """Call the factory: ``factory(options)``, plus ``context=`` when its signature names it."""
    if _wants_context(spec.factory):
        context = ComponentContext(spec.name, spec.role, spec.owner, spec.distribution,
                                   display_name or spec.label, options)
        return spec.factory(options, context=context)
    return spec.factory(options)


def _wants_context(factory: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):       # builtins and some C callables have no signature
        return False
    return "context" in parameters


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

    def __init__(self, registry: dict[str, ComponentSpec], role: str, owner: str, distribution: str = "",
                 clashes: Optional[list[str]] = None):
        self._registry, self._role, self._owner = registry, role, owner
        self._distribution = distribution
        self._clashes = clashes

    def __call__(self, name: str, factory: Callable[..., Any], options: Optional[type] = None,
                 description: str = "", *, display_name: str = "",
                 examples: Iterable[Mapping[str, Any]] = ()) -> None:
        """Register component ``name``: ``factory(options)`` (or ``factory(options, context=...)``)
        builds it; ``options`` is its attrs options class; ``display_name`` how decision blocks
        show it; ``examples`` option sets besides the defaults the conformance kit also checks."""
        if not isinstance(name, str) or not name.isidentifier():
            raise PluginError(f"plugin {self._owner!r} registered a component with invalid name {name!r}")
        if options is not None and not attrs.has(options):
            raise PluginError(f"plugin {self._owner!r}: options of {name!r} must be an attrs class, got {options!r}")
        if not callable(factory):
            raise PluginError(f"plugin {self._owner!r}: factory of {name!r} must be callable, got {factory!r}")
        if not isinstance(display_name, str):
            raise PluginError(f"plugin {self._owner!r}: display_name of {name!r} must be a string, "
                              f"got {display_name!r}")
        examples = tuple(examples)
        for example in examples:
            if not isinstance(example, Mapping) or not all(isinstance(k, str) for k in example):
                raise PluginError(f"plugin {self._owner!r}: each example of {name!r} must be a mapping of option "
                                  f"names to values, got {example!r}")
            if options is None:
                raise PluginError(f"plugin {self._owner!r}: {name!r} declares example options but no options class")
        previous = self._registry.get(name)
        if previous is not None and previous.owner == self._owner and {previous.role, self._role} == set(GUARD_ROLES) \
                and previous.factory == factory and previous.options is options:
            # one guard playing both roles (vetoing entries and acting on every bar): one component
            self._registry[name] = attrs.evolve(previous, extra_roles=previous.extra_roles + (self._role,))
            return
        if previous is not None:
            text = (f"component name {name!r} registered twice: by plugin {previous.owner!r} "
                    f"({previous.role}) and by plugin {self._owner!r} ({self._role}); keep one with "
                    f"--disable {previous.owner if previous.owner != self._owner else name} or "
                    f"[engine] disable = [\"{self._owner}\"]")
            if self._clashes is None or previous.owner == self._owner:
                raise PluginError(text)
            self._clashes.append(text)      # the first registration stays; the clash is reported
            return
        self._registry[name] = ComponentSpec(name, self._role, factory, options, self._owner, description,
                                             display_name=display_name, examples=examples,
                                             distribution=self._distribution)


@attrs.define
class PluginSet:
    """The loaded plugins: their manager, their statuses and the components they registered."""

    manager: pluggy.PluginManager
    statuses: dict[str, PluginStatus]
    components: dict[str, ComponentSpec]
    #: component names two plugins both registered (the first kept); a run refuses to start
    #: until one plugin is disabled, ``plugins list`` shows them
    clashes: tuple[str, ...] = ()

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
    package shares its distribution. Both come from one parse of its metadata when it has one
    (``importlib.metadata``'s ``name`` and ``version`` each parse the whole file, README
    included), else from its ``name`` and ``version``."""
    seen = described.get(id(dist))
    if seen is None or seen[0] is not dist:
        metadata = getattr(dist, "metadata", None)
        if metadata is not None:
            name, version = metadata.get("Name"), metadata.get("Version")    # a broken one may lack them
        else:
            name, version = getattr(dist, "name", ""), getattr(dist, "version", "")
        seen = described[id(dist)] = (dist, name or "", version or "")
    return seen[1], seen[2]


def _itself(obj: Any) -> Any:
    """An already-imported plugin object's loader (an entry point's is ``ep.load``)."""
    return obj


def load_plugins(
    disabled: Mapping[str, str] = {},
    *,
    entry_points: Optional[Mapping[str, Any]] = None,
    extra_plugins: Mapping[str, Any] = {},
    plugins_dir: Optional[Union[str, Path]] = None,
) -> PluginSet:
    """Load plugins, skipping ``disabled`` (name -> where it was disabled) and broken ones.

    ``entry_points`` replaces discovery (tests); ``extra_plugins`` registers objects directly
    (name -> module or object), as if they had entry points; ``plugins_dir`` loads every
    ``*.py`` file of a folder as a plugin named after the file (one-file plugins, as datasette's
    ``--plugins-dir``).
    """
    eps = dict(discover_entry_points() if entry_points is None else entry_points)
    extra = dict(extra_plugins)
    folder = plugin_files(plugins_dir) if plugins_dir is not None else {}
    for name in folder:
        if name in eps or name in extra:
            raise PluginError(f"plugin file {folder[name]} is named like the installed plugin {name!r}; rename the file")
    check_names(disabled, list(eps) + list(extra) + list(folder), "plugin name in disable list")
    manager = new_plugin_manager()
    statuses: dict[str, PluginStatus] = {}
    candidates: list[tuple[str, Callable[[], Any], str, str]] = []
    described: dict[int, tuple[Any, str, str]] = {}
    for name, ep in eps.items():
        candidates.append((name, ep.load, *_distribution(getattr(ep, "dist", None), described)))
    for name, obj in extra.items():
        candidates.append((name, partial(_itself, obj), "", ""))
    for name, path in folder.items():
        candidates.append((name, partial(load_plugin_file, name, path), f"file {path}", ""))

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
    clashes: list[str] = []
    for hook_name, role in REGISTER_HOOKS.items():
        for impl in getattr(manager.hook, hook_name).get_hookimpls():
            owner = impl.plugin_name
            if not statuses[owner].enabled:          # its register hook failed earlier
                continue
            mine = dict(components)
            register = Register(mine, role, owner, statuses[owner].distribution, clashes)
            kwargs = {"register": register} if "register" in impl.argnames else {}
            try:
                impl.function(**kwargs)
            except Exception as exc:
                # a plugin whose registration fails is not half-enabled: none of its components run
                error = f"{type(exc).__name__}: {exc}"
                log.warning("plugin_register_failed", plugin=owner, hook=hook_name, error=error,
                            fix="fix the plugin or disable it with --disable")
                st = statuses[owner]
                statuses[owner] = attrs.evolve(st, enabled=False, reason=f"failed to register: {hook_name}: {error}")
                components = {n: c for n, c in components.items() if c.owner != owner}
                continue
            components = mine
    for text in clashes:
        log.warning("component_name_clash", error=text)
    return PluginSet(manager, statuses, components, tuple(clashes))


def plugin_files(folder: Union[str, Path]) -> dict[str, Path]:
    """The ``*.py`` files of a plugins folder by plugin name (the file's stem); ``_*.py`` skipped."""
    path = Path(folder)
    if not path.is_dir():
        raise PluginError(f"plugins dir {str(folder)!r} is not a directory")
    out = {}
    for file in sorted(path.glob("*.py")):
        if file.name.startswith("_"):
            continue
        if not file.stem.isidentifier():
            raise PluginError(f"plugin file {file} must be named like a Python module (letters, digits, _)")
        out[file.stem] = file.resolve()
    return out


def load_plugin_file(name: str, path: Path) -> Any:
    """Import one plugin file as module ``mlcoord_plugins_dir.NAME`` (never shadowing a package);
    a file already imported under that name is reused."""
    module_name = f"mlcoord_plugins_dir.{name}"
    loaded = sys.modules.get(module_name)
    if loaded is not None and getattr(loaded, "__file__", None) == str(path):
        return loaded
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"cannot import plugin file {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


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
