"""Tests of the volume_spike plugin, through mlcoord's public API as any plugin's would be.

Run from this directory with ``python -m pytest tests -q`` once mlcoord is importable.
"""

from __future__ import annotations

import attrs
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mlcoord_volume_spike
from mlcoord.api import Action, SignalSource, build_market_data, bundled_path, load_candles
from mlcoord.backtest.run import run_backtest          # the engine itself, for the end-to-end tests
from mlcoord.candles import candles_from_frame
from mlcoord.config import Settings, plugin_options, structure
from mlcoord.errors import ConfigError
from mlcoord.registry import check_protocol, discover_entry_points, load_plugins
from mlcoord_volume_spike import VolumeSpike, VolumeSpikeOptions

HOUR = 3_600_000_000_000


@pytest.fixture(scope="module")
def btc():
    return load_candles(bundled_path("BTC/USDT"), symbol="BTC/USDT")


@pytest.fixture(scope="module")
def btc_data(btc):
    return build_market_data(btc, ("4h", "1d"))


@pytest.fixture(scope="module")
def btc_signals(btc_data):
    return VolumeSpike().prepare(btc_data)


def _market(bars: list[tuple[float, float, float, float, float]]):
    """MarketData from (open, high, low, close, volume) rows of 1h bars."""
    frame = pd.DataFrame(bars, columns=["open", "high", "low", "close", "volume"])
    frame.insert(0, "time", np.arange(len(bars), dtype=np.int64) * HOUR + 1_700_000_000_000_000_000)
    return build_market_data(candles_from_frame(frame, symbol="TEST/USDT", timeframe="1h"))


def _range_then(last: tuple[float, float, float, float, float], n: int = 120):
    """``n`` quiet bars oscillating in 99..101 with volume ~100, then ``last``."""
    bars = []
    for i in range(n):
        mid = 100.0 + 0.5 * np.sin(i / 3.0)
        o, c = mid - 0.2 * np.cos(i), mid + 0.2 * np.cos(i)
        bars.append((o, max(o, c) + 0.3, min(o, c) - 0.3, c, 100.0 + 10 * np.sin(i)))
    return bars + [last]


# -- real data ------------------------------------------------------------------------------

def test_real_btc_signals_both_ways_and_rarely(btc_signals):
    action = np.asarray(btc_signals.action)
    assert action.dtype == np.int8 and set(np.unique(action)) <= {-1, 0, 1}
    buys, sells = int((action == Action.BUY).sum()), int((action == Action.SELL).sum())
    assert buys > 50 and sells > 50
    assert (buys + sells) / len(action) < 0.03


def test_real_btc_every_signal_has_reasons_and_a_valid_confidence(btc_signals):
    action, confidence = np.asarray(btc_signals.action), np.asarray(btc_signals.confidence)
    assert np.all(np.isfinite(confidence)) and confidence.min() >= 0.0 and confidence.max() <= 1.0
    assert np.all(confidence[action == 0] == 0.0)
    assert confidence[action != 0].min() > 0.5        # at the thresholds it starts at 0.55 + body term
    for i in np.flatnonzero(action):
        reasons = btc_signals.explain(int(i))
        assert len(reasons) == 3 and all(isinstance(r, str) and r for r in reasons)
        assert "48-bar median" in reasons[0]
        assert ("20-bar high" if action[i] > 0 else "20-bar low") in reasons[1]


def test_real_btc_signals_satisfy_the_rule(btc, btc_data, btc_signals):
    """Recompute the rule bar by bar (slow, plain Python) for a sample of bars."""
    opts = VolumeSpikeOptions()
    atr = np.asarray(btc_data.context.atr)
    rng_bars = list(np.flatnonzero(btc_signals.action)[:200]) + list(range(5000, 6000))
    for i in rng_bars:
        i = int(i)
        median = float(np.median(btc.volume[i - opts.window:i]))
        body = btc.close[i] - btc.open[i]
        up = btc.close[i] > btc.high[i - opts.breakout_bars:i].max()
        down = btc.close[i] < btc.low[i - opts.breakout_bars:i].min()
        ok = (btc.volume[i] >= opts.spike_ratio * median and abs(body) >= opts.min_body_atr * atr[i])
        expected = 1 if ok and body > 0 and up else -1 if ok and body < 0 and down else 0
        assert btc_signals.action[i] == expected, i
        if expected:
            ratio, body_atr = btc.volume[i] / median, abs(body) / atr[i]
            conf = np.clip(0.55 + 0.1 * np.log2(ratio / 3.0) + 0.05 * min(body_atr, 3.0), 0, 0.95)
            assert btc_signals.confidence[i] == pytest.approx(conf, rel=1e-9)


