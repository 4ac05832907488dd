"""Issue 15: the engine bounds every plugin answer, whatever the plugin says.

Each backtest here runs the built-ins with one misbehaving component, and compares the run with
the run the engine's rule should give (the component left out, the stop never moved, a direct
entry...): nothing of the misbehaviour gets through silently, and each refusal is logged under
the component's name. The fakes get round the value classes' own checks with
``object.__setattr__``, as a careless or hostile plugin can.
"""

from __future__ import annotations

import math

import attrs
import numpy as np
import pytest
import structlog

import fake_plugins
from mlcoord.backtest.run import run_backtest
from mlcoord.bounds import (
    ComponentFailure, checked_guard_actions, checked_levels, checked_plan, checked_probability, checked_reasons,
    checked_series,
    checked_sizing, checked_state, checked_update, checked_verdict, checked_vote,
)
from mlcoord.components import SignalSeries
from mlcoord.config import Settings, structure
from mlcoord.model import (
    Action, EntryLeg, EntryPlan, ExitLevels, GuardAction, PositionExit, Side, Signal, Sizing, SizingRequest, Vote,
)
from mlcoord.registry import discover_entry_points, load_plugins

from conftest import BUILTINS


def sneaky(value, **fields):
    """``value`` with ``fields`` set past its validators."""
    for name, v in fields.items():
        object.__setattr__(value, name, v)
    return value


def run_with(candles, pipeline=None, **by_role):
    """A backtest of the built-ins plus the fakes (``[engine] enable``); returns the result and the
    ``component_failed`` events."""
    eps = {n: ep for n, ep in discover_entry_points().items() if n in BUILTINS}
    plugins = load_plugins({}, entry_points=eps, extra_plugins={"fakes": fake_plugins.AllRoles(**by_role)})
    settings = structure({"pipeline": pipeline or {}, "engine": {"enable": ["fakes"]}}, Settings)
    with structlog.testing.capture_logs() as logs:
        result = run_backtest(settings, plugins=plugins, candles=[candles])
    return result, [e for e in logs if e["event"] == "component_failed"]


def trades(result):
    return [(t.opened_at, t.closed_at, t.side, t.exit_reason, round(t.pnl, 6)) for t in result.raw.trades]


# -- sizers --------------------------------------------------------------------------------------------
class HugeSizer:
    """1e6 BTC on every entry."""

    def __init__(self, options=None):
        pass

    def size(self, request):
        return Sizing(quantity=1e6, risk=1.0, reasons=("all in",))


def test_a_sizer_asking_for_a_million_btc_is_cut_to_what_the_account_carries(short_candles):
    """It ended at equity -38,138,907, exit 0, without a word."""
    result, failures = run_with(short_candles, {"sizer": "huge"}, sizers={"huge": HugeSizer})
    entered = [d for d in result.raw.decisions if d.outcome == "entered"]
    assert entered and result.stats["trades"] > 0
    assert math.isfinite(result.stats["final_equity"]) and result.stats["final_equity"] > 0
    assert min(result.raw.equity) > 0
    for d in entered:
        assert d.sizing.quantity < 1e6
        assert d.sizing.quantity * d.plan.average_price <= 10_000 * 5      # never near the asked 1e6 BTC
        assert d.sizing.reasons[-1].startswith("engine: quantity 1e+06 cut to ")
    assert result.raw.errors["huge.size"] == len(entered)
    assert failures[0]["component"] == "huge" and failures[0]["note"] == "cut down to what the account can carry"
    assert failures[0]["plugin"] == "fakes"                          # the plugin that registered it


