"""A generic JSON webhook: one ``POST`` per notification, any 2xx is success.

The body (``schema_version`` 1)::

    {"schema_version": 1, "type": "exit", "time": "2025-01-02T03:04:05.678Z", "time_unix": 1735787045.678,
     "bot": "mlcoord", "silent": false, "title": "exit BTC/USDT 12.5", "text": "long BTC/USDT closed ...",
     "payload": {...the websocket event: "type": "trade_closed", "symbol", "pnl", ...}}

``type`` is the notification kind (entry, fill, exit, cancel, guard_action, warning, drift_alert),
``payload`` the API's websocket event it comes from, unchanged.
"""

from __future__ import annotations

from typing import Any

from mlcoord.notify.events import Message, describe, iso
from mlcoord.notify.http import post_json

SCHEMA_VERSION = 1


def payload(message: Message) -> dict[str, Any]:
    n = message.notification
    title, text = describe(n)
    return {"schema_version": SCHEMA_VERSION, "type": n.kind, "time": iso(n.time), "time_unix": n.time,
            "bot": n.bot, "silent": message.silent, "title": title, "text": text, "payload": n.event}


class WebhookChannel:
    name = "webhook"

    def __init__(self, url: str, verbosity: dict[str, str], timeout: float):
        self._url, self.verbosity, self.timeout = url, verbosity, timeout

    def send(self, item: Message) -> None:
        post_json(self._url, payload(item), self.timeout)
