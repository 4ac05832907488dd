"""Saving and restoring a component's state (``state()`` / ``load_state()``), as a live bot does
between runs: the state goes through a JSON file, so it must be plain JSON, and a fresh instance
that loads it must carry on exactly as the one that saved it."""

from __future__ import annotations

import json
import math
from typing import Any, Callable, Optional

from mlcoord.model import Side, Trade
from mlcoord.testing.core import ConformanceError, build, call, expect, has_method, who

HOUR_NS = 3_600_000_000_000
#: bars a component is driven over before its state is saved; the answers after it are compared
SAVE_AT = 1500


def has_state(spec) -> bool:
    return has_method(spec, "state", "load_state")


def json_problem(value: Any, path: str = "state()") -> Optional[str]:
    """Where ``value`` stops being plain JSON (None if it is): a key that is not a string, a
    number that is not finite, a value json cannot write (a numpy integer, a set, an object)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{path} has the key {key!r} ({type(key).__name__}); JSON keys are strings"
            found = json_problem(item, f"{path}[{key!r}]")
            if found:
                return found
        return None
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found = json_problem(item, f"{path}[{i}]")
            if found:
                return found
        return None
    if value is None or isinstance(value, (str, bool, int)):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{path} is {value!r}, which JSON cannot hold"
    return f"{path} is {value!r:.60} ({type(value).__name__}), which JSON cannot hold"


def saved_state(spec, component, when: str = "") -> dict:
    """``state()``, checked to be plain JSON, as it comes back from the JSON state file."""
    state = call(spec, f"state(){when}", component.state)
    problem = json_problem(state)
    if problem:
        raise ConformanceError(f"{who(spec)}: state(){when} is not JSON-serialisable: {problem}; a live bot saves it "
                               f"to a JSON state file and restores it after a restart")
    return json.loads(json.dumps(state, sort_keys=True, allow_nan=False))


def restored(spec, saved: dict, before_load: Callable[[Any], None] = lambda fresh: None):
    """A fresh instance with ``saved`` loaded (after ``before_load``, e.g. a warm-up replay); its
    ``state()`` must give back what was saved."""
    fresh = build(spec)
    before_load(fresh)
    call(spec, "load_state(saved state)", fresh.load_state, json.loads(json.dumps(saved)))
    again = saved_state(spec, fresh, " after load_state")
    expect(again == saved, f"{who(spec)}: state() after load_state(saved) differs from the saved state: "
                           f"{_first_difference(saved, again)}")
    return fresh


_MISSING = object()


def _first_difference(a: Any, b: Any, path: str = "state()") -> str:
    """Where two states part: the first key path whose values differ, and both values."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            x, y = a.get(key, _MISSING), b.get(key, _MISSING)
            if x != y:
                return _first_difference(x, y, f"{path}[{key!r}]")
    shown = ["missing" if v is _MISSING else f"{v!r:.80}" for v in (a, b)]
    return f"{path} was {shown[0]}, is {shown[1]}"


def feed_trades(spec, component, data) -> None:
    """Closed trades for a component that learns from them (``on_trade_closed``), if it does."""
    hook = getattr(component, "on_trade_closed", None)
    if not callable(hook):
        return
    c = data.candles
    for i, sign in ((SAVE_AT - 300, -1.0), (SAVE_AT - 200, 1.0), (SAVE_AT - 100, -1.0)):
        price, t = float(c.close[i]), int(c.time[i])
        trade = Trade(f"conformance-{i}", data.symbol, Side.LONG, t - 5 * HOUR_NS, t, price * (1 - 0.02 * sign), price,
                      0.1, 0.002 * price * sign, 0.0001 * price, 0.0, "stop" if sign < 0 else "take_profit", 1, 1, 0.7,
                      "conformance check")
        call(spec, f"on_trade_closed(a {'losing' if sign < 0 else 'winning'} trade closed at bar {i})", hook, trade, None)


def differs(spec, what: str) -> str:
    return f"{who(spec)}: a fresh instance loaded with the saved state() {what} than the original; state() misses " \
           f"part of what its answers depend on"