def test_the_cut_keeps_full_fill_notional_within_equity_times_leverage_less_exposure():
    plan = EntryPlan(Side.LONG, (EntryLeg(100.0, 0.5, market=True), EntryLeg(90.0, 0.5)))
    request = SizingRequest("X", Side.LONG, plan, 80.0, 0.7, 10_000.0, 4_000.0, 1, 0.0, 0.0, 2.0)
    sizing, why = checked_sizing(Sizing(quantity=1e6), request)
    assert sizing.quantity * plan.average_price == pytest.approx(10_000 * 2 - 4_000)
    assert why.startswith("quantity 1e+06 cut to 168.421")
    fits = Sizing(quantity=10.0, reasons=("fine",))
    assert checked_sizing(fits, request) == (fits, None)                # within the room: untouched
    full = attrs.evolve(request, exposure=20_000.0)
    vetoed, why = checked_sizing(Sizing(quantity=1.0), full)
    assert not vetoed.approved and vetoed.veto == why and why.startswith("no room for an entry")
    far = attrs.evolve(request, stop=1.0, leverage=100.0, exposure=0.0)   # a stop 99 below: the loss caps it
    sizing, _ = checked_sizing(Sizing(quantity=1e6), far)
    assert sizing.quantity * (plan.average_price - 1.0) == pytest.approx(10_000)


@pytest.mark.parametrize("quantity, message", [
    (float("nan"), "quantity nan is not a finite number"), (float("inf"), "quantity inf is not a finite number"),
    (True, "quantity True is a bool, not a number"), ("3", "quantity '3' is a str, not a number"),
    (-1.0, "quantity -1.0 / risk 0.0 is negative"),
])
def test_a_sizing_quantity_must_be_a_finite_number(quantity, message):
    plan = EntryPlan(Side.LONG, (EntryLeg(100.0, 1.0, market=True),))
    request = SizingRequest("X", Side.LONG, plan, 95.0, 0.7, 10_000.0, 0.0, 0, 0.0, 0.0, 1.0)
    with pytest.raises(ComponentFailure, match="^" + message.replace("(", r"\(") + "$"):
        checked_sizing(sneaky(Sizing(quantity=1.0), quantity=quantity), request)


# -- exit managers ----------------------------------------------------------------------------------
class Updates:
    """The real exits' initial levels; ``update`` answers ``answer(levels)``."""

    def __init__(self, inner, answer):
        self.inner, self.answer = inner, answer

    def initial(self, i, side, plan):
        return self.inner.initial(i, side, plan)

    def update(self, i, position, levels):
        return self.answer(levels)


def exits_answering(answer):
    class Exits(fake_plugins.BrokenExits):
        def prepare(self, data):
            return Updates(self.inner.prepare(data), answer)
    return Exits


def test_a_nan_stop_from_an_update_is_refused_and_the_stop_stays(short_candles):
    """A NaN stop passed "the stop only tightens" (NaN compares false) and left positions open."""
    nan_stop = lambda levels: sneaky(ExitLevels(stop=levels.stop, take_profit=levels.take_profit),  # noqa: E731
                                     stop=float("nan"))
    result, failures = run_with(short_candles, {"exit_manager": "nanexits"}, exit_managers={
        "nanexits": exits_answering(nan_stop)})
    still, _ = run_with(short_candles, {"exit_manager": "still"}, exit_managers={
        "still": exits_answering(lambda levels: levels)})
    assert trades(result) == trades(still) and trades(still)          # as if the stop had never moved
    assert not any(math.isnan(stop) for p in result.raw.level_paths for _, stop, _ in p["path"])
    assert result.raw.errors["nanexits.update"] > 0
    assert failures[0]["component"] == "nanexits" and "stop nan is not a finite number" in failures[0]["error"]


@pytest.mark.parametrize("field, value, message", [
    ("stop", float("inf"), "stop inf is not a finite number"),
    ("take_profit", float("nan"), "take profit nan is not a finite number"),
    ("trail_distance", -1.0, "trail distance -1.0 is not > 0"),
    ("partial_fraction", True, "partial fraction True is a bool, not a number"),
    ("stop", "95", "stop '95' is a str, not a number"),
])
def test_an_update_with_a_level_that_is_not_a_finite_number_is_refused(field, value, message):
    old = ExitLevels(stop=95.0, take_profit=110.0)
    with pytest.raises(ComponentFailure, match="^" + message + "$"):
        checked_update(sneaky(ExitLevels(stop=96.0, take_profit=110.0), **{field: value}), old, Side.LONG)


