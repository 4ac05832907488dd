"""Fault injection for the loopback exchange.

A rule names a fault kind and when it fires: on the ``at_call``-th request that matches its
``endpoint``/``method`` (0-based, counted per rule), with a seeded ``probability`` per matching
request, or (neither given) on the next matching request. ``times`` caps how often it fires;
left at None it means once for ``at_call`` and for the plain form, unlimited with ``probability``
(``probability=1.0`` hits every matching request). Kinds:

- ``timeout``: the request is NOT processed; the server waits ``delay`` s then drops the connection.
- ``rate_limit``: HTTP 429, ``Retry-After``, Binance code -1003; not processed.
- ``server_error``: HTTP ``status`` (default 503) with an HTML body; not processed.
- ``reject`` (order creation only): HTTP 400 with ``code``/``msg``; no order is created.
- ``partial_fill`` (order creation only): each fill of the new order takes at most ``fraction`` of
  its quantity; a MARKET order's unfilled rest expires, a LIMIT keeps resting.
- ``auth_error`` (signed requests only): HTTP 401 with -2015 (``AuthenticationError`` in ccxt),
  or another ``code``/``msg``/``status``; ``echo_key=True`` (default) repeats the X-MBX-APIKEY
  header in the message, as a proxy in front of an exchange may: what a bot prints of it must
  not show the key.
- ``lost_response`` (order creation only): the order IS created, then the answer is lost:
  ``mode="drop"`` closes the connection, ``"500"`` answers -1000 UNKNOWN, ``"unknown"`` answers
  HTTP 503 with -1007 (Binance's "execution status unknown"), ``"timeout"`` answers only after
  ``delay`` s, when the client has given up.
- ``bad_klines`` (klines only, ``/api/v3/klines`` and ``/fapi/v1/klines`` unless ``endpoint``):
  the request is processed and answered HTTP 200, but ``mode="empty"`` sends no rows,
  ``"malformed"`` sends the last row cut to two fields (ccxt then reads None prices),
  ``"short"`` sends only the first ``rows`` rows (an exchange capping a page below the asked
  ``limit``, silently).
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field

ORDER_ENDPOINTS = ("/api/v3/order", "/api/v3/order/cancelReplace", "/fapi/v1/order", "/fapi/v1/algoOrder")
KLINE_ENDPOINTS = ("/api/v3/klines", "/fapi/v1/klines")
BEFORE = ("timeout", "rate_limit", "server_error", "reject")
KINDS = (*BEFORE, "auth_error", "partial_fill", "lost_response", "bad_klines")
KLINE_MODES = ("empty", "malformed", "short")


@dataclass
class FaultRule:
    kind: str
    endpoint: str | None = None  # exact path ("/api/v3/order"); None: any (order endpoints for order kinds)
    method: str | None = None  # "POST", ...; None: any (POST for order kinds)
    at_call: int | None = None
    probability: float | None = None
    times: int | None = None
    params: dict = field(default_factory=dict)
    seen: int = 0
    fired: int = 0

    def matches(self, method: str, path: str, order_endpoints: tuple[str, ...] = ORDER_ENDPOINTS,
                kline_endpoints: tuple[str, ...] = KLINE_ENDPOINTS) -> bool:
        order_kind = self.kind in ("reject", "partial_fill", "lost_response")
        if self.endpoint is not None and path != self.endpoint:
            return False
        if self.endpoint is None and order_kind and path not in order_endpoints:
            return False
        if self.endpoint is None and self.kind == "bad_klines" and path not in kline_endpoints:
            return False
        want = self.method or ("POST" if order_kind else None)
        return want is None or want == method


class Faults:
    """The fault plan of one server. Thread-safe; ``log`` lists ``(kind, method, path)`` fired."""

    def __init__(self, seed: int = 0, order_endpoints: tuple[str, ...] = ORDER_ENDPOINTS,
                 kline_endpoints: tuple[str, ...] = KLINE_ENDPOINTS) -> None:
        self.order_endpoints, self.kline_endpoints = order_endpoints, kline_endpoints
        self._rules: list[FaultRule] = []
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.log: list[tuple[str, str, str]] = []

    def add(self, kind: str, *, endpoint: str | None = None, method: str | None = None,
            at_call: int | None = None, probability: float | None = None, times: int | None = None,
            **params) -> FaultRule:
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {', '.join(KINDS)}")
        if probability is not None and not 0 <= probability <= 1:
            raise ValueError("probability must be within [0, 1]")
        if times is None and probability is None:
            times = 1
        rule = FaultRule(kind, endpoint, method, at_call, probability, times, params)
        with self._lock:
            self._rules.append(rule)
        return rule

    def timeout(self, delay: float = 1.0, **when) -> FaultRule:
        return self.add("timeout", delay=delay, **when)

    def rate_limit(self, retry_after: int = 1, **when) -> FaultRule:
        return self.add("rate_limit", retry_after=retry_after, **when)

    def server_error(self, status: int = 503, **when) -> FaultRule:
        return self.add("server_error", status=status, **when)

    def reject(self, code: int | None = None, msg: str | None = None, **when) -> FaultRule:
        """Refuse an order (default: the dialect's, Binance -2010 "New order rejected.")."""
        given = {k: v for k, v in (("code", code), ("msg", msg)) if v is not None}
        return self.add("reject", **given, **when)

    def auth_error(self, echo_key: bool = True, code: int | None = None, status: int | None = None,
                   msg: str | None = None, **when) -> FaultRule:
        """Refuse a signed request (default: the dialect's, Binance HTTP 401 -2015)."""
        given = {k: v for k, v in (("code", code), ("status", status), ("msg", msg)) if v is not None}
        return self.add("auth_error", echo_key=echo_key, **given, **when)

    def partial_fill(self, fraction: float = 0.5, **when) -> FaultRule:
        return self.add("partial_fill", fraction=fraction, **when)

    def lose_response(self, mode: str = "drop", delay: float = 1.0, **when) -> FaultRule:
        if mode not in ("drop", "500", "unknown", "timeout"):
            raise ValueError("mode must be drop, 500, unknown or timeout")
        return self.add("lost_response", mode=mode, delay=delay, **when)

    def bad_klines(self, mode: str = "empty", rows: int = 1, **when) -> FaultRule:
        if mode not in KLINE_MODES:
            raise ValueError(f"mode must be one of {', '.join(KLINE_MODES)}")
        return self.add("bad_klines", mode=mode, rows=rows, **when)

    @staticmethod
    def spoil_klines(rule: FaultRule, body: list) -> list:
        """The klines answer ``body`` as the ``bad_klines`` rule ``rule`` sends it."""
        mode = rule.params.get("mode", "empty")
        if mode == "empty":
            return []
        if mode == "short":
            return body[: int(rule.params.get("rows", 1))]
        return body[:-1] + [body[-1][:2]] if body else [[0, "1"]]

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def pick(self, method: str, path: str, kinds: tuple[str, ...]) -> FaultRule | None:
        """The first rule of ``kinds`` that fires for this request (each matching rule counts it)."""
        with self._lock:
            chosen = None
            for rule in self._rules:
                if rule.kind not in kinds or not rule.matches(method, path, self.order_endpoints, self.kline_endpoints):
                    continue
                index = rule.seen
                rule.seen += 1
                if chosen is not None or (rule.times is not None and rule.fired >= rule.times):
                    continue
                if rule.at_call is not None:
                    fire = index == rule.at_call
                elif rule.probability is not None:
                    fire = self._rng.random() < rule.probability
                else:
                    fire = True
                if fire:
                    rule.fired += 1
                    chosen = rule
                    self.log.append((rule.kind, method, path))
            return chosen
