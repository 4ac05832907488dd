"""The pieces every check shares: the Check object, failures, building a component, the check table."""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

import attrs

from mlcoord.registry import ComponentSpec

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


def who(spec: ComponentSpec) -> str:
    return f"{ROLE_WORDS.get(spec.role, spec.role)} {spec.name!r} (plugin {spec.owner!r})"


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


def build(spec: ComponentSpec):
    """A fresh component with its default options, as the engine builds it."""
    options = default_options(spec)
    try:
        return spec.factory(options)
    except Exception as exc:
        raise ConformanceError(f"{who(spec)} failed to start with default options: "
                               f"{type(exc).__name__}: {exc}") from exc


def call(spec: ComponentSpec, what: str, fn: Callable, *args, **kwargs):
    """Call into the component; an exception becomes a failure naming the call."""
    try:
        return fn(*args, **kwargs)
    except ConformanceError:
        raise
    except Exception as exc:
        raise ConformanceError(f"{who(spec)}: {what} raised {type(exc).__name__}: {exc}") from exc


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
