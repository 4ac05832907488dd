"""Restoring a saved learning state (``--state``) without look-ahead.

The state holds what the ensemble, the calibrator and the ML components learnt from outcomes,
and ``trained_until``: the newest bar whose price entered one of those outcomes. Restored into a
backtest whose first traded bar is at or before that time, it would trade on its own future (a
state learnt on 2024 turned a 2023 backtest from 22 trades into 0). Such a restore is refused
with an error rather than ignored with a warning: a warning scrolls by, and the saved file would
then be overwritten by the run. A state with no ``trained_until`` (saved before it existed)
cannot be dated and is refused the same way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import structlog

from mlcoord.errors import ConfigError
from mlcoord.times import iso, next_day

log = structlog.get_logger("mlcoord.learning_state")


#: fewer bars than this left to trade after a restored state: the run says so (its statistics say little)
MIN_BARS_AFTER_STATE = 100


def few_bars_note(bars: int, until: Optional[int], first_bar: Optional[int]) -> Optional[str]:
    """A warning for a run on a restored state (learnt ``until``) that trades only ``bars`` bars
    from ``first_bar`` on; None when there are enough (or nothing was restored)."""
    if until is None or bars >= MIN_BARS_AFTER_STATE:
        return None
    since = "" if first_bar is None else f" from {iso(first_bar)}"
    return (f"only {bars} bar(s) to trade{since} (fewer than {MIN_BARS_AFTER_STATE}): the learning state "
            f"learnt up to {iso(until)} and the data or --timerange ends soon after; its statistics say little. "
            f"Use a longer --timerange, more data, or an older state")


class StateLeakError(ConfigError):
    """A learning state that saw outcomes at or after the bars it would be used on."""




def first_traded_bar(times: Sequence[np.ndarray], start_ns: Optional[int]) -> Optional[int]:
    """The earliest bar time (ns) at or after ``start_ns`` over all series; None if there is none."""
    firsts = []
    for t in times:
        k = 0 if start_ns is None else int(np.searchsorted(t, start_ns))
        if k < len(t):
            firsts.append(int(t[k]))
    return min(firsts) if firsts else None


#: keys every saved learning state has (``trained_until`` since state version 2)
STATE_KEYS = ("version", "components")


def is_state_file(path: Path) -> bool:
    """Whether ``path`` holds a learning state (:meth:`Pipeline.state`'s JSON): what ``--state``
    may read and replace. A backtest result or any other file is not one."""
    from mlcoord.files import json_object

    data = json_object(Path(path))
    return data is not None and all(k in data for k in STATE_KEYS) and isinstance(data["components"], dict)


def read_state(path: Path) -> dict[str, Any]:
    try:
        state = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"learning state {str(path)!r} could not be read: {exc}") from exc
    if not isinstance(state, dict):
        raise ConfigError(f"learning state {str(path)!r}: expected a JSON object, got {type(state).__name__}")
    return state


def check_usable(state: dict[str, Any], path: Path, first_bar: Optional[int]) -> Optional[int]:
    """``trained_until`` of ``state`` (ns or None) if it may be used from ``first_bar`` on; else raise."""
    if "trained_until" not in state:
        raise StateLeakError(
            f"learning state {str(path)!r} has no trained_until (saved by an older mlcoord): it cannot be "
            f"dated, so it may hold outcomes from this backtest's future. Delete it to start fresh, or "
            f"save a new one with a run that ends before this backtest starts")
    until = state["trained_until"]
    if until is None:       # nothing learnt yet
        return None
    if isinstance(until, bool) or not isinstance(until, int):
        raise ConfigError(f"learning state {str(path)!r}: trained_until must be a time in ns or null, got {until!r}")
    if first_bar is not None and until >= first_bar:
        raise StateLeakError(
            f"learning state {str(path)!r} learnt from outcomes up to {iso(until)}, but this backtest trades "
            f"from {iso(first_bar)}: restoring it would use the future. Start the backtest after "
            f"{iso(until)} (--timerange {next_day(until)}- or later), use a "
            f"state saved by a run that ended before {iso(first_bar)}, or drop --state")
    return until


def restore(pipeline: Any, path: Path, first_bar: Optional[int]) -> None:
    """Load ``path`` into ``pipeline`` if it was learnt strictly before ``first_bar`` (see module doc)."""
    state = read_state(path)
    until = check_usable(state, path, first_bar)
    pipeline.load_state(state)
    log.info("learning_state_restored", path=str(path), trained_until=None if until is None else iso(until))
