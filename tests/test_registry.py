"""Plugin loading, disabling, broken plugins and run-time failures of components.

The engine promises: a disabled plugin is never imported and its components are gone; a plugin
that cannot load is skipped with a warning saying how to fix it; a component that raises or
answers nonsense at run time is left out and counted, and the backtest carries on.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import attrs
import pytest
import structlog.testing

import fake_plugins
from fake_plugins import FakeEntryPoint
from mlcoord.backtest.run import disabled_plugins, run_backtest
from mlcoord.config import Settings, structure
from mlcoord.errors import ConfigError, PluginError
from mlcoord.pipeline import resolve_components
from mlcoord.registry import discover_entry_points, load_plugins

pytestmark = pytest.mark.usefixtures("builtin_plugins_only")

BUILTINS = ("technical", "dca", "exits", "risk", "hedging", "protections")
ESSENTIAL = {"risk": ("risk manager", "sizer"), "exits": ("exit manager", "exit_manager")}
MEANS = {
    "config": "config [engine] disable",
    "cli": "CLI --disable",
    "env": "environment MLCOORD_DISABLE",
}


def builtin_entry_points(**extra):
    """The six built-ins' real entry points, plus ``extra`` fake ones."""
    eps = {name: ep for name, ep in discover_entry_points().items() if name in BUILTINS}
    assert set(eps) == set(BUILTINS)
    eps.update(extra)
    return eps


def disabled_by(means: str, name: str, monkeypatch) -> dict[str, str]:
    if means == "config":
        return disabled_plugins(structure({"engine": {"disable": [name]}}, Settings), env={})
    if means == "cli":
        return disabled_plugins(Settings(), [name], env={})
    monkeypatch.setenv("MLCOORD_DISABLE", f" {name} ,")
    return disabled_plugins(Settings())


def settings(**pipeline) -> Settings:
    return structure({"pipeline": pipeline}, Settings) if pipeline else Settings()


# -- disabling built-ins ------------------------------------------------------------------------
def test_every_builtin_is_discovered_and_enabled_by_default():
    plugins = load_plugins({})
    assert set(BUILTINS) <= set(plugins.statuses)
    for name in BUILTINS:
        status = plugins.statuses[name]
        assert status.enabled, status
        assert status.reason == ""
        assert plugins.components[name].owner == name
    assert resolve_components(Settings(), plugins).describe() == {
        "signal_sources": ["technical"], "ml_components": [], "calibrator": None, "entry_planner": "dca",
        "sizer": "risk", "exit_manager": "exits", "entry_guards": ["protections"],
        "portfolio_watchers": ["hedging", "protections"]}


def test_each_status_names_its_distribution_read_once_per_distribution():
    """Entry points of one package share its distribution: its metadata is read once, and every
    plugin's status still names the distribution and version it came from."""
    class Dist:
        def __init__(self, name, version):
            self._name, self._version, self.reads = name, version, 0

        @property
        def name(self):
            self.reads += 1
            return self._name

        @property
        def version(self):
            self.reads += 1
            return self._version

    a, b = Dist("pkg-a", "1.0"), Dist("pkg-b", "2.5")
    eps = {}
    for name, dist in (("one", a), ("two", a), ("three", b), ("none", None)):
        eps[name] = FakeEntryPoint(name, fake_plugins.Components())
        eps[name].dist = dist
    statuses = load_plugins({}, entry_points=eps).statuses
    assert [(statuses[n].distribution, statuses[n].version) for n in ("one", "two", "three", "none")] == \
        [("pkg-a", "1.0"), ("pkg-a", "1.0"), ("pkg-b", "2.5"), ("", "")]
    assert all(statuses[n].enabled for n in eps)
    assert (a.reads, b.reads) == (2, 2)

    class ParsedDist:
        """Like ``importlib.metadata``'s: ``metadata`` parses the file on every read."""
        def __init__(self, name, version):
            self._fields, self.parses = {"Name": name, "Version": version}, 0

        @property
        def metadata(self):
            self.parses += 1
            return dict(self._fields)

    c = ParsedDist("pkg-c", "0.3")
    for name in ("four", "five"):
        eps[name] = FakeEntryPoint(name, fake_plugins.Components())
        eps[name].dist = c
    statuses = load_plugins({}, entry_points=eps).statuses
    assert [(statuses[n].distribution, statuses[n].version) for n in ("four", "five")] == [("pkg-c", "0.3")] * 2
    assert c.parses == 1
    broken = ParsedDist("x", "1")
    broken._fields = {}                     # metadata without Name or Version: named "", not a crash
    eps["six"] = FakeEntryPoint("six", fake_plugins.Components())
    eps["six"].dist = broken
    assert load_plugins({}, entry_points=eps).statuses["six"].distribution == ""
    real = load_plugins({}).statuses
    assert {real[n].distribution for n in BUILTINS} == {"mlcoord"} and all(real[n].version for n in BUILTINS)


