"""Implausible bars (issue 15): a bar that passes every validation and is still impossible (a high
of 1e300) changed a backtest from 21 to 7 trades without a word. The check (:mod:`mlcoord.jumps`)
flags it; a backtest warns (``candles_implausible``, naming the bar) and keeps its data as it is;
real data, real jumps included, is left alone."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given, settings, strategies as st
from structlog.testing import capture_logs

from mlcoord.backtest.run import load_market
from mlcoord.candles import candles_from_frame, load_candles
from mlcoord.config import load_settings
from mlcoord.datasets import bundled_path
from mlcoord.times import iso
from mlcoord.jumps import JumpFilter, find_jumps


@pytest.fixture(scope="module")
def btc():
    return load_candles(bundled_path("BTC/USDT"), symbol="BTC/USDT")


def _with(candles, k, **values):
    frame = candles.frame.copy()
    for column, value in values.items():
        frame.iloc[k, frame.columns.get_loc(column)] = value
    return candles_from_frame(frame, symbol=candles.symbol, timeframe=candles.timeframe)


def _walk(candles, k=50.0):
    """The check bar by bar, with no shortcut: what :meth:`JumpFilter.run` must equal."""
    check = JumpFilter(k, candles.timeframe_ns)
    found = []
    for j in range(len(candles)):
        jump = check.judge(j, int(candles.time[j]), *(float(a[j]) for a in
                                                      (candles.open, candles.high, candles.low, candles.close)))
        if jump is not None:
            found.append(jump)
        elif check.confirmed and found and found[-1].index == j - 1:
            found[-1] = attrs.evolve(found[-1], confirmed=True)
    return found


def test_real_bars_are_left_alone(btc):
    assert find_jumps(btc) == []


def test_a_bad_tick_is_flagged_and_the_next_bar_is_not(btc):
    bad = _with(btc, 20_000, high=1e300)
    [jump] = find_jumps(bad)
    assert (jump.index, jump.column, jump.value, jump.confirmed) == (20_000, "high", 1e300, False)
    assert jump.reference == btc.close[19_999] and jump.time == int(btc.time[20_000])
    assert "1e+300" in jump.describe() and iso(jump.time) in jump.describe()
    low = _with(btc, 30_000, low=btc.low[30_000] / 10, close=btc.close[30_000] / 10 * 1.01)
    assert [(j.index, j.column) for j in find_jumps(low)] == [(30_000, "low")]


def test_a_real_jump_to_a_new_level_is_confirmed_by_the_next_bar(btc):
    frame = btc.frame.iloc[:2000].copy()
    frame.iloc[1500:, :4] *= 3.0                 # the market trebles at bar 1500 and stays there
    jumps = find_jumps(candles_from_frame(frame, symbol="BTC/USDT", timeframe="1h"))
    assert [(j.index, j.confirmed) for j in jumps] == [(1500, True)]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(20, 2999), st.sampled_from(["high", "low", "close"]),
                          st.floats(0.05, 20.0)), max_size=4))
def test_the_vectorised_pass_equals_the_bar_by_bar_walk(btc, spikes):
    frame = btc.frame.iloc[10_000:13_000].copy()
    for k, column, factor in spikes:
        value = frame.iloc[k][column] * factor
        frame.iloc[k, frame.columns.get_loc(column)] = value
        frame.iloc[k, frame.columns.get_loc("high")] = frame.iloc[k][["open", "high", "low", "close"]].max()
        frame.iloc[k, frame.columns.get_loc("low")] = frame.iloc[k][["open", "high", "low", "close"]].min()
    candles = candles_from_frame(frame, symbol="BTC/USDT", timeframe="1h")
    assert find_jumps(candles) == _walk(candles)


def test_a_backtest_warns_naming_the_bar_and_keeps_its_data(btc, tmp_path):
    bad = _with(btc, 20_000, high=1e300)
    path = tmp_path / "BTC_USDT-1h.feather"
    bad.frame.reset_index().to_feather(path)
    settings = load_settings(None, {"data": {"files": [str(path)]}})
    with capture_logs() as logs:
        [loaded] = load_market(settings)
    [warning] = [e for e in logs if e["event"] == "candles_implausible"]
    assert warning["log_level"] == "warning" and warning["bar_time"] == iso(int(btc.time[20_000]))
    assert warning["column"] == "high" and warning["value"] == 1e300 and warning["action"] == "kept"
    assert loaded.high[20_000] == 1e300                # the data is what the file says
    off = load_settings(None, {"data": {"files": [str(path)], "max_jump_atr": 0}})
    with capture_logs() as logs:
        load_market(off)
    assert not [e for e in logs if e["event"] == "candles_implausible"]


def test_the_bundled_data_loads_without_a_warning():
    with capture_logs() as logs:
        load_market(load_settings(None, {"data": {"symbols": ["BTC/USDT", "ETH/USDT"]}}))
    assert not [e for e in logs if e["event"] == "candles_implausible"]
