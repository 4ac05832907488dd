"""Which websocket event is which notification, and what it says.

The events are the :class:`~mlcoord.live.controls.ControlChannel`'s (the same dicts the websocket
sends); :func:`kind_of` only looks at their ``type`` (and a decision's outcome), so the trading
thread pays a dict lookup. The text is written by the sending worker (:func:`describe`).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Optional

import attrs

#: the websocket event type of each notification kind (an entry is a decision that entered)
EVENT_KINDS = {"fill": "fill", "trade_closed": "exit", "order_cancelled": "cancel", "guard_action": "guard_action",
               "warning": "warning", "drift_alert": "drift_alert"}
#: log events of the notifier itself: never notified (a failing channel would warn about itself forever)
OWN_EVENTS = "notify_"


@attrs.frozen
class Notification:
    """One notification: its kind, when it was queued (wall seconds), the bot's name and the
    websocket event it comes from (plain data, never changed after it is emitted)."""

    kind: str
    time: float
    bot: str
    event: dict[str, Any] = attrs.field(eq=False)


@attrs.define(eq=False)
class Message:
    """A notification on its way through one channel: ``silent`` (its verbosity there) and, for a
    channel with several recipients, those it has reached (a retry skips them)."""

    notification: Notification
    silent: bool = False
    done: set[str] = attrs.field(factory=set)


def kind_of(event: dict[str, Any]) -> Optional[str]:
    """The notification kind of a websocket event, or None when it is no notification."""
    kind = event.get("type")
    if kind == "decision":
        return "entry" if event.get("outcome") == "entered" else None
    found = EVENT_KINDS.get(kind) if isinstance(kind, str) else None
    if found == "warning" and str(event.get("event", "")).startswith(OWN_EVENTS):
        return None
    return found


def _side(value: Any) -> str:
    return {1: "long", -1: "short"}.get(value, str(value))


def _num(value: Any) -> str:
    return f"{value:,.6g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def describe(n: Notification) -> tuple[str, str]:
    """(title, text) of ``n``: one short line and the details, for people."""
    e, kind = n.event, n.kind
    sym = e.get("symbol") or ""
    if kind == "entry":
        plan, levels, sizing = e.get("plan") or {}, e.get("levels") or {}, e.get("sizing") or {}
        side = str(plan.get("side") or e.get("signal", "")).lower()
        legs = len(plan.get("legs") or ()) or 1
        text = (f"{side} {sym}, confidence {_num(e.get('confidence'))}, quantity {_num(sizing.get('quantity'))} "
                f"in {legs} leg{'s' if legs > 1 else ''}, stop {_num(levels.get('stop'))}, take profit "
                f"{_num(levels.get('take_profit'))}")
        reasons = "; ".join(map(str, e.get("reasons") or ()))
        return f"entry {sym}", text + (f" ({reasons})" if reasons else "")
    if kind == "fill":
        what = "hedge " if e.get("hedge") else ""
        return (f"fill {sym}", f"{what}{_side(e.get('side'))} {_num(e.get('quantity'))} {sym} at "
                               f"{_num(e.get('price'))} ({e.get('tag') or 'order'})")
    if kind == "exit":
        pnl = e.get("pnl")
        return (f"exit {sym} {_num(pnl)}", f"{_side(e.get('side'))} {sym} closed ({e.get('exit_reason')}): "
                f"{_num(e.get('entry_price'))} -> {_num(e.get('exit_price'))}, P&L {_num(pnl)}, fees "
                f"{_num(e.get('fees'))}")
    if kind == "cancel":
        return f"cancel {sym}", (f"order {e.get('order_id')} on {sym} cancelled"
                                 + (f" ({e['reason']})" if e.get("reason") else ""))
    if kind == "guard_action":
        return (f"guard {e.get('guard')}: {e.get('action')}",
                f"{e.get('guard')} {e.get('action')} {sym or 'portfolio'}: {e.get('reason')}")
    if kind == "drift_alert":
        alert = e.get("state") == "alert"
        return ("calibration drift " + ("alert" if alert else "cleared"),
                f"calibration drift {e.get('state')}: live ECE {_num(e.get('ece_live'))}, reference "
                f"{_num(e.get('ece_reference'))}, difference {_num(e.get('difference'))}")
    if "status" in e:
        return "warning: cycle", f"cycle status {e['status']}"
    return f"{e.get('level', 'warning')}: {e.get('event', '')}", str(e.get("line") or e.get("event", ""))


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
