"""Checks of the components that trade: entry planners, exit managers and sizers."""

from __future__ import annotations

import itertools
import math

from mlcoord.bounds import checked_levels, checked_plan, checked_sizing, checked_update
from mlcoord.model import (
    Action, EntryLeg, EntryPlan, ExitLevels, PositionExit, Side, Signal, Sizing, SizingRequest,
)
from mlcoord.testing.core import build, call, close, engine_accepts, expect, reasons_ok, role_check, who
from mlcoord.testing.fixtures import FakePosition, array_digests, expect_read_only, private_copy
from mlcoord.testing.signals import SHORT_LENGTHS, _expect_unchanged, truncations
from mlcoord.testing.state import SAVE_AT, differs, feed_trades, has_state, restored, saved_state

SIDES = (Side.LONG, Side.SHORT)


def _bars(n: int, stride: int) -> list[int]:
    return sorted({*range(0, n, stride), n - 1}) if n else []


# -- entry planners ---------------------------------------------------------------------------------
def _plans(spec, planner, data) -> list[EntryPlan]:
    plans = []
    for i in _bars(len(data), 149):
        price, context = float(data.candles.close[i]), data.context.at(i)
        for side, confidence in itertools.product(SIDES, (0.0, 0.55, 0.65, 0.75, 0.85, 1.0)):
            action = Action.BUY if side is Side.LONG else Action.SELL
            signal = Signal(action, confidence, ("conformance check",), "conformance")
            plan = call(spec, f"plan({action.name} {confidence}, {price}) at bar {i}", planner.plan,
                        signal, price, context)
            expect(isinstance(plan, EntryPlan), f"{who(spec)}: plan() returned {type(plan).__name__}, expected EntryPlan")
            expect(plan.side == side, f"{who(spec)}: planned a {plan.side.name} entry for a {action.name} signal")
            for leg in plan.legs:
                ok = leg.price <= price * (1 + 1e-9) if side is Side.LONG else leg.price >= price * (1 - 1e-9)
                expect(ok, f"{who(spec)}: {action.name} at {price} has a leg at {leg.price}: legs must be "
                           f"{'at or below' if side is Side.LONG else 'at or above'} the price")
            expect(isinstance(plan.expires_after_bars, int) and plan.expires_after_bars >= 1,
                   f"{who(spec)}: expires_after_bars={plan.expires_after_bars!r}, expected an integer >= 1")
            expect(reasons_ok(plan.reasons), f"{who(spec)}: a plan without reasons ({plan.reasons!r})")
            plans.append(engine_accepts(spec, f"plan({action.name} {confidence}, {price}) at bar {i}", checked_plan,
                                        plan, side, price))
    return plans


@role_check("entry_planners", name="output")
def planner_output(spec, get_data) -> None:
    _plans(spec, build(spec), get_data())


@role_check("entry_planners", name="deterministic")
def planner_deterministic(spec, get_data) -> None:
    data = get_data()
    one = build(spec)
    a = _plans(spec, one, data)
    expect(a == _plans(spec, build(spec), data), f"{who(spec)}: two fresh instances plan differently")
    expect(a == _plans(spec, one, data), f"{who(spec)}: the same instance plans differently the second time")


# -- exit managers ------------------------------------------------------------------------------------
def ladder(side: Side, price: float) -> EntryPlan:
    """A two-leg plan: half at market, half 1% further from the market."""
    step = 0.99 if side is Side.LONG else 1.01
    return EntryPlan(side, (EntryLeg(price, 0.5, market=True), EntryLeg(price * step, 0.5)), planner="conformance")


def _levels(spec, levels, what: str) -> ExitLevels:
    expect(isinstance(levels, ExitLevels), f"{who(spec)}: {what} returned {type(levels).__name__}, expected "
                                           "ExitLevels (or, from update, PositionExit)")
    return levels


def _initial(spec, manager, i: int, side: Side, price: float) -> ExitLevels:
    plan = ladder(side, price)
    levels = _levels(spec, call(spec, f"initial({i}, {side.name})", manager.initial, i, side, plan),
                     f"initial({i}, {side.name})")
    worst, average = plan.worst_price, plan.average_price
    if side is Side.LONG:
        expect(levels.stop < worst, f"{who(spec)}: bar {i}: long stop {levels.stop} is not below the worst entry {worst}")
        expect(levels.take_profit is None or levels.take_profit > average,
               f"{who(spec)}: bar {i}: long take profit {levels.take_profit} is not above the average entry {average}")
    else:
        expect(levels.stop > worst, f"{who(spec)}: bar {i}: short stop {levels.stop} is not above the worst entry {worst}")
        expect(levels.take_profit is None or levels.take_profit < average,
               f"{who(spec)}: bar {i}: short take profit {levels.take_profit} is not below the average entry {average}")
    expect(reasons_ok(levels.reasons), f"{who(spec)}: initial levels without reasons ({levels.reasons!r})")
    return engine_accepts(spec, f"initial({i}, {side.name})", checked_levels, levels, side, plan, price)


