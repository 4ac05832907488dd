"""The market scanner: which pairs to trade, and their fresh 1h/4h/1d candles every cycle.

Pairs are ranked by 24 h quote volume from one ``fetch_tickers`` call, after filters: quote
currency, active markets of the configured type, minimum quote volume, a whitelist (if given,
only those), a blacklist (glob patterns, e.g. ``"LUNA*"``), leveraged tokens (``BTCUP``,
``ETHDOWN``, ``XRPBULL``, ``BTC3L``: excluded when the base without the suffix is itself a listed
base, so ``JUP`` stays) and pairs of two stablecoins.

Concurrency: a bounded ``ThreadPoolExecutor`` with one ccxt instance per worker thread. The
engine is synchronous, so threads give the I/O overlap without a second, asyncio, code path;
a ccxt instance is not thread-safe (one HTTP session, one rate limiter), hence one per thread.
Each instance's own rate limiter would let ``workers`` threads together exceed the exchange's
limit, so each instance is given ``workers x`` the base ``rateLimit``: the aggregate request
rate stays the exchange's. A pair whose response stays malformed after the retries is reported
in :attr:`ScanResult.errors` and left out of that cycle; an exchange that stays down raises
:class:`~mlcoord.live.retry.ExchangeUnavailable` (the caller pauses trading).
"""

from __future__ import annotations

import fnmatch
import random
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Mapping, Optional, Sequence

import attrs
import numpy as np
import structlog

from mlcoord.candles import Candles, timeframe_to_ns
from mlcoord.errors import DataError
from mlcoord.option_checks import integer, number
from mlcoord.live.bar_screen import BarScreen, salvage
from mlcoord.live.exchange import exchange_now_ms
from mlcoord.live.feed import CANDLE_PAGE, BarsWanted, closed_candles
from mlcoord.live.retry import Clock, MalformedAnswer, RetryPolicy, SystemClock, retry_after_header, retrying

log = structlog.get_logger("mlcoord.live.scanner")

LEVERAGED = re.compile(r"^(?P<base>[A-Z0-9]{2,}?)(?:UP|DOWN|BULL|BEAR|[2-5][LS])$")
STABLECOINS = frozenset({"USDT", "USDC", "BUSD", "TUSD", "FDUSD", "DAI", "USDP", "PYUSD", "USDD", "UST", "EUR",
                         "AEUR", "EURI", "USDE"})


@attrs.frozen
class ScannerOptions:
    """``top_n`` (20) pairs by 24 h quote volume in ``quote`` (USDT) with at least ``min_quote_volume``
    (1e6); ``whitelist`` (empty = any) and ``blacklist`` hold symbols or glob patterns;
    ``exclude_leveraged`` (True) and ``exclude_stablecoins`` (True); ``timeframes`` fetched per
    pair each cycle (1h, 4h, 1d), ``candles`` (500) bars each; ``workers`` (4) threads. Ranges:
    ``top_n`` [1, 1000], ``min_quote_volume`` [0, 1e12], ``candles`` [2, 5000], ``workers`` [1, 32]."""

    top_n: int = attrs.field(default=20, validator=integer(1, 1000))
    quote: str = "USDT"
    min_quote_volume: float = attrs.field(default=1e6, validator=number(0.0, 1e12))
    whitelist: tuple[str, ...] = ()
    blacklist: tuple[str, ...] = ()
    exclude_leveraged: bool = True
    exclude_stablecoins: bool = True
    timeframes: tuple[str, ...] = ("1h", "4h", "1d")
    candles: int = attrs.field(default=500, validator=integer(2, 5000))
    workers: int = attrs.field(default=4, validator=integer(1, 32))

    def __attrs_post_init__(self) -> None:
        for tf in self.timeframes:
            timeframe_to_ns(tf)


def _matches(symbol: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(symbol, p.upper()) for p in patterns)


def is_leveraged(base: str, bases: frozenset[str]) -> bool:
    match = LEVERAGED.match(base)
    return bool(match and match["base"] in bases)