@pytest.mark.parametrize("means", sorted(MEANS))
@pytest.mark.parametrize("name", BUILTINS)
def test_disabling_each_builtin_by_each_means(name, means, monkeypatch):
    disabled = disabled_by(means, name, monkeypatch)
    assert disabled == {name: MEANS[means]}
    plugins = load_plugins(disabled)
    status = plugins.statuses[name]
    assert not status.enabled
    assert status.reason == f"disabled by {MEANS[means]}"
    assert plugins.manager.is_blocked(name)
    assert not any(c.owner == name for c in plugins.components.values())
    assert all(plugins.statuses[other].enabled for other in BUILTINS if other != name)
    if name in ESSENTIAL:
        human, key = ESSENTIAL[name]
        with pytest.raises(ConfigError) as err:
            resolve_components(Settings(), plugins)
        message = str(err.value)
        assert f"the {human} is essential" in message
        assert MEANS[means] in message                       # why it is missing
        assert f"[pipeline] {key} = " in message             # how to fix it
        return
    described = resolve_components(Settings(), plugins).describe()
    flat = [v for value in described.values() for v in (value if isinstance(value, list) else [value])]
    assert name not in flat
    others = [o for o in BUILTINS if o not in ESSENTIAL and o != name]
    assert all(o in flat for o in others)


def test_disable_sources_merge_and_cli_wins(monkeypatch):
    config = structure({"engine": {"disable": ["dca", "hedging"]}}, Settings)
    disabled = disabled_plugins(config, ["hedging"], env={"MLCOORD_DISABLE": "protections,dca"})
    assert disabled == {"dca": MEANS["env"], "hedging": MEANS["cli"], "protections": MEANS["env"]}


def test_disabled_plugin_is_never_imported():
    """Disabling is the fix for a broken plugin, so a disabled plugin must not even be loaded."""
    broken = FakeEntryPoint("mlplug", error=AssertionError("load() called on a disabled plugin"))
    with structlog.testing.capture_logs() as logs:
        plugins = load_plugins({"mlplug": "CLI --disable"}, entry_points=builtin_entry_points(mlplug=broken))
    assert plugins.statuses["mlplug"].reason == "disabled by CLI --disable"
    assert not [e for e in logs if e["event"] == "plugin_skipped"]


def test_unknown_disabled_name_suggests_the_close_one():
    with pytest.raises(ConfigError, match=r"unknown plugin name in disable list 'dcaa'; did you mean 'dca'\?"):
        load_plugins({"dcaa": "CLI --disable"})


