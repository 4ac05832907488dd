"""The engine's trade label (issue 16): triple barrier from the configured exit manager's initial
levels, net of fees and slippage, vectorised; known only once its barriers resolve, and handed to
learners with the decision's outcome, never earlier."""

from __future__ import annotations

import numpy as np
import pytest

from mlcoord.backtest.run import run_backtest
from mlcoord.components import build_market_data
from mlcoord.config import BacktestConfig, Settings, structure
from mlcoord.costs import CostModel
from mlcoord.learning import TradeLabel
from mlcoord.loop import feed_due_outcomes
from mlcoord.model import Side
from mlcoord.trade_label import (STOP, TAKE_PROFIT, TIME, UNRESOLVED, direct_plan, history_trade_labels,
                                 resolve_trade, trade_labels)
from mlcoord_exits import ExitManager
from pipelines import enabled_extras
from test_ml_pipeline import FakeML, plugins_with

COSTS = CostModel.from_config(BacktestConfig())
FEE, SLIP = COSTS.fee_taker, COSTS.slippage


def random_bars(n, seed):
    rng = np.random.default_rng(seed)
    c = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    o = np.concatenate([[100.0], c[:-1]]) * np.exp(rng.normal(0, 0.003, n))     # gaps at the open
    h = np.maximum(o, c) * np.exp(np.abs(rng.normal(0, 0.006, n)))
    l = np.minimum(o, c) * np.exp(-np.abs(rng.normal(0, 0.006, n)))
    return o, h, l, c


@pytest.mark.parametrize("side", [1, -1])
def test_vectorised_labels_equal_the_loops_bar_by_bar_replay_with_the_cost_model(side):
    """The history labels (numpy, every bar at once) equal the trading loop's per-decision labels,
    which replay the bars with the simulated venue's own fill rules (mlcoord.costs.CostModel)."""
    o, h, l, c = random_bars(600, seed=3 + side)
    rng = np.random.default_rng(7)
    bars = np.arange(len(c))
    stop = c * (1 - side * rng.uniform(0.003, 0.03, len(c)))
    tp = c * (1 + side * rng.uniform(0.003, 0.05, len(c)))
    tp[::7] = np.nan                                  # no take profit on some bars
    stop[::11] = np.nan                               # no levels at all on others
    found = trade_labels(o, h, l, c, bars, side, stop, tp, 12, FEE, SLIP)
    kinds = set()
    for t in bars:
        window = slice(t, t + 13)
        expected = None if np.isnan(stop[t]) else resolve_trade(
            o[window], h[window], l[window], c[window], side, stop[t], None if np.isnan(tp[t]) else tp[t], 12, COSTS)
        if expected is None:
            assert found.barrier[t] == UNRESOLVED and np.isnan(found.win[t]) and found.resolved[t] == -1
            continue
        net, barrier, j = expected
        assert (found.barrier[t], found.resolved[t]) == (barrier, t + j)
        assert found.net_return[t] == pytest.approx(net, abs=1e-12)
        assert found.win[t] == float(net > 0)
        kinds.add(barrier)
    assert kinds == {STOP, TAKE_PROFIT, TIME}             # every barrier was exercised


def test_stop_is_assumed_first_and_a_gap_fills_at_the_open():
    # bar 1: entry at the open 100; bar 2 touches both the stop 98 and the take profit 103
    o = np.array([100.0, 100.0, 100.0, 100.0])
    h = np.array([100.0, 100.5, 104.0, 100.0])
    l = np.array([100.0, 99.5, 97.0, 100.0])
    both = trade_labels(o, h, l, o, [0], 1, 98.0, 103.0, 3, FEE, SLIP)
    assert both.barrier[0] == STOP and both.resolved[0] == 2 and both.win[0] == 0.0
    entry, out = 100.0 * (1 + SLIP), 98.0 * (1 - SLIP)
    assert both.net_return[0] == pytest.approx((out - entry - FEE * (entry + out)) / entry)
    gapped_open = o.copy()
    gapped_open[2] = 96.0                                 # opens through the stop: filled at 96, not 98
    gap = trade_labels(gapped_open, h, np.minimum(l, gapped_open), o, [0], 1, 98.0, 103.0, 3, FEE, SLIP)
    out = 96.0 * (1 - SLIP)
    assert gap.net_return[0] == pytest.approx((out - entry - FEE * (entry + out)) / entry)


