"""Every example config in ``examples/`` loads and does what its header says, shown in the journal.

Each example runs a two-month backtest (2024-01-01 -> 2024-03-01, bundled BTC/USDT 1h) with the
plugin set fixed by the test, not by what happens to be installed: mlcoord's own entry points,
plus the example third-party plugin from ``plugin-template/`` for the examples that use it
(imported from its source tree when it is not installed). Disabling follows the config, exactly
as ``mlcoord backtest --config`` does.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from mlcoord import Side
from mlcoord.backtest.run import disabled_plugins, run_backtest
from mlcoord.config import load_settings
from mlcoord.errors import ConfigError
from mlcoord.registry import discover_entry_points, load_plugins

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
TIMERANGE = "20240101-20240301"
ML_PLUGINS = ("lstm", "attention", "mtf", "rl_selector", "bayes")
TESTED = {"technical-only.toml", "replace-dca.toml", "replace-signal-source.toml", "conservative.toml",
          "trade-label.toml"}


def template_plugin():
    """The plugin-template's module, installed or not."""
    try:
        return importlib.import_module("mlcoord_volume_spike")
    except ImportError:
        sys.path.insert(0, str(ROOT / "plugin-template" / "src"))
        return importlib.import_module("mlcoord_volume_spike")


def run_example(name: str, with_template: bool = False, timerange: str = TIMERANGE) -> dict:
    """The example's backtest as its ``--json`` output."""
    settings = load_settings(EXAMPLES / name, {"data": {"timerange": timerange}})
    builtins = {n: ep for n, ep in discover_entry_points().items()
                if getattr(ep.dist, "name", "") == "mlcoord"}
    extra = {"volume_spike": template_plugin()} if with_template else {}
    plugins = load_plugins(disabled_plugins(settings, env={}), entry_points=builtins, extra_plugins=extra)
    result = run_backtest(settings, plugins=plugins)
    assert not result.raw.errors, result.raw.errors
    return result.to_json()


def non_hold(journal: dict) -> list[dict]:
    decisions = [d for d in journal["decisions"] if d["signal"] != "HOLD" or d["technical_signal"] != "HOLD"]
    assert decisions, "the example made no decision in two months"
    return decisions


def test_every_example_has_a_header_and_every_backtest_config_a_test():
    """Every example starts with a comment saying what it shows; every one that is a plain
    backtest config (``load_settings`` accepts it; e.g. ``sweep.toml`` adds ``[sweep]`` for
    ``mlcoord sweep``) is run by a test here."""
    found = {p.name for p in EXAMPLES.glob("*.toml")}
    assert TESTED <= found, f"missing examples: {sorted(TESTED - found)}"
    untested = []
    for name in sorted(found):
        text = (EXAMPLES / name).read_text(encoding="utf-8")
        assert text.startswith("# "), f"{name} must start with a comment saying what it shows"
        if name in TESTED:
            assert text.startswith(f"# {name} - "), f"{name} must start with '# {name} - what it shows'"
            load_settings(EXAMPLES / name)
            continue
        try:
            load_settings(EXAMPLES / name)
        except ConfigError:
            continue            # a config for another command
        untested.append(name)
    assert not untested, f"backtest example configs without a test in {Path(__file__).name}: {untested}"


def test_technical_only_has_only_the_technical_vote():
    journal = run_example("technical-only.toml")
    assert journal["components"]["ml_components"] == [] and journal["components"]["calibrator"] is None
    assert journal["components"]["signal_sources"] == ["technical"]
    for name in ML_PLUGINS:
        assert journal["plugins"][name] == {"enabled": False, "reason": "disabled by config [engine] disable"}
    decisions = non_hold(journal)
    for d in decisions:
        assert [v["component"] for v in d["votes"]] == ["technical"] and d["votes"][0]["weight"] == 1.0
        assert d["confidence"] == d["raw_confidence"] and "p_signal" not in d
    assert any(d["outcome"] == "entered" for d in decisions)


def test_replace_dca_plans_with_the_grid_planner():
    journal = run_example("replace-dca.toml", with_template=True)
    assert journal["components"]["entry_planner"] == "grid"
    assert journal["plugins"]["dca"]["enabled"] is False
    plans = [d["plan"] for d in journal["decisions"] if "plan" in d]
    assert any(d["outcome"] == "entered" for d in journal["decisions"])
    assert plans and all(p["planner"] == "grid" for p in plans)
    for p in plans:     # [plugins.grid] legs = 3: three equal legs, the first at market
        assert [leg["fraction"] for leg in p["legs"]] == pytest.approx([1 / 3] * 3)
        assert [leg["market"] for leg in p["legs"]] == [True, False, False]
    trades = [t for t in journal["trades"] if not t["hedge"]]
    assert trades and all(t["entries_planned"] == 3 for t in trades)


def test_replace_signal_source_trades_volume_spike_signals():
    journal = run_example("replace-signal-source.toml", with_template=True)
    assert journal["components"]["signal_sources"] == ["volume_spike"]
    assert journal["plugins"]["technical"]["enabled"] is False
    decisions = non_hold(journal)
    for d in decisions:
        said = d["votes"][0]["reasons"]     # what the signal source said, before the ML coordinator
        assert any("x the 48-bar median" in r for r in said), said
        assert any("broke the 20-bar" in r for r in said), said
        assert not any("net score" in r for r in said), said   # the technical plugin's wording
    assert any(d["outcome"] == "entered" for d in decisions)


def test_conservative_is_long_only_unhedged_and_risks_half():
    journal = run_example("conservative.toml")
    assert journal["plugins"]["hedging"]["enabled"] is False
    assert journal["components"]["entry_guards"] == ["protections"]
    decisions = non_hold(journal)
    assert {d["outcome"] for d in decisions if d["signal"] == "SELL"} <= {"no_short_on_spot", "hold"}
    assert any(d["outcome"] == "no_short_on_spot" for d in decisions)
    assert all(d["threshold"] == 0.55 for d in decisions)
    entered = [d for d in decisions if d["outcome"] == "entered"]
    assert entered and all(d["sizing"]["risk"] <= 0.005 * 10_000 * 1.2 for d in entered)
    assert journal["trades"] and all(t["side"] == Side.LONG and not t["hedge"] for t in journal["trades"])


def test_trade_label_lets_the_expected_return_decide_and_plans_four_entries():
    # its own Run line's range: a calibrator starting from the 0.40 prior needs outcomes before
    # P(trade wins) clears the expected return's break-even (none in two months)
    journal = run_example("trade-label.toml", timerange="20230101-20240301")
    decisions = non_hold(journal)
    assert all(d["threshold"] == 0.40 for d in decisions)
    planned = [d for d in decisions if d.get("expected_return") is not None]
    assert planned, "no decision reached the cost-aware entry"
    # the expected return decided: some plans were refused by it, every entry passed it
    assert any(d["outcome"] == "below_expected_return" for d in planned)
    entered = [d for d in planned if d["outcome"] == "entered"]
    assert entered and all(d["expected_return"]["value"] > 0.0 for d in entered)
    assert all(d["expected_return"]["value"] <= 0.0 for d in planned if d["outcome"] == "below_expected_return")
    # P(trade wins) stays near the trade label's base rate: no plan reaches the 3- or 2-entry bands
    assert all(d["confidence"] < 0.65 for d in entered)
    assert all(len(d["plan"]["legs"]) == 4 for d in entered)
