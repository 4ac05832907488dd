"""mlcoord.testing: the conformance kit, checking any plugin against the hook contracts.

Use it from a plugin's own tests (one pytest case per check, ids like ``volume_spike-no_lookahead``)::

    import mlcoord_myplugin
    from mlcoord.api import parametrize_with_checks

    @parametrize_with_checks([mlcoord_myplugin])          # modules/objects, {name: plugin}, or ComponentSpecs
    def test_conformance(check):
        check()                                          # raises ConformanceError (an AssertionError) on failure

``plugin_checks(plugin, name=...)`` returns the :class:`Check` list itself (``check.id``, ``check()``).
Installing mlcoord also installs the pytest plugin :mod:`mlcoord.testing.pytest_plugin` (fixtures
``mlcoord_market_data``, ``mlcoord_portfolio``, ``mlcoord_position``). Checks: see :data:`CHECKS`.

What a component declares, and how the kit uses it:

* **Example option sets** - ``register(name, factory, options=..., examples=({"window": 6}, ...))``:
  every check that builds the component runs with the defaults and again with each set (ids
  ``name-no_lookahead[example1]``, ...); a set that does not read as the options class (an unknown
  option, a wrong type) fails ``name-options_examples`` naming the option. Components are built as
  the engine builds them (:func:`mlcoord.registry.build_object`: ``context=`` when the factory asks).
* **Warm-up** - ``warmup_bars: int`` on the built ML component: the bars at the start of the data
  it abstains on by design. ``output`` then fails only if it also abstains on every sampled bar
  after them, and the other vote checks must compare real votes after them (a check that compared
  abstentions only tested nothing: it fails, and says to declare ``warmup_bars`` if that is why).
* **State** - ``state()`` / ``load_state()`` on any component: driven for a while, its state must be
  plain JSON (no tuple keys, numpy numbers, NaN), load into a fresh instance, give back the same
  ``state()``, and the fresh instance must answer what follows exactly as the original. Guards are
  restarted as a live session restarts them: a flat warm-up replay through ``on_bar`` first.

What the kit hands a plugin is read-only, as in the engine: guards get the engine's
:class:`~mlcoord.views.PortfolioSnapshot` (positions, working entries, prices, hedge triggers),
exit managers a :class:`~mlcoord.views.PositionSnapshot`, everyone read-only arrays, frozen values
and mappings that refuse writes (also in the private copies the no-mutation checks make). A
plugin that writes into any of them fails, the failure naming the line that wrote
(``portfolio.positions[0].quantity = 0``, ``data.candles.close[5] = 0``).

Guards are walked over a one-symbol account and a three-symbol one (both sides, a hedge leg,
working entries, losing stops): ``multi_symbol`` fails a guard that crashes with several symbols,
answers differently when the same portfolio lists its positions in another order (it reads
``positions[0]``), or uses ``GuardAction.symbol`` against the engine's meaning (a symbol the
portfolio does not hold, a ``close_hedge`` for another symbol than the hedge it opened).
"""

from __future__ import annotations

import inspect
from functools import partial
from typing import Any, Callable, Iterable, Mapping, Optional, Union

from mlcoord.registry import ComponentSpec
from mlcoord.testing import guards, learners, signals, trading  # noqa: F401  (they fill ROLE_CHECKS)
from mlcoord.testing.core import ROLE_CHECKS, Check, ConformanceError, ExampleSpec
from mlcoord.testing.fixtures import FakePortfolio, FakePosition, conformance_data
from mlcoord.testing.registration import COMMON_CHECKS, OPTIONS_CHECKS, PLUGIN_CHECKS, load_alone

#: every check by the roles it applies to (plugin-wide checks under "plugin")
CHECKS: dict[str, tuple[str, ...]] = {
    "plugin": tuple(name for name, _ in PLUGIN_CHECKS),
    **{role: tuple(name for name, _, _ in COMMON_CHECKS) + tuple(name for name, _, _ in checks)
       for role, checks in ROLE_CHECKS.items()},
}

