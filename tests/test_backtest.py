"""The backtest loop: fill model, costs, no look-ahead, determinism, hedging under a crash."""

from __future__ import annotations

from pathlib import Path

import attrs
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from mlcoord import hookimpl
from mlcoord.backtest.run import bundled_path, run_backtest
from mlcoord.candles import candles_from_frame, load_candles
from mlcoord.components import SignalSeries
from mlcoord.config import structure, Settings
from mlcoord.model import ExitLevels, Side, Sizing
from mlcoord.registry import load_plugins
from pipelines import pipeline_of

H = 3_600_000_000_000
pytestmark = pytest.mark.usefixtures("builtin_plugins_only")   # the technical pipeline under test


def frame(rows):
    """Candles from (open, high, low, close) rows, hourly from 2024-01-01."""
    df = pd.DataFrame(rows, columns=["open", "high", "low", "close"])
    df["volume"] = 1.0
    df["date"] = pd.date_range("2024-01-01", periods=len(df), freq="h", tz="UTC")
    return candles_from_frame(df, symbol="TEST/USDT", timeframe="1h")


class FakeSource:
    def __init__(self, signals):
        self.signals = signals

    def prepare(self, data):
        n = len(data)
        action = np.zeros(n, np.int8)
        conf = np.zeros(n)
        for i, a in self.signals.items():
            if i < n:
                action[i], conf[i] = a, 0.9
        return SignalSeries(action, conf, lambda i: ["planted signal"])


class FixedExits:
    """Stop and take profit at fixed fractions of the plan's prices; no trailing."""

    def __init__(self, stop=0.02, tp=0.04):
        self.stop, self.tp = stop, tp

    def prepare(self, data):
        return self

    def initial(self, i, side, plan):
        worst, avg = plan.worst_price, plan.average_price
        return ExitLevels(stop=worst * (1 - side * self.stop), take_profit=avg * (1 + side * self.tp))

    def update(self, i, position, levels):
        return levels


class FixedSize:
    def size(self, request):
        return Sizing(quantity=1.0, risk=0.0)


class Fakes:
    def __init__(self, signals, stop=0.02, tp=0.04):
        self.signals, self.stop, self.tp = signals, stop, tp

    @hookimpl
    def register_signal_sources(self, register):
        register("fakesig", lambda o: FakeSource(self.signals))

    @hookimpl
    def register_exit_managers(self, register):
        register("fixedexits", lambda o: FixedExits(self.stop, self.tp))

    @hookimpl
    def register_sizers(self, register):
        register("fixedsize", lambda o: FixedSize())


def run_fake(candles, signals, stop=0.02, tp=0.04, **backtest):
    plugins = load_plugins({}, entry_points={}, extra_plugins={"fakes": Fakes(signals, stop, tp)})
    config = structure({"engine": {"min_confidence": 0.5},
                        "backtest": {"fee_taker": 0.001, "fee_maker": 0.0, "slippage": 0.001,
                                     "funding_rate": 0.0, **backtest},
                        "data": {"higher_timeframes": []}, "pipeline": pipeline_of(plugins)}, Settings)
    return run_backtest(config, plugins=plugins, candles=[candles])


FLAT = [(100, 101, 99, 100)] * 5


def test_market_entry_fills_at_next_open_with_slippage_and_fee():
    bars = FLAT + [(102, 103, 101, 102), (102, 103, 101, 102), (102, 103, 101, 102)]
    result = run_fake(frame(bars), {4: 1})
    entry = result.raw.fills[0]
    assert entry.time == result.raw.times[5]              # decided at bar 4, filled at bar 5
    assert entry.price == pytest.approx(102 * 1.001)      # next open plus slippage
    assert entry.fee == pytest.approx(entry.price * 0.001)


def test_stop_gapped_through_fills_at_the_open():
    bars = FLAT + [(100, 100.5, 99.5, 100), (90, 91, 89, 90), (90, 91, 89, 90)]
    result = run_fake(frame(bars), {4: 1})
    trade = result.raw.trades[0]
    assert trade.exit_reason == "stop_loss"
    assert trade.exit_price == pytest.approx(90 * (1 - 0.001))   # the open, not the stop at 98.1


