"""The exit manager: stops and targets on real BTC data, mirrored for shorts, and never from the future."""

from __future__ import annotations

import math
import time
from pathlib import Path

import attrs
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlcoord.datasets import bundled_path
from mlcoord import Action, EntryLeg, EntryPlan, ExitLevels, Side, Signal, config, features
from mlcoord.candles import candles_from_frame, load_candles
from mlcoord.components import ExitManager as ExitManagerProtocol
from mlcoord.components import build_market_data
from mlcoord.testing.fixtures import FakePosition  # the PositionView the engine keeps
from mlcoord_dca import DCAOptions, DCAPlanner
from mlcoord_exits import ExitManager, ExitOptions, register_exit_managers

BTC = bundled_path("BTC/USDT")
OPTIONS = ExitOptions()


@pytest.fixture(scope="module")
def btc():
    return build_market_data(load_candles(BTC), timeframes=("4h", "1d"))


@pytest.fixture(scope="module")
def btc_small(btc):
    return build_market_data(btc.candles.slice(0, 3000), timeframes=("4h", "1d"))


@pytest.fixture(scope="module")
def exits(btc):
    return ExitManager(OPTIONS).prepare(btc)


def dca_plan(data, i, action, confidence=0.70):
    return DCAPlanner(DCAOptions()).plan(Signal(action, confidence), float(data.candles.close[i]), data.context.at(i))


def single_leg(side, price):
    return EntryPlan(side, [EntryLeg(price, 1.0, market=True)])


def walk(manager, data, start, side, levels, bars):
    """Feed ``update`` bar after bar like the engine does, the best price from real highs/lows."""
    c = data.candles
    entry = float(c.close[start])
    pos = FakePosition(side, entry, start, entry)
    history = [levels]
    for t in range(start + 1, min(start + 1 + bars, len(c))):
        pos.best_price = max(pos.best_price, c.high[t]) if side is Side.LONG else min(pos.best_price, c.low[t])
        levels = manager.update(t, pos, levels)
        history.append(levels)
    return history


def check_initial(data, manager, i, action):
    plan = dca_plan(data, i, action)
    levels = manager.initial(i, action.side, plan)
    worst, average, atr = plan.worst_price, plan.average_price, data.context.atr[i]
    s = int(action.side)
    # long: stop < worst < average < take profit; short: the mirror image
    assert s * levels.stop < s * worst < s * average < s * levels.take_profit
    risk, reward = s * (average - levels.stop), s * (levels.take_profit - average)
    assert reward / risk >= OPTIONS.min_reward_risk - 1e-9
    assert OPTIONS.min_stop_atr - 1e-9 <= s * (worst - levels.stop) / atr <= OPTIONS.max_stop_atr + 1e-9
    assert levels.reasons[0].startswith(f"stop {levels.stop:.6g}")
    assert levels.reasons[1].startswith(f"take profit {levels.take_profit:.6g}")
    return plan, levels


BARS = list(range(200, 43_800, 997))


def test_ml_signal_compatible_with_position_management(btc, exits):
    for i in BARS:
        check_initial(btc, exits, i, Action.BUY)


@pytest.mark.parametrize("action", [Action.BUY, Action.SELL])
def test_position_management_works_with_both_buy_sell(btc, exits, action):
    used = {"support": 0, "resistance": 0, "at": 0}
    for i in BARS:
        _, levels = check_initial(btc, exits, i, action)
        used["support" if action is Action.BUY else "resistance"] += " = support " in levels.reasons[0] or (
            " = resistance " in levels.reasons[0])
        used["at"] += " at " in levels.reasons[1]
    # real data exercises both branches: pivot-based stops and pivot-based targets
    assert used["support"] + used["resistance"] > len(BARS) // 4 and used["at"] > 0


def v_dip(n=80, dip_at=45, floor=98.5):
    """Flat at 100 (equal lows: no strict pivot), a V down to ``floor`` at ``dip_at``, back up, flat."""
    close = np.full(n, 100.0)
    close[dip_at - 5:dip_at + 1] = np.linspace(100.0, floor + 0.3, 6)
    close[dip_at:dip_at + 6] = np.linspace(floor + 0.3, 100.5, 6)
    close[dip_at + 6:] = 100.5
    open_ = np.r_[close[0], close[:-1]]
    high, low = np.maximum(open_, close) + 0.2, np.minimum(open_, close) - 0.2
    low[dip_at] = floor
    time_ = pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC")
    frame = pd.DataFrame({"time": time_, "open": open_, "high": high, "low": low, "close": close, "volume": 1.0})
    return build_market_data(candles_from_frame(frame, symbol="SYN/USDT", timeframe="1h"))


