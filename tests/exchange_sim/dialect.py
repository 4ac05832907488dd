"""What differs between the exchanges the loopback server speaks: routes, request parsing and
signing, and how errors, rate limits and lost answers look on the wire. The market clock, the
accounts and the matching engine (:mod:`exchange_sim.state`, ``spot``, ``futures``) are shared:
a dialect only translates requests into them and their state into the exchange's JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from .state import BinanceError

Route = Callable[[Any, dict, Any], Any]      # (state, params, fill fraction) -> JSON


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: status, JSON (or text) body, extra headers."""

    status: int
    body: Any
    headers: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Dialect:
    name: str
    public: dict[tuple[str, str], Route]
    signed: dict[tuple[str, str], Route]
    order_endpoints: tuple[str, ...]          # where reject / partial_fill / lost_response apply
    kline_endpoints: tuple[str, ...]          # where bad_klines applies
    key_header: str
    # (server, headers, method, raw_query, raw_body, params) -> None or raises BinanceError
    authenticate: Callable[..., None]
    parse_body: Callable[[str], dict]         # the request body's parameters
    error: Callable[[BinanceError], Answer]   # an error raised by the accounts, as the exchange answers it
    ok: Callable[[Any, int], Any]             # a route's result wrapped as the exchange sends it (result, now_ms)
    rate_limited: Callable[[int, int], Answer]   # (retry_after s, now ms)
    lost: Callable[[str], Answer]             # lost_response modes "500" and "unknown"
    usage_headers: Callable[[int], dict]      # headers every answer carries (now ms)
    reject: tuple[int, str]                   # the default injected rejection
    auth_error: tuple[int, str, int]          # the default injected auth error (code, msg, status)
    signs_path: bool = False                  # authenticate also takes ``path=`` (OKX signs the request path)