def test_stop_assumed_before_take_profit_inside_one_bar():
    bars = FLAT + [(100, 100.5, 99.5, 100), (100, 110, 90, 100), (100, 101, 99, 100)]
    result = run_fake(frame(bars), {4: 1})
    assert result.raw.trades[0].exit_reason == "stop_loss"


def test_take_profit_fills_at_its_level():
    bars = FLAT + [(100, 100.5, 99.5, 100), (100, 106, 99.5, 105), (105, 106, 104, 105)]
    result = run_fake(frame(bars), {4: 1})
    trade = result.raw.trades[0]
    assert trade.exit_reason == "take_profit"
    assert trade.exit_price == pytest.approx(100 * 1.04)   # levels come from the decision bar's plan


def test_short_position_mirrors_long():
    bars = FLAT + [(100, 100.5, 99.5, 100), (100, 100.5, 95, 96), (96, 97, 95, 96)]
    result = run_fake(frame(bars), {4: -1})
    trade = result.raw.trades[0]
    assert trade.side == Side.SHORT and trade.exit_reason == "take_profit"
    assert trade.pnl > 0


def test_no_entry_fill_on_the_decision_bar_even_if_it_would_profit():
    """A signal at the last bar has no next bar: nothing fills."""
    bars = FLAT + [(100, 101, 99, 100)]
    result = run_fake(frame(bars), {5: 1})
    assert result.raw.fills == ()
    assert [d.outcome for d in result.raw.decisions] == ["entered"]


def test_funding_is_charged_on_perpetual_positions():
    bars = [(100, 100.5, 99.5, 100)] * 40
    result = run_fake(frame(bars), {1: 1}, stop=0.5, tp=0.5, funding_rate=0.001)
    trade = result.raw.trades[0]
    # held from bar 2 to the end (bar 39): funding times at 08:00, 16:00, 00:00, 08:00 -> 4 payments
    assert trade.funding == pytest.approx(4 * 0.001 * 100)


def test_leveraged_short_is_liquidated():
    bars = FLAT + [(100, 100.5, 99.5, 100), (100, 160, 99, 150), (150, 151, 149, 150)]
    result = run_fake(frame(bars), {4: -1}, stop=0.9, tp=0.5, leverage=2.0)
    trade = result.raw.trades[0]
    assert trade.exit_reason == "liquidation"
    entry = 100 * 0.999
    # isolated margin: the margin is lost (the fill is at the bankruptcy price) plus the
    # liquidation fee on the notional at the liquidation price (taker rate), never more
    assert trade.exit_price == pytest.approx(entry * (1 + 1 / 2.0))
    liquidation_price = entry * (1 + 1 / 2.0 - 0.005)
    assert -trade.pnl == pytest.approx(entry / 2.0 + (entry + liquidation_price) * 0.001)


# -- the whole technical pipeline on real data --------------------------------------------------

@pytest.fixture(scope="module")
def btc():
    return load_candles(bundled_path("BTC/USDT"))


def default_run(candles, **overrides):
    return run_backtest(structure(overrides, Settings), disabled={}, candles=[candles])


def test_same_run_twice_gives_identical_results(btc):
    part = btc.slice(0, 6000)
    a, b = default_run(part), default_run(part)
    assert a.raw.trades == b.raw.trades
    assert a.raw.decisions == b.raw.decisions
    assert np.array_equal(a.raw.equity, b.raw.equity)
    assert len(a.raw.trades) > 10


@settings(max_examples=6, deadline=None)
@given(k=st.integers(min_value=1500, max_value=5000), extra=st.integers(min_value=1, max_value=400))
def test_appending_future_bars_changes_no_past_decision_or_fill(btc, k, extra):
    """No look-ahead, end to end: decisions, fills and exits up to bar k-1 are the same whether
    the data ends at k or continues."""
    short, long_ = default_run(btc.slice(0, k)), default_run(btc.slice(0, k + extra))
    cutoff = btc.time[k - 1]
    past = lambda ds: [d for d in ds if d.time <= cutoff]  # noqa: E731
    assert past(short.raw.decisions) == past(long_.raw.decisions)
    closed = lambda ts: [t for t in ts if t.closed_at < cutoff and t.exit_reason != "end_of_data"]  # noqa: E731
    fills = lambda fs: [f for f in fs if f.time < cutoff]  # noqa: E731
    assert fills(short.raw.fills) == fills(long_.raw.fills)
    assert closed(short.raw.trades) == closed(long_.raw.trades)
    assert np.array_equal(short.raw.equity[:-1][: k - 1], long_.raw.equity[: k - 1][: len(short.raw.equity) - 1])


