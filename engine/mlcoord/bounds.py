"""What the engine accepts from a plugin: one check per kind of answer, whatever the plugin says.

The value classes check themselves when they are built, but a plugin can get round that
(``object.__setattr__`` on a frozen value), hand back numbers that are valid one by one and absurd
together (1e6 BTC on 10,000 of equity ended a backtest at -38,138,907; a long's stop above the
market stopped out 13 trades of 13), or a NaN that every comparison lets through (a NaN stop
passed "the stop only tightens" and left a short open through a +38 % move). Every answer of a
plugin passes through one of these functions before the engine uses it. A refusal raises
:class:`ComponentFailure` saying what was wrong; the caller logs it under the component's name and
leaves the component out of that decision. Only the sizer's quantity is cut down rather than
refused (:func:`checked_sizing`).

A number here is a real number (Python's or numpy's), finite, never a bool and never a string.
"""

from __future__ import annotations

import json
import math
import numbers
from typing import Any, Collection, Optional, Union

import attrs
import numpy as np

from mlcoord.components import SignalSeries
from mlcoord.errors import PluginError
from mlcoord.model import (
    Action, EntryLeg, EntryPlan, ExitLevels, GuardAction, PositionExit, Side, Sizing, SizingRequest, Vote,
)
from mlcoord.model.events import GuardActionKind

_GUARD_KINDS = frozenset(k.value for k in GuardActionKind)
#: relative slack for "at or below the price": a leg at ``price * (1 - 0.0)`` is at the price
_PRICE_SLACK = 1e-9
_INF = math.inf


class ComponentFailure(PluginError):
    """A component raised or returned something the engine refuses during a call."""


def number(value: Any, what: str) -> float:
    """``value`` as a float if it is a finite real number (not a bool, not a string)."""
    if type(value) is float:                       # the common case, one check
        if math.isfinite(value):
            return value
    elif isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ComponentFailure(f"{what} {value!r} is a {type(value).__name__}, not a number")
    elif math.isfinite(value):
        return float(value)
    raise ComponentFailure(f"{what} {value!r} is not a finite number")


def probability(value: Any, what: str) -> float:
    p = number(value, what)
    if not 0.0 <= p <= 1.0:
        raise ComponentFailure(f"{what} {value!r} is not a probability in [0, 1]")
    return p


def positive(value: Any, what: str) -> float:
    x = number(value, what)
    if not x > 0.0:
        raise ComponentFailure(f"{what} {value!r} is not > 0")
    return x


def _optional_positive(value: Any, what: str) -> Optional[float]:
    return None if value is None else positive(value, what)


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ComponentFailure(f"{what} {value!r:.60} is a {type(value).__name__}, not a text")
    return value


def _reasons(value: Any, what: str) -> tuple[str, ...]:
    if type(value) is tuple and all(type(r) is str for r in value):      # the common case, one pass
        return value
    if isinstance(value, str) or not isinstance(value, (tuple, list)):
        raise ComponentFailure(f"{what} {value!r:.60} is not a list of texts")
    for r in value:
        _text(r, f"{what} item")
    return tuple(value)


def _expect(obj: Any, cls: type, call: str = "returned") -> None:
    if not isinstance(obj, cls):
        raise ComponentFailure(f"{call} {type(obj).__name__}, expected {cls.__name__}")


# -- signals and votes ----------------------------------------------------------------------------
def checked_series(series: Any, n: int) -> Any:
    """A signal source's ``SignalSeries``: one action in {-1, 0, 1} and one confidence per bar,
    numbers (no bool or text arrays); a BUY/SELL bar's confidence in [0, 1]."""
    _expect(series, SignalSeries)
    action, confidence = np.asarray(series.action), np.asarray(series.confidence)
    for name, values in (("action", action), ("confidence", confidence)):
        if values.dtype.kind not in "iuf":
            raise ComponentFailure(f"returned {name}s of dtype {values.dtype} ({values.ravel()[:1]!r:.40}...), "
                                   "expected numbers")
    if action.shape != (n,) or confidence.shape != (n,):
        raise ComponentFailure(f"returned {action.size} actions / {confidence.size} confidences for {n} bars")
    if not callable(getattr(series, "explain", None)):
        raise ComponentFailure("returned a SignalSeries whose explain is not callable")
    bad = ~np.isin(action, (-1, 0, 1))
    if bad.any():
        raise ComponentFailure(f"action {action[bad][0].item()!r} at bar {int(np.argmax(bad))} is not -1, 0 or 1")
    bad = (action != 0) & ~((confidence >= 0) & (confidence <= 1))
    if bad.any():
        i = int(np.argmax(bad))
        raise ComponentFailure(f"confidence {float(confidence[i])!r} at bar {i} is not in [0, 1]")
    return series


