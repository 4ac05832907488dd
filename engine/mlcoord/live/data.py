"""Downloading candles and funding rates through ccxt into a local Parquet store.

Layout: ``STORE/<exchange>/<market>/<BASE>_<QUOTE>[_<SETTLE>]-<timeframe>.parquet`` (freqtrade's
names, so :func:`mlcoord.candles.load_candles` reads a file on its own),
``...-<timeframe>-mark.parquet`` for a perpetual's mark-price candles (``--mark``) and
``...-funding.parquet`` for its funding history.

* Pagination: ``fetch_ohlcv(since, limit)`` from the last row received until the exchange's
  current time; ccxt's ``enableRateLimit`` spaces the requests.
* Incremental: a second run starts at the last stored candle (re-fetched and replaced, in case
  the exchange corrected it) and fetches only what is newer; a ``--since`` before the store's
  first candle back-fills the missing head.
* Only closed candles are kept: a candle whose close time (open + timeframe) is after the
  exchange's clock is dropped, so the store never holds a bar that will still change.
* Every response is checked (shape, numbers, NaN, negatives, order) and the merged series is
  validated by :func:`mlcoord.candles.candles_from_frame`; a bad response raises
  :class:`DownloadError` naming exchange, symbol, timeframe and row, and nothing is written.
* Files are written atomically (temporary file, fsync, rename, fsync of the directory): a crash
  leaves the previous file or the new one, never half of one.
* Transient errors are retried by :func:`mlcoord.live.retry.retrying` on an injectable clock.
"""

from __future__ import annotations

import math
from pathlib import Path
from functools import partial
from typing import Any, Callable, Iterable, Optional, Sequence, TypeGuard

import attrs
import numpy as np
import pandas as pd
import structlog

from mlcoord.candles import candles_from_frame, rows_frame, timeframe_to_ns
from mlcoord.errors import DataError
from mlcoord.datastore import (
    MS, DownloadError, _read_parquet, _stored_frame, candles_path, funding_path, mark_path, read_stored,
    save_store_instruments, write_parquet_atomic,
)
from mlcoord.live.exchange import exchange_now_ms, market_symbol
from mlcoord.model.instruments import instrument_from_ccxt
from mlcoord.live.retry import Clock, RetryPolicy, SystemClock, retry_after_header, retrying

log = structlog.get_logger("mlcoord.live.data")

DEFAULT_LIMIT = 1000  # rows per request: Binance spot's maximum (futures allow 1500)


# -- checking responses ----------------------------------------------------------------------------
def _number(x: Any) -> TypeGuard[int | float | np.integer | np.floating]:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


def _finite(x: Any) -> Optional[float]:
    """``x`` as a float if it is a finite number (a bool is not one), else None."""
    return float(x) if _number(x) and math.isfinite(x) else None


def ohlcv_row_problem(row: Any) -> Optional[str]:
    """What is wrong with one ``[ms, o, h, l, c, v]`` row on its own (None: nothing): its shape,
    a value that is not a finite number, a timestamp that is not whole ms since 1970, a price that
    is not positive, a negative volume. (High against low is :func:`mlcoord.candles`' check.)"""
    if not isinstance(row, (list, tuple)) or len(row) != 6:
        return "wrong shape (expected [timestamp, open, high, low, close, volume])"
    if not all(_number(x) for x in row):
        return "a missing or non-numeric value"
    if not all(math.isfinite(x) for x in row):
        return "NaN or infinite value"
    if row[0] != int(row[0]) or row[0] < 0:
        return "timestamp is not a whole number of ms since 1970"
    if min(row[1:5]) <= 0 or row[5] < 0:
        return "negative or zero price, or negative volume"
    return None