def _trajectory(spec, manager, data, i: int, side: Side, end: int) -> list[ExitLevels]:
    """Initial levels at bar ``i``, then an update after every bar until ``end`` (exclusive)."""
    c = data.candles
    price = float(c.close[i])
    levels = _initial(spec, manager, i, side, price)
    out = [levels]
    position = FakePosition(side, ladder(side, price).average_price, i + 1, price, quantity=1.0,
                            entries_filled=2, entries_planned=2)
    for j in range(i + 1, end):
        position.best_price = max(position.best_price, float(c.high[j])) if side is Side.LONG \
            else min(position.best_price, float(c.low[j]))
        view = position.view(levels)
        answer = call(spec, f"update({j}) of a {side.name} opened at {i}", manager.update, j, view, levels)
        if j == i + 1:
            expect_read_only(spec, view, f"the position handed to update({j})")
        asked = f"update({j}) of a {side.name} opened at {i}"
        if isinstance(answer, PositionExit):     # the manager closes the position itself: the path ends
            engine_accepts(spec, asked, checked_update, answer, levels, side)
            break
        new = _levels(spec, answer, f"update({j})")
        levels = engine_accepts(spec, asked, checked_update, new, levels, side)   # the stop only tightens
        out.append(new)
    return out


def _prepared_exits(spec, data):
    return call(spec, f"prepare() on {len(data)} bars", build(spec).prepare, data)


@role_check("exit_managers", name="output")
def exits_output(spec, get_data) -> None:
    data = get_data()
    manager = _prepared_exits(spec, data)
    for i, side in itertools.product(_bars(len(data), 211), SIDES):
        _trajectory(spec, manager, data, i, side, min(i + 25, len(data)))


@role_check("exit_managers", name="short_data")
def exits_short_data(spec, get_data) -> None:
    data = get_data()
    for n in SHORT_LENGTHS:
        short = data.head(n)
        manager = _prepared_exits(spec, short)
        for side in SIDES:
            if n:
                _trajectory(spec, manager, short, max(n - 3, 0), side, n)


def _same_levels(a: ExitLevels, b: ExitLevels, tol: float) -> bool:
    return all(close(getattr(a, f), getattr(b, f), tol)
               for f in ("stop", "take_profit", "partial_take_profit", "partial_fraction"))


def _compare_trajectories(spec, data, ma, mb, starts, end: int, what: str, tol: float) -> None:
    for i, side in itertools.product(starts, SIDES):
        ta = _trajectory(spec, ma, data, int(i), side, end)
        tb = _trajectory(spec, mb, data, int(i), side, end)
        for step, (la, lb) in enumerate(zip(ta, tb)):
            call_name = "initial" if step == 0 else f"update({i + step})"
            expect(_same_levels(la, lb, tol), f"{who(spec)}: {side.name} opened at bar {i}, {call_name}: {what}: "
                                              f"{la} vs {lb}")


