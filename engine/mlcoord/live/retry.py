"""Retrying exchange calls: exponential backoff with seeded jitter, on an injectable clock.

Transient failures (network errors and timeouts, rate limits, exchange maintenance) are retried;
everything else (bad symbol, bad order, authentication) is a real answer and is raised at once.
Waits go through a :class:`Clock`, so tests use :class:`ManualClock` (advances instantly, records
every sleep) and never sleep for real. When the exchange stays down for ``max_attempts`` calls or
``max_outage`` seconds the caller gets :class:`ExchangeUnavailable`; :class:`ExchangeHealth` turns
that into "pause trading" and back into "resume" on the next success, without crashing the bot.
An answer that arrived but holds nothing usable (no rows, a malformed row: :class:`MalformedAnswer`)
is retried too, at most ``RetryPolicy.malformed_attempts`` times, and never pauses trading: the
caller reports it and carries on (the exchange is up; that one answer was bad).

ccxt is imported lazily (only once an exception has to be classified), so runs that never talk
to an exchange never import it.
"""

from __future__ import annotations

import random
import time
from email.utils import parsedate_to_datetime
from typing import Any, Callable, Optional, Protocol, TypeVar

import attrs
import structlog

from mlcoord.errors import MlcoordError
from mlcoord.logs import redact_secrets

log = structlog.get_logger("mlcoord.live.retry")
T = TypeVar("T")


class Clock(Protocol):
    """Wall time in seconds since the epoch, and a way to wait."""

    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class ManualClock:
    """A clock that only moves when told to: ``sleep`` advances it at once and records the wait."""

    def __init__(self, start: float = 1_700_000_000.0):
        self.t = float(start)
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(float(seconds))
        self.t += max(float(seconds), 0.0)


@attrs.frozen
class RetryPolicy:
    """How hard to insist. Defaults suit a bot polling hourly candles.

    ``max_attempts`` (8) calls in all; the n-th wait is ``base_delay * multiplier**(n-1)`` seconds
    (1, 2, 4, ... capped at ``max_delay`` = 60), scaled by a factor drawn uniformly from
    ``[1 - jitter, 1 + jitter]`` (jitter 0.25) from ``random.Random(seed)``, so many bots (or
    threads) do not retry in lock step while a test still sees the same waits every run. A
    rate-limit answer's ``Retry-After`` is honoured when it asks for longer. ``max_outage``
    (600 s): give up when the next wait would take the outage past it, whatever the attempt.
    """

    max_attempts: int = attrs.field(default=8, validator=attrs.validators.ge(1))
    base_delay: float = attrs.field(default=1.0, validator=attrs.validators.ge(0))
    multiplier: float = attrs.field(default=2.0, validator=attrs.validators.ge(1))
    max_delay: float = attrs.field(default=60.0, validator=attrs.validators.ge(0))
    jitter: float = attrs.field(default=0.25, validator=[attrs.validators.ge(0), attrs.validators.le(1)])
    max_outage: float = attrs.field(default=600.0, validator=attrs.validators.gt(0))
    seed: int = 0
    #: calls in all when the answers are malformed (:class:`MalformedAnswer`): a few, then reported
    malformed_attempts: int = attrs.field(default=3, validator=attrs.validators.ge(1))

    def delay(self, attempt: int, rng: random.Random) -> float:
        """The wait after failed attempt number ``attempt`` (1-based), jitter included."""
        raw = min(self.max_delay, self.base_delay * self.multiplier ** (attempt - 1))
        return raw * (1.0 + self.jitter * (2.0 * rng.random() - 1.0))


class ExchangeUnavailable(MlcoordError):
    """The exchange stayed unreachable (or kept refusing for load or maintenance): pause trading.

    ``reason`` is ``network``, ``rate_limit``, ``maintenance`` (the last failure's kind), or
    ``malformed`` when a start cannot do without an answer that stayed malformed
    (:func:`mlcoord.live.runner.fetch_closed`)."""

    def __init__(self, message: str, *, reason: str, attempts: int, outage: float,
                 last_error: Optional[BaseException] = None):
        super().__init__(message)
        self.reason, self.attempts, self.outage, self.last_error = reason, attempts, outage, last_error


class MalformedAnswer(MlcoordError):
    """The exchange answered, but with nothing usable (no rows, a malformed row): retried as a
    transient failure (reason ``malformed``), at most ``RetryPolicy.malformed_attempts`` calls, then
    raised again by :func:`retrying` (not wrapped: the exchange is up, nothing pauses).

    ``usable``: what of the answer is sound (e.g. the candles less their bad rows), which the
    caller may take once the retries are spent (the exchange keeps sending the bad rows);
    ``bad``: what was left out (:class:`mlcoord.live.bar_screen.BadRow`)."""

    def __init__(self, message: str, *, usable: Any = None, bad: tuple = ()):
        super().__init__(message)
        self.usable, self.bad = usable, tuple(bad)


def classify(exc: BaseException) -> Optional[str]:
    """``rate_limit``, ``maintenance``, ``network``, ``malformed`` for a transient failure, else
    None (do not retry)."""
    if isinstance(exc, MalformedAnswer):
        return "malformed"
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return "network"
    try:
        import ccxt
    except ImportError:  # pragma: no cover - ccxt is the optional "exchange" extra
        return None
    if isinstance(exc, (ccxt.RateLimitExceeded, ccxt.DDoSProtection)):  # HTTP 418/429
        return "rate_limit"
    if isinstance(exc, ccxt.ExchangeNotAvailable):  # includes OnMaintenance; HTTP 5xx
        return "maintenance"
    if isinstance(exc, ccxt.NetworkError):  # RequestTimeout, connection errors, bad gateway
        return "network"
    return None


