"""Discord: a channel webhook (``POST`` the URL with JSON; 204 No Content on success).

The payload follows Discord's "Execute Webhook" (https://discord.com/developers/docs/resources/webhook#execute-webhook):
``content`` (at most 2000 characters), ``username``, ``embeds`` (at most 10; an embed's ``title`` at
most 256 characters, ``description`` 4096, ``color`` a 24-bit integer, ``timestamp`` ISO 8601,
``footer.text`` 2048, ``fields`` at most 25 with ``name`` 256 / ``value`` 1024), ``allowed_mentions``
and ``flags``, where only SUPPRESS_EMBEDS (1 << 2) and SUPPRESS_NOTIFICATIONS (1 << 12) may be set:
a ``silent`` notification sets the latter. A 429 answers ``retry_after`` (seconds) in its JSON
(https://discord.com/developers/docs/topics/rate-limits): the outbox waits that long.
"""

from __future__ import annotations

from typing import Any

from mlcoord.notify.events import Message, describe, iso
from mlcoord.notify.http import post_json

SUPPRESS_NOTIFICATIONS = 1 << 12
#: embed colours per kind (24-bit RGB)
COLORS = {"entry": 0x3399FF, "fill": 0x808080, "exit": 0x00CC66, "cancel": 0x808080, "guard_action": 0xFF8800,
          "warning": 0xFFCC00, "drift_alert": 0xFF0000}


def payload(message: Message, username: str) -> dict[str, Any]:
    """The JSON body of one notification."""
    n = message.notification
    title, text = describe(n)
    fields = [{"name": "event", "value": n.kind, "inline": True}]
    symbol = n.event.get("symbol")
    if symbol:
        fields.append({"name": "symbol", "value": str(symbol)[:1024], "inline": True})
    body: dict[str, Any] = {
        "username": username[:80], "content": f"{n.bot}: {title}"[:2000],
        "embeds": [{"title": title[:256], "description": text[:4096], "color": COLORS.get(n.kind, 0x808080),
                    "timestamp": iso(n.time), "footer": {"text": n.bot[:2048]}, "fields": fields}],
        "allowed_mentions": {"parse": []}}
    if message.silent:
        body["flags"] = SUPPRESS_NOTIFICATIONS
    return body


class DiscordChannel:
    name = "discord"

    def __init__(self, url: str, username: str, verbosity: dict[str, str], timeout: float):
        self._url, self.username, self.verbosity, self.timeout = url, username, verbosity, timeout

    def send(self, item: Message) -> None:
        post_json(self._url, payload(item, self.username), self.timeout)