def test_the_levels_fast_path_accepts_and_refuses_what_the_full_checks_do():
    """Plain answers pass in one expression (speed); every other value must get the full checks'
    verdict and message, field by field."""
    from mlcoord import bounds

    def full(levels):
        bounds.positive(levels.stop, "stop")
        bounds._optional_positive(levels.take_profit, "take profit")
        bounds._optional_positive(levels.partial_take_profit, "partial take profit")
        bounds.probability(levels.partial_fraction, "partial fraction")
        bounds._optional_positive(levels.trail_distance, "trail distance")
        bounds._optional_positive(levels.trail_activation, "trail activation")
        bounds._reasons(levels.reasons, "level reasons")

    def verdict(check, levels):
        try:
            check(levels)
        except ComponentFailure as exc:
            return str(exc)
        return None

    odd = [None, 1.5, 0.5, 1.0, 0.0, -0.0, -1.0, 2, True, np.float64(3.0), np.float64("nan"), float("nan"),
           float("inf"), -float("inf"), "95", 1e308, 5e-324]
    fields = {"stop": odd, "take_profit": odd, "partial_take_profit": odd, "partial_fraction": odd,
              "trail_distance": odd, "trail_activation": odd,
              "reasons": [(), ("a", "b"), ["a"], ("a", 1), "ab", None]}
    checked = 0
    for field, values in fields.items():
        for value in values:
            levels = sneaky(ExitLevels(stop=96.0, take_profit=110.0, partial_fraction=0.5), **{field: value})
            assert verdict(bounds._levels_numbers, levels) == verdict(full, levels), (field, value)
            checked += 1
    assert checked == 6 * len(odd) + 6


def test_the_plan_legs_fast_path_accepts_and_refuses_what_the_full_checks_do():
    """A leg's plain float price and fraction pass in one comparison each (speed); every other
    value gets the number checks' verdict and message."""
    from mlcoord import bounds

    odd = [None, 100.0, 99.0, 0.5, 1.0, 0.0, -1.0, 100, True, np.float64(99.0), np.float64(0.5), float("nan"),
           float("inf"), "99"]
    for field in ("price", "fraction"):
        for value in odd:
            leg = sneaky(EntryLeg(99.0, 1.0), **{field: value})
            plan = sneaky(EntryPlan(Side.LONG, (EntryLeg(99.0, 1.0),), planner="t"), legs=(leg,))
            try:
                expected = None
                at = bounds.positive(leg.price, "leg 1 price")
                total = bounds.probability(leg.fraction, "leg 1 fraction")
                if at > 100.0 * (1 + 1e-9):
                    expected = f"long leg 1 at {at:g} is above the market 100: an entry leg is on the buy side of the price"
                elif abs(total - 1.0) > 1e-6:
                    expected = f"leg fractions sum to {total:.6f}, not 1"
            except ComponentFailure as exc:
                expected = str(exc)
            try:
                checked_plan(plan, Side.LONG, 100.0)
                got = None
            except ComponentFailure as exc:
                got = str(exc)
            assert got == expected, (field, value)


def test_an_update_only_tightens_and_a_position_exit_is_checked():
    old = ExitLevels(stop=95.0, take_profit=110.0)
    assert checked_update(old, old, Side.LONG) is old
    assert checked_update(ExitLevels(stop=90.0), old, Side.LONG).stop == 95.0
    assert checked_update(ExitLevels(stop=99.0), old, Side.SHORT).stop == 95.0
    assert checked_update(PositionExit("time stop"), old, Side.LONG) == PositionExit("time stop")
    with pytest.raises(ComponentFailure, match=r"^exit fraction nan is not a finite number$"):
        checked_update(sneaky(PositionExit("time stop"), fraction=float("nan")), old, Side.LONG)


# -- entry planners and initial levels --------------------------------------------------------------
class AboveTheMarket:
    """Plans a long's only leg 5 % above the market (a short's below): the exit manager's stop,
    put below the leg, was above the market, and 13 trades of 13 stopped out."""

    def __init__(self, options=None):
        pass

    def plan(self, signal, price, context):
        side = signal.action.side
        return EntryPlan(side, (EntryLeg(price * (1 + 0.05 * side), 1.0),), planner="above")


