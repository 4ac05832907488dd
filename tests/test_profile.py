"""Profiles and the allow-list: defaults are data, installing a package changes nothing, the
engine treats no component by its name."""

from __future__ import annotations

import sys
import textwrap
import tomllib
from pathlib import Path

import attrs
import numpy as np
import pandas as pd
import pytest
import structlog
from click.testing import CliRunner

import mlcoord
from mlcoord.api import MarketData, SignalSeries, hookimpl
from mlcoord.backtest.run import bundled_path, run_backtest
from mlcoord.candles import load_candles
from mlcoord.cli import main
from mlcoord.config import Settings, structure
from mlcoord.errors import ConfigError
from mlcoord.journal import decision_to_dict, render_decision
from mlcoord.pipeline import build_pipeline, resolve_components
from mlcoord.profile import SHIPPED, load_profile
from mlcoord.registry import discover_entry_points, load_plugins

sys.path.insert(0, str(Path(__file__).parent))
import renamed_builtins  # noqa: E402

ML = ("attention", "lstm", "mtf", "rl_selector")


class AlwaysBuy:
    """A signal source that says BUY on every bar with full confidence."""

    def __init__(self, options=None):
        pass

    def prepare(self, data: MarketData) -> SignalSeries:
        n = len(data)
        return SignalSeries(np.ones(n, np.int8), np.full(n, 0.9), lambda i: ("always",))


class AlwaysBuyPlugin:
    MLCOORD_HOOKS_VERSION = 2

    @hookimpl
    def register_signal_sources(self, register):
        register("always_buy", AlwaysBuy)


class OtherExits:
    MLCOORD_HOOKS_VERSION = 2

    @hookimpl
    def register_exit_managers(self, register):
        from mlcoord_exits import ExitManager, ExitOptions

        register("other_exits", ExitManager, options=ExitOptions)


class RaisingRegister:
    MLCOORD_HOOKS_VERSION = 2

    @hookimpl
    def register_signal_sources(self, register):
        register("half", AlwaysBuy)
        raise RuntimeError("registration broke halfway")


@pytest.fixture(scope="module")
def ml_candles():
    """Bars the shipped models cover (they vote until 2025-03-31), with warm-up."""
    btc = load_candles(bundled_path("BTC/USDT"), symbol="BTC/USDT")
    first = int(np.searchsorted(btc.time, pd.Timestamp("2023-03-01", tz="UTC").value))
    return btc.slice(first - 1500, first + 400)


def _settings(extra: dict | None = None, **engine) -> Settings:
    raw = {"engine": {"min_confidence": 0.5, **engine}}
    for key, value in (extra or {}).items():
        raw.setdefault(key, {}).update(value)
    return structure(raw, Settings)


def _builtins():
    return {n: ep for n, ep in discover_entry_points().items() if ep.value.startswith("mlcoord_")
            and getattr(getattr(ep, "dist", None), "name", "") == "mlcoord"}


def _renamed_profile(tmp_path) -> Path:
    """The default profile with every component name prefixed (labels kept: the product's)."""
    raw = tomllib.loads((SHIPPED / "default.toml").read_text())
    p = renamed_builtins.PREFIX
    lines = ["[pipeline]"]
    for key, value in raw["pipeline"].items():
        lines.append(f"{key} = {[p + v for v in value]!r}" if isinstance(value, list) else f'{key} = "{p + value}"')
    lines.append("[weights]")
    lines += [f"{p + k} = {v}" for k, v in raw["weights"].items()]
    lines.append("[essential]")
    lines.append(f"roles = {raw['essential']['roles']!r}")
    lines.append("[display_names]")
    lines += [f'{p + k} = "{v}"' for k, v in raw["display_names"].items()]
    path = tmp_path / "renamed.toml"
    path.write_text("\n".join(lines).replace("'", '"'))
    return path