# -- constructed cases ----------------------------------------------------------------------

def test_breakout_on_a_volume_spike_is_a_buy():
    data = _market(_range_then((100.8, 104.2, 100.7, 104.0, 500.0)))
    s = VolumeSpike().prepare(data)
    last = len(data) - 1
    assert s.action[last] == Action.BUY
    assert 0.55 < s.confidence[last] <= 0.95
    assert np.all(s.action[:last] == 0)
    reasons = s.explain(last)
    assert reasons[0].startswith("volume 5.") and "48-bar median" in reasons[0]
    assert reasons[1].startswith("close 104 broke the 20-bar high 10")
    assert reasons[2].startswith("body ") and "ATR" in reasons[2]
    assert s.at(last, "volume_spike").reasons == tuple(reasons)


def test_breakdown_on_a_volume_spike_is_a_sell():
    s = VolumeSpike().prepare(_market(_range_then((99.2, 99.3, 95.8, 96.0, 500.0))))
    assert s.action[-1] == Action.SELL and "20-bar low" in s.explain(len(s) - 1)[1]


@pytest.mark.parametrize("last, why", [
    ((100.8, 104.2, 100.7, 104.0, 250.0), "volume only 2.5x the median"),
    ((100.8, 100.95, 100.7, 100.9, 500.0), "no breakout and a small body"),
    ((103.5, 104.2, 103.0, 103.9, 500.0), "a breakout on a spike, but the body is under 1 ATR"),
    ((104.0, 104.2, 100.5, 101.0, 500.0), "bearish body closing inside the range"),
])
def test_no_signal_without_every_condition(last, why):
    s = VolumeSpike(VolumeSpikeOptions(min_body_atr=1.0)).prepare(_market(_range_then(last)))
    assert s.action[-1] == Action.HOLD, why
    assert s.confidence[-1] == 0.0 and s.explain(len(s) - 1) == []


def test_bigger_spike_and_body_give_more_confidence():
    small = VolumeSpike().prepare(_market(_range_then((100.8, 102.5, 100.7, 102.4, 350.0))))
    big = VolumeSpike().prepare(_market(_range_then((100.8, 106.2, 100.7, 106.0, 1400.0))))
    assert small.action[-1] == big.action[-1] == Action.BUY
    assert big.confidence[-1] > small.confidence[-1] + 0.15


def test_the_current_bar_is_not_in_its_own_baseline():
    """With ``window=1`` the baseline is the previous bar alone (ratio ~5); were the bar itself
    in its window, it would be compared with itself (ratio 1) and never signal."""
    s = VolumeSpike(VolumeSpikeOptions(window=1)).prepare(_market(_range_then((100.8, 104.2, 100.7, 104.0, 500.0))))
    assert s.action[-1] == Action.BUY


def test_short_data_is_all_hold():
    for n in (1, 2, 20, 48):
        s = VolumeSpike().prepare(_market(_range_then((100.8, 104.2, 100.7, 104.0, 500.0), n=n - 1)))
        assert len(s) == n and np.all(s.action == 0) and np.all(s.confidence == 0)


# -- causality, determinism, purity -----------------------------------------------------------

@pytest.fixture(scope="module")
def btc_slice(btc):
    return build_market_data(btc.slice(20_000, 23_000), ("4h", "1d"))


@settings(max_examples=20, deadline=None)
@given(k=st.integers(min_value=1, max_value=3000))
def test_no_look_ahead_by_truncation(btc_slice, k):
    full = VolumeSpike().prepare(btc_slice)
    head = VolumeSpike().prepare(btc_slice.head(k))
    assert len(head) == k
    np.testing.assert_array_equal(head.action, full.action[:k])
    np.testing.assert_allclose(head.confidence, full.confidence[:k], rtol=1e-12, atol=0)
    for i in np.flatnonzero(head.action)[-3:]:
        assert head.explain(int(i)) == full.explain(int(i))


def test_deterministic_and_does_not_mutate_its_input(btc_slice):
    c = btc_slice.candles
    before = [a.copy() for a in (c.open, c.high, c.low, c.close, c.volume, btc_slice.context.atr)]
    a, b = VolumeSpike().prepare(btc_slice), VolumeSpike().prepare(btc_slice)
    np.testing.assert_array_equal(a.action, b.action)
    np.testing.assert_array_equal(a.confidence, b.confidence)
    after = (c.open, c.high, c.low, c.close, c.volume, btc_slice.context.atr)
    for x, y in zip(before, after):
        np.testing.assert_array_equal(x, y)


# -- options ---------------------------------------------------------------------------------