DataSource = Union[None, Any, Callable[[], Any]]


def _data_getter(data: DataSource) -> Callable[[], Any]:
    if data is None:
        return conformance_data
    if callable(data):
        return data
    return lambda: data


def component_checks(spec: ComponentSpec, *, data: DataSource = None) -> list[Check]:
    """The checks that apply to one registered component: each check that builds it runs with its
    default options and again with each option set it declares in ``register(..., examples=...)``
    (ids ``name-check`` and ``name-check[example1]``, ...).

    ``data``: a MarketData (or a function returning one) to check on instead of the kit's
    3,000 bars of BTC/USDT 1h; it needs at least ~2,100 bars (truncation points 1001 and 2017).
    """
    get_data = _data_getter(data)
    variants: list[ComponentSpec] = [spec, *(ExampleSpec.of(spec, k) for k in range(1, len(spec.examples) + 1))]
    out = []
    role_checks = [c for role in spec.roles for c in ROLE_CHECKS.get(role, ())]
    seen = set()
    for name, fn, applies in (*COMMON_CHECKS, *role_checks):
        if name in seen:      # a guard in both guard roles runs the shared checks once
            continue
        seen.add(name)
        if applies is not None and not applies(spec):
            continue
        for variant in variants[:1] if name in OPTIONS_CHECKS else variants:
            suffix = f"[example{variant.example_index}]" if isinstance(variant, ExampleSpec) else ""
            out.append(Check(f"{spec.name}-{name}{suffix}", name, spec.name, partial(fn, variant, get_data)))
    return out


def _plugin_name(plugin: Any) -> str:
    if inspect.ismodule(plugin):
        base = plugin.__name__.split(".")[-1]
        return base[len("mlcoord_"):] if base.startswith("mlcoord_") else base
    return type(plugin).__name__.lower()


def plugin_checks(plugin: Any, *, name: Optional[str] = None, data: DataSource = None) -> list[Check]:
    """Every check of a plugin (a module or object, as registered under the ``mlcoord`` entry
    points; ``name`` defaults to its module name without ``mlcoord_``) or of a ComponentSpec."""
    if isinstance(plugin, ComponentSpec):
        return component_checks(plugin, data=data)
    name = name or _plugin_name(plugin)
    out = [Check(f"{name}-{check}", check, name, partial(fn, name, plugin)) for check, fn in PLUGIN_CHECKS]
    try:
        components = load_alone(name, plugin).components
    except Exception:     # the "registers" check reports it
        return out
    for spec in sorted(components.values(), key=lambda s: s.name):
        out.extend(component_checks(spec, data=data))
    return out


def _all_checks(plugins: Union[Mapping[str, Any], Iterable[Any]], data: DataSource) -> list[Check]:
    if isinstance(plugins, Mapping):
        items = [(name, plugin) for name, plugin in plugins.items()]
    else:
        items = [(None, plugin) for plugin in plugins]
    checks: list[Check] = []
    for name, plugin in items:
        checks.extend(plugin_checks(plugin, name=name, data=data))
    return checks


def parametrize_with_checks(plugins: Union[Mapping[str, Any], Iterable[Any]], *, data: DataSource = None):
    """A ``pytest.mark.parametrize("check", ...)`` over every check of ``plugins`` (see module doc)."""
    import pytest
    checks = _all_checks(plugins, data)
    return pytest.mark.parametrize("check", checks, ids=[c.id for c in checks])


def check_plugin(plugin: Any, *, name: Optional[str] = None, data: DataSource = None) -> None:
    """Run every check now; the first failure raises (outside pytest, e.g. in a notebook)."""
    for check in plugin_checks(plugin, name=name, data=data):
        check()


__all__ = [
    "CHECKS", "Check", "ConformanceError", "FakePortfolio", "FakePosition", "check_plugin",
    "component_checks", "conformance_data", "parametrize_with_checks", "plugin_checks",
]