def test_the_builtins_under_other_names_with_a_profile_naming_them_run_identically(ml_candles, tmp_path):
    """Proof that no engine code treats a component by its name: one test plugin registers every
    built-in class under a prefixed name, a profile names them, and the default run is the same
    (trades, fills, every decision, every vote) with every ML component voting in both."""
    plain = run_backtest(_settings(), plugins=load_plugins({}, entry_points=_builtins()), candles=[ml_candles])
    renamed = run_backtest(_settings(profile=str(_renamed_profile(tmp_path))),
                           plugins=load_plugins({}, entry_points={}, extra_plugins={"renamed": renamed_builtins}),
                           candles=[ml_candles])
    p = renamed_builtins.PREFIX
    assert renamed.components == {k: (p + v if isinstance(v, str) else [p + n for n in v]) if v else v
                                  for k, v in plain.components.items()}
    voted = {v.component for d in plain.raw.decisions for v in d.votes}
    assert set(ML) <= voted, voted                               # every ML component voted
    assert {p + n for n in voted} == {v.component for d in renamed.raw.decisions for v in d.votes}
    assert plain.raw.trades == renamed.raw.trades and len(plain.raw.trades) > 0
    assert plain.raw.fills == renamed.raw.fills
    assert len(plain.raw.decisions) == len(renamed.raw.decisions)
    for a, b in zip(plain.raw.decisions, renamed.raw.decisions):
        assert [attrs.evolve(v, component=p + v.component) for v in a.votes] == list(b.votes)
        assert a.technical.source == "technical" and b.technical.source == p + "technical"
        renamed_source = attrs.evolve(a.technical, source=b.technical.source)
        signal = renamed_source if a.signal == a.technical else a.signal
        outcome = a.outcome.replace("vetoed:", "vetoed:" + p) if a.outcome.startswith("vetoed:") else a.outcome
        assert attrs.evolve(a, votes=b.votes, technical=renamed_source, signal=signal, outcome=outcome) == b
    block = render_decision(decision_to_dict(next(d for d in renamed.raw.decisions if len(d.votes) > 1)))
    assert "Technical Analysis:" in block and "Bayesian Calibration:" in block


def test_the_decision_block_is_the_products():
    """The built-ins' display names are the product's labels, and the calibration line names the
    calibrator that ran (no calibrator, no calibration claim)."""
    settings = Settings()
    pipeline = build_pipeline(settings, load_plugins({}, entry_points=_builtins()))
    labels = pipeline.labels | {pipeline.signal_name: pipeline.signal_label}
    event = {"symbol": "BTC/USDT", "time": "2025-01-01T00:00:00+00:00", "signal": "BUY", "outcome": "entered",
             "raw_confidence": 0.72, "confidence": 0.70, "threshold": 0.55,
             "calibrator": pipeline.components.calibrator.display_name,
             "votes": [{"component": n, "display_name": labels[n], "signal": "BUY", "confidence": c, "weight": w,
                        "reasons": []}
                       for n, c, w in (("technical", 0.65, 0.3), ("lstm", 0.70, 0.25), ("mtf", 0.75, 0.2),
                                       ("rl_selector", 0.72, 0.15), ("attention", 0.68, 0.1))]}
    lines = render_decision(event).splitlines()
    assert lines[1].startswith("1\ufe0f\u20e3  Technical Analysis: BUY (conf: 65%")
    assert lines[2].startswith("2\ufe0f\u20e3  Deep Learning: BUY (conf: 70%")
    assert lines[3].startswith("3\ufe0f\u20e3  Multi-Timeframe Fusion: BUY (conf: 75%")
    assert lines[4].startswith("4\ufe0f\u20e3  RL Strategy: BUY (conf: 72%")
    assert lines[5].startswith("5\ufe0f\u20e3  Attention-Weighted: BUY (conf: 68%")
    assert "📊 Bayesian Calibration: 72% → 70%" in render_decision(event)
    assert "Bayesian" not in render_decision({**event, "calibrator": ""})


def test_a_third_party_sources_vote_carries_its_own_name_and_label(short_candles):
    plugins = load_plugins({}, entry_points=_builtins(), extra_plugins={"buy": AlwaysBuyPlugin()})
    settings = _settings({"pipeline": {"signal_sources": ["always_buy"]}})
    result = run_backtest(settings, plugins=plugins, candles=[short_candles.slice(0, 900)])
    names = {d.votes[0].component for d in result.raw.decisions}
    assert names == {"always_buy"}
    assert all(d.votes[0].display_name == "always_buy" for d in result.raw.decisions)


def test_installing_a_plugin_changes_no_default_result_and_enabling_it_does(short_candles):
    candles = [short_candles.slice(0, 1200)]
    alone = run_backtest(_settings(), plugins=load_plugins({}, entry_points=_builtins()), candles=candles)
    installed = load_plugins({}, entry_points=_builtins(), extra_plugins={"buy": AlwaysBuyPlugin()})
    same = run_backtest(_settings(), plugins=installed, candles=candles)
    assert same.components == alone.components
    assert same.raw.trades == alone.raw.trades and same.raw.decisions == alone.raw.decisions
    enabled = run_backtest(_settings(enable=["buy"]), plugins=installed, candles=candles)
    assert enabled.components["signal_sources"] == ["technical", "always_buy"]
    assert len(enabled.raw.decisions) > len(alone.raw.decisions)


