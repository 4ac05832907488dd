"""Client order ids derived from the decision: the key that makes retries and restarts safe.

An order's client id is a pure function of what decided it (symbol, decision bar time, the order's
role in the plan, the attempt number). A retry after a timeout, or a restart that replays the same
decision, therefore sends the *same* id: the exchange rejects the duplicate (Binance:
``-2010 Duplicate order sent``) and the store's ``upsert_order`` keeps one row, so the same order is
never placed twice. A deliberate new order for the same role (re-pricing an expired DCA leg) raises
``attempt``, which gives a new id.

Format: ``"mc"`` + 26 base32 characters of SHA-256 (130 bits, no practical collision): 28
characters of ``[A-Z2-7]``, inside Binance's 36-character ``[.A-Z:/a-z0-9_-]`` and OKX's 32
alphanumeric ones. The ``mc`` prefix lets reconciliation tell the bot's orders from manual ones.
"""

from __future__ import annotations

import base64
import hashlib
import re

PREFIX = "mc"
_BODY = 26
ID_PATTERN = re.compile(r"^mc[A-Z2-7]{26}$")


def client_order_id(symbol: str, decision_time_ns: int, tag: str, attempt: int = 0, *,
                    namespace: str = "") -> str:
    """The client order id of the order playing role ``tag`` in the decision at ``decision_time_ns``.

    ``tag`` is the order's role ("entry:1/3", "stop", "take_profit", "hedge", ...); ``attempt``
    counts deliberate replacements (0 for the first). ``namespace`` separates two bots trading
    the same symbols on one account (their decisions could share bar times). Deterministic: the
    same arguments always give the same id.
    """
    if not symbol or not isinstance(symbol, str):
        raise ValueError(f"symbol must be a non-empty string, got {symbol!r}")
    if isinstance(decision_time_ns, bool) or not isinstance(decision_time_ns, int):
        raise TypeError(f"decision_time_ns must be an int (ns since epoch), got {decision_time_ns!r}")
    if not tag or not isinstance(tag, str):
        raise ValueError(f"tag must be a non-empty string, got {tag!r}")
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 0:
        raise ValueError(f"attempt must be an int >= 0, got {attempt!r}")
    # "\x1f" (unit separator) cannot occur in symbols or tags, so fields never run into each other
    key = "\x1f".join((namespace, symbol, str(decision_time_ns), tag, str(attempt))).encode()
    digest = base64.b32encode(hashlib.sha256(key).digest()).decode("ascii")
    return PREFIX + digest[:_BODY]


def is_own_order(client_id: str) -> bool:
    """True if ``client_id`` has the shape of an id made by :func:`client_order_id`."""
    return bool(ID_PATTERN.match(client_id or ""))
