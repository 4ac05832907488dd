"""The pieces every check shares: the Check object, failures, building a component, the check table."""

from __future__ import annotations

import math
import os
import traceback
from types import MappingProxyType
from typing import Any, Callable, Mapping, Optional

import attr
import attrs
import numpy as np
import pandas as pd

import mlcoord
from mlcoord.registry import ComponentSpec, build_object

ROLE_WORDS = {
    "signal_sources": "signal source", "ml_components": "ML component", "calibrators": "calibrator",
    "entry_planners": "entry planner", "sizers": "sizer", "exit_managers": "exit manager",
    "entry_guards": "entry guard", "portfolio_watchers": "portfolio watcher",
}

#: role -> [(check name, check(spec, data), applies(spec) or None)], filled by the role modules
ROLE_CHECKS: dict[str, list[tuple[str, Callable[..., None], Optional[Callable[[ComponentSpec], bool]]]]] = {}


class ConformanceError(AssertionError):
    """A component breaks its hook contract; the message says where and how."""


@attrs.frozen
class Check:
    """One named check: call it (no arguments) to run it; it raises ConformanceError on failure.

    ``id`` is ``"<component>-<check>"`` (or ``"<plugin>-<check>"`` for plugin-wide checks), made
    for ``pytest.mark.parametrize(ids=...)``.
    """

    id: str
    name: str
    subject: str
    run: Callable[[], None] = attrs.field(repr=False)

    def __call__(self) -> None:
        self.run()


def role_check(*roles: str, name: str, applies: Optional[Callable[[ComponentSpec], bool]] = None):
    """Register ``fn(spec, data)`` as check ``name`` for components of ``roles``."""
    def decorate(fn):
        for role in roles:
            ROLE_CHECKS.setdefault(role, []).append((name, fn, applies))
        return fn
    return decorate


@attrs.frozen
class ExampleSpec(ComponentSpec):
    """A component checked with one of the option sets its plugin declared (``register(...,
    examples=(...))``) instead of the defaults: every check that builds it runs once per set."""

    example: Mapping[str, Any] = attrs.field(factory=lambda: MappingProxyType({}))
    example_index: int = 0            # 1-based, as in the check id ``name-check[example1]``

    @classmethod
    def of(cls, spec: ComponentSpec, index: int) -> "ExampleSpec":
        fields = {f.name: getattr(spec, f.name) for f in attrs.fields(ComponentSpec)}
        return cls(**fields, example=MappingProxyType(dict(spec.examples[index - 1])), example_index=index)


def who(spec: ComponentSpec, example: bool = True) -> str:
    """The component as failures name it (with the example option set it was built with)."""
    text = f"{ROLE_WORDS.get(spec.role, spec.role)} {spec.name!r} (plugin {spec.owner!r})"
    if example and isinstance(spec, ExampleSpec):
        text += f" with example option set {spec.example_index} {dict(spec.example)!r}"
    return text


def expect(condition: Any, message: str) -> None:
    if not condition:
        raise ConformanceError(message)


def default_options(spec: ComponentSpec):
    if spec.options is None:
        return None
    try:
        return spec.options()
    except TypeError as exc:
        raise ConformanceError(f"{who(spec)}: options class {spec.options.__name__} cannot be built from its "
                               f"defaults ({exc}); every option needs a default") from None


def example_options(spec: ComponentSpec, index: int):
    """Example option set ``index`` (1-based) read as ``[plugins.NAME]`` would be; a key the options
    class does not have, or a value of the wrong type, fails naming the option."""
    from mlcoord.config import structure
    from mlcoord.errors import ConfigError

    example = spec.examples[index - 1]
    if spec.options is None:
        raise ConformanceError(f"{who(spec)} declares example option set {index} but has no options class")
    try:
        return structure(dict(example), spec.options, path=f"$.plugins.{spec.name}")
    except ConfigError as exc:
        text = str(exc).replace(":\n  ", ": ").replace("\n  ", "; ")
        raise ConformanceError(f"{who(spec, example=False)}: example option set {index} {dict(example)!r} does not read as "
                               f"{spec.options.__name__}: {text}") from None


def options_of(spec: ComponentSpec):
    """The options a check builds the component with: its example set, or the defaults."""
    if isinstance(spec, ExampleSpec):
        return example_options(spec, spec.example_index)
    return default_options(spec)