def test_a_planner_leg_on_the_wrong_side_of_the_market_is_refused_for_a_direct_entry(short_candles):
    result, failures = run_with(short_candles, {"entry_planner": "above"}, entry_planners={"above": AboveTheMarket})
    direct, _ = run_with(short_candles, {"entry_planner": ""})
    assert trades(result) == trades(direct)
    assert {t.exit_reason for t in result.raw.trades} != {"stop_loss"}
    assert result.raw.errors["above.plan"] == len([d for d in result.raw.decisions if d.plan is not None])
    assert failures[0]["component"] == "above" and failures[0]["note"] == "direct entry instead"
    assert "long leg 1 at " in failures[0]["error"] or "short leg 1 at " in failures[0]["error"]


def test_plans_are_checked_leg_by_leg():
    legs = (EntryLeg(100.0, 0.5, market=True), EntryLeg(98.0, 0.5))
    assert checked_plan(EntryPlan(Side.LONG, legs), Side.LONG, 100.0).legs == legs
    for plan, message in [
        (EntryPlan(Side.LONG, legs), "planned a 'LONG' entry for a SHORT signal"),
        (sneaky(EntryPlan(Side.LONG, legs), legs=(sneaky(EntryLeg(100.0, 1.0), price=float("nan")),)),
         "leg 1 price nan is not a finite number"),
        (sneaky(EntryPlan(Side.LONG, legs), legs=(EntryLeg(100.0, 0.5),)), "leg fractions sum to 0.500000, not 1"),
        (sneaky(EntryPlan(Side.LONG, legs), expires_after_bars=1.5), "expires_after_bars 1.5 is not a whole number"),
        (sneaky(EntryPlan(Side.LONG, legs), expires_after_bars=True), "expires_after_bars True is not a whole number"),
    ]:
        with pytest.raises(ComponentFailure, match="^" + message.replace("(", r"\(")):
            checked_plan(plan, Side.SHORT if "SHORT" in message else Side.LONG, 100.0)


def test_an_initial_stop_must_lie_beyond_the_entry_and_the_market():
    plan = EntryPlan(Side.SHORT, (EntryLeg(100.0, 1.0, market=True),))
    assert checked_levels(ExitLevels(stop=104.0, take_profit=90.0), Side.SHORT, plan, 100.0).stop == 104.0
    with pytest.raises(ComponentFailure, match=r"^short stop 99 is not above the entry 100 and the market 100$"):
        checked_levels(ExitLevels(stop=99.0), Side.SHORT, plan, 100.0)
    with pytest.raises(ComponentFailure, match=r"^short take profit 101 is not below the average entry 100$"):
        checked_levels(ExitLevels(stop=104.0, take_profit=101.0), Side.SHORT, plan, 100.0)


# -- probabilities ---------------------------------------------------------------------------------------
class SneakyVoter:
    def vote(self, i, signal):
        return sneaky(Vote("x", signal.action, 0.6, p_up=0.6, p_down=0.3), p_up=True)


class StringCalibrator:
    def __init__(self, options=None):
        self.seen = 0

    def calibrate(self, raw, signal):
        self.seen += 1
        return "0.99"

    def learn(self, raw, hit, direction):
        pass


def test_a_bool_vote_probability_is_refused(short_candles):
    result, failures = run_with(short_candles, ml_components={
        "sneaky": lambda _: fake_plugins.VoterComponent(SneakyVoter())})
    assert result.raw.errors["sneaky.vote"] > 0
    assert not any(v.component == "sneaky" for d in result.raw.decisions for v in d.votes)
    assert failures[0]["error"] == "ComponentFailure: vote p_up True is a bool, not a number"


def test_a_string_calibrated_confidence_is_refused_and_the_raw_confidence_used(short_candles):
    result, failures = run_with(short_candles, {"calibrator": "stringcal"}, calibrators={"stringcal": StringCalibrator})
    plain, _ = run_with(short_candles, {"calibrator": ""})
    assert result.raw.errors["stringcal.calibrate"] > 0
    assert [d.confidence for d in result.raw.decisions] == [d.confidence for d in plain.raw.decisions]
    assert failures[0]["component"] == "stringcal" and failures[0]["note"] == "the raw confidence is used"
    assert failures[0]["error"] == "ComponentFailure: calibrated confidence '0.99' is a str, not a number"