def test_stop_sits_below_a_confirmed_support():
    data = v_dip()
    support, _ = features.confirmed_pivots(data.candles.high, data.candles.low, 5, 5)
    assert np.isnan(support[49]) and support[50] == 98.5           # pivot at 45, confirmed at 50
    manager = ExitManager(OPTIONS).prepare(data)
    i, price = 55, 100.0
    atr = data.context.atr[i]
    assert 1.0 < (price - 98.5) / atr + 0.5 < 4.0                   # the construction is in range
    levels = manager.initial(i, Side.LONG, single_leg(Side.LONG, price))
    assert levels.stop == pytest.approx(98.5 - 0.5 * atr)
    assert levels.reasons[0] == f"stop {levels.stop:.6g} = support 98.5 - 0.5 ATR"
    # a support whose buffered stop would be more than max_stop_atr away is clamped to it
    clamped = manager.initial(i, Side.LONG, single_leg(Side.LONG, 100.5))
    assert (100.5 - 98.5) / atr + 0.5 > 4.0
    assert clamped.stop == pytest.approx(100.5 - 4.0 * atr)
    assert clamped.reasons[0].startswith(f"stop {clamped.stop:.6g} = worst entry 100.5 - 4 ATR (support 98.5")
    # the same support is ignored once it is more than max_stop_atr below the entry
    far = ExitManager(ExitOptions(max_stop_atr=1.0)).prepare(data).initial(i, Side.LONG, single_leg(Side.LONG, price))
    assert far.stop == pytest.approx(price - 1.0 * atr) and "support" not in far.reasons[0]


def test_support_confirmed_after_the_bar_is_not_used():
    data = v_dip()
    plan = single_leg(Side.LONG, 100.0)
    before = ExitManager(OPTIONS).prepare(data).initial(49, Side.LONG, plan)  # pivot at 45 known only at 50
    atr = data.context.atr[49]
    assert before.stop == pytest.approx(100.0 - 2.0 * atr)
    assert before.reasons[0] == f"stop {before.stop:.6g} = worst entry 100 - 2 ATR"
    assert ExitManager(OPTIONS).prepare(data.head(50)).initial(49, Side.LONG, plan) == before
    after = ExitManager(OPTIONS).prepare(data).initial(50, Side.LONG, plan)
    assert "support 98.5 - 0.5 ATR" in after.reasons[0]


def test_resistance_mirrors_support_for_shorts():
    data = v_dip()
    flipped = data.candles.frame.copy()
    flipped[["open", "close"]] = 200.0 - flipped[["open", "close"]]
    flipped["high"], flipped["low"] = 200.0 - data.candles.frame["low"], 200.0 - data.candles.frame["high"]
    mirror = build_market_data(candles_from_frame(flipped.reset_index(), symbol="SYN/USDT", timeframe="1h"))
    long = ExitManager(OPTIONS).prepare(data).initial(55, Side.LONG, single_leg(Side.LONG, 100.0))
    short = ExitManager(OPTIONS).prepare(mirror).initial(55, Side.SHORT, single_leg(Side.SHORT, 100.0))
    assert short.stop == pytest.approx(200.0 - long.stop)
    assert short.take_profit == pytest.approx(200.0 - long.take_profit)
    assert "resistance 101.5 + 0.5 ATR" in short.reasons[0]


