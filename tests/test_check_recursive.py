"""``mlcoord check recursive``: values that depend on the warm-up length are flagged, short windows pass."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

import leaky_plugins
from mlcoord.candles import load_candles
from mlcoord.cli import main
from mlcoord.config import Settings, structure
from mlcoord.datasets import bundled_path
from mlcoord.errors import ConfigError
from mlcoord.leakcheck import SCHEMA_VERSION, check_recursive
from mlcoord.leakcheck.command import parse_warmups
from mlcoord.registry import discover_entry_points, load_plugins

BUILTINS = ("technical", "dca", "exits", "risk", "hedging", "protections", "bayes", "mtf", "rl_selector", "lstm",
            "attention")


@pytest.fixture(scope="module")
def candles():
    return load_candles(bundled_path("BTC/USDT"), symbol="BTC/USDT").slice(20_000, 22_500, own=True)


@pytest.fixture(scope="module")
def plugins():
    eps = {name: ep for name, ep in discover_entry_points().items() if name in BUILTINS}
    return load_plugins({}, entry_points=eps, extra_plugins={"leaky": leaky_plugins})


def sources(*names: str) -> Settings:
    return structure({"pipeline": {"signal_sources": list(names)}}, Settings)


def series(report):
    return {(s.component, s.series): s for s in report.series}


def test_an_ema200_source_is_flagged_with_a_100_bar_warmup(candles, plugins):
    report = check_recursive(sources("ema200"), plugins, [candles])
    found = series(report)
    assert set(found) == {("ema200", "action"), ("ema200", "confidence"), ("ema200", "feature ema200")}
    assert report.exit_code == 1
    ema = {r.warmup: r for r in found[("ema200", "feature ema200")].results}
    assert set(ema) == {100, 200, 500, 1000}
    assert ema[100].flagged and ema[100].nan_mismatches == 99       # EMA(200) has no value for 99 window bars
    assert ema[200].flagged and ema[200].max_rel_diff > 1e-3        # seeded 200 bars before: still off
    assert not ema[1000].flagged and ema[1000].max_rel_diff < 1e-4  # the seed has faded out
    assert ema[200].max_rel_diff > ema[500].max_rel_diff > ema[1000].max_rel_diff     # fades with the warm-up
    assert found[("ema200", "confidence")].results[0].flagged
    first = ema[100].first
    assert first is not None and first.value == "NaN" and first.rel_diff == "inf"
    assert first.bar == len(candles) - 500                         # the window's first bar
    assert found[("ema200", "feature ema200")].clean_from in (500, 1000)
    assert "FLAGGED ema200" in report.render()


def test_a_source_with_only_short_windows_passes(candles, plugins):
    report = check_recursive(sources("short_windows"), plugins, [candles])
    assert report.exit_code == 0, report.render()
    for s in report.series:
        assert s.clean_from == 100
        for r in s.results:
            assert r.compared == 500 and r.nan_mismatches == 0 and r.max_rel_diff is not None
            assert r.max_rel_diff < 1e-6          # rolling sums start elsewhere: rounding only


def test_the_combined_signal_and_a_tight_tolerance(candles, plugins):
    report = check_recursive(sources("short_windows", "honest"), plugins, [candles], warmups=(100, 300),
                             tolerance=0.0)
    found = series(report)
    assert ("signals (combined)", "confidence") in found
    # RSI is Wilder-smoothed (recursive): within 1e-3 after 100 bars, but never exactly equal
    rsi = found[("honest", "confidence")].results
    assert rsi[0].flagged and rsi[0].max_rel_diff > 0
    loose = check_recursive(sources("honest"), plugins, [candles], warmups=(300,), tolerance=1e-3)
    assert loose.exit_code == 0, loose.render()


def test_warmups_longer_than_the_history_are_skipped_with_a_note(candles, plugins):
    report = check_recursive(sources("short_windows"), plugins, [candles], warmups=(100, 5000), window=500)
    assert {r.warmup for s in report.series for r in s.results} == {100}
    assert any("5000 not tested" in n for n in report.notes)


@pytest.mark.parametrize("options, message", [
    ({"window": 0}, "window must be an integer >= 1, got 0"),
    ({"tolerance": -1.0}, "tolerance must be a finite number >= 0, got -1.0"),
    ({"warmups": (100, "x")}, "warmup must be an integer >= 0, got 'x'"),
    ({"window": 2_450}, "window 2450 leaves 50 bars of history"),
])
def test_bad_options_name_the_field_and_value(candles, plugins, options, message):
    with pytest.raises(ConfigError, match=message):
        check_recursive(sources("short_windows"), plugins, [candles], **options)


def test_warmups_text_is_parsed_or_refused_by_name():
    assert parse_warmups("100, 250,1000") == (100, 250, 1000)
    with pytest.raises(ConfigError, match="'ten' is not a whole number of bars"):
        parse_warmups("100,ten")


@pytest.mark.parametrize("source, code", [("ema200", 1), ("short_windows", 0)])
def test_cli_exit_code_and_json_report(tmp_path, source, code):
    folder = tmp_path / "plugins"
    folder.mkdir()
    shutil.copy(Path(leaky_plugins.__file__), folder / "leaky.py")
    config = tmp_path / "check.toml"
    config.write_text(f'[pipeline]\nsignal_sources = ["{source}"]\n', encoding="utf-8")
    out = tmp_path / "recursive.json"
    result = CliRunner().invoke(main, ["check", "recursive", "--config", str(config), "--plugins-dir", str(folder),
                                       "--timerange", "20230101-20230401", "--warmups", "100,1000",
                                       "--window", "300", "--json", str(out)])
    assert result.exit_code == code, result.output
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["schema_version"] == SCHEMA_VERSION and report["check"] == "recursive"
    assert report["exit_code"] == code and report["flagged"] is bool(code) and report["tolerance"] == 1e-3
    assert report["symbols"][0]["window"] == 300 and report["symbols"][0]["warmups"] == [100, 1000]
    rows = {(s["component"], s["series"]): s for s in report["series"]}
    first = rows[(source, "confidence")]["results"][0]
    assert first["warmup"] == 100 and first["compared"] == 300 and first["flagged"] is bool(code)
    assert ("FLAGGED" in result.output) is bool(code)