def test_dca_disabled_backtest_has_only_direct_single_leg_plans(short_candles):
    base = run_backtest(Settings(), candles=[short_candles])
    assert any(d.plan is not None and len(d.plan.legs) > 1 for d in base.raw.decisions)  # control
    result = run_backtest(Settings(), disabled={"dca": "CLI --disable"}, candles=[short_candles])
    plans = [d.plan for d in result.raw.decisions if d.plan is not None]
    assert plans and result.stats["trades"] > 0
    assert all(p.planner == "direct" and len(p.legs) == 1 and p.legs[0].market for p in plans)
    assert all(t.entries_planned == 1 for t in result.raw.trades if not t.hedge)
    assert result.components["entry_planner"] is None
    assert result.plugins["dca"] == {"enabled": False, "reason": "disabled by CLI --disable"}


def test_hedging_disabled_backtest_has_no_hedges(btc_candles):
    # the whole bundled file (< 1 s): hedging triggers in it however the guard is tuned
    base = run_backtest(Settings(), candles=[btc_candles])
    assert any(t.hedge for t in base.raw.trades)  # control: with hedging enabled, it hedges
    result = run_backtest(Settings(), disabled={"hedging": "x"}, candles=[btc_candles])
    assert result.stats["trades"] > 0
    assert not any(t.hedge for t in result.raw.trades)
    assert not any(f.hedge for f in result.raw.fills)
    assert result.stats["hedges"] == 0


# -- essential roles and an alternative sizer ------------------------------------------------------
def test_risk_disabled_with_an_alternative_sizer_runs(short_candles):
    plugins = load_plugins({"risk": "config [engine] disable"}, extra_plugins={"altrisk": fake_plugins})
    assert plugins.components["altsizer"].owner == "altrisk"
    components = resolve_components(settings(sizer="altsizer"), plugins)
    assert components.sizer.name == "altsizer"
    result = run_backtest(settings(sizer="altsizer"), plugins=plugins, candles=[short_candles])
    entered = [d for d in result.raw.decisions if d.outcome == "entered"]
    assert entered and result.stats["trades"] > 0
    assert all(d.sizing.reasons == ("altsizer: 0.5% risk",) for d in entered)


def test_alternative_sizer_does_not_replace_risk_unless_chosen():
    plugins = load_plugins({}, extra_plugins={"altrisk": fake_plugins})
    assert resolve_components(Settings(), plugins).sizer.name == "risk"
    assert resolve_components(settings(sizer="altsizer"), plugins).sizer.name == "altsizer"


def test_naming_an_unknown_sizer_is_an_error():
    plugins = load_plugins({"risk": "x"}, extra_plugins={"altrisk": fake_plugins})
    with pytest.raises(ConfigError, match=r"unknown sizer component 'altsizr'; did you mean 'altsizer'"):
        resolve_components(settings(sizer="altsizr"), plugins)


@pytest.mark.parametrize("name", sorted(ESSENTIAL))
def test_essential_role_cannot_be_emptied_by_config(name):
    human, key = ESSENTIAL[name]
    with pytest.raises(ConfigError, match=f"the {human} is essential"):
        resolve_components(settings(**{key: ""}), load_plugins({}))


# -- plugins that fail to load -------------------------------------------------------------------
def _skipped(logs, name):
    return [e for e in logs if e["event"] == "plugin_skipped" and e["plugin"] == name]


def test_missing_torch_is_skipped_with_the_extra_to_install():
    error = ModuleNotFoundError("No module named 'torch'", name="torch")  # what `import torch` raises
    eps = builtin_entry_points(lstm=FakeEntryPoint("lstm", error=error))
    with structlog.testing.capture_logs() as logs:
        plugins = load_plugins({}, entry_points=eps)
    [event] = _skipped(logs, "lstm")
    assert event["log_level"] == "warning"
    assert "pip install 'mlcoord[ml]'" in event["fix"]
    assert "No module named 'torch'" in event["error"]
    status = plugins.statuses["lstm"]
    assert not status.enabled and "pip install 'mlcoord[ml]'" in status.reason
    assert all(plugins.statuses[b].enabled for b in BUILTINS)
    assert {"technical", "dca", "risk", "exits"} <= set(plugins.components)