@pytest.mark.parametrize("side", [Side.LONG, Side.SHORT])
def test_trailing_stop_only_tightens_over_a_real_walk(btc, exits, side):
    moved = 0
    c, atr = btc.candles, btc.context.atr
    for start in (1200, 9000, 21000, 33000, 41000):
        levels = exits.initial(start, side, single_leg(side, float(c.close[start])))
        history = walk(exits, btc, start, side, levels, 200)
        stops = np.array([lv.stop for lv in history])
        steps = np.diff(stops) * int(side)
        assert (steps >= 0).all()                     # long: never lower; short: never higher
        moved += int((steps > 0).sum())
        for t, (a, b) in enumerate(zip(history, history[1:]), start + 1):
            if b.stop != a.stop:                       # a new trail keeps min_stop_atr from the close
                assert int(side) * (c.close[t] - b.stop) >= OPTIONS.min_stop_atr * atr[t] - 1e-6
                assert b.reasons[0].startswith("trailing stop")
    assert moved > 20


def test_take_profit_extends_in_a_strong_trend(btc, exits):
    # BTC's run of late 2020: 13.8k at bar 1000, 18.4k at bar 2000
    start = 1000
    levels = exits.initial(start, Side.LONG, single_leg(Side.LONG, float(btc.candles.close[start])))
    history = walk(exits, btc, start, Side.LONG, levels, 300)
    targets = np.array([lv.take_profit for lv in history])
    assert (np.diff(targets) >= 0).all() and targets[-1] > targets[0]
    assert any("take profit extended" in r for lv in history for r in lv.reasons)


def test_take_profit_extension_rule(btc, exits):
    ctx = btc.context
    strong = np.flatnonzero((ctx.trend_strength > 0.35) & (ctx.momentum > 0.01))
    weak = np.flatnonzero((ctx.trend_strength < 0.15) & (ctx.momentum > 0.01))
    assert len(strong) and len(weak)
    for i, extends in ((int(strong[100]), True), (int(weak[100]), False)):
        close, atr = ctx.close[i], ctx.atr[i]
        levels = ExitLevels(stop=close - 3 * atr, take_profit=close + 0.5 * atr)
        pos = FakePosition(Side.LONG, close, i - 1, close)    # not in profit: no trail
        new = exits.update(i, pos, levels)
        assert new.stop == levels.stop
        assert new.take_profit == pytest.approx(close + (1.5 if extends else 0.5) * atr)
        short = ExitLevels(stop=close + 3 * atr, take_profit=close - 0.5 * atr)
        assert exits.update(i, FakePosition(Side.SHORT, close, i - 1, close), short) is short  # momentum is up


def test_moved_levels_carry_every_other_field(btc, exits):
    """``update`` builds the moved levels field by field (``attrs.evolve`` costs a third more): every
    field it does not move, a field added to ExitLevels later included, is the old levels'."""
    ctx = btc.context
    i = int(np.flatnonzero((ctx.trend_strength > 0.35) & (ctx.momentum > 0.01))[100])
    close, atr = float(ctx.close[i]), float(ctx.atr[i])
    values = {"stop": close - 3 * atr, "take_profit": close + 0.5 * atr, "partial_take_profit": close + 0.25 * atr,
              "partial_fraction": 0.4, "reasons": ("old",), "trail_distance": 2 * atr, "trail_activation": close + atr}
    assert set(values) == {f.name for f in attrs.fields(ExitLevels)}, "a new ExitLevels field: give it a value here"
    levels = ExitLevels(**values)
    best = close + 10 * atr                              # far in profit: the stop trails too
    new = exits.update(i, FakePosition(Side.LONG, close - 5 * atr, i - 50, best), levels)
    assert new.stop > levels.stop and new.take_profit > levels.take_profit
    assert new == attrs.evolve(levels, stop=new.stop, take_profit=new.take_profit, reasons=new.reasons)


def test_update_keeps_levels_during_atr_warm_up(btc_small):
    manager = ExitManager(OPTIONS).prepare(btc_small)
    levels = manager.initial(3, Side.LONG, single_leg(Side.LONG, float(btc_small.candles.close[3])))
    assert "ATR warming up" in levels.reasons[0]
    pos = FakePosition(Side.LONG, 1.0, 0, 1e9)     # absurdly in profit: would trail if ATR existed
    warm = [t for t in range(4, 30) if np.isnan(btc_small.context.atr[t])]
    assert len(warm) >= 5
    for t in warm:
        assert manager.update(t, pos, levels) is levels