def checked_reasons(said: Any) -> tuple[str, ...]:
    """``explain(i)``'s answer: texts (one text alone is one reason, not its characters)."""
    if isinstance(said, str):
        return (said,)
    try:
        said = tuple(said)
    except TypeError:
        raise ComponentFailure(f"explain returned {type(said).__name__}, expected a list of texts") from None
    return _reasons(said, "reason")


def checked_voter(voter: Any) -> Any:
    """What an ML component's ``prepare`` returns must have a ``vote(i, signal)`` method."""
    if not callable(getattr(voter, "vote", None)):
        raise ComponentFailure(f"prepare returned {type(voter).__name__}, which has no vote(i, signal) method")
    return voter


def checked_vote(vote: Any, name: str, label: str = "") -> Vote:
    """A vote: a Vote whose action is BUY, HOLD or SELL and whose probabilities are numbers in
    [0, 1] (numpy's included, never a bool); stamped with the component's names."""
    _expect(vote, Vote)
    if type(vote.action) is not Action:
        raise ComponentFailure(f"vote action {vote.action!r} is not an Action")
    changes: dict[str, Any] = {"component": name, "display_name": label or name}
    for field in ("confidence", "p_up", "p_down"):
        value = getattr(vote, field)
        if value is not None or field == "confidence":
            p = probability(value, f"vote {field}")
            if p is not value:
                changes[field] = p
    return attrs.evolve(vote, **changes)


def checked_probability(value: Any) -> float:
    """A calibrator's answer: a probability (``"0.7"`` and ``True`` are not)."""
    return probability(value, "calibrated confidence")


# -- entries ----------------------------------------------------------------------------------------
def checked_plan(plan: Any, side: Side, price: float) -> EntryPlan:
    """An entry plan on the signal's side, its legs' prices finite and on the entry side of the
    market (a long buys at or below ``price``, a short sells at or above: a leg on the other side
    fills at once, and the stop the exit manager puts beyond it would be on the wrong side of the
    market), a market leg at ``price`` itself (it fills at the next open; sizing and the stop are
    computed from its price), fractions in [0, 1] summing to 1, and an expiry in bars (an integer
    >= 0)."""
    _expect(plan, EntryPlan)
    if plan.side is not side:
        raise ComponentFailure(f"planned a {getattr(plan.side, 'name', plan.side)!r} entry for a {side.name} signal")
    legs = plan.legs
    if not isinstance(legs, tuple) or not legs:
        raise ComponentFailure(f"plan legs {legs!r:.60} are not a non-empty tuple of EntryLeg")
    total = 0.0
    for k, leg in enumerate(legs, 1):
        _expect(leg, EntryLeg, f"leg {k} is a")
        at, fraction = leg.price, leg.fraction
        # plain floats in one comparison each; anything else through the checks and their messages
        if not (type(at) is float and 0.0 < at < _INF):
            at = positive(at, f"leg {k} price")
        if not (type(fraction) is float and 0.0 <= fraction <= 1.0):
            fraction = probability(fraction, f"leg {k} fraction")
        total += fraction
        if leg.market is not False and abs(at - price) > price * _PRICE_SLACK:
            raise ComponentFailure(f"market leg {k} at {at:g} is not at the market price {price:g} (a market leg fills "
                                   "at the next open)")
        if (at > price * (1 + _PRICE_SLACK)) if side is Side.LONG else (at < price * (1 - _PRICE_SLACK)):
            where = "above" if side is Side.LONG else "below"
            raise ComponentFailure(f"{side.name.lower()} leg {k} at {at:g} is {where} the market {price:g}: an entry "
                                   f"leg is on the {'buy' if side is Side.LONG else 'sell'} side of the price")
    if abs(total - 1.0) > 1e-6:
        raise ComponentFailure(f"leg fractions sum to {total:.6f}, not 1")
    expiry = plan.expires_after_bars
    if isinstance(expiry, (bool, np.bool_)) or not isinstance(expiry, numbers.Integral) or expiry < 0:
        raise ComponentFailure(f"expires_after_bars {expiry!r} is not a whole number of bars >= 0")
    _reasons(plan.reasons, "plan reasons")
    return plan


