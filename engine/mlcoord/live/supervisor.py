"""What a supervisor needs from a running bot: a kill switch, a heartbeat, and the live options.

* Kill switch: a file path; while the file exists no new entry is made (open positions keep their
  stops), and with ``flatten_on_kill`` open positions are closed at market. Creating a file works
  from any shell, cron job or orchestrator, with no port to open; ``mlcoord kill --config``
  creates it (with who and why) and ``mlcoord kill --off`` removes it.
* Heartbeat: a small JSON file rewritten atomically (temporary file, fsync, rename) after every
  cycle with the cycle's wall time and bar time, so a watchdog reads either the old or the new
  beat, never half of one.
* The daily-loss limit is the ``protections`` plugin's guard: live and paper run the pipeline's
  guards unchanged, so the same limit applies (and disabling that essential plugin is an error).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Optional

import attrs
from attrs import validators as v

from mlcoord.files import write_atomic
from mlcoord.option_checks import integer, number



#: ``[live] store`` when the config names none: a SQLite file next to the config file
DEFAULT_STORE = "mlcoord-live.db"


@attrs.frozen
class LiveOptions:
    """``[live]`` options of every live session (defaults stated here); the order loop's own are
    :class:`mlcoord.live.runner.LiveLoopOptions`, read by :func:`mlcoord.live.runner.load_live_settings`.

    ``store``: database URL or SQLite path of the persistence store (default ``mlcoord-live.db``
    next to the config file). ``unknown_orders``: what a live start does with open orders on the
    traded symbols that the store does not know: "refuse" (the default: the bot does not start
    until ``--adopt`` or ``--ignore SYMBOL``, :mod:`mlcoord.live.startup`), "cancel" or "adopt"
    (stored and tracked). ``kill_switch``: file path (None: no kill switch).
    ``flatten_on_kill``: also close positions while the kill switch is on (default False).
    ``heartbeat``: file path (None: none). ``margin_mode``: futures "isolated" (default) or "cross".
    ``poll_seconds``: how often the loop looks for a newly closed bar (default 10).
    ``history_bars``: closed candles fetched at start for the indicators' warm-up (default 1000).
    Ranges: ``poll_seconds`` (0, 86400], ``history_bars`` [51, 100000].
    Read from a config file, relative ``store``, ``kill_switch`` and ``heartbeat`` paths are made
    absolute against the file's folder (:data:`mlcoord.config.PATH_KEYS`), so the bot and the
    ``kill``/``status`` commands agree wherever each is started; so is the default store.
    """

    store: str = DEFAULT_STORE
    unknown_orders: str = attrs.field(default="refuse", validator=v.in_(("refuse", "cancel", "adopt")))
    kill_switch: Optional[str] = None
    flatten_on_kill: bool = False
    heartbeat: Optional[str] = None
    margin_mode: str = attrs.field(default="isolated", validator=v.in_(("isolated", "cross")))
    poll_seconds: float = attrs.field(default=10.0, validator=number(0.0, 86_400.0, lo_open=True))
    history_bars: int = attrs.field(default=1000, validator=integer(51, 100_000))


#: seconds a heartbeat's time may lie ahead of this machine's clock (two hosts' clocks differ a
#: little); further ahead, the beat cannot be trusted to say the bot is alive
CLOCK_SKEW_SECONDS = 30.0


def _real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _malformed(beat: Any) -> Optional[str]:
    """What is wrong with a heartbeat's content (None: a beat the bot could have written)."""
    if not isinstance(beat, dict):
        return f"expected a JSON object, got {type(beat).__name__}"
    if not _real(beat.get("wall_time")):
        return f"wall_time must be a finite number of seconds, got {beat.get('wall_time')!r:.40}"
    bar = beat.get("bar_time_ns")
    if bar is not None and (isinstance(bar, bool) or not isinstance(bar, int)):
        return f"bar_time_ns must be an integer or null, got {bar!r:.40}"
    return None


def beat_problem(beat: dict, now: float, max_age: float, skew: float = CLOCK_SKEW_SECONDS) -> Optional[str]:
    """Why a valid heartbeat (see :meth:`Supervisor.last_beat`) says the bot is not healthy at
    ``now``, else None: too old, from the future beyond ``skew`` (a clock gone wrong, or a file
    not written by the bot), or paused."""
    age = now - float(beat["wall_time"])
    if age > max_age:
        return f"the last cycle is {age:.0f} s old (limit {max_age:.0f} s)"
    if age < -skew:
        return (f"the heartbeat's time lies {-age:.0f} s in the future (tolerance {skew:.0f} s): a clock is "
                "wrong, or the bot did not write it")
    if str(beat.get("status", "")).startswith("paused"):
        return f"the bot is {beat.get('status')}"
    return None


class Supervisor:
    """Kill switch and heartbeat of one bot process."""

    def __init__(self, options: LiveOptions):
        self.options = options
        self.beats = 0

    def killed(self) -> bool:
        path = self.options.kill_switch
        return bool(path and Path(path).exists())

    def engage(self, reason: str, *, wall_time: float) -> Path:
        """Turn the kill switch on: the file records why and when (it is read by humans)."""
        path = self._switch_path()
        write_atomic(path, json.dumps({"reason": reason, "wall_time": wall_time, "by_pid": os.getpid()},
                                      sort_keys=True))
        return path

    def release(self) -> bool:
        """Turn the kill switch off; True if it was on."""
        path = self._switch_path()
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        return True

    def _switch_path(self) -> Path:
        from mlcoord.errors import ConfigError

        if not self.options.kill_switch:
            raise ConfigError("no kill switch configured: set [live] kill_switch = \"PATH\" in the bot's config")
        path = Path(self.options.kill_switch)
        if path.is_dir():
            raise ConfigError(f"kill switch {path} is a directory: [live] kill_switch must name a file, e.g. {path / 'STOP'}")
        return path

    def last_beat(self) -> Optional[dict]:
        """The heartbeat file's content (None if there is none yet)."""
        from mlcoord.errors import ConfigError

        if not self.options.heartbeat:
            raise ConfigError("no heartbeat configured: set [live] heartbeat = \"PATH\" in the bot's config")
        path = Path(self.options.heartbeat)
        if path.is_dir():
            raise ConfigError(f"heartbeat {path} is a directory: [live] heartbeat must name a file, e.g. "
                              f"{path / 'heartbeat.json'}")
        try:
            beat = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (ValueError, OSError) as exc:    # not JSON, not UTF-8, unreadable
            raise ConfigError(f"heartbeat file {path} is not JSON: {exc}") from None
        problem = _malformed(beat)
        if problem:
            raise ConfigError(f"heartbeat file {path} is malformed: {problem}")
        return beat

    def beat(self, *, wall_time: float, bar_time: Optional[int], status: str, **extra: Any) -> None:
        """Write the heartbeat file (atomically); a no-op without one configured."""
        self.beats += 1
        if not self.options.heartbeat:
            return
        body = {"wall_time": wall_time, "bar_time_ns": bar_time, "status": status, "pid": os.getpid(),
                "beats": self.beats, **extra}
        write_atomic(Path(self.options.heartbeat), json.dumps(body, sort_keys=True))
