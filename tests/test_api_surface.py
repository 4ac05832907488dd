"""The plugin surface is sealed: ``mlcoord.api`` is everything a plugin may import, plugins import
nothing else of mlcoord, and the engine's code never names a built-in component."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import mlcoord.api

ROOT = Path(__file__).resolve().parents[1]

#: a change here is a change to the public surface: review it as one (docs/hooks.md lists it)
SURFACE = sorted([
    'Action', 'CHECKS', 'Calibrator', 'Candles', 'ComponentContext', 'ConformanceError', 'ContextSeries',
    'Decision', 'EntryGuard', 'EntryLeg', 'EntryPlan', 'EntryPlanner', 'EventSpec', 'ExitLevels', 'ExitManager',
    'ExitReason', 'ExposesFeatures', 'ExposesLocks', 'FEATURES', 'GuardAction', 'GuardActionKind', 'HOOKS_VERSION', 'Learner', 'MLComponent',
    'MarketContext', 'MarketData', 'Outcome', 'OutcomeLearner', 'PortfolioView', 'PortfolioWatcher',
    'PositionExit', 'PositionManager', 'PositionView', 'ReadOnlyViewError', 'Reconfigurable', 'Regime', 'ReleasesLocks', 'Side', 'Signal',
    'SignalSeries', 'SignalSource', 'Sizer', 'Sizing', 'SizingRequest', 'SkipsFlatBars', 'Stateful', 'Trade', 'TradeObserver',
    'TradeLabel', 'Trainable', 'Vote', 'Voter', 'auc', 'trade_labels', 'atr_trade_labels', 'component_checks', 'event_happened', 'event_labels', 'feature_matrix',
    'AccountSettings', 'ChecksAccount', 'features', 'flag', 'fraction', 'hookimpl', 'integer', 'log_loss', 'number', 'parametrize_with_checks',
    'plugin_checks', 'plugin_reason', 'river_weights', 'set_river_weights',
    # sequence-model voters (mlcoord.sequence) and the data a training script reads
    'SequenceModel', 'SequenceComponent', 'SequenceOptions', 'SequenceVoter', 'FitOptions', 'import_torch',
    'sigmoid', 'bundled_path', 'load_candles', 'build_market_data',
    # market inputs and the features beyond a symbol's own candles (issue 16)
    'MarketInputs', 'FundingSeries', 'MARKET_FEATURES', 'ALL_FEATURES', 'feature_table', 'available_features',
])

#: string constants in the engine equal to a built-in's name that do not name it: each says why
NOT_A_COMPONENT = {
    ("journal.py", "risk"): "the Sizing.risk field's key in a decision's plain data",
}


def builtin_names() -> set[str]:
    return set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["mlcoord"])


def test_the_public_surface_is_the_reviewed_snapshot():
    assert sorted(mlcoord.api.__all__) == SURFACE
    assert len(set(mlcoord.api.__all__)) == len(mlcoord.api.__all__)


def test_every_public_name_resolves():
    for name in mlcoord.api.__all__:
        assert getattr(mlcoord.api, name) is not None, name


def test_importing_the_surface_loads_no_front_end_and_not_the_kit():
    code = ("import sys, mlcoord.api; print(sorted(m for m in sys.modules if m.startswith(("
            "'mlcoord.backtest', 'mlcoord.live', 'mlcoord.cli', 'mlcoord.report', 'mlcoord.testing', 'mlcoord.sequence', "
            "'torch'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _mlcoord_imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "mlcoord"]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.split(".")[0] == "mlcoord":
            found.append((node.lineno, node.module))
    return found


def test_plugins_and_the_template_import_only_the_public_surface():
    """The built-ins follow the rule a third party follows (import-linter checks the built-ins'
    packages too; this also covers the template's package, a separate distribution). Tests may
    drive the engine itself (a backtest), so only plugin code is held to it."""
    files = sorted((ROOT / "plugins").rglob("*.py")) + sorted((ROOT / "plugin-template" / "src").rglob("*.py"))
    assert len(files) > 20
    wrong = [f"{f.relative_to(ROOT)}:{line} imports {mod}" for f in files for line, mod in _mlcoord_imports(f)
             if mod != "mlcoord.api"]
    assert not wrong, "\n".join(wrong)


def name_constants(paths, names: set[str]) -> list[str]:
    """Every string constant in ``paths`` equal to one of ``names`` (less the documented exceptions)."""
    hits = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names \
                    and (path.name, node.value) not in NOT_A_COMPONENT:
                hits.append(f"{path.name}:{node.lineno} {node.value!r}")
    return hits


def test_the_engine_never_names_a_built_in_component():
    """Defaults live in the shipped profile; the engine's code selects nothing by name."""
    names = builtin_names()
    assert {"technical", "dca", "risk", "exits", "hedging", "bayes", "lstm"} <= names
    hits = name_constants(sorted((ROOT / "engine" / "mlcoord").rglob("*.py")), names)
    assert not hits, "\n".join(hits)


def test_the_name_grep_would_catch_a_name(tmp_path):
    """The grep above is not vacuous: the same function finds a planted selection by name."""
    planted = tmp_path / "planted.py"
    planted.write_text('if b.name == "hedging":\n    pass\nrisk = {"risk": 1}\n')
    assert name_constants([planted], builtin_names()) == ["planted.py:1 'hedging'", "planted.py:3 'risk'"]
