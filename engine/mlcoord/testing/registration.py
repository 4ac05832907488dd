"""Plugin-wide checks (loads through the real registry, hooks version, unique names) and the checks
every component has (protocol of its role, options through the config converter)."""

from __future__ import annotations

import typing
from typing import Any, Optional

import attrs

from mlcoord.errors import ConfigError, PluginError
from mlcoord.hookspecs import HOOKS_VERSION
from mlcoord.registry import ComponentSpec, check_protocol, discover_entry_points, load_plugins
from mlcoord.testing.core import ConformanceError, build, default_options, example_options, expect, who

UNKNOWN_KEY = "conformance_unknown_option"


def load_alone(name: str, plugin: Any):
    """The plugin loaded by the real registry, with nothing else installed."""
    return load_plugins({}, entry_points={}, extra_plugins={name: plugin})


def check_registers(name: str, plugin: Any) -> None:
    try:
        plugins = load_alone(name, plugin)
    except PluginError as exc:
        raise ConformanceError(f"plugin {name!r} does not register cleanly: {exc}") from None
    status = plugins.statuses[name]
    expect(status.enabled, f"plugin {name!r} was skipped by the registry: {status.reason}")
    expect(plugins.components, f"plugin {name!r} registered no component: implement a register_* hook "
                               f"(see mlcoord.hookspecs) and call register(name, factory, options=...)")
    for spec in plugins.components.values():
        expect(spec.owner == name, f"component {spec.name!r} is owned by {spec.owner!r}, not {name!r}")


def check_hooks_version(name: str, plugin: Any) -> None:
    version = getattr(plugin, "MLCOORD_HOOKS_VERSION", None)
    expect(version is not None, f"plugin {name!r} does not declare MLCOORD_HOOKS_VERSION; add "
                                f"`MLCOORD_HOOKS_VERSION = {HOOKS_VERSION}` so a future engine can tell which "
                                f"hook contract it was written for")
    expect(isinstance(version, int) and not isinstance(version, bool) and 1 <= version <= HOOKS_VERSION,
           f"plugin {name!r} declares MLCOORD_HOOKS_VERSION = {version!r}; this engine provides 1..{HOOKS_VERSION}")


def check_unique_names(name: str, plugin: Any) -> None:
    """Its component names must not collide with the built-in plugins' (loaded side by side)."""
    others = {}
    for ep_name, ep in discover_entry_points().items():
        if getattr(getattr(ep, "dist", None), "name", "") != "mlcoord" or ep_name == name:
            continue
        try:
            same = ep.load() is plugin
        except Exception:      # a broken built-in is skipped by load_plugins with a warning
            same = False
        if not same:
            others[ep_name] = ep
    try:
        clashes = load_plugins({}, entry_points=others, extra_plugins={name: plugin}).clashes
    except PluginError as exc:
        raise ConformanceError(f"plugin {name!r}: {exc}; pick another component name") from None
    if clashes:
        raise ConformanceError(f"plugin {name!r}: {clashes[0]}; pick another component name")


PLUGIN_CHECKS = (("registers", check_registers), ("hooks_version", check_hooks_version),
                 ("unique_names", check_unique_names))


# -- every component -----------------------------------------------------------------------------
def check_protocol_of(spec: ComponentSpec, data=None) -> None:
    component = build(spec)
    try:
        check_protocol(spec, component)
    except PluginError as exc:
        raise ConformanceError(str(exc)) from None


def check_options_roundtrip(spec: ComponentSpec, data=None) -> None:
    """Default options -> plain data (what a config file holds) -> options: the same object."""
    from mlcoord.config import CONVERTER, structure
    cls = _options_class(spec)
    expect(attrs.has(cls), f"{who(spec)}: options {cls!r} is not an attrs class")
    options = default_options(spec)
    raw = CONVERTER.unstructure(options)
    expect(isinstance(raw, dict), f"{who(spec)}: options unstructure to {type(raw).__name__}, expected a table")
    try:
        back = structure(raw, cls, path=f"$.plugins.{spec.name}")
    except ConfigError as exc:
        raise ConformanceError(f"{who(spec)}: its own default options do not read back from config: {exc}") from None
    expect(back == options, f"{who(spec)}: options changed on a config round trip: {options!r} -> {back!r}")


