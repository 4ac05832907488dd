"""``mlcoord check lookahead``: planted leaks are found, the built-in pipeline passes, the report and exit codes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import leaky_plugins
import mlcoord
from mlcoord import Action, Vote
from mlcoord.candles import load_candles
from mlcoord.components import SignalSeries
from mlcoord.cli import main
from mlcoord.config import Settings, structure
from mlcoord.datasets import bundled_path
from mlcoord.errors import ConfigError
from mlcoord.leakcheck import MIN_SAMPLES, SCHEMA_VERSION, check_lookahead
from mlcoord.leakcheck.lookahead import sample_cuts
from mlcoord.registry import discover_entry_points, load_plugins

#: every built-in plugin (pyproject's entry points): other installed plugins must not change the pipeline
BUILTINS = ("technical", "dca", "exits", "risk", "hedging", "protections", "bayes", "mtf", "rl_selector", "lstm",
            "attention")
#: 2023-01-02 -> 2023-04-25 of the bundled BTC/USDT 1h: inside the shipped models' validity, so ML votes
START, BARS = 20_000, 2_700


class CountingVoter:
    """An online learner of sorts: its vote depends on how many votes the *component* gave before.
    Clean when every run builds it afresh; a component reused across runs would carry the count."""

    def __init__(self, options=None):
        self.calls = 0

    def prepare(self, data):
        owner = self

        class Voter:
            def vote(self, i, signal=None):
                owner.calls += 1
                p = 0.5 + 0.4 * ((owner.calls % 7) / 7.0)
                return Vote("counting", Action.BUY, p, reasons=(f"call {owner.calls}",), p_up=p, p_down=1 - p)
        return Voter()


class NeedsManyBars:
    """A source that raises on fewer than ``least`` bars (``least=0``: always): on cut data only,
    that is a difference; on the full data, the source cannot be checked at all."""

    def __init__(self, least: int):
        self.least = least

    def prepare(self, data):
        if len(data) < self.least or not self.least:
            raise ValueError(f"needs {self.least} bars, got {len(data)}")
        n = len(data)
        return SignalSeries(np.zeros(n, dtype=np.int8), np.zeros(n), lambda i: [])


class Counting:
    @mlcoord.hookimpl
    def register_ml_components(self, register):
        register("counting", CountingVoter)

    @mlcoord.hookimpl
    def register_signal_sources(self, register):
        register("needs_many", lambda options=None: NeedsManyBars(1_500))
        register("always_fails", lambda options=None: NeedsManyBars(0))


@pytest.fixture(scope="module")
def candles():
    return load_candles(bundled_path("BTC/USDT"), symbol="BTC/USDT").slice(START, START + BARS, own=True)


@pytest.fixture(scope="module")
def plugins():
    eps = {name: ep for name, ep in discover_entry_points().items() if name in BUILTINS}
    return load_plugins({}, entry_points=eps, extra_plugins={"leaky": leaky_plugins, "counting": Counting()})


def lean(**pipeline) -> Settings:
    """A small pipeline (one source, no ML, no planner or guards) with ``pipeline`` changes."""
    base = {"signal_sources": ["technical"], "ml_components": [], "calibrator": "", "entry_planner": "",
            "entry_guards": [], "portfolio_watchers": []}
    return structure({"pipeline": {**base, **pipeline}}, Settings)


def by_name(report):
    return {c.component: c for c in report.components}


def test_the_default_pipeline_of_builtins_is_clean(candles, plugins):
    report = check_lookahead(Settings(), plugins, [candles])
    found = by_name(report)
    assert set(found) == {"technical", "attention", "lstm", "mtf", "rl_selector", "ensemble+bayes", "entry", "exits"}
    assert report.exit_code == 0, report.render()
    for c in found.values():
        assert c.status == "clean" and c.cuts == MIN_SAMPLES + 1
        assert c.compared > 0, f"{c.component} compared nothing"
    assert found["technical"].compared > MIN_SAMPLES * BARS // 3        # every bar before every cut
    assert found["lstm"].compared == found["attention"].compared > 500   # votes on the signal bars
    assert found["entry"].compared > 0 and found["exits"].compared > 1000


@pytest.mark.parametrize("pipeline, leaky", [
    ({"signal_sources": ["next_bar"]}, "next_bar"),                     # shift(-1) on one input
    ({"signal_sources": ["whole_z"]}, "whole_z"),                       # whole-series normalisation
    ({"ml_components": ["htf_peek"]}, "htf_peek"),                      # the unfinished 4h bucket
    ({"exit_manager": "next_high"}, "next_high"),                       # the next bar's high (index clamped)
    ({"exit_manager": "next_high_raw"}, "next_high_raw"),               # ... (IndexError at the data's end)
    ({"signal_sources": ["honest", "next_bar"]}, "next_bar"),           # one leaky source among two
])
def test_each_planted_leak_is_found_and_named(candles, plugins, pipeline, leaky):
    report = check_lookahead(lean(**pipeline), plugins, [candles])
    found = by_name(report)
    assert report.exit_code == 1
    assert found[leaky].status == "leak"
    first = found[leaky].first
    assert first is not None and first.full != first.truncated
    assert 0 < first.cut <= len(candles) - 1 and (first.bar is None or first.bar < first.cut)
    innocent = {"technical", "honest", "exits"} & set(found)
    assert all(found[n].status == "clean" for n in innocent), report.render()
    assert f"LEAK {leaky}" in report.render()


def test_a_next_bar_leak_shows_at_the_last_bar_of_the_cut_data(candles, plugins):
    first = by_name(check_lookahead(lean(signal_sources=["next_bar"]), plugins, [candles]))["next_bar"].first
    assert first is not None and first.bar == first.cut - 1
    assert first.full["action"] != "HOLD" and first.truncated == {"action": "HOLD", "confidence": 0.0}


def test_an_exit_manager_reading_past_the_data_is_reported_with_its_error(candles, plugins):
    first = by_name(check_lookahead(lean(exit_manager="next_high_raw"), plugins, [candles]))["next_high_raw"].first
    assert first is not None and first.what.startswith("update(")
    assert first.full["type"] == "ExitLevels" and first.truncated.startswith("raised IndexError")


@pytest.mark.parametrize("pipeline", [{"signal_sources": ["honest"]}, {"ml_components": ["honest_ml"]},
                                      {"ml_components": ["counting"]}])
def test_clean_components_pass(candles, plugins, pipeline):
    report = check_lookahead(lean(**pipeline), plugins, [candles])
    assert report.exit_code == 0, report.render()
    voters = [c for c in report.components if c.role == "ML component"]
    assert all(c.compared > 100 for c in voters)       # the counting voter was really asked, every run


def test_a_source_failing_on_cut_data_differs_and_one_failing_on_all_data_is_not_checked(candles, plugins):
    report = check_lookahead(lean(signal_sources=["technical", "needs_many", "always_fails"]), plugins, [candles])
    found = by_name(report)
    assert report.exit_code == 1 and found["technical"].status == "clean"
    short = found["needs_many"]
    assert short.status == "leak" and short.first is not None and short.first.what == "prepare"
    assert short.first.cut < 1_500 and short.first.truncated.startswith("raised ValueError: needs 1500 bars")
    assert short.cuts_differing == sum(k < 1_500 for k in report.symbols[0].cuts)
    never = found["always_fails"]
    assert never.status == "not checked" and never.compared == 0 and "needs 0 bars" in never.errors[0]
    assert "NOT CHECKED always_fails" in report.render()


def test_cuts_are_spread_deterministic_and_end_with_the_data_minus_its_last_bar():
    signals = np.arange(100, 10_000, 37)
    a = sample_cuts(10_000, 50, 7, signals)
    assert a == sample_cuts(10_000, 50, 7, signals)
    assert a != sample_cuts(10_000, 50, 8, signals)
    assert len(a) == 51 and a[-1] == 9_999 and a == sorted(set(a))
    gaps = np.diff(a[:-1])
    assert gaps.max() < 2 * 10_000 * 0.95 / 50            # one per stratum, never bunched up
    assert sum(k - 1 in set(signals.tolist()) for k in a) >= 20     # half of them right after a signal bar


def test_bad_options_name_the_field_and_value(candles, plugins):
    with pytest.raises(ConfigError, match="samples must be an integer >= 50, got 49"):
        check_lookahead(lean(), plugins, [candles], samples=49)
    with pytest.raises(ConfigError, match="seed must be an integer >= 0, got -1"):
        check_lookahead(lean(), plugins, [candles], seed=-1)
    with pytest.raises(ConfigError, match="BTC/USDT: 60 bars are too few for 60 truncations"):
        check_lookahead(lean(), plugins, [candles.slice(0, 60)], samples=60)


def test_the_check_never_imports_the_live_front_end():
    import grimp

    graph = grimp.build_graph("mlcoord", cache_dir=None)
    assert not graph.chain_exists(importer="mlcoord.leakcheck", imported="mlcoord.live", as_packages=True)


# -- the command line ----------------------------------------------------------------------------------
@pytest.fixture
def plugin_dir(tmp_path):
    folder = tmp_path / "plugins"
    folder.mkdir()
    shutil.copy(Path(leaky_plugins.__file__), folder / "leaky.py")
    return folder


def write_config(tmp_path, sources) -> Path:
    path = tmp_path / "check.toml"
    path.write_text(f"[pipeline]\nsignal_sources = {json.dumps(sources)}\nml_components = []\ncalibrator = \"\"\n"
                    "entry_planner = \"\"\nentry_guards = []\nportfolio_watchers = []\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("source, code", [("next_bar", 1), ("honest", 0)])
def test_cli_exit_code_and_json_report(tmp_path, plugin_dir, source, code):
    out = tmp_path / "lookahead.json"
    result = CliRunner().invoke(main, ["check", "lookahead", "--config", str(write_config(tmp_path, [source])),
                                       "--plugins-dir", str(plugin_dir), "--timerange", "20230101-20230215",
                                       "--seed", "3", "--json", str(out)])
    assert result.exit_code == code, result.output
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["schema_version"] == SCHEMA_VERSION and report["check"] == "lookahead"
    assert report["exit_code"] == code and report["leak"] is bool(code) and report["seed"] == 3
    [row] = [c for c in report["components"] if c["component"] == source]
    assert row["cuts"] == MIN_SAMPLES + 1 and row["compared"] > 0
    if code:
        assert row["cuts_differing"] > 0 and row["first"]["full"] != row["first"]["truncated"]
        assert f"LEAK {source}" in result.output
    else:
        assert row["first"] is None and "result: clean" in result.output
    assert len(report["symbols"][0]["cuts"]) == MIN_SAMPLES + 1


def test_cli_refuses_too_few_samples_before_loading_anything(tmp_path):
    result = CliRunner().invoke(main, ["check", "lookahead", "--samples", "10"])
    assert result.exit_code == 2
    assert "samples must be an integer >= 50, got 10" in result.output