def _plain_level(x: Any) -> bool:
    """A float price in (0, inf) or None: what an exit manager almost always answers."""
    return x is None or (type(x) is float and 0.0 < x < _INF)


def _levels_numbers(levels: ExitLevels) -> None:
    """Every level of ``levels`` is a finite number (NaN compares false with everything)."""
    stop, fraction, reasons = levels.stop, levels.partial_fraction, levels.reasons
    # the common answer in one pass (this runs for every new and moved level); anything else,
    # including every refusal, goes through the checks below and their messages
    if (type(stop) is float and 0.0 < stop < _INF and _plain_level(levels.take_profit)
            and _plain_level(levels.partial_take_profit) and type(fraction) is float and 0.0 <= fraction <= 1.0
            and _plain_level(levels.trail_distance) and _plain_level(levels.trail_activation)
            and type(reasons) is tuple and all(type(r) is str for r in reasons)):
        return
    positive(levels.stop, "stop")
    _optional_positive(levels.take_profit, "take profit")
    _optional_positive(levels.partial_take_profit, "partial take profit")
    probability(levels.partial_fraction, "partial fraction")
    _optional_positive(levels.trail_distance, "trail distance")
    _optional_positive(levels.trail_activation, "trail activation")
    _reasons(levels.reasons, "level reasons")


def checked_levels(levels: Any, side: Side, plan: EntryPlan, price: float) -> ExitLevels:
    """A new plan's initial levels: finite numbers, the stop beyond the worst entry leg and beyond
    the market (``price``: an entry's stop on the wrong side of the market is hit at once), the
    take profits beyond the average entry."""
    _expect(levels, ExitLevels)
    _levels_numbers(levels)
    worst, average = plan.worst_price, plan.average_price
    stop, d = levels.stop, int(side)
    if not (stop < min(worst, price) if side is Side.LONG else stop > max(worst, price)):
        raise ComponentFailure(f"{side.name.lower()} stop {stop:g} is not {'below' if d > 0 else 'above'} the entry "
                               f"{worst:g} and the market {price:g}")
    for name, target in (("take profit", levels.take_profit), ("partial take profit", levels.partial_take_profit)):
        if target is not None and not d * target > d * average:
            raise ComponentFailure(f"{side.name.lower()} {name} {target:g} is not {'above' if d > 0 else 'below'} "
                                   f"the average entry {average:g}")
    return levels


def checked_update(new: Any, old: ExitLevels, side: Side) -> Union[ExitLevels, PositionExit]:
    """An exit manager's per-bar answer: ``old`` itself (nothing moved), a :class:`PositionExit`
    (reason a one-line text, fraction in (0, 1]) or levels of finite numbers whose stop only
    tightens (a looser stop is put back to ``old``'s)."""
    if new is old:
        return old
    if isinstance(new, PositionExit):
        reason = _text(new.reason, "exit reason")
        if not reason.strip() or "\n" in reason:
            raise ComponentFailure(f"exit reason {reason!r} is not a one-line text")
        fraction = number(new.fraction, "exit fraction")
        if not 0.0 < fraction <= 1.0:
            raise ComponentFailure(f"exit fraction {new.fraction!r} is not in (0, 1]")
        return new
    if not isinstance(new, ExitLevels):
        raise ComponentFailure(f"returned {type(new).__name__}, expected ExitLevels or PositionExit")
    _levels_numbers(new)
    if (new.stop < old.stop) if side is Side.LONG else (new.stop > old.stop):
        new = attrs.evolve(new, stop=old.stop)
    return new


def checked_verdict(reason: Any) -> Optional[str]:
    """An entry guard's answer: None (allowed) or the reason it refuses (a text; "" allows)."""
    if reason is None:
        return None
    if not isinstance(reason, str):
        raise ComponentFailure(f"allow_entry returned {reason!r:.60} ({type(reason).__name__}), expected None "
                               "to allow or a text saying why not")
    return reason or None


