"""Issue 14's smaller findings: a timerange outside the data, a run left with few bars by its
learning state, a report that would overwrite a file, the comparison's colours."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from mlcoord.cli import main
from mlcoord.learning_state import MIN_BARS_AFTER_STATE, few_bars_note




def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _error(result) -> str:
    assert result.exit_code == 2, result.output
    [line] = [l for l in result.stderr.splitlines() if l.startswith("error: ")]
    return line


@pytest.mark.parametrize("timerange", ["20300101-", "20100101-20150101"])
def test_a_timerange_outside_the_data_names_its_range(timerange):
    assert _error(invoke("backtest", "--timerange", timerange, "--no-progress")) == (
        f"error: --timerange {timerange} is outside the data of BTC/USDT: 2020-09-20 -> 2025-09-19")


def test_a_restored_state_that_leaves_few_bars_says_so(tmp_path):
    state = tmp_path / "state.json"
    assert invoke("backtest", "--timerange", "20240101-20240110", "--no-progress", "--state", state).exit_code == 0
    second = invoke("backtest", "--timerange", "20240110-20240111", "--no-progress", "--json", tmp_path / "r.json",
                    "--state", state)
    assert second.exit_code == 0, second.output
    notes = json.loads((tmp_path / "r.json").read_text())["notes"]
    [note] = [n for n in notes if n.startswith("only ")]
    assert re.match(rf"only 24 bar\(s\) to trade from 2024-01-10T00:00:00\+00:00 \(fewer than {MIN_BARS_AFTER_STATE}\): "
                    r"the learning state learnt up to 2024-01-0\d", note), note
    assert '"event": "few_bars_after_learning_state"' in second.stderr


def test_enough_bars_or_no_state_say_nothing():
    assert few_bars_note(MIN_BARS_AFTER_STATE, 0, 0) is None and few_bars_note(3, None, 0) is None


@pytest.fixture(scope="module")
def result_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("r") / "a.json"
    assert invoke("backtest", "--timerange", "20240101-20240115", "--no-progress", "--json", out).exit_code == 0
    return out


def test_report_refuses_to_overwrite_without_force(result_file):
    html = result_file.with_suffix(".html")
    html.write_text("mine")
    assert _error(invoke("report", result_file)) == (f"error: {html} already exists; pass --force to overwrite it, "
                                                      "or choose another file")
    assert html.read_text() == "mine"
    assert invoke("report", result_file, "--force").exit_code == 0 and html.read_text() != "mine"


def test_backtest_report_refuses_before_the_run(tmp_path):
    html = tmp_path / "r.html"
    html.write_text("mine")
    result = invoke("backtest", "--timerange", "20240101-20240103", "--no-progress", "--report", html)
    assert _error(result).startswith(f"error: {html} already exists; pass --force")
    assert "equity" not in result.stdout and html.read_text() == "mine"          # nothing was run
    assert invoke("backtest", "--timerange", "20240101-20240103", "--no-progress", "--report", html,
                  "--force").exit_code == 0 and html.read_text() != "mine"


def test_comparison_colours_lower_drawdown_and_fees_green(result_file):
    from mlcoord.report.compare_page import build

    a = json.loads(result_file.read_text())
    b = json.loads(result_file.read_text())
    b["stats"] = {**a["stats"], "max_drawdown": a["stats"]["max_drawdown"] + 0.05,
                  "fees_paid": a["stats"]["fees_paid"] + 10, "total_return": a["stats"]["total_return"] + 0.05}
    page = build(a, b, ("a", "b"))

    def difference_class(label):
        row = page[page.index(f'<td class="l">{label}</td>'):]
        return re.findall(r'<td class="([a-z]*)">', row[:row.index("</tr>")])[-1]

    assert difference_class("max drawdown") == "neg" and difference_class("fees paid") == "neg"
    assert difference_class("total return") == "pos"                            # higher is better there