def test_missing_torch_hint_also_from_the_message_alone():
    """A plugin re-raising ``ModuleNotFoundError("No module named 'torch'")`` (no ``name=``)."""
    eps = builtin_entry_points(lstm=FakeEntryPoint("lstm", error=ModuleNotFoundError("No module named 'torch'")))
    with structlog.testing.capture_logs() as logs:
        load_plugins({}, entry_points=eps)
    [event] = _skipped(logs, "lstm")
    assert "pip install 'mlcoord[ml]'" in event["fix"]


def test_real_missing_module_gets_pip_install_hint():
    def load():
        import mlcoord_no_such_dependency_xyz  # noqa: F401

    ep = FakeEntryPoint("weird")
    ep.load = load
    with structlog.testing.capture_logs() as logs:
        plugins = load_plugins({}, entry_points=builtin_entry_points(weird=ep))
    [event] = _skipped(logs, "weird")
    assert event["fix"] == "install the missing module with: pip install mlcoord_no_such_dependency_xyz"
    assert not plugins.statuses["weird"].enabled


def test_syntax_error_is_skipped_naming_file_and_line():
    try:
        compile("def f(:\n    pass\n", "/plugins/broken_plugin.py", "exec")
    except SyntaxError as exc:
        error = exc
    with structlog.testing.capture_logs() as logs:
        plugins = load_plugins({}, entry_points=builtin_entry_points(broken=FakeEntryPoint("broken", error=error)))
    [event] = _skipped(logs, "broken")
    assert event["fix"] == "fix the syntax error in /plugins/broken_plugin.py:1"
    assert event["error"].startswith("SyntaxError")
    assert "failed to load: SyntaxError" in plugins.statuses["broken"].reason
    assert all(plugins.statuses[b].enabled for b in BUILTINS)


def test_misspelled_hook_is_skipped_and_the_others_load():
    eps = builtin_entry_points(typo=FakeEntryPoint("typo", fake_plugins.MisspelledHook()))
    with structlog.testing.capture_logs() as logs:
        plugins = load_plugins({}, entry_points=eps)
    [event] = _skipped(logs, "typo")
    assert "register_signal_source" in event["error"]
    assert not plugins.statuses["typo"].enabled
    assert plugins.manager.get_plugin("typo") is None
    assert all(plugins.statuses[b].enabled for b in BUILTINS)
    assert set(BUILTINS) == set(plugins.components)
    resolve_components(Settings(), plugins)  # the pipeline still resolves


def test_plugin_for_a_newer_hooks_version_is_skipped():
    eps = builtin_entry_points(future=FakeEntryPoint("future", fake_plugins.FutureHooks()))
    with structlog.testing.capture_logs() as logs:
        plugins = load_plugins({}, entry_points=eps)
    [event] = _skipped(logs, "future")
    assert "needs hooks version 99" in event["error"] and "upgrade mlcoord" in event["error"]
    assert "futuresizer" not in plugins.components
    assert plugins.manager.get_plugin("future") is None


def test_same_component_name_from_two_plugins_names_both_owners_and_the_way_out():
    """A clash no longer stops loading (``plugins list`` must still work to diagnose it); a run
    refuses to start, naming both owners and how to keep one."""
    plugins = load_plugins({}, extra_plugins={"copycat": fake_plugins.Duplicate("dca")})
    assert plugins.components["dca"].owner == "dca"            # the first registration stays
    with pytest.raises(ConfigError) as err:
        resolve_components(Settings(), plugins)
    message = str(err.value)
    assert "'dca' registered twice" in message
    assert "plugin 'dca'" in message and "plugin 'copycat'" in message
    assert "--disable" in message and "[engine] disable" in message


# -- components failing at run time -------------------------------------------------------------------
@pytest.fixture(scope="module")
def baseline(short_candles):
    # module scope runs before the function-scoped builtin_plugins_only: pass the built-ins explicitly
    return run_backtest(Settings(), plugins=load_plugins({}, entry_points=builtin_entry_points()),
                        candles=[short_candles])


