"""The cost-aware entry (issue 16): E = p * reward - (1 - p) * risk - costs on the plan's average
entry price; below ``[engine] min_expected_return`` a decision is ``below_expected_return`` with
the figure, and every decision with a plan and levels shows it in its reasons."""

from __future__ import annotations

import attrs
import pytest

from mlcoord.backtest.run import run_backtest
from mlcoord.config import Settings, structure
from mlcoord.expected_return import expected_return, round_trip_costs
from mlcoord.journal import decision_to_dict, render_decision
from mlcoord.model import EntryLeg, EntryPlan, ExitLevels, Side, Signal
from mlcoord.registry import discover_entry_points, load_plugins

TECHNICAL = ("technical", "dca", "exits", "risk", "hedging", "protections")
FEES = {"fee_taker": 0.0005, "fee_maker": 0.0002, "slippage": 0.0005}


def ladder(side):
    s = int(side)
    return EntryPlan(side, (EntryLeg(100.0, 0.4, market=True), EntryLeg(100.0 - s * 0.5, 0.35),
                            EntryLeg(100.0 - s * 1.0, 0.25)), planner="dca")


@pytest.mark.parametrize("side", [Side.LONG, Side.SHORT])
def test_the_figure_uses_the_average_entry_of_a_dca_ladder_and_its_costs(side):
    plan = ladder(side)
    s = int(side)
    average = 100.0 * 0.4 + (100.0 - s * 0.5) * 0.35 + (100.0 - s * 1.0) * 0.25      # 99.575 for a long
    assert plan.average_price == pytest.approx(average)
    levels = ExitLevels(stop=average - s * 2.0, take_profit=average + s * 3.0)
    e = expected_return(plan, levels, 0.6, minimum=0.0, **FEES)
    costs = 0.4 * (0.0005 + 0.0005) + 0.6 * 0.0002 + (0.0005 + 0.0005)
    assert e.costs == pytest.approx(costs) == round_trip_costs(plan, **FEES)
    assert (e.reward, e.risk) == (pytest.approx(3.0 / average), pytest.approx(2.0 / average))
    assert e.value == pytest.approx(0.6 * 3.0 / average - 0.4 * 2.0 / average - costs)
    assert e.passed and expected_return(plan, levels, 0.6, minimum=e.value, **FEES).passed is False
    assert not expected_return(plan, levels, 0.4, minimum=0.0, **FEES).passed      # 0.4*3 - 0.6*2 = 0: costs sink it


def test_no_take_profit_no_figure():
    plan = ladder(Side.LONG)
    assert expected_return(plan, ExitLevels(stop=95.0, take_profit=None), 0.9, minimum=0.0, **FEES) is None


def _run(short_candles, **engine):
    eps = {n: ep for n, ep in discover_entry_points().items() if n in TECHNICAL}
    settings = structure({"engine": {"min_confidence": 0.5, **engine}}, Settings)
    return run_backtest(settings, plugins=load_plugins({}, entry_points=eps), candles=[short_candles])


def test_below_the_minimum_the_entry_is_refused_with_the_figure(short_candles):
    base = _run(short_candles)
    planned = [d for d in base.raw.decisions if d.levels is not None]
    entered = [d for d in planned if d.outcome == "entered"]
    assert entered, "the technical pipeline enters on these bars"
    # the pipeline appends the figure by building the Signal field by field: every field is carried
    assert [f.name for f in attrs.fields(Signal)] == ["action", "confidence", "reasons", "source"]
    unplanned = {d.signal.source for d in base.raw.decisions if d.levels is None}
    for d in planned:                                   # the figure is in every planned decision's reasons
        assert d.expected_return is not None and d.expected_return.describe() in d.signal.reasons
        assert d.signal.reasons[-1] == d.expected_return.describe() and d.signal.source in unplanned
        assert (d.signal.action, d.signal.confidence) == (d.technical.action, d.confidence)
        assert d.expected_return.probability == d.confidence and d.expected_return.passed
    values = sorted(d.expected_return.value for d in entered)
    cut = values[len(values) // 2]                      # refuse the lower half
    strict = _run(short_candles, min_expected_return=cut)
    refused = [d for d in strict.raw.decisions if d.outcome == "below_expected_return"]
    assert refused and all(d.expected_return.value <= cut for d in refused)
    assert all(d.expected_return.value > cut for d in strict.raw.decisions if d.outcome == "entered")
    assert len(strict.raw.trades) < len(base.raw.trades)
    d = refused[0]
    assert d.veto == d.expected_return.refusal() and "min_expected_return" in d.veto
    block = render_decision(decision_to_dict(d))
    assert "expected net return" in block and "VETO: expected net return" in block
    assert "below_expected_return" in block
