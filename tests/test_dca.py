"""The DCA entry planner: confidence decides the ladder, the ladder leans against the trade."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlcoord import config
from mlcoord import Action, MarketContext, Regime, Side, Signal
from mlcoord_dca import DCAOptions, DCAPlanner, Ladder, register_entry_planners

CONTEXT = MarketContext(atr=400.0, atr_pct=0.01, realised_vol=0.01, momentum=0.0,
                        trend_strength=0.2, regime=Regime.RANGING, close=40000.0)


def plan(action, confidence, price=40000.0, options=DCAOptions(), context=CONTEXT):
    return DCAPlanner(options).plan(Signal(action, confidence), price, context)


@pytest.mark.parametrize("confidence, entries", [
    (0.80, 2), (0.70, 3), (0.60, 4),          # the product's three bands
    (0.75, 2), (0.65, 3),                      # boundaries belong to the higher band
    (0.7499999, 3), (0.6499999, 4), (1.0, 2), (0.0, 4),
])
@pytest.mark.parametrize("action", [Action.BUY, Action.SELL])
def test_ml_confidence_influences_dca_entries(confidence, entries, action):
    p = plan(action, confidence)
    assert len(p.legs) == entries
    assert p.reasons[0].endswith(f"{entries} entries")


@pytest.mark.parametrize("action, side", [(Action.BUY, Side.LONG), (Action.SELL, Side.SHORT)])
def test_ml_signal_compatible_with_dca_strategy(action, side):
    p = plan(action, 0.72)
    assert p.side is side and p.planner == "dca" and p.expires_after_bars == 24
    assert sum(leg.fraction for leg in p.legs) == pytest.approx(1.0, abs=1e-12)
    first, *rest = p.legs
    assert first.market and first.price == 40000.0
    assert not any(leg.market for leg in rest)
    if side is Side.LONG:   # the product example: 40 % at 40000, 35 % at 39800, 25 % at 39600
        assert [leg.price for leg in p.legs] == pytest.approx([40000.0, 39800.0, 39600.0], abs=1e-6)
        assert all(b.price < a.price for a, b in zip(p.legs, p.legs[1:]))
        assert p.worst_price == pytest.approx(39600.0)
    else:
        assert [leg.price for leg in p.legs] == pytest.approx([40000.0, 40200.0, 40400.0], abs=1e-6)
        assert all(b.price > a.price for a, b in zip(p.legs, p.legs[1:]))
        assert p.worst_price == pytest.approx(40400.0)
    assert [leg.fraction for leg in p.legs] == pytest.approx([0.40, 0.35, 0.25])
    assert p.reasons[0] == "confidence 0.72 in [0.65, 0.75): 3 entries"
    ladder = "40000.00 / 39800.00 / 39600.00" if side is Side.LONG else "40000.00 / 40200.00 / 40400.00"
    assert p.reasons[1] == f"ladder {ladder}"


def test_hold_is_refused_and_bad_price_is_refused():
    with pytest.raises(ValueError, match="HOLD"):
        plan(Action.HOLD, 0.9)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="price"):
            plan(Action.BUY, 0.9, price=bad)


def test_atr_scaled_steps_follow_volatility():
    options = DCAOptions(atr_scaled_steps=True)
    p = plan(Action.BUY, 0.70, options=options)          # 0, 0.5, 1.0 ATR at 1 % ATR
    assert [leg.price for leg in p.legs] == pytest.approx([40000.0, 39800.0, 39600.0])
    calm = MarketContext(atr=80.0, atr_pct=0.002, realised_vol=0.0, momentum=0.0,
                         trend_strength=0.0, regime=Regime.RANGING, close=40000.0)
    p = plan(Action.SELL, 0.60, options=options, context=calm)
    assert [leg.price for leg in p.legs] == pytest.approx([40000.0, 40040.0, 40080.0, 40120.0])
    warmup = attrs_evolve(calm, atr=0.0, atr_pct=0.0)
    p = plan(Action.BUY, 0.60, options=options, context=warmup)
    assert [leg.price for leg in p.legs] == pytest.approx([40000.0, 39800.0, 39600.0, 39400.0])
    assert "no ATR yet: fixed steps used" in p.reasons


def attrs_evolve(obj, **changes):
    import attrs
    return attrs.evolve(obj, **changes)


@pytest.mark.parametrize("field, value, message", [
    ("three", ((0.5, 0.3, 0.1), (0.0, 0.005, 0.01)), "fractions must sum to 1"),
    ("three", ((0.5, 0.5), (0.0, 0.005)), "three must have exactly 3 legs"),
    ("two", ((0.6, 0.4), (0.0, 0.005, 0.01)), "offsets must have one entry per fraction"),
    ("two", ((0.6, 0.4), (0.001, 0.005)), "offsets must start at 0"),
    ("four", ((0.3, 0.25, 0.25, 0.2), (0.0, 0.01, 0.005, 0.02)), "offsets must be non-decreasing"),
    ("four", ((0.3, 0.25, 0.25, 0.2), (0.0, 0.01, 0.02, -0.1)), "offsets must each be >= 0"),
    ("high_confidence", 1.5, "high_confidence must be in"),
    ("medium_confidence", 0.8, "medium_confidence .* must be below"),
    ("expire_after_bars", 0, "expire_after_bars"),
])
def test_option_validation_names_the_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        DCAOptions(**{field: value})


def test_options_from_config_and_round_trip():
    raw = {"high_confidence": 0.8, "three": {"fractions": [0.5, 0.3, 0.2], "offsets": [0, 0.004, 0.008]}}
    options = config.structure(raw, DCAOptions)
    assert options.three == Ladder((0.5, 0.3, 0.2), (0.0, 0.004, 0.008), (0.0, 0.5, 1.0))
    assert config.structure(config.unstructure(DCAOptions()), DCAOptions) == DCAOptions()
    bad = {"three": {"fractions": [0.5, 0.3, 0.3], "offsets": [0, 0.1, 0.2]}}
    with pytest.raises(config.ConfigError, match=r"fractions must sum to 1 .* @ \$\.plugins\.dca\.three"):
        config.structure(bad, DCAOptions, path="$.plugins.dca")


def test_registers_under_its_name():
    seen = {}
    register_entry_planners(lambda name, factory, options=None, description="", **declared: seen.update(
        {name: (factory, options, description)}))
    factory, options, description = seen["dca"]
    assert isinstance(factory(options()), DCAPlanner) and description


@settings(max_examples=30, deadline=None)
@given(c1=st.floats(0, 1), c2=st.floats(0, 1), price=st.floats(1e-3, 1e7),
       action=st.sampled_from([Action.BUY, Action.SELL]), atr_steps=st.booleans())
def test_any_confidence_gives_a_valid_monotone_plan(c1, c2, price, action, atr_steps):
    options = DCAOptions(atr_scaled_steps=atr_steps)
    lo, hi = sorted((c1, c2))
    p_lo, p_hi = plan(action, lo, price, options), plan(action, hi, price, options)
    assert len(p_hi.legs) <= len(p_lo.legs)
    for p in (p_lo, p_hi):
        assert 2 <= len(p.legs) <= 4 and p.side is action.side
        assert sum(leg.fraction for leg in p.legs) == pytest.approx(1.0, abs=1e-9)
        assert p.legs[0].market and p.legs[0].price == price
        sign = int(action.side)
        assert all(sign * (b.price - a.price) <= 0 for a, b in zip(p.legs, p.legs[1:]))
        assert all(leg.price > 0 for leg in p.legs)
