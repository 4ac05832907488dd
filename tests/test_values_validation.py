"""The value objects' validators accept and refuse exactly what the plain definitions say (they
were flattened for speed: one call per field)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from mlcoord.model import Action, EntryLeg, ExitLevels, Side, Signal, Vote

ODD = [0, 1, 0.0, 1.0, 0.5, 1e-300, -0.0, -1e-9, 1.0000001, 2, 37.5, 1e308, math.inf, -math.inf, math.nan,
       True, False, None, "0.5", 10 ** 400]


def unit_ok(v) -> bool:
    """The definition before flattening, literally."""
    return not (not (isinstance(v, (int, float)) and 0.0 <= v <= 1.0) or math.isnan(v))


def positive_ok(v) -> bool:
    """The definition before flattening, literally (a huge int overflows ``isfinite``)."""
    return isinstance(v, (int, float)) and math.isfinite(v) and v > 0


def outcome(build):
    try:
        build()
        return "ok"
    except ValueError as exc:
        return str(exc)
    except OverflowError:
        return "overflow"


def probability_want(v) -> str:
    """Confidences and probabilities: any real number becomes a float first (numpy's included),
    a bool is refused (``True`` is not a probability), then the unit-interval check."""
    if isinstance(v, bool):
        return f"got the bool {v!r}, expected a number"
    if isinstance(v, (int, float)):
        try:
            v = float(v)
        except OverflowError:
            return "overflow"
    return "ok" if unit_ok(v) else f"confidence must be a number in [0, 1], got {v!r}"


@pytest.mark.parametrize("v", ODD, ids=lambda v: repr(v)[:12])
def test_unit_interval_fields(v):
    want = probability_want(v)
    assert outcome(lambda: Signal(1, v)) == want
    assert outcome(lambda: Vote("x", 1, v)) == want
    if v is not None:                                      # p_up is optional
        assert outcome(lambda: Vote("x", 1, 0.5, p_up=v)) == want.replace("confidence", "p_up")
    want = "ok" if unit_ok(v) else f"fraction must be a number in [0, 1], got {v!r}"
    assert outcome(lambda: EntryLeg(100.0, v)) == want


@pytest.mark.parametrize("v", ODD, ids=lambda v: repr(v)[:12])
def test_positive_and_optional_positive_fields(v):
    try:
        ok = positive_ok(v)
        want = "ok" if ok else "{} must be a finite number > 0, got " + repr(v)
    except OverflowError:
        want = "overflow"
    assert outcome(lambda: EntryLeg(v, 0.5)) == want.format("price")
    optional = "ok" if v is None else want
    for name in ("take_profit", "partial_take_profit", "trail_distance", "trail_activation"):
        assert outcome(lambda: ExitLevels(stop=100.0, **{name: v})) == optional.format(name)


def test_reasons_become_a_tuple_of_strings():
    assert Signal(1, 0.5, ["a", 3, None]).reasons == ("a", "3", "None")
    assert ExitLevels(stop=1.0, reasons=(x for x in "ab")).reasons == ("a", "b")


def test_numpy_probabilities_are_numbers():
    """``np.float32`` probabilities were refused with "must be a number" (they are one)."""
    import numpy as np

    vote = Vote("x", 1, np.float32(0.7), p_up=np.float32(0.7), p_down=np.float64(0.3))
    assert type(vote.confidence) is float and vote.confidence == float(np.float32(0.7))
    assert type(vote.p_up) is float and type(vote.p_down) is float
    assert Signal(1, np.float16(0.5)).confidence == 0.5
    assert outcome(lambda: Vote("x", 1, np.bool_(True))) == f"got the bool {np.bool_(True)!r}, expected a number"


@pytest.mark.parametrize("value", [1, -1, 0, 2, Action.BUY, Side.SHORT, np.int64(1), np.int8(-1), True, 1.0, "x",
                                   None, 0.5])
def test_the_action_and_side_converters_are_the_enums_calls(value):
    """Signal, Vote and EntryPlan convert with ``action_of``/``side_of`` (a fast path for members
    and ints): the same member, or the same error, as ``Action(value)`` / ``Side(value)``."""
    from mlcoord.model.values import action_of, side_of

    for enum_, convert in ((Action, action_of), (Side, side_of)):
        try:
            expected = enum_(value)
        except Exception as exc:
            with pytest.raises(type(exc), match=re.escape(str(exc))):
                convert(value)
        else:
            assert convert(value) is expected