def build(spec: ComponentSpec):
    """A fresh component, built as the engine builds it (``context=`` when the factory asks)."""
    options = options_of(spec)
    try:
        return build_object(spec, options)
    except Exception as exc:
        given = f"example option set {spec.example_index}" if isinstance(spec, ExampleSpec) else "default options"
        raise ConformanceError(f"{who(spec)} failed to start with {given}: "
                               f"{type(exc).__name__}: {exc}") from exc


def warmup_bars(spec: ComponentSpec, component: Any) -> int:
    """The bars a component declares it abstains on at the start (``warmup_bars``, default 0)."""
    value = getattr(component, "warmup_bars", 0)
    expect(isinstance(value, int) and not isinstance(value, bool) and value >= 0,
           f"{who(spec)}: warmup_bars = {value!r}; declare the warm-up as an integer number of bars >= 0")
    return value


#: how a refused write shows: the engine's views, frozen attrs values, mapping proxies, read-only
#: numpy arrays and tuples each say it their own way
_WRITE_REFUSED = ("read-only", "read only", "does not support item assignment", "does not support item deletion",
                  "is immutable", "can't set attribute", "cannot assign to field", "object is not writeable")
_PLUMBING = tuple(os.path.dirname(m.__file__ or "") + os.sep for m in (mlcoord, np, pd, attr))


def refused_write(exc: BaseException) -> bool:
    """Whether ``exc`` is a read-only view (or array, or mapping) refusing a write."""
    from mlcoord.views import ReadOnlyViewError

    if isinstance(exc, (ReadOnlyViewError, attrs.exceptions.FrozenError)):
        return True
    return isinstance(exc, (TypeError, ValueError, AttributeError)) and any(w in str(exc) for w in _WRITE_REFUSED)


def write_site(exc: BaseException) -> str:
    """The plugin's line that tried the write: the innermost frame outside mlcoord and the
    libraries whose objects refused it (``data.candles.close[5] = 0`` at ``plugin.py:42``)."""
    frames = traceback.extract_tb(exc.__traceback__)
    mine = [f for f in frames if not f.filename.startswith(_PLUMBING) and not f.filename.startswith("<attrs")]
    frame = mine[-1] if mine else (frames[-1] if frames else None)
    if frame is None:
        return "an unknown line"
    return f"`{(frame.line or '').strip()}` ({os.path.basename(frame.filename)}:{frame.lineno})"


def call(spec: ComponentSpec, what: str, fn: Callable, *args, **kwargs):
    """Call into the component; an exception becomes a failure naming the call, and a write into
    something the kit handed it (read-only, as in the engine) names the line that wrote."""
    try:
        return fn(*args, **kwargs)
    except ConformanceError:
        raise
    except Exception as exc:
        if refused_write(exc):
            raise ConformanceError(
                f"{who(spec)}: {what} wrote into something read-only: {write_site(exc)} "
                f"({type(exc).__name__}: {exc}); what the engine hands a plugin (portfolio, positions, market data, "
                f"their mappings and arrays) refuses writes too: copy what you need to change") from exc
        raise ConformanceError(f"{who(spec)}: {what} raised {type(exc).__name__}: {exc}") from exc


def engine_accepts(spec: ComponentSpec, what: str, bound: Callable, *args: Any) -> Any:
    """``bound(*args)``, one of the engine's own checks of a plugin answer (:mod:`mlcoord.bounds`):
    an answer the engine would refuse at run time (and leave the component out of the decision
    for) fails here, with the engine's reason. Returns what the engine makes of the answer."""
    from mlcoord.bounds import ComponentFailure

    try:
        return bound(*args)
    except ComponentFailure as exc:
        raise ConformanceError(f"{who(spec)}: {what}: the engine refuses this answer at run time: {exc}") from None


def has_method(spec: ComponentSpec, *names: str) -> bool:
    """Whether the component defines ``names`` (looked up on the class when the factory is one)."""
    target = spec.factory
    if not isinstance(target, type):
        try:
            target = build(spec)
        except ConformanceError:
            return True          # let the check itself report the failure to build
    return all(callable(getattr(target, n, None)) for n in names)


def probability(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        and 0.0 <= value <= 1.0


def reasons_ok(reasons: Any) -> bool:
    """At least one reason, every one a non-empty string."""
    try:
        items = list(reasons)
    except TypeError:
        return False
    return bool(items) and all(isinstance(r, str) and r.strip() for r in items)


def close(a: Optional[float], b: Optional[float], tol: float = 1e-9) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= tol * max(1.0, abs(a), abs(b))