@pytest.mark.parametrize("value", [True, "0.7", float("nan"), float("inf"), -0.1, 1.5, None])
def test_a_probability_is_a_real_number_in_the_unit_interval(value):
    with pytest.raises(ComponentFailure):
        checked_probability(value)
    with pytest.raises(ComponentFailure):
        checked_vote(sneaky(Vote("x", Action.BUY, 0.6), confidence=value), "x")


def test_numpy_numbers_are_numbers():
    assert checked_probability(np.float32(0.25)) == 0.25 and type(checked_probability(np.float64(0.5))) is float
    assert checked_vote(Vote("x", Action.BUY, np.float32(0.75)), "x").confidence == 0.75
    with pytest.raises(ComponentFailure, match="is a bool, not a number"):
        checked_probability(np.bool_(True))


# -- signal series, guards, state --------------------------------------------------------------------
@pytest.mark.parametrize("action, confidence, message", [
    (np.ones(3, bool), np.full(3, 0.7), "returned actions of dtype bool"),
    (np.ones(3, np.int8), np.array(["0.7"] * 3), "returned confidences of dtype <U3"),
    (np.ones(3, np.int8), np.array([0.7, np.nan, 0.7]), "confidence nan at bar 1 is not in [0, 1]"),
])
def test_a_signal_series_holds_numbers(action, confidence, message):
    with pytest.raises(ComponentFailure, match="^" + message.replace("[", r"\[").replace("]", r"\]")):
        checked_series(SignalSeries(action, confidence, lambda i: []), 3)


@pytest.mark.parametrize("answer, message", [
    (True, "allow_entry returned True (bool)"), (0, "allow_entry returned 0 (int)"),
    (float("nan"), "allow_entry returned nan (float)"),
])
def test_an_entry_guard_answers_none_or_a_reason(answer, message):
    assert checked_verdict(None) is None and checked_verdict("cooldown") == "cooldown" and checked_verdict("") is None
    with pytest.raises(ComponentFailure, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        checked_verdict(answer)


def test_a_hedge_of_nothing_or_of_an_untraded_symbol_is_refused():
    with pytest.raises(ComponentFailure, match="fraction 0 hedges nothing"):
        checked_guard_actions([GuardAction("open_hedge", "x")])
    with pytest.raises(ComponentFailure, match="'DOGE/USDT', which this run does not trade"):
        checked_guard_actions([GuardAction("open_hedge", "x", "DOGE/USDT", 0.5)], symbols={"BTC/USDT"})
    ok = [GuardAction("open_hedge", "x", "BTC/USDT", 0.5), GuardAction("close_hedge", "x", "DOGE/USDT")]
    assert checked_guard_actions(ok, symbols={"BTC/USDT"}) == ok       # a release of nothing is harmless


def test_a_guard_action_that_skipped_validation_is_refused():
    good = GuardAction("open_hedge", "volatile", None, 0.5)
    assert checked_guard_actions((good,)) == [good]
    for bad, message in [(sneaky(GuardAction("close_all", "x"), fraction=float("nan")), "guard action fraction nan"),
                         (sneaky(GuardAction("close_all", "x"), kind="sell_all"), "guard action kind 'sell_all'"),
                         (sneaky(GuardAction("close_all", "x"), symbol=7), "guard action symbol 7 is a int")]:
        with pytest.raises(ComponentFailure, match="^" + message):
            checked_guard_actions([bad])


@pytest.mark.parametrize("state, message", [
    ({"n": float("nan")}, "state() is not plain JSON: Out of range float values are not JSON compliant"),
    ({"seen": {1, 2}}, "state() is not plain JSON: Object of type set is not JSON serializable"),
    ([1, 2], "state() returned list, expected a dict"),
])
def test_a_state_is_a_plain_json_dict(state, message):
    with pytest.raises(ComponentFailure) as err:
        checked_state(state)
    assert str(err.value).startswith(message)


def test_explain_answering_a_text_is_one_reason_not_its_letters():
    assert checked_reasons("breakout") == ("breakout",) and checked_reasons(["a", "b"]) == ("a", "b")
    with pytest.raises(ComponentFailure, match="^explain returned int, expected a list of texts$"):
        checked_reasons(7)


def test_signal_values_keep_their_own_checks():
    with pytest.raises(ValueError):
        Signal(Action.BUY, float("nan"))