def test_the_installed_template_changes_no_default_result(short_candles):
    """The plugin template is installed in the test environment: the default run ignores it."""
    found = discover_entry_points()
    if "volume_spike" not in found:
        pytest.skip("the plugin template is not installed here")
    candles = [short_candles.slice(0, 1200)]
    everything = run_backtest(_settings(), plugins=load_plugins({}), candles=candles)
    assert "volume_spike" not in everything.components["signal_sources"]
    builtins = run_backtest(_settings(), plugins=load_plugins({}, entry_points=_builtins()), candles=candles)
    assert everything.raw.trades == builtins.raw.trades
    enabled = run_backtest(_settings(enable=["volume_spike"]), plugins=load_plugins({}), candles=candles)
    assert "volume_spike" in enabled.components["signal_sources"]


def test_a_partial_weights_table_merges_with_the_profiles():
    settings = _settings({"pipeline": {"weights": {"lstm": 0.5}}})
    pipeline = build_pipeline(settings, load_plugins({}, entry_points=_builtins()))
    weights = pipeline.coordinator.start_weights
    assert weights["lstm"] == 0.5
    assert weights["technical"] == 0.30 and weights["mtf"] == 0.20 and weights["attention"] == 0.10


def test_an_unknown_weight_name_is_an_error_with_a_suggestion():
    settings = _settings({"pipeline": {"weights": {"lstn": 0.3}}})
    with pytest.raises(ConfigError, match=r"unknown component in \[pipeline\] weights 'lstn'; did you mean 'lstm'"):
        resolve_components(settings, load_plugins({}, entry_points=_builtins()))


def test_disabling_an_essential_component_never_picks_another_installed_one():
    """README and plugins.md: ``--disable exits`` without naming a replacement is an error, even
    when another exit manager is installed (it used to be picked silently)."""
    plugins = load_plugins({"exits": "CLI --disable"}, entry_points=_builtins(), extra_plugins={"other": OtherExits()})
    with pytest.raises(ConfigError, match="the exit manager is essential and cannot be disabled"):
        resolve_components(Settings(), plugins)
    chosen = resolve_components(_settings({"pipeline": {"exit_manager": "other_exits"}}), plugins)
    assert chosen.exit_manager.name == "other_exits"


def test_a_register_hook_that_raises_disables_its_plugin():
    with structlog.testing.capture_logs() as logs:
        plugins = load_plugins({}, entry_points={}, extra_plugins={"broken": RaisingRegister()})
    status = plugins.statuses["broken"]
    assert not status.enabled and "registration broke halfway" in status.reason
    assert "half" not in plugins.components                      # not half-enabled
    assert any(e["event"] == "plugin_register_failed" for e in logs)


def test_a_missing_component_is_skipped_in_a_backtest_and_refused_live():
    plugins = load_plugins({}, entry_points={n: ep for n, ep in _builtins().items() if n != "mtf"})
    with structlog.testing.capture_logs() as logs:
        chosen = resolve_components(Settings(), plugins)
    assert [b.name for b in chosen.ml_components] == ["attention", "lstm", "rl_selector"]
    assert any(e["event"] == "component_skipped" and e["component"] == "mtf" for e in logs)
    with pytest.raises(ConfigError, match="'mtf'.*cannot run.*Live trading refuses"):
        resolve_components(Settings(), plugins, strict=True)


def test_a_typo_in_a_pipeline_list_is_an_error_not_a_skip():
    with pytest.raises(ConfigError, match=r"unknown ml_components component 'lstn'; did you mean 'lstm'"):
        resolve_components(_settings({"pipeline": {"ml_components": ["lstn"]}}),
                           load_plugins({}, entry_points=_builtins()))


def test_a_factory_learns_its_registered_name():
    seen = []

    class Named:
        def __init__(self, options, *, context):
            seen.append((context.name, context.role, context.plugin, context.display_name))

        def prepare(self, data):
            raise NotImplementedError

    class Plugin:
        MLCOORD_HOOKS_VERSION = 2

        @hookimpl
        def register_signal_sources(self, register):
            register("first", Named, display_name="First One")
            register("second", Named)

    plugins = load_plugins({}, entry_points=_builtins(), extra_plugins={"twice": Plugin()})
    resolve_components(_settings(enable=["twice"]), plugins)
    assert seen == [("first", "signal_sources", "twice", "First One"), ("second", "signal_sources", "twice", "second")]


def test_a_spot_config_refuses_a_component_that_needs_futures():
    settings = structure({"exchange": {"market": "spot"}}, Settings)
    with pytest.raises(ConfigError, match=r"component 'hedging' \(Hedging Guard\) needs a futures account"):
        resolve_components(settings, load_plugins({}, entry_points=_builtins()))