def test_default_options_round_trip_through_config():
    defaults = VolumeSpikeOptions()
    assert attrs.asdict(defaults)["window"] == 48 and defaults.spike_ratio == 3.0
    assert defaults.min_body_atr == 0.5 and defaults.breakout_bars == 20
    assert structure(attrs.asdict(defaults), VolumeSpikeOptions) == defaults
    settings_ = structure({"plugins": {"volume_spike": {"spike_ratio": 4, "window": 24}}}, Settings)
    assert plugin_options(settings_, "volume_spike", VolumeSpikeOptions) == VolumeSpikeOptions(spike_ratio=4.0, window=24)


@pytest.mark.parametrize("bad, where", [
    ({"window": 0}, "window"), ({"window": 2.5}, "window"), ({"spike_ratio": 0.5}, "spike_ratio"),
    ({"min_body_atr": -1.0}, "min_body_atr"), ({"breakout_bars": 0}, "breakout_bars"),
    ({"max_confidence": 1.5}, "max_confidence"), ({"spike_ratio": "high"}, "spike_ratio"),
    ({"spike_rato": 3.0}, "spike_rato"),
])
def test_bad_options_fail_with_the_key(bad, where):
    settings_ = structure({"plugins": {"volume_spike": bad}}, Settings)
    with pytest.raises(ConfigError, match=where):
        plugin_options(settings_, "volume_spike", VolumeSpikeOptions)


# -- registration and the engine --------------------------------------------------------------

def test_registers_a_signal_source_named_volume_spike():
    loaded = load_plugins({}, entry_points={}, extra_plugins={"volume_spike": mlcoord_volume_spike})
    assert loaded.statuses["volume_spike"].enabled
    assert loaded.statuses["volume_spike"].hooks == ("register_entry_planners", "register_signal_sources")
    spec = loaded.components["volume_spike"]
    assert (spec.role, spec.owner, spec.options) == ("signal_sources", "volume_spike", VolumeSpikeOptions)
    component = spec.factory(VolumeSpikeOptions())
    check_protocol(spec, component)
    assert isinstance(component, SignalSource)
    assert mlcoord_volume_spike.MLCOORD_HOOKS_VERSION == 2


def test_disabling_it_removes_the_component():
    loaded = load_plugins({"volume_spike": "CLI --disable"}, entry_points={},
                          extra_plugins={"volume_spike": mlcoord_volume_spike})
    assert "volume_spike" not in loaded.components
    assert not loaded.statuses["volume_spike"].enabled


def _with_builtins():
    """The installed plugins (mlcoord's built-ins) plus this one, whether or not it is installed."""
    installed = {n: ep for n, ep in discover_entry_points().items() if n != "volume_spike"}
    return load_plugins({}, entry_points=installed, extra_plugins={"volume_spike": mlcoord_volume_spike})


def test_end_to_end_backtest_with_it_selected(btc):
    plugins = _with_builtins()
    settings_ = structure({"pipeline": {"signal_sources": ["technical", "volume_spike"]}}, Settings)
    # after the shipped ML models' training range (2022-03-31): earlier bars are not scored
    result = run_backtest(settings_, plugins=plugins, candles=[btc.slice(20_000, 28_000)])
    assert result.components["signal_sources"] == ["technical", "volume_spike"]
    assert not result.raw.errors
    ours = [d for d in result.raw.decisions
            if any("-bar median" in r for r in d.technical.reasons)]
    assert ours, "no decision carried volume_spike's reasons"
    assert any(d.outcome == "entered" for d in ours)   # agreeing with technical clears the threshold
    assert all(any("broke the 20-bar" in r for r in d.technical.reasons) for d in ours)


# -- the second component: the grid entry planner ----------------------------------------------

from mlcoord.api import MarketContext, Regime, Side, Signal  # noqa: E402
from mlcoord_volume_spike import GridOptions, GridPlanner  # noqa: E402


def _context(atr_pct: float, price: float = 100.0) -> MarketContext:
    return MarketContext(atr_pct * price, atr_pct, 0.01, 0.0, 0.2, Regime.RANGING, price)


def _signal(action: Action, confidence: float = 0.7) -> Signal:
    return Signal(action, confidence, ("test",), "test")


def test_grid_long_is_equal_legs_spaced_in_atr_below_the_price():
    plan = GridPlanner().plan(_signal(Action.BUY), 100.0, _context(0.02))
    assert (plan.side, plan.planner, plan.expires_after_bars) == (Side.LONG, "grid", 24)
    assert [leg.fraction for leg in plan.legs] == [0.25] * 4
    assert [leg.market for leg in plan.legs] == [True, False, False, False]
    # 0.5 ATR = 1 % of the price per step
    assert [leg.price for leg in plan.legs] == pytest.approx([100.0, 99.0, 98.0, 97.0])
    assert "4 equal legs every 0.5 ATR" in plan.reasons[0]


