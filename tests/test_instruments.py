"""Instrument rules (tick, lot, minimum notional) in the simulation, as the exchange applies them.

Before, a backtest filled orders the exchange refuses: 0.0123456 BTC at 43,210.987 on a market
with a 0.001 lot and a 0.1 tick, and a 3 USDT order under a 5 USDT minimum.
"""

from __future__ import annotations

import json

import pytest

from mlcoord.model.instruments import Instrument, Instruments, instrument_from_ccxt

from test_simulated_venue import FLAT, Levels, Planted, frame, run


def test_rounding_follows_the_exchange():
    btc = Instrument("BTC/USDT", tick_size=0.1, lot_size=0.001, min_notional=5.0)
    assert btc.round_price(43210.987) == pytest.approx(43211.0)
    assert btc.round_price(43210.04) == pytest.approx(43210.0)
    assert btc.round_quantity(0.0123456) == pytest.approx(0.012)    # down: never more than asked
    assert btc.round_quantity(0.0009) == 0.0
    assert btc.refusal(0.0001, 43000.0) is not None                   # 4.3 USDT < 5
    assert btc.refusal(0.001, 43000.0) is None
    assert "lot size" in btc.refusal(0.0, 43000.0)


def test_a_permissive_default_with_one_warning_for_an_unknown_symbol():
    warned = []
    table = Instruments(config={"BTC/USDT": Instrument("BTC/USDT", lot_size=0.001, source="config")},
                        warn=warned.append)
    assert table["BTC/USDT"].lot_size == 0.001
    unknown = table["DOGE/USDT"]
    table["DOGE/USDT"]
    assert unknown.permissive and unknown.round_quantity(0.123456789) == 0.123456789
    assert warned == ["DOGE/USDT"]


def test_bad_rules_are_refused_with_the_field():
    with pytest.raises(ValueError, match="lot_size must be a finite number >= 0, got -1"):
        Instrument("BTC/USDT", lot_size=-1)


def test_instrument_from_a_ccxt_market_in_both_precision_modes():
    market = {"precision": {"price": 0.1, "amount": 0.001}, "limits": {"cost": {"min": 5.0}, "amount": {"min": 0.001},
                                                                       "leverage": {"max": 125}}}
    inst = instrument_from_ccxt("BTC/USDT", market)
    assert (inst.tick_size, inst.lot_size, inst.min_notional, inst.max_leverage) == (0.1, 0.001, 5.0, 125.0)
    digits = instrument_from_ccxt("BTC/USDT", {"precision": {"price": 2, "amount": 5}}, precision_mode=2)
    assert digits.tick_size == pytest.approx(0.01) and digits.lot_size == pytest.approx(0.00001)


def test_the_simulation_rounds_and_refuses_orders_like_the_exchange():
    bars = FLAT + [(100, 100.5, 99.5, 100)] * 4
    plugin = Planted({"TEST/USDT": {4: 1}}, limits=(99.4,), levels=Levels(90.0, 120.0), qty=0.1234567)
    raw = run([frame(bars)], plugin, instruments={"TEST/USDT": {"lot_size": 0.01, "tick_size": 0.5,
                                                                "min_notional": 5.0}})
    entries = [f for f in raw.fills if not f.reduce_only]
    # two legs of 0.0617.. each: the lot makes them 0.06 (6 USDT each, above the 5 USDT minimum)
    assert [round(f.quantity, 10) for f in entries] == [0.06, 0.06]
    assert entries[1].price == 99.5                         # the limit 99.4 on the 0.5 tick: reached by the low
    assert all(abs(f.quantity / 0.01 - round(f.quantity / 0.01)) < 1e-9 for f in raw.fills)
    small = run([frame(bars)], Planted({"TEST/USDT": {4: 1}}, limits=(99.0,), levels=Levels(90.0, 120.0), qty=0.08),
                instruments={"TEST/USDT": {"lot_size": 0.01, "min_notional": 5.0}})
    assert not small.fills                                  # 0.04 x 100 = 4 USDT per leg: refused


def test_a_float_difference_does_not_lose_a_lot():
    """0.3 - 0.1 is 0.19999999999999998 in floats: rounded down to a 0.001 lot it must stay 0.2
    (it gave 0.199; the broker already had this rule for sums of fills)."""
    inst = Instrument("X", lot_size=0.001)
    assert inst.round_quantity(0.3 - 0.1) == 0.2
    assert inst.round_quantity(0.093 + 0.078) == 0.171
    assert inst.round_quantity(0.1999) == 0.199          # a real shortfall still rounds down


def test_a_hedge_below_the_minimum_order_is_refused_and_one_on_the_lot_is_asked_for_once(monkeypatch):
    """A 50 % hedge of 0.0123 is 0.00615: below the 0.01 minimum the venue refuses it, as an
    exchange would (it was sent unchecked); and a target the venue rounds to the lot is not asked
    for again on every bar (the loop asked on each of them)."""
    from mlcoord.model import GuardAction, OpenHedge
    from mlcoord.simulated import SimulatedVenue
    from test_simulated_venue import Guard

    asked = []
    original = SimulatedVenue.submit

    def counting(self, intent):
        if isinstance(intent, OpenHedge):
            asked.append(intent.quantity)
        return original(self, intent)

    monkeypatch.setattr(SimulatedVenue, "submit", counting)
    bars = FLAT + [(100, 100.5, 99.5, 100)] * 12
    guard = Guard({5: [GuardAction("open_hedge", "planted", fraction=0.5)]})
    rules = {"TEST/USDT": {"lot_size": 0.001, "min_quantity": 0.01}}
    raw = run([frame(bars)], Planted({"TEST/USDT": {4: 1}}, levels=Levels(80.0, 130.0), guard=guard, qty=0.0123),
              instruments=rules)
    assert not any(f.hedge for f in raw.fills)                   # 0.006 < 0.01: refused
    assert len(asked) == 1
    asked.clear()
    raw = run([frame(bars)], Planted({"TEST/USDT": {4: 1}}, levels=Levels(80.0, 130.0), guard=guard, qty=1.2345),
              instruments={"TEST/USDT": {"lot_size": 0.001}})
    assert [f.quantity for f in raw.fills if f.hedge and not f.reduce_only] == [0.617]
    assert len(asked) <= 2, asked         # once, and once more when the leg's fill changed the ledger
