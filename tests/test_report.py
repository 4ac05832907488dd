"""HTML reports: produced for the default backtest, self-contained, every section present, the
numbers they draw reconstructed exactly from the result file; comparison and evaluation reports."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from mlcoord.backtest.run import run_backtest
from mlcoord.cli import main
from mlcoord.config import load_settings
from mlcoord.registry import discover_entry_points, load_plugins
from mlcoord.report import analysis as an
from mlcoord.report import build_report, load_result, write_comparison, write_report

SHORT = "20250101-20250301"   # two months after the warm-up: fast, still trades and learns
SECTIONS = ("statistics", "equity", "price", "breakdowns", "trades", "learning")


def builtin_plugins():
    """Every plugin shipped with mlcoord (the default pipeline), nothing else installed."""
    return load_plugins({}, entry_points={n: ep for n, ep in discover_entry_points().items()
                                          if getattr(ep.dist, "name", "") == "mlcoord"})


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """The default backtest (ML coordinator included) on a short range, as its JSON and report."""
    folder = tmp_path_factory.mktemp("report")
    result = run_backtest(load_settings(None, {"data": {"timerange": SHORT}}), plugins=builtin_plugins())
    path = folder / "result.json"
    result.write_json(path)
    data = load_result(path)
    html = write_report(data, folder / "report.html").read_text(encoding="utf-8")
    return data, html, folder


@pytest.fixture
def mlcoord_plugins_only(monkeypatch):
    """The CLI discovers only mlcoord's own plugins (not e.g. the installed plugin template)."""
    from mlcoord import registry

    real = registry.discover_entry_points
    monkeypatch.setattr(registry, "discover_entry_points",
                        lambda: {n: ep for n, ep in real().items() if getattr(ep.dist, "name", "") == "mlcoord"})


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_report_is_self_contained(default_run):
    from plotly.offline import get_plotlyjs

    _, html, _ = default_run
    assert html.startswith("<!DOCTYPE html>")
    assert html.count(get_plotlyjs()) == 1, "the plotly.js bundle is inlined once"
    ours = html.replace(get_plotlyjs(), "")   # the bundle itself holds link texts it never loads
    assert not re.search(r"<script[^>]+src=", ours), "no external script"
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", ours), "nothing loaded from the network"
    assert "<link" not in ours and "@import" not in ours
    assert ours.count("Plotly.newPlot(") >= 7


def test_report_has_every_section(default_run):
    _, html, _ = default_run
    for key in SECTIONS:
        assert f'<section id="{key}">' in html, key
    for text in ("Cost model", "Per pair", "Per month", "Per entry reason", "Per DCA band", "Per exit reason",
                 "stop (trailing path)", "take profit", "DCA fill", "Component coefficients over time",
                 "final coefficient", "Expected net return",
                 "Running accuracy", "before calibration", "after calibration", "perfectly calibrated"):
        assert text in html, text


def test_votes_carry_signed_coefficients_and_old_result_files_still_build(default_run):
    """Issue 16: the result file has each vote's signed coefficient and contribution, the final
    coefficients and the intercept (the old share of absolute coefficients stays beside them); a
    file written before them still builds its report, with the old weights chart."""
    data, _, _ = default_run
    learning = data["learning"]
    coefficients, weights = learning["ensemble_coefficients"], learning["ensemble_weights"]
    assert set(coefficients) == set(weights) and isinstance(learning["ensemble_intercept"], float)
    total = sum(abs(c) for c in coefficients.values())
    for name, c in coefficients.items():
        assert weights[name] == pytest.approx(abs(c) / total)
    voted = [v for d in data["decisions"] if len(d["votes"]) > 1 for v in d["votes"]]
    assert voted and all(v["faded"] == (v["coefficient"] < 0) for v in voted)
    old = json.loads(json.dumps(data))
    for key in ("ensemble_coefficients", "ensemble_intercept"):
        del old["learning"][key]
    del old["breakdowns"]["expected_return"]
    for d in old["decisions"]:
        d.pop("expected_return", None)
        for v in d["votes"]:
            for key in ("coefficient", "contribution", "faded"):
                v.pop(key, None)
    html = build_report(old)
    assert "Component weights over time" in html and "final weight" in html
    assert "Component coefficients over time" not in html


