"""Meta-tests keeping the hook reference (docs/hooks.md) and the tests in step with the hook specs.

datasette-style: every hook in ``mlcoord.hookspecs`` must appear in the reference with its exact
signature, every method of every component protocol likewise, every hook must have a test of its
own in ``tests/``, and every example in the reference must load as a plugin and pass the
conformance kit. Adding a hook without documenting and testing it fails here, naming it.

Signatures are compared as ``inspect.signature`` renders them, minus the quotes that postponed
annotations (``from __future__ import annotations``) wrap around every annotation, i.e. as they
are written in the source: ``on_trade_closed(trade: Trade, decision: Optional[Decision]) -> None``.
"""

from __future__ import annotations

import ast
import inspect
import re
import types
from pathlib import Path

import pytest

from mlcoord import components, hookspecs, protocols
from mlcoord.registry import load_plugins

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "docs" / "hooks.md"
TESTS = Path(__file__).resolve().parent

HOOKS = {name: fn for name, fn in vars(hookspecs).items()
         if inspect.isfunction(fn) and hasattr(fn, f"{hookspecs.PROJECT}_spec")}
PROTOCOLS = (*components.ROLE_PROTOCOLS.values(), components.Voter, components.PositionManager,
             *(getattr(protocols, name) for name in protocols.__all__))


def rendered(fn, drop_self: bool = False) -> str:
    """``name(args) -> ret`` as inspect renders it, without the postponed-annotation quotes."""
    text = re.sub(r"[\"']", "", str(inspect.signature(fn)))
    if drop_self:
        text = re.sub(r"^\(self(, )?", "(", text)
    return fn.__name__ + text


def protocol_methods() -> dict[str, str]:
    out = {}
    for proto in PROTOCOLS:
        for name, fn in vars(proto).items():
            if inspect.isfunction(fn) and not name.startswith("_"):
                out[f"{proto.__name__}.{name}"] = rendered(fn, drop_self=True)
    return out


def python_examples() -> list[str]:
    return re.findall(r"```python\n(.*?)```", REFERENCE.read_text(encoding="utf-8"), flags=re.S)


# -- the reference --------------------------------------------------------------------------------

def test_there_are_hooks_to_document():
    assert {"register_signal_sources", "on_startup", "on_trade_closed"} <= set(HOOKS)
    assert rendered(HOOKS["on_trade_closed"]) == "on_trade_closed(trade: Trade, decision: Optional[Decision]) -> None"


def test_every_hook_is_in_the_reference_with_its_exact_signature():
    text = REFERENCE.read_text(encoding="utf-8")
    missing = [name for name in HOOKS if f"### {name}\n" not in text]
    mismatched = [f"{name}: expected `{rendered(fn)}`" for name, fn in HOOKS.items() if rendered(fn) not in text]
    assert not missing, f"hooks without a section '### NAME' in {REFERENCE.name}: {missing}"
    assert not mismatched, f"hook signatures missing or different in {REFERENCE.name}: {mismatched}"


def test_every_protocol_method_is_in_the_reference_with_its_signature():
    text = REFERENCE.read_text(encoding="utf-8")
    bad = [f"{where}: expected `{sig}`" for where, sig in protocol_methods().items() if sig not in text]
    assert not bad, f"component protocol methods missing or different in {REFERENCE.name}: {bad}"


def test_the_reference_states_the_hooks_version_and_the_optional_ml_methods():
    text = REFERENCE.read_text(encoding="utf-8")
    assert f"currently **{hookspecs.HOOKS_VERSION}**" in text and "MLCOORD_HOOKS_VERSION" in text
    for optional in ("learn(outcome: Outcome) -> None", "state() -> dict", "load_state(state: dict) -> None",
                     "trained_until() -> int | None", "train(datasets, out, progress=None) -> dict",
                     "on_trade_closed(trade, decision) -> None"):
        assert optional in text, optional


def test_every_hook_has_an_example_in_the_reference():
    examples = python_examples()
    without = [name for name in HOOKS if not any(re.search(rf"^def {name}\(", e, re.M) for e in examples)]
    assert not without, f"hooks without a ```python example implementing them: {without}"


@pytest.mark.parametrize("source", python_examples(), ids=lambda s: re.search(r"^def (\w+)\(", s, re.M).group(1))
def test_every_example_is_a_working_plugin(source):
    """Each example loads as a plugin; the components it registers pass the conformance kit."""
    from mlcoord.testing import check_plugin

    module = types.ModuleType("hook_reference_example")
    exec(compile(source, f"{REFERENCE.name} example", "exec"), module.__dict__)
    loaded = load_plugins({}, entry_points={}, extra_plugins={"example": module})
    status = loaded.statuses["example"]
    assert status.enabled, status.reason
    implemented = set(re.findall(r"^def (\w+)\(", source, re.M)) & set(HOOKS)
    assert set(status.hooks) == implemented
    if any(name.startswith("register_") for name in implemented):
        assert loaded.components, "a register hook example must register a component"
        check_plugin(module, name="example")


# -- every hook has a test of its own --------------------------------------------------------------

def _is_hookimpl(decorator: ast.expr) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    return (isinstance(target, ast.Name) and target.id == "hookimpl") or \
        (isinstance(target, ast.Attribute) and target.attr == "hookimpl")


def _calls_hook(node: ast.AST) -> set[str]:
    """Hooks a piece of test code calls: ``register_x(...)`` (a plugin's implementation) or
    ``<manager>.hook.<name>(...)`` (through pluggy)."""
    found = set()
    for call in ast.walk(node):
        if not isinstance(call, ast.Call):
            continue
        f = call.func
        if isinstance(f, ast.Name) and f.id in HOOKS:
            found.add(f.id)
        elif isinstance(f, ast.Attribute) and f.attr in HOOKS and isinstance(f.value, ast.Attribute) \
                and f.value.attr == "hook":
            found.add(f.attr)
    return found


def hooks_tested_in(path: Path) -> set[str]:
    """Hooks that the test functions of a test module call, or that the module implements with
    ``@hookimpl`` (a plugin defined in the test module, exercised by its tests)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    tests = [n for n in functions if n.name.startswith("test")]
    if not tests:
        return set()
    found = {n.name for n in functions if n.name in HOOKS and any(map(_is_hookimpl, n.decorator_list))}
    for test in tests:
        found |= _calls_hook(test)
    return found


def test_the_hook_test_finder_sees_both_ways_of_testing_a_hook(tmp_path):
    sample = tmp_path / "test_sample.py"
    sample.write_text(
        "from mlcoord import hookimpl\n"
        "class P:\n    @hookimpl\n    def on_startup(self, settings):\n        pass\n"
        "def test_a(plugins):\n    plugins.hook.on_trade_closed(trade=1, decision=None)\n"
        "    register_sizers(print)\n    x.on_startup()\n")
    assert hooks_tested_in(sample) == {"on_startup", "on_trade_closed", "register_sizers"}
    helper = tmp_path / "helpers.py"        # no test function: implementations there do not count
    helper.write_text("from mlcoord import hookimpl\n@hookimpl\ndef register_calibrators(register):\n    pass\n")
    assert hooks_tested_in(helper) == set()


def test_every_hook_has_a_test_of_its_own():
    tested: dict[str, list[str]] = {name: [] for name in HOOKS}
    for path in sorted(TESTS.rglob("test_*.py")):
        for name in hooks_tested_in(path):
            tested[name].append(path.name)
    untested = sorted(name for name, where in tested.items() if not where)
    assert not untested, f"hooks without a test of their own in tests/: {untested}"