def test_a_profile_with_a_bad_key_names_it(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[pipeline]\nsizer = ["risk"]\n')
    with pytest.raises(ConfigError, match=r"\[pipeline\] sizer must be a component name or \"\", got \['risk'\]"):
        load_profile(str(path))
    with pytest.raises(ConfigError, match="not a shipped profile"):
        load_profile("nonesuch")


# -- one-file plugins ---------------------------------------------------------------------------
ONE_FILE = textwrap.dedent('''
    import numpy as np
    from mlcoord.api import SignalSeries, hookimpl

    MLCOORD_HOOKS_VERSION = 2

    class Contrarian:
        def prepare(self, data):
            close = data.candles.close
            action = np.zeros(len(close), np.int8)
            action[1:] = np.where(close[1:] < close[:-1], 1, 0)
            return SignalSeries(action, np.where(action != 0, 0.8, 0.0), lambda i: ("fell",))

    @hookimpl
    def register_signal_sources(register):
        register("contrarian", lambda options: Contrarian(), display_name="Contrarian")
''')


def test_plugins_dir_loads_one_file_plugins(tmp_path):
    folder = tmp_path / "myplugins"
    folder.mkdir()
    (folder / "contra.py").write_text(ONE_FILE)
    (folder / "_helper.py").write_text("raise RuntimeError('files starting with _ are not plugins')\n")
    listed = CliRunner().invoke(main, ["plugins", "list", "--plugins-dir", str(folder)], catch_exceptions=False)
    assert listed.exit_code == 0, listed.output
    assert "contra" in listed.output and "component contrarian [signal_sources] (Contrarian): installed, not enabled" \
        in listed.output
    config = tmp_path / "c.toml"
    config.write_text('[engine]\nplugins_dir = "myplugins"\nenable = ["contra"]\n')
    settings = mlcoord.config.load_settings(config)
    assert settings.engine.plugins_dir == str(folder)
    from mlcoord.backtest.run import configured_plugins

    plugins = configured_plugins(settings)
    assert resolve_components(settings, plugins).describe()["signal_sources"] == ["technical", "contrarian"]
    out = CliRunner().invoke(main, ["backtest", "--plugins-dir", str(folder), "--enable", "contra", "--no-progress",
                                    "--timerange", "20240101-20240201"], catch_exceptions=False)
    assert out.exit_code == 0, out.output


def test_a_one_file_plugin_reaches_worker_processes_by_its_path(tmp_path):
    """Executors rebuild the plugin set in workers by module name; a --plugins-dir file has no
    importable name, so its recipe carries the file's path (a fresh interpreter imports it)."""
    import pickle

    from mlcoord.executors import PluginRecipe, plugins_from

    folder = tmp_path / "dir"
    folder.mkdir()
    (folder / "contra2.py").write_text(ONE_FILE)
    plugins = load_plugins({}, entry_points={}, plugins_dir=folder)
    recipe = PluginRecipe.of(plugins)
    assert recipe.plugins == (("contra2", ("file", str((folder / "contra2.py").resolve()))),)
    recipe = pickle.loads(pickle.dumps(recipe))
    sys.modules.pop("mlcoord_plugins_dir.contra2", None)           # as in a fresh worker
    rebuilt = plugins_from(recipe)
    assert set(rebuilt.components) == {"contrarian"}
    assert rebuilt.components["contrarian"].display_name == "Contrarian"


CLASHING = textwrap.dedent('''
    from mlcoord.api import hookimpl

    MLCOORD_HOOKS_VERSION = 2

    class Planner:
        def plan(self, signal, price, context):
            raise NotImplementedError

    @hookimpl
    def register_entry_planners(register):
        register("dca", lambda options: Planner())
''')


def test_a_name_clash_leaves_plugins_list_working_and_stops_a_run_naming_the_way_out(tmp_path):
    folder = tmp_path / "clash"
    folder.mkdir()
    (folder / "copycat.py").write_text(CLASHING)
    listed = CliRunner().invoke(main, ["plugins", "list", "--plugins-dir", str(folder)])
    assert listed.exit_code == 0, listed.output
    assert "CLASH: component name 'dca' registered twice: by plugin 'dca'" in listed.output
    run = CliRunner().invoke(main, ["backtest", "--plugins-dir", str(folder), "--no-progress"])
    assert run.exit_code != 0
    assert "registered twice" in run.output and "--disable" in run.output
    fixed = CliRunner().invoke(main, ["plugins", "list", "--plugins-dir", str(folder), "--disable", "copycat"])
    assert "CLASH" not in fixed.output
