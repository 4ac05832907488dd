"""The ``risk`` sizer: the full-fill stop-out bound, vetoes, caps, Kelly and options."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mlcoord_risk
from mlcoord import EntryLeg, EntryPlan, Side, SizingRequest, Trade
from mlcoord.components import Sizer
from mlcoord.config import structure
from mlcoord.errors import ConfigError
from mlcoord.registry import load_plugins
from mlcoord_risk import RiskManager, RiskOptions


def stop_out_loss(side: Side, legs, qty: float, stop: float, fee: float, slip: float) -> float:
    """Independent accounting: fill each leg, then close everything at the stop; return the loss."""
    cash, held, fees = 0.0, 0.0, 0.0
    for leg in legs:
        q = qty * leg.fraction
        px = leg.price
        if leg.market:
            px = px * (1 + slip) if side is Side.LONG else px * (1 - slip)
        cash -= side * q * px          # long pays, short receives
        fees += fee * q * px
        held += q
    exit_px = stop * (1 - slip) if side is Side.LONG else stop * (1 + slip)
    cash += side * held * exit_px
    fees += fee * held * exit_px
    return -(cash - fees)


def request(side=Side.LONG, legs=None, stop=85.0, equity=10_000.0, exposure=0.0, fee=0.0005,
            slip=0.0005, leverage=1.0):
    if legs is None:
        legs = ([EntryLeg(100, 0.5, True), EntryLeg(95, 0.3), EntryLeg(90, 0.2)] if side is Side.LONG
                else [EntryLeg(100, 0.5, True), EntryLeg(105, 0.3), EntryLeg(110, 0.2)])
    plan = EntryPlan(side, legs)
    return SizingRequest("BTC/USDT", side, plan, stop, 0.7, equity, exposure, 0, fee, slip, leverage)


def trade(ret: float, hedge: bool = False, i: int = 0) -> Trade:
    return Trade(f"t{i}", "BTC/USDT", Side.LONG, 0, 1, 100.0, 100.0 * (1 + ret), 1.0, 100.0 * ret, 0.0, 0.0,
                 "take_profit" if ret > 0 else "stop", 1, 1, 0.7, "test", hedge)


# -- the bound ---------------------------------------------------------------------------------

@st.composite
def sized_requests(draw):
    side = draw(st.sampled_from([Side.LONG, Side.SHORT]))
    n = draw(st.integers(1, 4))
    weights = [draw(st.floats(0.05, 1.0)) for _ in range(n)]
    fractions = [w / sum(weights) for w in weights]
    fractions[-1] = 1.0 - sum(fractions[:-1])
    p0 = draw(st.floats(0.01, 100_000.0))
    steps = [draw(st.floats(0.0, 0.05)) for _ in range(n - 1)]
    prices, p = [p0], p0
    for s in steps:
        p = p * (1 - s) if side is Side.LONG else p * (1 + s)
        prices.append(p)
    legs = [EntryLeg(px, f, market=(k == 0 and draw(st.booleans()))) for k, (px, f) in enumerate(zip(prices, fractions))]
    gap = draw(st.floats(0.001, 0.3))
    worst = min(prices) if side is Side.LONG else max(prices)
    stop = worst * (1 - gap) if side is Side.LONG else worst * (1 + gap)
    return request(side, legs, stop, equity=draw(st.floats(100.0, 1e7)),
                   fee=draw(st.floats(0.0, 0.002)), slip=draw(st.floats(0.0, 0.01)),
                   leverage=draw(st.floats(1.0, 3.0))), draw(st.floats(0.001, 0.05))


@settings(max_examples=30, deadline=None)
@given(sized_requests())
def test_full_fill_stop_out_never_loses_more_than_risk_per_trade(case):
    req, rpt = case
    sizing = RiskManager(RiskOptions(risk_per_trade=rpt, min_notional=0.0)).size(req)
    assert sizing.approved, sizing
    loss = stop_out_loss(req.side, req.plan.legs, sizing.quantity, req.stop, req.fee_rate, req.slippage)
    budget = rpt * req.equity
    assert loss <= budget * (1 + 1e-9)
    assert sizing.risk == pytest.approx(loss, rel=1e-9)
    if not any("capped" in r for r in sizing.reasons):   # uncapped: the budget is used in full
        assert loss == pytest.approx(budget, rel=1e-9)


def test_reasons_list_the_numbers():
    sizing = RiskManager().size(request())
    assert sizing.approved
    first = sizing.reasons[0]
    assert first.startswith("risk 1.00% of 10000.00 = 100.00; loss/unit ")
    assert f"-> qty {sizing.quantity:.6g}" in first
    assert sizing.risk == pytest.approx(100.0, rel=1e-12)


def test_slippage_and_fees_shrink_the_quantity():
    clean = RiskManager().size(request(fee=0.0, slip=0.0)).quantity
    costly = RiskManager().size(request(fee=0.001, slip=0.002)).quantity
    assert costly < clean
    # without costs, loss/unit is plain distance: avg entry 96.5 - stop 85 = 11.5
    assert clean == pytest.approx(100.0 / 11.5)


# -- vetoes ------------------------------------------------------------------------------------

@pytest.mark.parametrize("side, stop, words", [
    (Side.LONG, 92.0, "must be below the worst leg 90"),
    (Side.LONG, 90.0, "zero distance"),
    (Side.SHORT, 108.0, "must be above the worst leg 110"),
    (Side.SHORT, 110.0, "zero distance"),
])
def test_invalid_stop_is_vetoed(side, stop, words):
    sizing = RiskManager().size(request(side, stop=stop))
    assert not sizing.approved and words in sizing.veto


def test_short_is_sized_with_its_own_worst_case():
    req = request(Side.SHORT, stop=118.0)
    sizing = RiskManager().size(req)
    assert sizing.approved
    loss = stop_out_loss(Side.SHORT, req.plan.legs, sizing.quantity, 118.0, req.fee_rate, req.slippage)
    assert loss == pytest.approx(100.0, rel=1e-9)


def test_leverage_above_max_is_vetoed():
    assert "above max_leverage 3" in RiskManager().size(request(leverage=5.0)).veto
    assert RiskManager().size(request(leverage=3.0)).approved


@pytest.mark.parametrize("equity", [0.0, -50.0, float("nan")])
def test_non_positive_equity_is_vetoed(equity):
    assert "no new positions" in RiskManager().size(request(equity=equity)).veto


def test_below_minimum_notional_is_vetoed():
    sizing = RiskManager().size(request(equity=50.0))   # risk 0.50 -> notional ~4
    assert sizing.veto.startswith("below minimum notional")
    assert RiskManager(RiskOptions(min_notional=1.0)).size(request(equity=50.0)).approved


def test_full_exposure_is_vetoed():
    sizing = RiskManager().size(request(exposure=10_000.0))
    assert "max_total_exposure 1 reached" in sizing.veto


# -- caps --------------------------------------------------------------------------------------

def test_max_position_fraction_caps_a_tight_stop():
    legs = [EntryLeg(100, 1.0, True)]
    req = request(legs=legs, stop=99.5, fee=0.0, slip=0.0, leverage=2.0)   # uncapped notional 20,000
    sizing = RiskManager().size(req)
    assert sizing.approved
    assert sizing.quantity * 100 == pytest.approx(0.25 * 10_000 * 2.0)
    assert any(r.startswith("capped by max_position_fraction 0.25") for r in sizing.reasons)
    assert sizing.risk < 100.0


def test_max_total_exposure_caps_to_the_room_left():
    req = request(exposure=9_500.0)
    sizing = RiskManager().size(req)
    cost = sum(l.fraction * (l.price * (1 + req.slippage) if l.market else l.price) for l in req.plan.legs)
    assert sizing.quantity * cost == pytest.approx(500.0)
    assert any(r.startswith("capped by max_total_exposure 1") for r in sizing.reasons)


# -- Kelly -------------------------------------------------------------------------------------

def feed(manager, returns):
    for i, r in enumerate(returns):
        manager.on_trade_closed(trade(r, i=i), None)


def test_kelly_reduces_size_after_a_losing_history():
    base = RiskManager().size(request()).quantity
    kelly = RiskManager(RiskOptions(use_kelly=True))
    feed(kelly, [0.01] * 9 + [-0.01] * 20)          # 29 trades: not enough yet
    assert kelly.size(request()).quantity == pytest.approx(base)
    feed(kelly, [-0.01])                            # 30: W = 0.3, R = 1 -> f* = -0.4 -> floor
    sizing = kelly.size(request())
    assert sizing.quantity == pytest.approx(base * 0.0025 / 0.01)
    assert "floored" in sizing.reasons[0]


def test_kelly_negative_edge_vetoes_when_floor_is_zero():
    kelly = RiskManager(RiskOptions(use_kelly=True, kelly_floor=0.0))
    feed(kelly, [-0.02] * 30)
    assert "kelly: no edge" in kelly.size(request()).veto


def test_kelly_thin_edge_scales_between_floor_and_cap():
    kelly = RiskManager(RiskOptions(use_kelly=True))
    feed(kelly, [0.021] * 20 + [-0.02] * 20)        # W 0.5, R 1.05: f* = 0.5 - 0.5/1.05
    f_star = 0.5 - 0.5 / 1.05
    assert kelly.size(request()).risk == pytest.approx(0.25 * f_star * 10_000, rel=1e-9)


def test_hedge_trades_do_not_feed_kelly():
    kelly = RiskManager(RiskOptions(use_kelly=True))
    for i in range(50):
        kelly.on_trade_closed(trade(-0.05, hedge=True, i=i), None)
    assert kelly.kelly is None


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-0.2, 0.5), min_size=30, max_size=80))
def test_kelly_never_exceeds_risk_per_trade(returns):
    kelly = RiskManager(RiskOptions(use_kelly=True, kelly_fraction=1.0))
    feed(kelly, returns)
    sizing = kelly.size(request())
    assert sizing.approved and sizing.risk <= 100.0 * (1 + 1e-9)


def test_kelly_is_off_by_default():
    manager = RiskManager()
    feed(manager, [-0.02] * 40)
    assert manager.size(request()).risk == pytest.approx(100.0)


# -- options and registration ------------------------------------------------------------------

@pytest.mark.parametrize("raw, words", [
    ({"risk_per_trade": 1}, "risk_per_trade must be a number in (0, 0.25]"),
    ({"risk_per_trade": 0.0}, "risk_per_trade"),
    ({"max_position_fraction": 1.5}, "max_position_fraction"),
    ({"max_leverage": 0.5}, "max_leverage"),
    ({"min_notional": -1.0}, "min_notional"),
    ({"kelly_fraction": 0.0}, "kelly_fraction"),
    ({"kelly_min_trades": 1}, "kelly_min_trades"),
    ({"kelly_lookback": 10}, "kelly_lookback (10) must be 0"),
    ({"use_kelly": "yes"}, "use_kelly"),
    ({"risk_per_trad": 0.01}, "unknown key"),
])
def test_bad_options_fail_with_a_clear_message(raw, words):
    with pytest.raises(ConfigError, match=None) as err:
        structure(raw, RiskOptions, path="$.plugins.risk")
    assert words in str(err.value)


def test_default_options_round_trip_and_registration():
    assert structure({}, RiskOptions) == RiskOptions()
    plugins = load_plugins(entry_points={}, extra_plugins={"risk": mlcoord_risk})
    spec = plugins.components["risk"]
    assert spec.role == "sizers" and spec.options is RiskOptions
    assert isinstance(spec.factory(RiskOptions()), Sizer)


def test_size_is_deterministic_and_does_not_depend_on_call_history():
    manager = RiskManager()
    first = manager.size(request())
    manager.size(request(Side.SHORT, stop=118.0))
    assert manager.size(request()) == first