def test_report_is_deterministic(default_run):
    data, html, _ = default_run
    assert build_report(data) == html


def test_result_file_carries_what_the_report_draws(default_run):
    data, _, _ = default_run
    assert data["learning"]["horizon"] == 24 and data["learning"]["threshold"] == 0.002
    candles = data["candles"]["BTC/USDT"]
    assert candles["time"][0] == data["equity"]["time"][0], "candles start where the statistics start"
    assert len(candles["close"]) == len(data["equity"]["value"])
    assert any("p_up" in v for d in data["decisions"] for v in d["votes"])
    entered = {(d["symbol"], d["time"]): d for d in data["decisions"] if d["outcome"] == "entered"}
    trades = {t["id"]: t for t in data["trades"] if not t["hedge"]}
    assert len(data["levels"]) == len(trades) > 0
    for p in data["levels"]:
        trade = trades[p["trade"]]
        stops = [q[1] for q in p["path"]]
        assert p["path"][0][0] == trade["opened_at"]
        assert stops == sorted(stops, reverse=trade["side"] == -1), "a stop only tightens"
        decision = next((d for (sym, t), d in entered.items() if t < trade["opened_at"] and sym == trade["symbol"]
                        and d["levels"]["stop"] == stops[0]), None)
        assert decision is not None, "the path starts at the entry decision's stop"
        if trade["exit_reason"] == "trailing_stop":
            assert len(stops) > 1 and stops[-1] != stops[0]


def test_running_accuracy_rebuilt_from_the_file_equals_the_ensembles(default_run):
    data, _, _ = default_run
    scores = data["learning"]["component_scores"]
    rebuilt = an.running_accuracy(data)
    assert set(rebuilt) == set(scores)
    for name, s in scores.items():
        assert len(rebuilt[name]["time"]) == s["outcomes"]
        assert rebuilt[name]["cumulative"][-1] == pytest.approx(s["accuracy"], abs=2e-3)


def test_calibration_counts_only_traded_directions_with_known_outcomes(default_run):
    data, _, _ = default_run
    cal = an.calibration(data)
    horizon_end = pd.Timestamp(data["equity"]["time"][-1]) - pd.Timedelta(hours=24)
    expected = sum(1 for d in data["decisions"] if d["signal"] != "HOLD" and pd.Timestamp(d["time"]) <= horizon_end)
    assert cal["n"] == expected > 0
    assert sum(r["count"] for r in cal["reliability_raw"]) == cal["n"]
    assert set(cal["observed"]) <= {0.0, 1.0}


def test_long_series_are_thinned_but_keep_extremes_and_exact_markers():
    n = 40_000
    t = pd.date_range("2020-01-01", periods=n, freq="h")
    rng = np.random.default_rng(0)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    frame = pd.DataFrame({"open": close, "high": close * 1.01, "low": close * 0.99, "close": close}, index=t)
    daily, label = an.downsample_candles(frame)
    assert label == "daily" and len(daily) == n // 24 + (n % 24 > 0)
    assert daily["high"].max() == frame["high"].max() and daily["low"].min() == frame["low"].min()
    x, y = an.decimate(np.arange(n), close)
    assert len(y) <= an.MAX_LINE_POINTS and y.max() == close.max() and y.min() == close.min()
    assert np.all(np.diff(x) > 0) and x[-1] == n - 1
    short, label = an.downsample_candles(frame.iloc[:3000])
    assert label == "" and len(short) == 3000