def _quote_volume(ticker: Mapping[str, Any]) -> float:
    qv = ticker.get("quoteVolume")
    if qv is None and ticker.get("baseVolume") is not None and ticker.get("last") is not None:
        qv = ticker["baseVolume"] * ticker["last"]
    if qv is None:
        return 0.0
    try:
        qv = float(qv)
    except (TypeError, ValueError):
        return 0.0
    return qv if np.isfinite(qv) else 0.0


def rank_pairs(tickers: Mapping[str, Mapping[str, Any]], markets: Mapping[str, Mapping[str, Any]],
               options: ScannerOptions, market_type: str = "spot") -> list[tuple[str, float]]:
    """(symbol, quote volume), best first, after every filter; ties broken by symbol (deterministic)."""
    kind = "spot" if market_type == "spot" else "swap"
    bases = frozenset(m.get("base", "") for m in markets.values())
    out = []
    for symbol, ticker in tickers.items():
        m = markets.get(symbol)
        if m is None or m.get("active") is False or m.get("type", kind) != kind:
            continue
        if m.get("quote") != options.quote or (kind == "swap" and not m.get("linear", True)):
            continue
        if options.whitelist and not _matches(symbol, options.whitelist):
            continue
        if _matches(symbol, options.blacklist):
            continue
        base = m.get("base", "")
        if options.exclude_leveraged and is_leveraged(base, bases):
            continue
        if options.exclude_stablecoins and base in STABLECOINS:
            continue
        qv = _quote_volume(ticker)
        if qv < options.min_quote_volume:
            continue
        out.append((symbol, qv))
    out.sort(key=lambda item: (-item[1], item[0]))
    return out[: options.top_n]


class PairFailed(DataError):
    """One pair's candles stayed empty or malformed after the retries: it is left out of the cycle."""


@attrs.frozen
class ScanResult:
    """One cycle: the chosen pairs (best first), their candles and the pairs that failed, with why."""

    symbols: tuple[str, ...]
    candles: dict[tuple[str, str], Candles]
    errors: dict[tuple[str, str], str]
    now_ms: int