def test_a_move_that_only_covers_costs_is_a_loss():
    """Time barrier 0.15 % up: above zero gross, below the round trip of fees and slippage."""
    o = np.array([100.0, 100.0, 100.15])
    found = trade_labels(o, o, o, o, [0], 1, 90.0, 110.0, 2, FEE, SLIP)
    assert found.barrier[0] == TIME and found.net_return[0] < 0 and found.win[0] == 0.0


def test_bad_arguments_are_refused():
    o = np.ones(5)
    with pytest.raises(ValueError, match="side must be"):
        trade_labels(o, o, o, o, [0], 0, 0.9, 1.1, 2, FEE, SLIP)
    with pytest.raises(ValueError, match="horizon must be"):
        trade_labels(o, o, o, o, [0], 1, 0.9, 1.1, 0, FEE, SLIP)


def test_a_label_is_never_known_before_its_barriers_resolve(short_candles):
    """Labels from the data cut after bar k equal the full data's for every bar resolved by k, and
    are unknown (NaN) for every other bar: nothing after the resolving bar enters a label."""
    candles = short_candles.slice(0, 900)
    exits = ExitManager()
    full = history_trade_labels(exits.prepare(build_market_data(candles)), candles, 24, FEE, SLIP)
    for k in (300, 517, 899):
        part = candles.slice(0, k)
        cut = history_trade_labels(exits.prepare(build_market_data(part)), part, 24, FEE, SLIP)
        for side in (1, -1):
            a, b = full[side], cut[side]
            known = (a.resolved >= 0) & (a.resolved < k)
            known = known[:k]
            assert known.sum() > 200
            np.testing.assert_array_equal(b.win[known], a.win[:k][known])
            np.testing.assert_array_equal(b.net_return[known], a.net_return[:k][known])
            np.testing.assert_array_equal(b.resolved[known], a.resolved[:k][known])
            assert np.isnan(b.win[~known]).all() and (b.resolved[~known] == -1).all()


class Series:
    """What feed_due_outcomes reads of a symbol's series."""

    def __init__(self, candles, pending):
        self.symbol = candles.symbol
        self.o, self.h, self.l, self.c = candles.open, candles.high, candles.low, candles.close
        self.pending, self.next_due = pending, min(p[0] for p in pending)


class Learner:
    def __init__(self):
        self.fed = []

    def learn(self, symbol, index, decision, forward_return, trade=(None, None)):
        self.fed.append((index, trade))


def test_feed_due_outcomes_hands_the_labels_over_at_the_horizon_and_not_before(short_candles):
    candles = short_candles.slice(0, 400)
    exits = ExitManager().prepare(build_market_data(candles))
    full = history_trade_labels(exits, candles, 24, FEE, SLIP)
    index = 300
    levels = tuple(exits.initial(index, side, direct_plan(side, float(candles.close[index]))) for side in (Side.LONG, Side.SHORT))
    learner = Learner()
    s = Series(candles, [(index + 24, index, None, levels)])
    for i in range(index, index + 24):
        feed_due_outcomes(learner, s, i, 24, COSTS)
        assert learner.fed == [], f"fed at bar {i}, before the horizon closed at {index + 24}"
    feed_due_outcomes(learner, s, index + 24, 24, COSTS)
    [(fed_index, (up, down))] = learner.fed
    assert fed_index == index
    for label, side in ((up, 1), (down, -1)):
        assert isinstance(label, TradeLabel) and label.side == side
        assert label.resolved_index == full[side].resolved[index] <= index + 24
        assert label.net_return == pytest.approx(full[side].net_return[index], abs=1e-14)
        assert label.win == bool(full[side].win[index])