def test_real_data_pipeline_trades_both_sides_over_all_dca_bands(btc):
    result = default_run(btc.slice(0, 12000))
    sides = {t.side for t in result.raw.trades if not t.hedge}
    assert sides == {Side.LONG, Side.SHORT}
    bands = result.breakdowns["per_dca_band"]
    assert set(bands) == {"2 entries", "3 entries", "4 entries"}
    main = [t for t in result.raw.trades if not t.hedge]
    for k, band in bands.items():     # each band's trades and realised win rate, from the trades themselves
        mine = [t for t in main if f"{t.entries_planned} entries" == k]
        assert band["trades"] == len(mine) > 0
        assert band["win_rate"] == pytest.approx(sum(t.pnl > 0 for t in mine) / len(mine))
        assert band["pnl"] == pytest.approx(sum(t.pnl for t in mine), abs=1e-5)
    entered = [d for d in result.raw.decisions if d.outcome == "entered"]
    for d in entered:   # DCA, exits and sizing all saw the same decision
        assert len(d.plan.legs) == {True: 2, False: 3 if d.confidence >= 0.65 else 4}[d.confidence >= 0.75]
        if d.plan.side == Side.LONG:
            assert d.levels.stop < d.plan.worst_price < d.levels.take_profit
        else:
            assert d.levels.stop > d.plan.worst_price > d.levels.take_profit


def test_planted_crash_loses_less_with_the_hedge_guard(btc):
    """Plant a slow 45 % crash after a stretch of real bars, with wide stops so the positions ride
    into it; the drawdown-triggered hedge must cut the loss."""
    part = btc.slice(3000, 4500)
    df = part.frame.copy()
    n = len(df)
    start = n - 500
    factor = np.ones(n)
    factor[start:] = np.linspace(1.0, 0.55, n - start)
    for col in ("open", "high", "low", "close"):
        df[col] = df[col] * factor
    df["high"] = df[["open", "high", "close"]].max(axis=1)
    df["low"] = df[["open", "low", "close"]].min(axis=1)
    crashed = candles_from_frame(df.reset_index(), symbol="BTC/USDT", timeframe="1h")
    wide = {"plugins": {"exits": {"min_stop_atr": 30.0, "max_stop_atr": 60.0, "atr_stop_multiplier": 40.0,
                                  "trailing_stop": False},
                        "risk": {"risk_per_trade": 0.2, "max_position_fraction": 1.0}},
            "engine": {"disable": []}}
    on = run_backtest(structure(wide, Settings), disabled={}, candles=[crashed])
    off = run_backtest(structure(wide, Settings), disabled={"hedging": "test"}, candles=[crashed])
    assert on.stats["hedges"] > 0 and off.stats["hedges"] == 0
    crash_loss = lambda r: r.raw.equity[start - 1] - r.raw.equity.min()  # noqa: E731
    assert on.stats["final_equity"] > off.stats["final_equity"]
    assert on.stats["max_drawdown"] < off.stats["max_drawdown"]
    assert crash_loss(on) < crash_loss(off)


def test_loop_restores_the_garbage_collector_settings_even_after_an_error():
    """The loop makes collection passes rarer while it runs; afterwards (also after an error
    that ends the run) the process's own settings are back and nothing stays frozen."""
    import gc

    from mlcoord.backtest import engine

    before = gc.get_threshold()
    with pytest.raises(KeyboardInterrupt):
        with engine._fewer_gc_passes():
            assert gc.get_threshold()[0] >= 100_000 and gc.get_freeze_count() > 0
            raise KeyboardInterrupt
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
    result = run_fake(frame(FLAT * 4), {3: 1})
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
    assert len(result.raw.decisions) == 1