def run_with(short_candles, pipeline=None, **by_role):
    """A run with the fake components enabled (``[engine] enable``: installed is not enabled)."""
    plugins = load_plugins({}, extra_plugins={"fakes": fake_plugins.Components(**by_role)})
    base = settings(**(pipeline or {}))
    with structlog.testing.capture_logs() as logs:
        result = run_backtest(attrs.evolve(base, engine=attrs.evolve(base.engine, enable=("fakes",))),
                              plugins=plugins, candles=[short_candles])
    failures = [e for e in logs if e["event"] == "component_failed"]
    return result, failures


def test_signal_source_raising_in_prepare_is_left_out(short_candles, baseline):
    result, failures = run_with(short_candles, signal_sources={"badsource": fake_plugins.RaisingSource})
    assert result.components["signal_sources"] == ["technical", "badsource"]
    assert result.raw.errors == {"badsource.prepare": 1}
    assert failures[0]["component"] == "badsource" and "boom in prepare" in failures[0]["error"]
    # the technical source alone passes through unchanged: the run is the baseline run
    assert result.stats["trades"] == baseline.stats["trades"] > 0
    assert result.stats["final_equity"] == baseline.stats["final_equity"]


def test_an_abstaining_second_source_does_not_block_the_first(short_candles, baseline):
    """An enabled extra signal source that is silent must change nothing."""
    result, failures = run_with(short_candles, signal_sources={"silent": fake_plugins.SilentSource})
    assert not failures and result.components["signal_sources"] == ["technical", "silent"]
    assert result.stats["trades"] == baseline.stats["trades"] > 0


def test_ml_component_raising_in_vote_is_left_out(short_candles, baseline):
    result, failures = run_with(
        short_candles, ml_components={"badml": lambda _: fake_plugins.VoterComponent(fake_plugins.RaisingVoter())})
    asked = [d for d in result.raw.decisions if d.technical.action != 0]
    assert result.raw.errors == {"badml.vote": len(asked)} and asked
    assert len(failures) == 3  # the first few in full, then only counted
    assert all(v.component == "technical" for d in result.raw.decisions for v in d.votes)
    assert result.stats["trades"] == baseline.stats["trades"] > 0


def test_guard_raising_in_on_bar_is_counted_every_bar(short_candles):
    result, failures = run_with(short_candles, portfolio_guards={"badguard": fake_plugins.RaisingGuard})
    assert result.raw.errors == {"badguard.on_bar": len(result.raw.times)}
    assert len(failures) == 3
    assert result.stats["trades"] > 0
    assert "hedging" in result.components["portfolio_watchers"]


def test_exit_manager_raising_in_update_keeps_initial_levels(short_candles):
    result, _ = run_with(short_candles, pipeline={"exit_manager": "brokenexits"},
                         exit_managers={"brokenexits": fake_plugins.BrokenExits})
    assert result.components["exit_manager"] == "brokenexits"
    assert result.raw.errors["brokenexits.update"] > 0
    trades = [t for t in result.raw.trades if not t.hedge]
    assert trades
    # the stop never moved, so nothing can have been a trailing stop
    assert {t.exit_reason for t in trades} <= {"stop_loss", "take_profit", "end_of_data", "guard:protections"}


NONSENSE = [
    ("confidence", ("confidence ", "7.0", " at bar 1250 is not in [0, 1]")),
    ("action", ("action ", "5", " at bar 1250 is not -1, 0 or 1")),
    ("length", ("returned ", "2499", " actions / 2499 confidences for 2500 bars")),
]


