"""One JSON POST (standard library only: notifications need no extra), with typed errors.

Error texts never hold the URL (a Telegram token and a Discord webhook's token are part of it):
only the status, or what went wrong on the network.
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from typing import Any, Optional

from mlcoord.notify.outbox import Refused, SendError

USER_AGENT = "mlcoord-notify"


def post_json(url: str, body: Any, timeout: float) -> Any:
    """POST ``body`` as JSON; the answer's JSON (None for an empty answer, e.g. Discord's 204).
    429 and 5xx: :class:`SendError` (429 with the server's retry-after); another 4xx:
    :class:`Refused`; a network error or time-out: :class:`SendError`."""
    data = json.dumps(body, separators=(",", ":")).encode()
    request = urllib.request.Request(url, data=data, method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        raw = _read(exc)
        if exc.code == 429:
            raise SendError("HTTP 429 (rate limited)", retry_after=_retry_after(raw, exc.headers.get("Retry-After")))
        text = f"HTTP {exc.code}" + _description(raw)
        if exc.code >= 500:
            raise SendError(text) from None
        raise Refused(text) from None
    except (urllib.error.URLError, OSError, socket.timeout) as exc:
        reason = getattr(exc, "reason", exc)
        raise SendError(f"network: {type(reason).__name__}: {getattr(reason, 'strerror', None) or reason}") from None
    return json.loads(raw) if raw.strip() else None


def _read(exc: urllib.error.HTTPError) -> bytes:
    try:
        return exc.read() or b""
    except OSError:
        return b""


def _description(raw: bytes) -> str:
    """Telegram's and Discord's error text (``description`` / ``message``), short."""
    try:
        found = json.loads(raw)
    except ValueError:
        return ""
    if isinstance(found, dict):
        text = found.get("description") or found.get("message")
        if isinstance(text, str):
            return f": {text[:120]}"
    return ""


def _retry_after(raw: bytes, header: Optional[str]) -> Optional[float]:
    """Seconds to wait: Discord's JSON ``retry_after``, Telegram's ``parameters.retry_after``,
    else the Retry-After header."""
    try:
        found = json.loads(raw)
    except ValueError:
        found = None
    if isinstance(found, dict):
        for value in (found.get("retry_after"), (found.get("parameters") or {}).get("retry_after")):
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
    try:
        return float(header) if header is not None else None
    except ValueError:
        return None