@role_check("exit_managers", name="no_lookahead")
def exits_no_lookahead(spec, get_data) -> None:
    data = get_data()
    full = _prepared_exits(spec, data)
    for k in truncations(len(data)):
        part = _prepared_exits(spec, data.head(k))
        _compare_trajectories(spec, data, part, full, (k - 30, k - 12, k - 1, k // 2), k,
                              f"prepare(data.head({k})) differs from prepare(data): the levels use later bars", 1e-9)


@role_check("exit_managers", name="deterministic")
def exits_deterministic(spec, get_data) -> None:
    data = get_data()
    n = len(data)
    _compare_trajectories(spec, data, _prepared_exits(spec, data), _prepared_exits(spec, data),
                          _bars(n - 30, 397), n, "two fresh instances give different levels", 0.0)


@role_check("exit_managers", name="no_mutation")
def exits_no_mutation(spec, get_data) -> None:
    data = private_copy(get_data())
    before = array_digests(data)
    manager = _prepared_exits(spec, data)
    for i, side in itertools.product(_bars(len(data), 499), SIDES):
        _trajectory(spec, manager, data, i, side, min(i + 10, len(data)))
    _expect_unchanged(spec, before, data)


# -- sizers ------------------------------------------------------------------------------------------
def _requests(data):
    for i in _bars(len(data), 293):
        price, context = float(data.candles.close[i]), data.context.at(i)
        for side, confidence, equity, exposure, open_positions, leverage in itertools.product(
                SIDES, (0.55, 0.99), (10_000.0, 50.0), (0.0, 1e6), (0, 3), (1.0, 5.0)):
            plan = ladder(side, price)
            stop = plan.worst_price * (0.98 if side is Side.LONG else 1.02)
            yield SizingRequest(data.symbol, side, plan, stop, confidence, equity, exposure, open_positions,
                                0.0005, 0.0005, leverage, context if i % 2 else None)


def _sizings(spec, sizer, data) -> list[Sizing]:
    out = []
    for request in _requests(data):
        sizing = call(spec, f"size({request.side.name}, equity {request.equity})", sizer.size, request)
        expect(isinstance(sizing, Sizing), f"{who(spec)}: size() returned {type(sizing).__name__}, expected Sizing")
        q = sizing.quantity
        expect(isinstance(q, (int, float)) and math.isfinite(q) and q >= 0,
               f"{who(spec)}: size() returned quantity {q!r}; expected a finite number >= 0")
        if sizing.veto is not None or q == 0:
            expect(isinstance(sizing.veto, str) and sizing.veto.strip(),
                   f"{who(spec)}: quantity {q} without a veto reason ({sizing.veto!r}); say why nothing is traded")
            expect(q == 0, f"{who(spec)}: vetoed ({sizing.veto!r}) yet quantity {q}; a veto trades nothing")
        else:
            expect(reasons_ok(sizing.reasons), f"{who(spec)}: an approved size without reasons")
        # refused answers fail; a size beyond what the account carries is only cut down by the engine
        engine_accepts(spec, f"size({request.side.name}, equity {request.equity})", checked_sizing, sizing, request)
        out.append(sizing)
    return out


@role_check("sizers", name="output")
def sizer_output(spec, get_data) -> None:
    _sizings(spec, build(spec), get_data())


@role_check("sizers", name="deterministic")
def sizer_deterministic(spec, get_data) -> None:
    data = get_data()
    expect(_sizings(spec, build(spec), data) == _sizings(spec, build(spec), data),
           f"{who(spec)}: two fresh instances size the same requests differently")


# -- state save / load -------------------------------------------------------------------------------
def _answers_survive_a_restart(spec, get_data, answers, what: str) -> None:
    """The original, fed bars and trades, and a fresh instance loaded with its ``state()`` (through
    JSON) must answer the whole data alike."""
    data = get_data()
    original = build(spec)
    answers(spec, original, data.head(SAVE_AT))
    feed_trades(spec, original, data)
    fresh = restored(spec, saved_state(spec, original))
    expect(answers(spec, original, data) == answers(spec, fresh, data), differs(spec, what))


@role_check("entry_planners", name="state_roundtrip", applies=has_state)
def planner_state_roundtrip(spec, get_data) -> None:
    _answers_survive_a_restart(spec, get_data, _plans, "plans differently")


@role_check("sizers", name="state_roundtrip", applies=has_state)
def sizer_state_roundtrip(spec, get_data) -> None:
    _answers_survive_a_restart(spec, get_data, _sizings, "sizes differently")


@role_check("exit_managers", name="state_roundtrip", applies=has_state)
def exits_state_roundtrip(spec, get_data) -> None:
    data = get_data()
    original = build(spec)
    head = data.head(SAVE_AT)
    levels = call(spec, f"prepare() on {SAVE_AT} bars", original.prepare, head)
    for i in range(100, SAVE_AT - 30, 397):
        for side in SIDES:
            _trajectory(spec, levels, head, i, side, i + 25)
    feed_trades(spec, original, data)
    fresh = restored(spec, saved_state(spec, original))
    n = len(data)
    _compare_trajectories(spec, data, call(spec, f"prepare() on {n} bars", original.prepare, data),
                          call(spec, f"prepare() on {n} bars", fresh.prepare, data), range(SAVE_AT, n - 30, 397), n,
                          differs(spec, "sets levels differently"), 0.0)