@pytest.mark.parametrize("kind, parts", NONSENSE, ids=[k for k, _ in NONSENSE])
def test_signal_source_nonsense_is_caught_with_a_clear_message(short_candles, kind, parts):
    source = {"nonsense": lambda _: fake_plugins.NonsenseSource(kind)}
    result, failures = run_with(short_candles, signal_sources=source)
    assert result.raw.errors == {"nonsense.prepare": 1}
    [failure] = failures
    assert failure["component"] == "nonsense" and failure["call"] == "prepare"
    assert failure["error"].startswith("ComponentFailure: " + parts[0])
    assert parts[1] in failure["error"] and failure["error"].endswith(parts[2])
    assert result.stats["trades"] > 0


@pytest.mark.parametrize("kind, parts", NONSENSE[:2], ids=[k for k, _ in NONSENSE[:2]])
def test_signal_source_nonsense_message_shows_plain_numbers(short_candles, kind, parts):
    source = {"nonsense": lambda _: fake_plugins.NonsenseSource(kind)}
    _, [failure] = run_with(short_candles, signal_sources=source)
    assert failure["error"] == "ComponentFailure: " + "".join(parts)


def test_ml_vote_of_wrong_type_is_caught(short_candles):
    voter = fake_plugins.NonsenseVoter("int")
    result, failures = run_with(short_candles, ml_components={"badtype": lambda _: fake_plugins.VoterComponent(voter)})
    assert result.raw.errors["badtype.vote"] > 0
    assert "returned int, expected Vote" in failures[0]["error"]
    assert result.stats["trades"] > 0


def test_vote_with_invalid_confidence_cannot_be_built():
    with pytest.raises(ValueError, match=r"confidence must be a number in \[0, 1\], got 7.0"):
        fake_plugins.Vote("x", 1, 7.0)


def test_ml_vote_that_skipped_validation_is_caught(short_candles):
    voter = fake_plugins.NonsenseVoter("7")
    result, _ = run_with(short_candles, ml_components={"sneaky": lambda _: fake_plugins.VoterComponent(voter)})
    assert result.raw.errors["sneaky.vote"] > 0


@pytest.mark.parametrize("answer", [True, ["close everything"]], ids=["bool", "str-list"])
def test_guard_nonsense_answer_is_caught(short_candles, answer):
    result, _ = run_with(short_candles, portfolio_guards={"weird": lambda _: fake_plugins.NonsenseGuard(answer)})
    assert result.raw.errors["weird.on_bar"] > 0


def test_guard_hedge_fraction_out_of_range_is_rejected():
    """A guard cannot ask for a hedge of 500 % of exposure: the action itself is invalid."""
    from mlcoord.model import GuardAction

    with pytest.raises(ValueError, match="fraction"):
        GuardAction("open_hedge", "too much", None, 5.0)


# -- torch-free ----------------------------------------------------------------------------------------
TORCH_FREE = textwrap.dedent("""
    import sys

    class BlockTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError("torch is blocked in this test")
            return None

    sys.meta_path.insert(0, BlockTorch())
    import mlcoord
    from mlcoord.backtest.run import run_backtest
    from mlcoord.config import structure, Settings
    from mlcoord.registry import load_plugins

    builtins = {BUILTINS}
    everything = load_plugins({{}})            # every installed plugin must load without torch
    enabled = sorted(n for n, s in everything.statuses.items() if s.enabled)
    others = {{n: "test" for n in everything.statuses if n not in builtins}}
    settings = structure({{"data": {{"timerange": "20240101-20240201"}}}}, Settings)
    result = run_backtest(settings, plugins=load_plugins(others))
    assert "torch" not in sys.modules, "torch was imported"
    print("ENABLED", ",".join(enabled))
    print("TRADES", result.stats["trades"])
""").format(BUILTINS=repr(set(BUILTINS)))


def test_engine_and_builtins_run_without_torch():
    proc = subprocess.run([sys.executable, "-c", TORCH_FREE], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)})
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if line[:1].isupper())
    assert set(BUILTINS) <= set(lines["ENABLED"].split(","))
    assert int(lines["TRADES"]) > 0