def test_fills_are_split_into_entries_ladder_fills_exits_and_hedges():
    fill = lambda oid, tag, reduce=False, hedge=False: {  # noqa: E731
        "order_id": oid, "symbol": "X", "side": 1, "time": "2024-01-01T00:00:00+00:00", "price": 1.0,
        "quantity": 1.0, "fee": 0.0, "reduce_only": reduce, "tag": tag, "hedge": hedge}
    result = {"fills": [fill("X:1:entry:1", "entry:1/3"), fill("X:1:entry:3", "entry:3/3"),
                        fill("X:5:entry:2", "entry:2/3"), fill("X:9:stop_loss", "stop_loss", True),
                        fill("X:7:hedge", "hedge", hedge=True)]}
    kinds = an.fill_markers(result, "X")
    assert [f["order_id"] for f in kinds["entry"]] == ["X:1:entry:1", "X:5:entry:2"]
    assert [f["order_id"] for f in kinds["ladder"]] == ["X:1:entry:3"]
    assert len(kinds["exit"]) == len(kinds["hedge"]) == 1


def test_cli_backtest_report_and_side_by_side_comparison(default_run, tmp_path, mlcoord_plugins_only):
    data, _, folder = default_run
    b_json, b_html = tmp_path / "technical.json", tmp_path / "technical.html"
    out = invoke("backtest", "--timerange", SHORT, "--no-progress", "--disable", "lstm,attention,mtf,rl_selector,bayes",
                 "--json", b_json, "--report", b_html)
    assert out.exit_code == 0, out.output
    assert f"report written to {b_html}" in out.output
    html = b_html.read_text(encoding="utf-8")
    assert '<section id="equity">' in html and '<section id="learning">' not in html, "no ML section without ML"
    out = invoke("report", folder / "result.json", b_json, "-o", tmp_path / "cmp.html")
    assert out.exit_code == 0, out.output
    cmp_html = (tmp_path / "cmp.html").read_text(encoding="utf-8")
    assert "result vs technical" in cmp_html
    for name in ("result equity", "technical equity", "result drawdown", "technical drawdown"):
        assert f'"name":"{name}"' in cmp_html, name
    b = json.loads(b_json.read_text(encoding="utf-8"))
    diff = b["stats"]["final_equity"] - data["stats"]["final_equity"]
    assert f"{diff:+,.2f}" in cmp_html, "the difference column"


def test_report_command_defaults_and_errors(default_run, tmp_path):
    data, _, folder = default_run
    out = invoke("report", folder / "result.json")
    assert out.exit_code == 0 and (folder / "result.html").exists()
    bad = tmp_path / "bad.json"
    bad.write_text('{"hello": 1}', encoding="utf-8")
    out = CliRunner().invoke(main, ["report", str(bad)])
    assert out.exit_code == 2 and "neither a backtest result" in out.stderr
    with pytest.raises(Exception, match="only backtest results"):
        write_comparison(data, {"scores": {}, "trading": []}, tmp_path / "x.html")


def test_evaluate_report(tmp_path, mlcoord_plugins_only):
    out = invoke("evaluate", "--windows", "1", "--train-bars", "2000", "--fit-bars", "1000", "--test-bars", "1000",
                 "--no-retrain", "--no-progress", "--executor", "inline",
                 "--json", tmp_path / "wf.json", "--report", tmp_path / "wf.html")
    assert out.exit_code == 0, out.output
    html = (tmp_path / "wf.html").read_text(encoding="utf-8")
    for key in ("scores", "calibration", "trading", "windows"):
        assert f'<section id="{key}">' in html, key
    assert '<td class="l">signals</td>' in html and "mtf" in html and "before calibration" in html
    assert "logistic" in html and "climatology (causal)" in html and "Trading arms on the same windows" in html
    assert "signals only" in html and "with ML" in html and "signals_only" in html and "with_ml" in html
    assert build_report(load_result(tmp_path / "wf.json")) == html, "the file gives the same report"
    old = {k: v for k, v in json.loads((tmp_path / "wf.json").read_text(encoding="utf-8")).items()
           if k not in ("mlcoord_evaluation", "trading_summary")}
    old["trading"] = [{k: v for k, v in row.items() if k not in ("signals_only", "with_ml")} for row in old["trading"]]
    assert "written before evaluation schema 2" in build_report(old), "an older file: a note, not a crash"