class Scanner:
    """Picks pairs and fetches their candles; ``make_exchange()`` builds one ccxt instance (called once
    for the scanner itself and once per worker thread)."""

    def __init__(self, make_exchange: Callable[[], Any], options: ScannerOptions = ScannerOptions(),
                 market_type: str = "spot", *, policy: RetryPolicy = RetryPolicy(), clock: Clock = SystemClock()):
        self.make_exchange, self.options, self.market_type = make_exchange, options, market_type
        self.policy, self.clock = policy, clock
        self.exchange = make_exchange()
        self.base_rate_limit = float(getattr(self.exchange, "rateLimit", 0) or 0)
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(options.workers, thread_name_prefix="mlcoord-scan")
        self._seed = random.Random(policy.seed)

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def __enter__(self) -> Scanner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, exchange: Any, fn: Callable[[], Any], what: str, rng: random.Random) -> Any:
        return retrying(fn, self.policy, self.clock, what=what, rng=rng, retry_after=retry_after_header(exchange))

    def _thread_exchange(self) -> tuple[Any, random.Random]:
        state = getattr(self._local, "state", None)
        if state is None:
            exchange = self.make_exchange()
            if self.base_rate_limit and self.options.workers > 1:
                exchange.rateLimit = self.base_rate_limit * self.options.workers
            state = self._local.state = (exchange, random.Random(self._seed.random()))
        return state

    def pick(self) -> list[str]:
        """This cycle's pairs: one ``fetch_tickers`` call, ranked and filtered."""
        rng = random.Random(self.policy.seed)
        markets = self._call(self.exchange, self.exchange.load_markets, "load_markets", rng)
        tickers = self._call(self.exchange, self.exchange.fetch_tickers, "fetch_tickers", rng)
        ranked = rank_pairs(tickers, markets, self.options, self.market_type)
        log.info("scanner_pairs", pairs=[s for s, _ in ranked], candidates=len(tickers))
        return [s for s, _ in ranked]

    def _fetch(self, symbol: str, timeframe: str, now_ms: int, wanted: BarsWanted, page: int,
               screen: Optional[BarScreen] = None, name: Optional[str] = None) -> Candles:
        """The bars ``wanted`` of one pair (:func:`~mlcoord.live.feed.closed_candles`: closed only,
        page by page), on this worker's ccxt instance. An answer that stays empty or malformed
        after the retries raises :class:`PairFailed`, unless a live loop's ``screen`` is given and
        the answer has sound rows: they are used, and the bad ones reported to ``screen`` under
        ``name`` (the symbol as the session names it)."""
        exchange, rng = self._thread_exchange()
        name = name or symbol
        skip = screen.known(name) if screen is not None else frozenset()
        try:
            return self._call(exchange, lambda: closed_candles(exchange, symbol, timeframe, wanted.count, now_ms,
                                                               first_ms=wanted.first_ms, page=page, skip=skip),
                              f"fetch_ohlcv {symbol} {timeframe}", rng)
        except MalformedAnswer as exc:
            sound, bad = salvage(exc)
            if screen is None:
                raise PairFailed(str(exc)) from exc
            screen.report(name, bad, sound)
            if sound is None:
                raise PairFailed(str(exc)) from exc
            return sound

    def _now_ms(self, now_ms: Optional[int]) -> int:
        if now_ms is not None:
            return now_ms
        rng = random.Random(self.policy.seed)
        return int(self._call(self.exchange, lambda: exchange_now_ms(self.exchange), "fetch_time", rng))

    def fetch(self, symbols: Sequence[str], now_ms: Optional[int] = None) -> ScanResult:
        """Closed candles of every (symbol, timeframe), fetched concurrently within the rate limit."""
        now_ms = self._now_ms(now_ms)
        wanted = BarsWanted(self.options.candles)
        jobs = {(s, tf): self._pool.submit(self._fetch, s, tf, now_ms, wanted, CANDLE_PAGE)
                for s in symbols for tf in self.options.timeframes}
        candles, errors = {}, {}
        for key, future in jobs.items():
            try:
                candles[key] = future.result()
            except PairFailed as exc:  # this pair's data is bad: skip it this cycle, keep the others
                errors[key] = str(exc)
                log.warning("scan_pair_failed", symbol=key[0], timeframe=key[1], error=str(exc))
        return ScanResult(tuple(symbols), candles, errors, now_ms)

    def fetch_closed(self, symbols: Sequence[str], timeframe: str, limit: int,
                     now_ms: Optional[int] = None) -> dict[str, Candles]:
        """The last ``limit`` closed candles of one timeframe for every symbol (see :meth:`fetch_bars`)."""
        return self.fetch_bars({s: BarsWanted(limit) for s in symbols}, timeframe, self._now_ms(now_ms))

    def fetch_bars(self, wanted: Mapping[str, BarsWanted], timeframe: str, now_ms: int, *,
                   page: int = CANDLE_PAGE, screen: Optional[BarScreen] = None,
                   names: Optional[Mapping[str, str]] = None) -> dict[str, Candles]:
        """The closed bars ``wanted`` of one timeframe per symbol (the live loop's poll in scan mode,
        where the symbol list is long: every bar missed since the last poll,
        :func:`~mlcoord.live.feed.bars_wanted`), fetched concurrently, ``page`` rows a request. A
        symbol whose answer stays malformed is logged and left out of the answer; the others are
        kept. Bad rows of an answer that has sound ones go to ``screen`` (``names``: ccxt symbol ->
        the session's name for it)."""
        names = names or {}
        jobs = {s: self._pool.submit(self._fetch, s, timeframe, now_ms, w, page, screen, names.get(s))
                for s, w in wanted.items()}
        out = {}
        for symbol, future in jobs.items():
            try:
                out[symbol] = future.result()
            except PairFailed as exc:
                log.warning("scan_pair_failed", symbol=symbol, timeframe=timeframe, error=str(exc))
        return out

    def cycle(self) -> ScanResult:
        """Pick the pairs, then fetch their candles."""
        return self.fetch(self.pick())
