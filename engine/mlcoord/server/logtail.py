"""The log tail of ``GET /api/v1/logs`` and the websocket's warnings.

A tap on the project's logging chain (:func:`mlcoord.logs.add_tap`: structlog's events and stdlib
records alike, after the redaction processor) keeps the latest :data:`TAIL` lines in a bounded
ring, redacted once more as text; records at warning and above also go to the event stream.
Installed while the server runs, removed when it stops.
"""

from __future__ import annotations

import collections
import json
import threading
from typing import Any, Callable, Optional

from mlcoord.logs import redact

#: lines kept
TAIL = 1000
LEVELS = {"debug": 10, "info": 20, "warning": 30, "warn": 30, "error": 40, "exception": 40, "critical": 50}


class LogTail:
    def __init__(self, size: int = TAIL, publish: Optional[Callable[[dict[str, Any]], None]] = None,
                 min_level: str = "debug"):
        self.lines: collections.deque[dict[str, Any]] = collections.deque(maxlen=size)
        self.publish = publish
        self.floor = LEVELS[min_level]       # records below it are not kept (the notifier's tap: warnings only)
        self._lock = threading.Lock()

    def __call__(self, method: str, event: dict[str, Any]) -> None:
        level = str(event.pop("level", method) or method).lower()
        if LEVELS.get(level, 0) < self.floor:
            return
        text = redact(json.dumps(event, default=str, sort_keys=True))
        row = {"level": level, "time": event.get("timestamp"), "event": redact(str(event.get("event", ""))),
               "line": text}
        with self._lock:
            self.lines.append(row)
        if self.publish is not None and LEVELS.get(level, 0) >= LEVELS["warning"]:
            self.publish({"type": "warning", **row})

    def tail(self, limit: int, level: str = "debug") -> list[dict[str, Any]]:
        """The newest ``limit`` lines at ``level`` or above, oldest first."""
        floor = LEVELS.get(level.lower(), 0)
        with self._lock:
            rows = [r for r in self.lines if LEVELS.get(r["level"], 0) >= floor]
        return rows[-limit:]
