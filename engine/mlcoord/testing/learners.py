"""Checks of what learns: calibrators, and the save/load round trip of any learning state."""

from __future__ import annotations

import math
from typing import Callable, Optional

import attrs
import numpy as np

from mlcoord.bounds import checked_probability
from mlcoord.config import BacktestConfig
from mlcoord.learning import Outcome, TradeLabel, forward_return
from mlcoord.trade_label import trade_labels
from mlcoord.model import Action, Signal
from mlcoord.testing.core import build, call, close, engine_accepts, expect, has_method, role_check, who
from mlcoord.testing.signals import SIGNALS, built_voter, checked_vote, expect_voted, prepared_voter, vote_values
from mlcoord.testing.state import restored, saved_state

GRID = np.linspace(0.0, 1.0, 41)


def outcomes_stream(n: int = 400):
    """A fixed, deterministic (raw, hit, direction) stream where higher raw hits more often."""
    golden, root2 = 0.6180339887498949, 0.41421356237309515
    for j in range(n):
        raw = (j * golden) % 1.0
        yield raw, bool((j * root2) % 1.0 < raw), 1 if j % 2 == 0 else -1


# -- calibrators -----------------------------------------------------------------------------------
def curve(spec, calibrator) -> list[float]:
    out = []
    for raw in GRID:
        for signal in SIGNALS:
            p = call(spec, f"calibrate({raw:.3f}, {signal.action.name})", calibrator.calibrate, float(raw),
                     Signal(signal.action, float(raw), signal.reasons, signal.source))
            expect(isinstance(p, (int, float)) and not isinstance(p, bool) and math.isfinite(p) and 0 <= p <= 1,
                   f"{who(spec)}: calibrate({raw:.3f}) for a {signal.action.name} returned {p!r}, not in [0, 1]")
            out.append(engine_accepts(spec, f"calibrate({raw:.3f})", checked_probability, p))
    return out


def taught(spec, calibrator):
    for raw, hit, direction in outcomes_stream():
        call(spec, f"learn({raw:.3f}, {hit}, {direction})", calibrator.learn, raw, hit, direction)
    return calibrator


@role_check("calibrators", name="output")
def calibrator_output(spec, get_data) -> None:
    calibrator = build(spec)
    curve(spec, calibrator)
    curve(spec, taught(spec, calibrator))


@role_check("calibrators", name="deterministic")
def calibrator_deterministic(spec, get_data) -> None:
    a, b = curve(spec, taught(spec, build(spec))), curve(spec, taught(spec, build(spec)))
    expect(a == b, f"{who(spec)}: two fresh instances taught the same outcomes calibrate differently")


# -- state save / load -------------------------------------------------------------------------------
def _teach_ml(spec, component, data) -> None:
    """Vote on a stretch of bars, then hand each vote's outcome to ``learn`` (when it has one)."""
    learn = getattr(component, "learn", None)
    voter = prepared_voter(spec, component, data)
    event, c = data.event, data.candles
    fwd = forward_return(c.close, event.horizon)
    labels = kit_trade_labels(c, event.horizon)
    for i in range(100, len(data) - event.horizon, 7):
        d = 1 if c.close[i] >= c.close[i - 24] else -1
        signal = SIGNALS[0] if d > 0 else SIGNALS[1]
        vote = checked_vote(spec, voter, i, signal)
        if learn is None or not math.isfinite(fwd[i]):
            continue
        votes = () if vote is None else (attrs.evolve(vote, component=spec.name),)
        outcome = Outcome(data.symbol, i, int(c.time[i]), d, float(fwd[i]), bool(d * fwd[i] >= event.threshold),
                          signal.confidence, signal.confidence, votes, *labels(i))
        call(spec, f"learn(outcome of bar {i})", learn, outcome)


def kit_trade_labels(c, horizon: int, stop: float = 0.01, take_profit: float = 0.015
                     ) -> Callable[[int], tuple[Optional[TradeLabel], Optional[TradeLabel]]]:
    """Bar -> its long and short trade labels, for the kit's outcomes: fixed barriers (stop 1 %,
    take profit 1.5 % from the close) stand in for an exit manager, the costs are the defaults'."""
    costs = BacktestConfig()
    bars = np.arange(len(c))
    sides = []
    for side in (1, -1):
        stops, tps = c.close * (1 - side * stop), c.close * (1 + side * take_profit)
        sides.append((side, stops, tps, trade_labels(c.open, c.high, c.low, c.close, bars, side, stops, tps, horizon,
                                                     costs.fee_taker, costs.slippage)))

    def at(i: int) -> tuple[Optional[TradeLabel], Optional[TradeLabel]]:
        up, down = (found.label(i, side, float(stops[i]), float(tps[i])) for side, stops, tps, found in sides)
        return up, down
    return at


@role_check("ml_components", name="state_roundtrip", applies=lambda spec: has_method(spec, "state", "load_state"))
def ml_state_roundtrip(spec, get_data) -> None:
    data = get_data()
    taught_component, warm = built_voter(spec, data)
    _teach_ml(spec, taught_component, data.head(2000))
    restored_component = restored(spec, saved_state(spec, taught_component))
    bars = np.arange(2000, len(data), 13)
    a = vote_values(spec, prepared_voter(spec, taught_component, data), bars)
    b = vote_values(spec, prepared_voter(spec, restored_component, data), bars)
    expect_voted(spec, a, warm, "state_roundtrip")
    for (i, d, va), (_, _, vb) in zip(a, b):
        same = (va is None and vb is None) or (
            va is not None and vb is not None and va[0] == vb[0] and all(close(x, y) for x, y in zip(va[1:], vb[1:])))
        expect(same, f"{who(spec)}: bar {i} ({Action(d).name} signal): a restored instance votes {vb}, the "
                     f"original {va}: state() misses part of what the votes depend on")


@role_check("calibrators", name="state_roundtrip", applies=lambda spec: has_method(spec, "state", "load_state"))
def calibrator_state_roundtrip(spec, get_data) -> None:
    original = taught(spec, build(spec))
    expect(curve(spec, original) == curve(spec, restored(spec, saved_state(spec, original))),
           f"{who(spec)}: a restored instance calibrates differently from the original")