def retry_after_header(exchange: Any) -> Callable[[BaseException], Optional[float]]:
    """Reads ``Retry-After`` (seconds or an HTTP date) from the exchange's last response headers."""
    def read(_exc: BaseException) -> Optional[float]:
        headers = getattr(exchange, "last_response_headers", None) or {}
        value = next((v for k, v in dict(headers).items() if str(k).lower() == "retry-after"), None)
        if value is None:
            return None
        try:
            return max(float(value), 0.0)
        except ValueError:
            try:
                return max(parsedate_to_datetime(str(value)).timestamp() - time.time(), 0.0)
            except (TypeError, ValueError):
                return None
    return read


def describe_error(exc: BaseException) -> str:
    """``Type: message`` with registered secrets removed, short enough for a log line."""
    text = redact_secrets(None, None, {"e": f"{type(exc).__name__}: {exc}"})["e"]
    return text if len(text) <= 300 else text[:297] + "..."


def retrying(call: Callable[[], T], policy: RetryPolicy = RetryPolicy(), clock: Clock = SystemClock(), *,
             what: str = "exchange call", rng: Optional[random.Random] = None,
             retry_after: Optional[Callable[[BaseException], Optional[float]]] = None,
             on_retry: Optional[Callable[[str], None]] = None) -> T:
    """``call()``, retried on transient exchange failures; raises :class:`ExchangeUnavailable` at the end
    (:class:`MalformedAnswer`, with the last answer's sound part, when the answers stayed malformed).

    Each retry logs a warning ``exchange_retry`` with ``what``, ``attempt``, ``delay``, ``reason``
    and ``error``. ``rng`` defaults to ``random.Random(policy.seed)``; share one across calls to
    keep drawing fresh jitter. Non-transient errors propagate unchanged on the first attempt.
    ``on_retry(reason)`` is told of each retry (the API's retry counter).
    """
    rng = rng if rng is not None else random.Random(policy.seed)
    start = clock.now()
    attempt = 0
    while True:
        attempt += 1
        try:
            return call()
        except Exception as exc:
            reason = classify(exc)
            if reason is None:
                raise
            outage = clock.now() - start
            delay = policy.delay(attempt, rng)
            if reason == "rate_limit" and retry_after is not None:
                asked = retry_after(exc)
                if asked is not None and asked > delay:
                    delay = asked
            most = policy.malformed_attempts if reason == "malformed" else policy.max_attempts
            if attempt >= most or outage + delay > policy.max_outage:
                why = (f"{attempt} attempts" if attempt >= most
                       else f"an outage of {outage:.0f} s (limit {policy.max_outage:.0f} s)")
                log.error("exchange_unavailable", what=what, attempts=attempt, outage=round(outage, 3),
                          reason=reason, error=describe_error(exc))
                message = f"{what}: exchange unavailable ({reason}) after {why}; last error: {describe_error(exc)}"
                if isinstance(exc, MalformedAnswer):
                    # the exchange is up, its answer is bad: raised as what it is (nothing pauses),
                    # with its sound part, so no caller has to unwrap it
                    raise MalformedAnswer(message, usable=exc.usable, bad=exc.bad) from exc
                raise ExchangeUnavailable(message, reason=reason, attempts=attempt, outage=outage,
                                          last_error=exc) from exc
            log.warning("exchange_retry", what=what, attempt=attempt, delay=round(delay, 3), reason=reason,
                        error=describe_error(exc))
            if on_retry is not None:
                on_retry(reason)
            clock.sleep(delay)


@attrs.frozen
class HealthEvent:
    time: float
    paused: bool
    reason: str


class ExchangeHealth:
    """Paused while the exchange is unavailable, resumed on the next successful call.

    The live loop routes its exchange calls through :meth:`call` and asks :attr:`paused` before
    placing new orders: an outage pauses trading (logged once, with the reason), it does not crash
    the bot, and the first call that succeeds resumes it (logged with the downtime).
    """

    def __init__(self, policy: RetryPolicy = RetryPolicy(), clock: Clock = SystemClock()):
        self.policy, self.clock = policy, clock
        self.rng = random.Random(policy.seed)
        self.paused = False
        self.reason = ""
        self.since: Optional[float] = None
        self.events: list[HealthEvent] = []
        #: retries made, by reason (``rate_limit``, ``network``, ...): exported by the API's metrics
        self.retries: dict[str, int] = {}

    def _retried(self, reason: str) -> None:
        self.retries[reason] = self.retries.get(reason, 0) + 1

    def call(self, fn: Callable[[], T], *, what: str = "exchange call",
             retry_after: Optional[Callable[[BaseException], Optional[float]]] = None) -> T:
        """``retrying(fn)``; ExchangeUnavailable pauses (and is re-raised), success resumes. Answers
        that stayed malformed raise :class:`MalformedAnswer` without pausing: the exchange is up."""
        try:
            result = retrying(fn, self.policy, self.clock, what=what, rng=self.rng, retry_after=retry_after,
                              on_retry=self._retried)
        except ExchangeUnavailable as exc:
            self.pause(str(exc))
            raise
        self.resume()
        return result

    def pause(self, reason: str) -> None:
        if not self.paused:
            self.paused, self.reason, self.since = True, reason, self.clock.now()
            self.events.append(HealthEvent(self.since, True, reason))
            log.error("trading_paused", reason=reason)

    def resume(self) -> None:
        if self.paused:
            now = self.clock.now()
            down = now - (self.since or now)
            self.events.append(HealthEvent(now, False, f"exchange answered again after {down:.0f} s"))
            log.warning("trading_resumed", downtime=round(down, 3), after=self.reason)
            self.paused, self.reason, self.since = False, "", None