def test_learners_get_the_engine_label_of_both_sides_in_a_backtest(short_candles):
    """Every outcome carries both sides' labels, equal to the history labels of the run's exit
    manager at that bar; a run on data ending right at an outcome's horizon feeds the same label."""
    candles = short_candles.slice(0, 1500)
    good = FakeML("good")
    plugins = plugins_with(good=good)
    settings = enabled_extras(structure({"learning": {"horizon": 12}}, Settings), plugins)
    run_backtest(settings, plugins=plugins, candles=[candles])
    assert len(good.outcomes) > 20
    exits = ExitManager().prepare(build_market_data(candles, settings.data.higher_timeframes))
    bars = [o.index for o in good.outcomes]
    full = history_trade_labels(exits, candles, 12, FEE, SLIP, bars=bars)
    for k, o in enumerate(good.outcomes):
        for side in (1, -1):
            label = o.trade(side)
            assert label is not None and label.side == side
            assert label.resolved_index <= o.index + 12
            assert label.resolved_index == full[side].resolved[k]
            assert label.net_return == pytest.approx(full[side].net_return[k], abs=1e-14)
    last = good.outcomes[len(good.outcomes) // 2]
    cut = FakeML("good")
    plugins = plugins_with(good=cut)
    run_backtest(enabled_extras(structure({"learning": {"horizon": 12}}, Settings), plugins), plugins=plugins,
                 candles=[candles.slice(0, last.index + 13)])
    assert cut.outcomes[-1].index == last.index
    assert cut.outcomes[-1].trade_up == last.trade_up and cut.outcomes[-1].trade_down == last.trade_down


def test_outcome_without_labels_still_builds_positionally():
    """Third-party code that builds an Outcome positionally (the conformance kit does) still works."""
    from mlcoord.learning import Outcome

    o = Outcome("X", 1, 2, 1, 0.01, True, 0.6, 0.6)
    assert o.trade(1) is None and o.trade(-1) is None


def test_an_exit_manager_that_raises_leaves_bars_unlabelled_and_says_so():
    """A plugin bug in ``initial`` must not pass silently as "no label": the bars stay NaN and one
    warning names the count and the first error."""
    from structlog.testing import capture_logs

    from mlcoord.model import Side
    from mlcoord.trade_label import hypothetical_levels

    class Broken:
        def initial(self, i, side, plan):
            raise RuntimeError(f"broken at {i}")

    with capture_logs() as logs:
        stops, tps = hypothetical_levels(Broken(), [100.0, 101.0, 102.0], Side.LONG, [0, 2])
    assert np.isnan(stops).all() and np.isnan(tps).all()
    [warning] = [e for e in logs if e["event"] == "trade_label_levels_failed"]
    assert warning["bars"] == 2 and warning["first_bar"] == 0 and "broken at 0" in warning["error"]


def test_atr_trade_labels_are_the_atr_barriers_and_read_only_the_prefix_given():
    """The ATR-barrier label gbm and the sided sequence models learn: a stop ``stop_atr`` ATR(14)
    from the close and a take profit ``reward_risk`` times that risk, computed from the bars given."""
    from mlcoord import features
    from mlcoord.trade_label import atr_trade_labels, trade_labels

    rng = np.random.default_rng(3)
    c = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 600)))
    o = np.r_[c[0], c[:-1]]
    h, l = np.maximum(o, c) * 1.004, np.minimum(o, c) * 0.996
    bars = np.arange(20, 560)
    risk = 2.0 * features.atr(h, l, c, 14)
    for side in (1, -1):
        got = atr_trade_labels(o, h, l, c, bars, side, 2.0, 1.5, 24, 0.0005, 0.0005)
        want = trade_labels(o, h, l, c, bars, side, c[bars] - side * risk[bars], c[bars] + side * 1.5 * risk[bars],
                            24, 0.0005, 0.0005)
        np.testing.assert_array_equal(got.win, want.win)
        np.testing.assert_array_equal(got.resolved, want.resolved)
        assert np.isfinite(got.win).sum() > 400
    # a label known within a prefix is the same whatever follows it
    cut = 300
    head = atr_trade_labels(o[:cut], h[:cut], l[:cut], c[:cut], np.arange(20, cut), 1, 2.0, 1.5, 24, 0.0005, 0.0005)
    full = atr_trade_labels(o, h, l, c, np.arange(20, cut), 1, 2.0, 1.5, 24, 0.0005, 0.0005)
    known = head.resolved >= 0
    assert known.sum() > 200
    np.testing.assert_array_equal(head.win[known], full.win[known])