def test_grid_short_mirrors_above_the_price_and_confidence_does_not_matter():
    planner = GridPlanner(GridOptions(legs=3, spacing_atr=1.0))
    sure, doubtful = (planner.plan(_signal(Action.SELL, c), 200.0, _context(0.01, 200.0)) for c in (0.95, 0.55))
    assert sure == doubtful
    assert sure.side == Side.SHORT
    assert [leg.price for leg in sure.legs] == pytest.approx([200.0, 202.0, 204.0])


def test_grid_steps_follow_volatility():
    calm = GridPlanner().plan(_signal(Action.BUY), 100.0, _context(0.01))
    wild = GridPlanner().plan(_signal(Action.BUY), 100.0, _context(0.04))
    assert 100.0 - wild.worst_price == pytest.approx(4 * (100.0 - calm.worst_price))


def test_grid_with_a_first_offset_has_no_market_leg():
    plan = GridPlanner(GridOptions(legs=2, first_offset_atr=1.0)).plan(_signal(Action.BUY), 100.0, _context(0.02))
    assert not any(leg.market for leg in plan.legs)
    assert [leg.price for leg in plan.legs] == pytest.approx([98.0, 97.0])


def test_grid_without_atr_uses_the_fallback_step_and_says_so():
    plan = GridPlanner().plan(_signal(Action.BUY), 100.0, _context(float("nan")))
    assert [leg.price for leg in plan.legs] == pytest.approx([100.0, 99.5, 99.0, 98.5])
    assert "no ATR yet" in plan.reasons[0]


def test_grid_depth_is_capped_so_no_leg_reaches_zero():
    plan = GridPlanner(GridOptions(legs=20, spacing_atr=5.0)).plan(_signal(Action.BUY), 100.0, _context(0.10))
    assert plan.worst_price == pytest.approx(50.0) and all(leg.price > 0 for leg in plan.legs)
    assert any("capped at 50%" in r for r in plan.reasons)
    prices = [leg.price for leg in plan.legs]
    assert prices == sorted(prices, reverse=True) and len(set(prices)) == 20


def test_grid_refuses_hold_and_bad_prices():
    with pytest.raises(ValueError):
        GridPlanner().plan(_signal(Action.HOLD, 0.0), 100.0, _context(0.02))
    with pytest.raises(ValueError):
        GridPlanner().plan(_signal(Action.BUY), float("nan"), _context(0.02))


@pytest.mark.parametrize("bad, where", [
    ({"legs": 0}, "legs"), ({"legs": 21}, "legs"), ({"legs": 2.0}, "legs"), ({"spacing_atr": 0}, "spacing_atr"),
    ({"first_offset_atr": -1}, "first_offset_atr"), ({"fallback_spacing": 0.5}, "fallback_spacing"),
    ({"max_depth": 1.0}, "max_depth"), ({"expire_after_bars": 0}, "expire_after_bars"), ({"leg": 3}, "leg"),
])
def test_grid_bad_options_fail_with_the_key(bad, where):
    settings_ = structure({"plugins": {"grid": bad}}, Settings)
    with pytest.raises(ConfigError, match=where):
        plugin_options(settings_, "grid", GridOptions)


def test_grid_is_registered_by_the_same_plugin():
    loaded = load_plugins({}, entry_points={}, extra_plugins={"volume_spike": mlcoord_volume_spike})
    spec = loaded.components["grid"]
    assert (spec.role, spec.owner, spec.options) == ("entry_planners", "volume_spike", GridOptions)
    settings_ = structure({"plugins": {"grid": {"legs": 3}}}, Settings)
    assert plugin_options(settings_, "grid", GridOptions) == GridOptions(legs=3)


def test_end_to_end_backtest_with_grid_replacing_dca(btc):
    settings_ = structure({"pipeline": {"entry_planner": "grid"}, "plugins": {"grid": {"legs": 3}}}, Settings)
    result = run_backtest(settings_, plugins=_with_builtins(), candles=[btc.slice(20_000, 28_000)])
    assert result.components["entry_planner"] == "grid"
    entered = [d for d in result.raw.decisions if d.outcome == "entered"]
    assert entered and all(d.plan.planner == "grid" and len(d.plan.legs) == 3 for d in entered)
    assert result.raw.trades and all(t.entries_planned == 3 for t in result.raw.trades if not t.hedge)