def checked_sizing(sizing: Any, request: SizingRequest) -> tuple[Sizing, Optional[str]]:
    """The sizer's answer, and why the engine cut it down (None if it did not).

    A quantity is a finite number >= 0, the risk too; a veto is None or a text. Whatever the sizer
    says, the plan's notional at full fill (quantity x average entry) stays within what the account
    can carry, ``equity x leverage`` less the exposure already committed, and the loss if every leg
    fills and the stop is hit stays below the equity: a larger quantity is cut to the largest that
    fits (no room at all is a veto)."""
    _expect(sizing, Sizing)
    quantity = number(sizing.quantity, "quantity")
    risk = number(sizing.risk, "sizing risk")
    if quantity < 0 or risk < 0:
        raise ComponentFailure(f"quantity {quantity!r} / risk {risk!r} is negative")
    if sizing.veto is not None:
        _text(sizing.veto, "veto")
    _reasons(sizing.reasons, "sizing reasons")
    if sizing.veto is not None or quantity == 0:
        return sizing, None
    average = request.plan.average_price
    room = request.equity * request.leverage - request.exposure
    per_unit_loss = abs(average - request.stop) + request.fee_rate * (average + request.stop)
    most = min(room / average, request.equity / per_unit_loss if per_unit_loss > 0 else math.inf)
    if not most > 0:
        why = (f"no room for an entry: equity {request.equity:g} x leverage {request.leverage:g} less committed "
               f"exposure {request.exposure:g}")
        return Sizing(veto=why, reasons=sizing.reasons), why
    if quantity <= most * (1 + 1e-9):
        return sizing, None
    why = (f"quantity {quantity:g} cut to {most:g}: at most equity {request.equity:g} x leverage "
           f"{request.leverage:g} less committed exposure {request.exposure:g} at full fill, and no more than the "
           "equity lost at the stop")
    return attrs.evolve(sizing, quantity=most, risk=min(risk, most * per_unit_loss),
                        reasons=(*sizing.reasons, f"engine: {why}")), why


# -- guards ----------------------------------------------------------------------------------------
def checked_guard_actions(result: Any, symbols: Optional[Collection[str]] = None) -> list[GuardAction]:
    """A portfolio watcher's answer: a list (or tuple) of GuardAction, each of a known kind, a
    text reason, a symbol that is None or a text and a fraction in [0, 1]. An ``open_hedge``
    hedges more than nothing, and a symbol it names is one of ``symbols`` (the run's, when
    given): either would hedge nothing, yet count as a hedge asked for (``portfolio.hedged()``)."""
    if not isinstance(result, (list, tuple)):
        raise ComponentFailure(f"returned {result!r:.80}, expected a list of GuardAction")
    for action in result:
        if not isinstance(action, GuardAction):
            raise ComponentFailure(f"returned {action!r:.80} in its list, expected GuardAction")
        if action.kind not in _GUARD_KINDS:
            raise ComponentFailure(f"guard action kind {action.kind!r} is not one of {sorted(_GUARD_KINDS)}")
        _text(action.reason, "guard action reason")
        if action.symbol is not None:
            _text(action.symbol, "guard action symbol")
        probability(action.fraction, "guard action fraction")
        if action.kind == GuardActionKind.OPEN_HEDGE:
            if not action.fraction > 0:
                raise ComponentFailure("open_hedge of fraction 0 hedges nothing (GuardAction's fraction "
                                       "defaults to 0); close_hedge releases a hedge")
            if symbols is not None and action.symbol is not None and action.symbol not in symbols:
                raise ComponentFailure(f"open_hedge for {action.symbol!r}, which this run does not trade "
                                       f"(trades: {', '.join(sorted(symbols))})")
    return list(result)


# -- learning -----------------------------------------------------------------------------------------
def checked_trained_until(value: Any) -> Optional[int]:
    """``trained_until()``: None or a time in ns (an integer)."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ComponentFailure(f"trained_until returned {value!r:.60}, expected a time in ns (an integer) or None")
    return int(value)


def checked_state(state: Any) -> dict[str, Any]:
    """``state()``: a dict that strict JSON can hold (no NaN, no objects), as it will be saved."""
    if not isinstance(state, dict):
        raise ComponentFailure(f"state() returned {type(state).__name__}, expected a dict")
    try:
        json.dumps(state, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ComponentFailure(f"state() is not plain JSON: {exc}") from None
    return state


__all__ = [
    "ComponentFailure", "number", "probability", "positive", "checked_series", "checked_reasons",
    "checked_voter", "checked_vote", "checked_probability", "checked_plan", "checked_levels", "checked_update",
    "checked_verdict", "checked_sizing", "checked_guard_actions", "checked_trained_until", "checked_state",
]