def test_partial_take_profit_and_exits_ignore_where_the_plan_came_from(btc, exits):
    i = 5000
    plan = dca_plan(btc, i, Action.BUY, 0.9)
    manager = ExitManager(ExitOptions(partial_take_profit=True, partial_at_r=1.0, partial_fraction=0.4)).prepare(btc)
    levels = manager.initial(i, Side.LONG, plan)
    risk = plan.average_price - levels.stop
    assert levels.partial_take_profit == pytest.approx(plan.average_price + risk)
    assert levels.partial_fraction == 0.4 and levels.partial_take_profit < levels.take_profit
    # only prices, the legs and the side matter: not the confidence, the planner or its reasons
    other = attrs.evolve(plan, planner="other", reasons=("confidence 0.10",))
    assert exits.initial(i, Side.LONG, other) == exits.initial(i, Side.LONG, plan)
    with pytest.raises(ValueError, match="plan side"):
        exits.initial(i, Side.SHORT, plan)


@settings(max_examples=25, deadline=None)
@given(k=st.integers(30, 3000), back=st.integers(1, 400), side=st.sampled_from([Side.LONG, Side.SHORT]))
def test_no_look_ahead(btc_small, k, back, side):
    i = max(0, k - back)
    full = ExitManager(OPTIONS).prepare(btc_small)
    head = ExitManager(OPTIONS).prepare(btc_small.head(k))
    plan = dca_plan(btc_small, i, Action.BUY if side is Side.LONG else Action.SELL, 0.6)
    levels = full.initial(i, side, plan)
    assert head.initial(i, side, plan) == levels
    assert walk(head, btc_small, i, side, levels, k - 1 - i) == walk(full, btc_small, i, side, levels, k - 1 - i)


def test_options_validation_and_registration():
    with pytest.raises(ValueError, match="min_stop_atr .* must not exceed max_stop_atr"):
        ExitOptions(min_stop_atr=5.0)
    with pytest.raises(ValueError, match="trail_factor_min"):
        ExitOptions(trail_factor_min=1.2)
    with pytest.raises(config.ConfigError, match=r"atr_stop_multiplier"):
        config.structure({"atr_stop_multiplier": -1.0}, ExitOptions, path="$.plugins.exits")
    assert config.structure(config.unstructure(OPTIONS), ExitOptions) == OPTIONS
    seen = {}
    register_exit_managers(lambda name, factory, options=None, description="", **declared: seen.update({name: (factory, options)}))
    factory, options = seen["exits"]
    assert isinstance(factory(options()), ExitManagerProtocol)


def test_update_is_cheap(btc, exits):
    start, bars = 20_000, 20_000
    c = btc.candles
    levels = exits.initial(start, Side.LONG, single_leg(Side.LONG, float(c.close[start])))
    pos = FakePosition(Side.LONG, float(c.close[start]), start, float(c.close[start]))
    highs = c.high.tolist()
    t0 = time.perf_counter()
    for t in range(start + 1, start + bars):
        if highs[t] > pos.best_price:
            pos.best_price = highs[t]
        levels = exits.update(t, pos, levels)
    per_call = (time.perf_counter() - t0) / bars
    assert per_call < 20e-6, f"{per_call * 1e6:.1f} us per update"


def _nearest_scanning(events, i, ref, direction, limit, lookback):
    """The definition: walk back from the newest pivot confirmed at or before ``i``."""
    bars, levels = events
    best, best_gap = None, float("inf")
    k = max((j for j, b in enumerate(bars) if b <= i), default=-1)
    while k >= 0 and bars[k] > i - lookback:
        gap = direction * (levels[k] - ref)
        if 0.0 < gap <= limit and gap < best_gap:
            best, best_gap = levels[k], gap
        k -= 1
    return best


def test_nearest_level_is_the_scanning_definition(exits):
    """The window's slice gives the level a newest-first scan gives, limits included."""
    rng = np.random.default_rng(5)
    lookback = exits.options.pivot_lookback_bars
    for events in (exits._supports, exits._resistances):
        bars = events[0]
        for _ in range(400):
            i = int(rng.integers(0, bars[-1] + 50))
            ref = float(rng.choice(events[1])) * float(rng.uniform(0.97, 1.03))
            for direction in (-1, 1):
                limit = float(rng.choice([math.inf, ref * 0.02]))
                assert exits._nearest(events, i, ref, direction, limit) == \
                    _nearest_scanning(events, i, ref, direction, limit, lookback)