def validate_ohlcv(rows: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
    """``[[ms, o, h, l, c, v], ...]`` -> (int64 ms, float (n, 5)); refuses anything else, naming the row."""
    if not isinstance(rows, (list, tuple)):
        raise DownloadError(f"{where}: malformed OHLCV response: expected a list of rows, got {type(rows).__name__}")
    times = np.empty(len(rows), np.int64)
    values = np.empty((len(rows), 5), np.float64)
    for i, row in enumerate(rows):
        def bad(what: str) -> DownloadError:
            return DownloadError(f"{where}: malformed OHLCV response, row {i}: {what}: {row!r}")
        problem = ohlcv_row_problem(row)
        if problem is not None:
            raise bad(problem)
        times[i] = int(row[0])
        values[i] = row[1:]
        if i and times[i] <= times[i - 1]:
            raise bad(f"timestamps not increasing ({times[i - 1]} then {times[i]})")
    return times, values


def validate_funding(rows: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
    """ccxt funding-rate history -> (int64 ms, float rates); refuses malformed rows, naming them."""
    if not isinstance(rows, (list, tuple)):
        raise DownloadError(f"{where}: malformed funding response: expected a list, got {type(rows).__name__}")
    times, rates = np.empty(len(rows), np.int64), np.empty(len(rows), np.float64)
    for i, row in enumerate(rows):
        t = _finite(row.get("timestamp")) if isinstance(row, dict) else None
        r = _finite(row.get("fundingRate")) if isinstance(row, dict) else None
        if t is None or r is None or t < 0:
            raise DownloadError(f"{where}: malformed funding response, row {i}: expected a finite timestamp "
                                f"and fundingRate: {row!r}")
        if abs(r) >= 1:
            raise DownloadError(f"{where}: malformed funding response, row {i}: funding rate {r!r} is not a "
                                f"fraction per interval")
        times[i], rates[i] = int(t), float(r)
        if i and times[i] <= times[i - 1]:
            raise DownloadError(f"{where}: malformed funding response, row {i}: timestamps not increasing")
    return times, rates


# -- downloading ---------------------------------------------------------------------------------------
@attrs.frozen
class DownloadReport:
    """What one file received: rows fetched, rows new to the store, rows stored, requests made."""

    symbol: str
    timeframe: str  # "funding" for the funding history
    path: Path
    fetched: int
    added: int
    stored: int
    requests: int
    first: Optional[pd.Timestamp] = None
    last: Optional[pd.Timestamp] = None

    def line(self) -> str:
        span = f"{self.first:%Y-%m-%d %H:%M} -> {self.last:%Y-%m-%d %H:%M}" if self.first is not None else "empty"
        return (f"{self.symbol} {self.timeframe}: +{self.added} new ({self.fetched} fetched in {self.requests} "
                f"request(s)), {self.stored} stored, {span} -> {self.path}")


class Downloader:
    """Downloads into ``root`` through one ccxt ``exchange`` object (public data needs no keys).

    ``market`` (``spot``/``futures``) names the store directory and turns ``BTC/USDT`` into the
    perpetual ``BTC/USDT:USDT`` on futures. ``limit`` rows per request (default 1000).
    """

    def __init__(self, exchange: Any, root, market: str = "spot", *, policy: RetryPolicy = RetryPolicy(),
                 clock: Clock = SystemClock(), limit: int = DEFAULT_LIMIT):
        import random

        self.exchange, self.root, self.market = exchange, Path(root), market
        self.policy, self.clock, self.limit = policy, clock, limit
        self._rng = random.Random(policy.seed)
        self._retry_after = retry_after_header(exchange)
        self.requests = 0

    @property
    def exchange_id(self) -> str:
        return str(self.exchange.id)

    def call(self, fn: Callable[[], Any], what: str) -> Any:
        def counted():
            self.requests += 1
            return fn()
        return retrying(counted, self.policy, self.clock, what=what, rng=self._rng, retry_after=self._retry_after)

    def now_ms(self) -> int:
        return int(self.call(lambda: exchange_now_ms(self.exchange), "fetch_time"))

    def resolve(self, symbol: str) -> str:
        """The ccxt symbol on this market; an unknown one is an error suggesting close matches."""
        import difflib

        wanted = market_symbol(symbol, self.market)
        markets = self.call(self.exchange.load_markets, "load_markets") or {}
        if wanted not in markets:
            close = difflib.get_close_matches(wanted, list(markets), n=3)
            raise DownloadError(f"{self.exchange_id} {self.market}: unknown symbol {wanted!r}"
                                + (f"; did you mean {', '.join(close)}?" if close else ""))
        try:    # the exchange's tick, lot and minimum order: backtests round and refuse orders by them
            rules = instrument_from_ccxt(wanted, markets[wanted], int(getattr(self.exchange, "precisionMode", 4)))
            save_store_instruments(self.root, self.exchange_id, self.market, {wanted: rules})
        except (TypeError, ValueError) as exc:
            log.warning("instrument_rules_unreadable", symbol=wanted, error=str(exc))
        return wanted

    # candles
    def _fetch_range(self, symbol: str, timeframe: str, since: int, until: int,
                     mark: bool = False) -> tuple[np.ndarray, np.ndarray, int]:
        """Closed candles with open time in [since, until) ms, page by page (``mark``: the
        perpetual's mark-price candles). Returns times, values, rows fetched."""
        tf_ms = timeframe_to_ns(timeframe) // MS
        where = f"{self.exchange_id} {symbol} {timeframe}{' mark' if mark else ''}"
        fetch, name = ((self.exchange.fetch_mark_ohlcv, "fetch_mark_ohlcv") if mark
                       else (self.exchange.fetch_ohlcv, "fetch_ohlcv"))
        times, values, fetched = [], [], 0
        while since < until:
            rows = self.call(partial(fetch, symbol, timeframe, since=since, limit=self.limit),
                             f"{name} {symbol} {timeframe}")
            if mark:    # mark prices have no volume: some exchanges send 0, others nothing
                rows = _zero_missing_volume(rows)
            t, v = validate_ohlcv(rows, f"{where} (page since {pd.Timestamp(since, unit='ms', tz='UTC')})")
            fetched += len(t)
            keep = t >= since  # some exchanges start a page before `since`
            t, v = t[keep], v[keep]
            if not len(t):
                break
            times.append(t)
            values.append(v)
            since = int(t[-1]) + tf_ms
        if not times:
            return np.empty(0, np.int64), np.empty((0, 5)), fetched
        t, v = np.concatenate(times), np.concatenate(values)
        keep = t < until
        return t[keep], v[keep], fetched

    def candles(self, symbol: str, timeframe: str, since_ms: int, now_ms: Optional[int] = None,
                mark: bool = False) -> DownloadReport:
        """Bring one (symbol, timeframe) file up to date from ``since_ms`` (or its last stored
        candle); ``mark``: the perpetual's mark-price candles (futures only)."""
        timeframe_to_ns(timeframe)
        if mark and self.market != "futures":
            raise DataError(f"{self.exchange_id}: mark prices are a perpetual's; download them with --market futures")
        symbol = self.resolve(symbol)
        start_requests = self.requests
        now_ms = self.now_ms() if now_ms is None else now_ms
        tf_ms = timeframe_to_ns(timeframe) // MS
        closed_until = now_ms - tf_ms + 1  # open time <= now - tf: the candle has closed
        path = (mark_path(self.root, self.exchange_id, symbol, timeframe) if mark
                else candles_path(self.root, self.exchange_id, self.market, symbol, timeframe))
        fetch_range = partial(self._fetch_range, mark=mark)
        label = f"{timeframe} mark" if mark else timeframe
        stored = read_stored(path, symbol, timeframe)
        parts: list[tuple[np.ndarray, np.ndarray]] = []
        fetched = 0
        if stored is not None and len(stored):
            first_ms, last_ms = int(stored.time[0] // MS), int(stored.time[-1] // MS)
            if since_ms < first_ms:  # back-fill the head the store does not have
                t, v, n = fetch_range(symbol, timeframe, since_ms, first_ms)
                parts.append((t, v))
                fetched += n
            parts.append((stored.time // MS, np.column_stack([stored.open, stored.high, stored.low, stored.close,
                                                              stored.volume])))
            # from the last stored candle (re-fetched: the exchange may have corrected it), but only
            # when a newer one can have closed since: an up-to-date file costs no request
            if last_ms + tf_ms < closed_until:
                t, v, n = fetch_range(symbol, timeframe, last_ms, closed_until)
            else:
                t, v, n = np.empty(0, np.int64), np.empty((0, 5)), 0
        else:
            t, v, n = fetch_range(symbol, timeframe, since_ms, closed_until)
        parts.append((t, v))
        fetched += n
        merged = _merge(parts)
        before = 0 if stored is None else len(stored)
        if not len(merged):
            log.warning("no_candles", exchange=self.exchange_id, symbol=symbol, timeframe=label,
                        since=pd.Timestamp(since_ms, unit="ms", tz="UTC").isoformat())
            return DownloadReport(symbol, label, path, fetched, 0, before, self.requests - start_requests)
        candles = candles_from_frame(merged, symbol=symbol, timeframe=timeframe,
                                     source=f"{self.exchange_id} {self.market} {label} download")
        if stored is None or not candles.frame.equals(stored.frame):
            write_parquet_atomic(_stored_frame(candles), path)
        report = DownloadReport(symbol, label, path, fetched, len(candles) - before, len(candles),
                                self.requests - start_requests, candles.frame.index[0], candles.frame.index[-1])
        log.info("candles_downloaded", exchange=self.exchange_id, market=self.market, symbol=symbol,
                 timeframe=label, fetched=fetched, added=report.added, stored=report.stored,
                 requests=report.requests, gaps=len(candles.gaps))
        return report

    # funding
    def funding(self, symbol: str, since_ms: int, now_ms: Optional[int] = None) -> DownloadReport:
        """Bring a perpetual's funding-rate history up to date (from its last stored event)."""
        symbol = self.resolve(symbol)
        start_requests = self.requests
        now_ms = self.now_ms() if now_ms is None else now_ms
        path = funding_path(self.root, self.exchange_id, self.market, symbol)
        raw = _read_parquet(path)
        old_t = np.empty(0, np.int64) if raw is None else (
            pd.DatetimeIndex(raw["time"]).as_unit("ns").asi8 // MS)
        old_r = np.empty(0) if raw is None else raw["rate"].to_numpy(np.float64)
        since = int(old_t[-1]) + 1 if len(old_t) else since_ms
        where = f"{self.exchange_id} {symbol} funding"
        times, rates, fetched = [old_t], [old_r], 0
        while since <= now_ms:
            rows = self.call(partial(self.exchange.fetch_funding_rate_history, symbol, since=since, limit=self.limit),
                             f"fetch_funding_rate_history {symbol}")
            t, r = validate_funding(rows, f"{where} (page since {pd.Timestamp(since, unit='ms', tz='UTC')})")
            fetched += len(t)
            keep = (t >= since) & (t <= now_ms)
            if not keep.any():
                break
            times.append(t[keep])
            rates.append(r[keep])
            since = int(t[keep][-1]) + 1
        t, r = np.concatenate(times), np.concatenate(rates)
        t, first = np.unique(t[::-1], return_index=True)  # dedupe, keeping the last received
        r = r[::-1][first]
        added = len(t) - len(old_t)
        if added:
            write_parquet_atomic(pd.DataFrame({"time": pd.to_datetime(t, unit="ms", utc=True), "rate": r}), path)
        span = (pd.Timestamp(int(t[0]), unit="ms", tz="UTC"), pd.Timestamp(int(t[-1]), unit="ms", tz="UTC")) \
            if len(t) else (None, None)
        log.info("funding_downloaded", exchange=self.exchange_id, symbol=symbol, added=added, stored=len(t))
        return DownloadReport(symbol, "funding", path, fetched, added, len(t), self.requests - start_requests, *span)

    def download(self, symbols: Sequence[str], timeframes: Sequence[str], since_ms: int,
                 funding: bool = True, progress: Optional[bool] = None, mark: bool = False) -> list[DownloadReport]:
        """Every (symbol, timeframe), plus funding history on futures and, with ``mark``, the
        perpetuals' mark-price candles; one clock reading per call.

        ``progress``: a bar with rate and time left (None: only on a terminal)."""
        from tqdm import tqdm

        has = getattr(self.exchange, "has", {}) or {}
        if mark and self.market != "futures":
            raise DataError(f"{self.exchange_id}: mark prices are a perpetual's; download them with --market futures")
        if mark and not has.get("fetchMarkOHLCV"):
            raise DataError(f"{self.exchange_id}: ccxt cannot fetch its mark-price candles (no fetchMarkOHLCV); "
                            f"leave out --mark")
        now_ms = self.now_ms()
        # (symbol, timeframe, kind): kind "" candles, "mark" mark prices, "funding" (no timeframe)
        jobs: list[tuple[str, str, str]] = [(s, tf, "") for s in symbols for tf in timeframes]
        jobs += [(s, tf, "mark") for s in symbols for tf in timeframes] if mark else []
        with_funding = funding and self.market == "futures"
        if with_funding and not has.get("fetchFundingRateHistory"):
            log.warning("no_funding_history", exchange=self.exchange_id)
            with_funding = False
        jobs += [(s, "", "funding") for s in symbols] if with_funding else []
        reports = []
        with tqdm(total=len(jobs), unit="file", desc="download", leave=False,
                  disable=None if progress is None else not progress) as bar:
            for symbol, timeframe, kind in jobs:
                bar.set_postfix_str(f"{symbol} {timeframe} {kind}".strip())
                reports.append(self.funding(symbol, since_ms, now_ms) if kind == "funding"
                               else self.candles(symbol, timeframe, since_ms, now_ms, mark=kind == "mark"))
                bar.update()
        return reports


def _zero_missing_volume(rows: Any) -> Any:
    """Mark-price rows with a missing volume (None) given volume 0; anything else as it came."""
    if not isinstance(rows, (list, tuple)):
        return rows
    return [[*row[:5], 0.0] if isinstance(row, (list, tuple)) and len(row) == 6 and row[5] is None else row
            for row in rows]


def _merge(parts: Iterable[tuple[np.ndarray, np.ndarray]]) -> pd.DataFrame:
    """Rows of all parts by time, a later part's row replacing an earlier one at the same time."""
    parts = [p for p in parts if len(p[0])]
    if not parts:
        return rows_frame(np.empty(0, np.int64), np.empty((0, 5)))
    t = np.concatenate([p[0] for p in parts])
    v = np.concatenate([p[1] for p in parts])
    frame = rows_frame(t, v)
    frame = frame[~frame.index.duplicated(keep="last")]
    return frame.sort_index(kind="stable")


def parse_since(text: str) -> int:
    """``2021-01-01`` / ``20210101`` / an ISO time (UTC) -> ms since epoch."""
    try:
        ts = pd.Timestamp(text)
    except ValueError:
        raise DataError(f"--since {text!r} must be a date like 2021-01-01") from None
    ts = ts.tz_localize("UTC") if ts.tz is None else ts.tz_convert("UTC")
    return int(ts.value // MS)
