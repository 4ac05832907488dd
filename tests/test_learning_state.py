"""``--state`` never restores what was learnt at or after the bars a backtest trades (issue 12).

Regression: with mtf and rl_selector disabled nothing in the state was dated, so a state learnt on
2024 outcomes was restored silently into a 2023 backtest (0 trades instead of 22).
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from mlcoord.cli import main
from mlcoord.learning_state import StateLeakError, check_usable, first_traded_bar
from test_ml_pipeline import FakeML, plugins_with, run

HORIZON = 12


@pytest.fixture
def halves(short_candles):
    n = len(short_candles) // 2
    return short_candles.slice(0, n), short_candles.slice(n, len(short_candles))


def _learning(path):
    return {"state_file": str(path), "horizon": HORIZON}


def learn_on(candles, state):
    """A backtest of ``candles`` with a fresh FakeML saving to ``state``: (learner, saved state, result)."""
    learner = FakeML("good")
    result = run(candles, plugins_with(good=learner), learning=_learning(state))
    return learner, json.loads(state.read_text()), result


def test_saved_state_is_dated_by_the_newest_bar_its_outcomes_saw(halves, tmp_path):
    early, _ = halves
    learner, saved, _ = learn_on(early, tmp_path / "state.json")
    assert learner.outcomes
    newest = max(int(early.time[o.index + HORIZON]) for o in learner.outcomes)
    assert saved["trained_until"] == newest
    assert saved["trained_until"] <= int(early.time[-1])
    assert "ensemble" in saved and "bayes" in saved["components"]


def test_a_state_learnt_later_is_refused_in_an_earlier_backtest(halves, tmp_path):
    early, late = halves
    state = tmp_path / "state.json"
    run(late, plugins_with(good=FakeML("good")), learning=_learning(state))
    before = state.read_text()
    until = json.loads(before)["trained_until"]
    with pytest.raises(StateLeakError) as info:
        run(early, plugins_with(good=FakeML("good")), learning=_learning(state))
    text = str(info.value)
    assert pd.Timestamp(until, tz="UTC").isoformat() in text
    assert pd.Timestamp(int(early.time[0]), tz="UTC").isoformat() in text
    assert state.read_text() == before          # the refused run did not overwrite the state


def test_rerunning_the_same_period_with_its_own_state_is_refused(halves, tmp_path):
    early, _ = halves
    state = tmp_path / "state.json"
    run(early, plugins_with(good=FakeML("good")), learning=_learning(state))
    with pytest.raises(StateLeakError):
        run(early, plugins_with(good=FakeML("good")), learning=_learning(state))


def test_a_state_learnt_earlier_is_restored_and_carried_forward(halves, tmp_path):
    early, late = halves
    state = tmp_path / "state.json"
    first, saved, _ = learn_on(early, state)
    assert saved["trained_until"] < int(late.time[0])
    second, again, result = learn_on(late, state)
    assert second.saved["seen"] == len(first.outcomes) > 0      # restored at start
    assert result.learning["state_trained_until"] == pd.Timestamp(saved["trained_until"], tz="UTC").isoformat()
    assert again["trained_until"] > saved["trained_until"]
    assert again["ensemble"]["updates"] > saved["ensemble"]["updates"]


def test_a_timerange_after_the_state_makes_the_same_data_usable(short_candles, tmp_path):
    early = short_candles.slice(0, 1200)
    state = tmp_path / "state.json"
    run(early, plugins_with(good=FakeML("good")), learning=_learning(state))
    until = json.loads(state.read_text())["trained_until"]
    after = pd.Timestamp(until, tz="UTC").normalize() + pd.Timedelta(days=1)
    timerange = f"{after:%Y%m%d}-"
    second = FakeML("good")
    run(short_candles, plugins_with(good=second), learning=_learning(state), data={"timerange": timerange})
    assert second.saved["seen"] > 0
    with pytest.raises(StateLeakError, match="--timerange"):   # one day earlier reaches into it
        run(short_candles, plugins_with(good=FakeML("good")), learning=_learning(state),
            data={"timerange": f"{after - pd.Timedelta(days=1):%Y%m%d}-"})


def test_an_undated_state_is_refused(tmp_path):
    with pytest.raises(StateLeakError, match="no trained_until"):
        check_usable({"version": 1, "components": {}}, tmp_path / "old.json", 10)
    assert check_usable({"version": 2, "components": {}, "trained_until": None}, tmp_path / "s.json", 10) is None
    with pytest.raises(StateLeakError):
        check_usable({"trained_until": 10}, tmp_path / "s.json", 10)
    assert check_usable({"trained_until": 9}, tmp_path / "s.json", 10) == 9
    with pytest.raises(ValueError, match="trained_until must be"):
        check_usable({"trained_until": "2024"}, tmp_path / "s.json", 10)


def test_first_traded_bar_is_the_earliest_bar_at_or_after_the_start():
    import numpy as np
    a, b = np.array([1, 5, 9]), np.array([4, 6])
    assert first_traded_bar([a, b], None) == 1
    assert first_traded_bar([a, b], 5) == 5
    assert first_traded_bar([a, b], 7) == 9
    assert first_traded_bar([a, b], 10) is None


def test_cli_refuses_a_2024_state_in_a_2023_backtest_with_mtf_and_rl_selector_disabled(tmp_path):
    """The issue's case, through the CLI, with the real ensemble, calibrator and shipped models."""
    state = tmp_path / "learning.json"
    common = ["--disable", "mtf,rl_selector", "--state", str(state), "--no-progress"]
    later = CliRunner().invoke(main, ["backtest", "--timerange", "20240101-20240201", *common])
    assert later.exit_code == 0, later.output
    saved = json.loads(state.read_text())
    assert saved["trained_until"] >= pd.Timestamp("2024-01-01", tz="UTC").value
    assert "ensemble" in saved and "bayes" in saved["components"]
    earlier = CliRunner().invoke(main, ["backtest", "--timerange", "20230101-20230201", *common])
    assert earlier.exit_code == 2
    assert "would use the future" in earlier.output and "2023-01-01" in earlier.output
