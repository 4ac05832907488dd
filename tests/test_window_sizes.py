"""evaluate on short data: a clear error naming the sizes that fit, not a traceback (issue 12)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings, strategies as st

from mlcoord.cli import main
from mlcoord.errors import ConfigError
from mlcoord.evaluate import WalkForward, plan_windows
from mlcoord.window_sizes import check_window_sizes, needed_bars


@pytest.fixture
def five_thousand_bars(btc_candles, tmp_path):
    path = tmp_path / "BTC_USDT-1h.feather"
    btc_candles.slice(len(btc_candles) - 5_000, len(btc_candles)).frame.reset_index().to_feather(path)
    return path


def test_default_sizes_on_5000_bars_end_in_a_clear_error_whose_sizes_then_run(five_thousand_bars):
    out = CliRunner().invoke(main, ["evaluate", "--data", str(five_thousand_bars), "--no-progress",
                                    "--executor", "inline"])
    assert out.exit_code == 2, out.output
    assert isinstance(out.exception, SystemExit) and "Traceback" not in out.output   # not a raw ValueError
    text = out.output
    # evaluate scores the development part by default: the first 70 % of the data (3,500 bars)
    assert "3,500 bars" in text and "--train-bars 17520 --fit-bars 4380 --test-bars 4380" in text
    found = re.search(r"\((\d) windows?\): --train-bars (\d+) --fit-bars (\d+) --test-bars (\d+)", text)
    assert found, text
    windows, train, fit, test = (int(g) for g in found.groups())
    again = CliRunner().invoke(main, ["evaluate", "--data", str(five_thousand_bars), "--no-progress",
                                      "--executor", "inline", "--disable", "lstm,attention",
                                      "--train-bars", str(train), "--fit-bars", str(fit), "--test-bars", str(test)])
    assert again.exit_code == 0, again.output
    assert f"walk-forward: {windows} windows" in again.output


@settings(max_examples=200, deadline=None)
@given(n=st.integers(0, 3000), train=st.integers(0, 1500), fit=st.integers(0, 800), test=st.integers(4, 900))
def test_the_check_agrees_with_the_window_plan(n, train, fit, test):
    wf = WalkForward(train, fit, test)
    fits = bool(plan_windows(np.arange(n, dtype=np.int64), wf))
    if fits:
        check_window_sizes(n, wf)
    else:
        with pytest.raises(ConfigError, match="too few"):
            check_window_sizes(n, wf)
    assert fits == (n >= needed_bars(train, fit, test))


@pytest.mark.parametrize("field, value", [("test_bars", 0), ("train_bars", -1), ("fit_bars", 1.5), ("windows", 0)])
def test_bad_sizes_name_the_option_and_value(field, value):
    wf = WalkForward(**{field: value})
    with pytest.raises(ConfigError, match=f"--{field.replace('_', '-')} must be an integer >= \\d+, got {value}"):
        check_window_sizes(100_000, wf)


def test_too_short_for_any_proportional_sizes_says_what_is_left():
    with pytest.raises(ConfigError, match="--no-retrain with --train-bars 0"):
        check_window_sizes(900, WalkForward())