def check_options_refuse_unknown(spec: ComponentSpec, data=None) -> None:
    """An unknown key (a typo in [plugins.NAME]) is a ConfigError naming its path, never ignored."""
    from mlcoord.config import CONVERTER, structure
    path = f"$.plugins.{spec.name}"
    raw = {**CONVERTER.unstructure(default_options(spec)), UNKNOWN_KEY: 1}
    try:
        structure(raw, _options_class(spec), path=path)
    except ConfigError as exc:
        expect(UNKNOWN_KEY in str(exc) and path in str(exc),
               f"{who(spec)}: the error for an unknown option does not name {UNKNOWN_KEY!r} at {path}: {exc}")
        return
    raise ConformanceError(f"{who(spec)}: unknown option {UNKNOWN_KEY!r} in [plugins.{spec.name}] was accepted "
                           f"silently (read options with mlcoord.config.structure)")


def _options_class(spec: ComponentSpec) -> type:
    """The component's options class; the option checks run only for components that have one."""
    if spec.options is None:
        raise ConformanceError(f"{who(spec)}: has no options class to check")
    return spec.options


def _typed_field(cls: type) -> Optional[tuple[str, type]]:
    """The first option typed int, float or bool (a wrong value for it must be refused)."""
    hints = typing.get_type_hints(cls)
    for field in attrs.fields(cls):
        if field.init and hints.get(field.name) in (int, float, bool):
            return field.name, hints[field.name]
    return None


def check_options_refuse_bad_value(spec: ComponentSpec, data=None) -> None:
    """A value of the wrong type is a ConfigError naming the option's path."""
    from mlcoord.config import CONVERTER, structure
    cls = _options_class(spec)
    typed = _typed_field(cls)
    if typed is None:
        raise ConformanceError(f"{who(spec)}: no option is typed int, float or bool (nothing to check)")
    name, _ = typed
    path = f"$.plugins.{spec.name}"
    raw = {**CONVERTER.unstructure(default_options(spec)), name: "not-a-number"}
    try:
        structure(raw, cls, path=path)
    except ConfigError as exc:
        expect(f"{path}.{name}" in str(exc), f"{who(spec)}: the error for a bad {name!r} does not name "
                                             f"{path}.{name}: {exc}")
        return
    raise ConformanceError(f"{who(spec)}: option {name!r} accepted the string 'not-a-number'")


def check_options_examples(spec: ComponentSpec, data=None) -> None:
    """Each declared example option set reads as the options class, as ``[plugins.NAME]`` would:
    a typo or a wrong type in an example fails here, naming the option."""
    for index in range(1, len(spec.examples) + 1):
        example_options(spec, index)


def _has_options(spec: ComponentSpec) -> bool:
    return spec.options is not None


def _has_typed_option(spec: ComponentSpec) -> bool:
    try:
        return spec.options is not None and _typed_field(spec.options) is not None
    except Exception:
        return False


COMMON_CHECKS = (
    ("protocol", check_protocol_of, None),
    ("options_roundtrip", check_options_roundtrip, _has_options),
    ("options_unknown_key", check_options_refuse_unknown, _has_options),
    ("options_bad_value", check_options_refuse_bad_value, _has_typed_option),
    ("options_examples", check_options_examples, lambda spec: bool(spec.examples)),
)

#: checks of the options class alone: they run once per component, not once per example option set
OPTIONS_CHECKS = frozenset({"options_roundtrip", "options_unknown_key", "options_bad_value", "options_examples"})
