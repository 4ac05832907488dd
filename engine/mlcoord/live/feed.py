"""Closed candles for the paper and live loops: which bars a poll asks for, and their fetch.

A poll asks for every bar closed since the newest one at hand (after a pause or an outage that is
many: all of them, so none is skipped), at most ``limit`` of them; a longer absence leaves a hole
before them, which is logged (``candles_hole``), never silent. The bars come a page of
``[live] candle_page`` rows a request. One module for both fetch paths: the configured symbols'
(:func:`mlcoord.live.runner.fetch_closed`) and the scanner's worker threads'
(:meth:`mlcoord.live.scanner.Scanner.fetch_bars`).
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import attrs
import numpy as np
import structlog

from mlcoord.candles import Candles

log = structlog.get_logger("mlcoord.live.feed")

#: rows per candle request when ``[live] candle_page`` is not given: Binance spot's cap (futures: 1500)
CANDLE_PAGE = 1000


@attrs.frozen
class BarsWanted:
    """The closed bars a poll asks a symbol for: ``count`` of them (0: none can have closed yet),
    the first opening at ``first_ms`` (None: the latest ``count``)."""

    count: int
    first_ms: Optional[int] = None


def bars_wanted(symbols: Sequence[str], known: Optional[Mapping[str, int]], now_ms: int, timeframe: str,
                limit: int) -> dict[str, BarsWanted]:
    """What to ask each symbol for on the exchange's clock ``now_ms``. ``known``: symbol -> open
    time (ns) of the newest bar at hand (a symbol without one gets the latest ``limit``). More
    than ``limit`` bars closed since: the newest ``limit``, and the hole before them logged
    (``candles_hole``: symbol, first and last missing bar, count)."""
    from mlcoord.candles import timeframe_to_ns
    from mlcoord.times import iso

    tf_ms = timeframe_to_ns(timeframe) // 1_000_000
    out = {}
    for s in symbols:
        last = (known or {}).get(s)
        if last is None:
            out[s] = BarsWanted(limit)
            continue
        # bars after ``last`` that have closed: the k-th opens at last + k tf and closes tf later
        last_ms = last // 1_000_000
        missing = (now_ms - last_ms) // tf_ms - 1
        count = min(limit, missing)
        out[s] = BarsWanted(count, last_ms + (missing - count + 1) * tf_ms)
        if missing > limit:
            lost = missing - limit
            log.warning("candles_hole", symbol=s, first=iso((last_ms + tf_ms) * 1_000_000),
                        last=iso((last_ms + lost * tf_ms) * 1_000_000), count=lost, fetched=limit,
                        note=f"{s}: {lost} closed bars missed (more than {limit}) are not processed")
    return out


def closed_candles(exchange: Any, symbol: str, timeframe: str, limit: int, now_ms: int, *,
                   first_ms: Optional[int] = None, page: int = CANDLE_PAGE, skip: frozenset = frozenset()) -> Candles:
    """The last ``limit`` closed candles of ``symbol`` (the still-open one dropped), checked as
    :func:`~mlcoord.candles.candles_from_frame` checks them, on the rows' arrays (a poll's few
    rows would spend milliseconds in pandas).

    ``first_ms``: the open time of the first bar wanted (the ``limit`` bars from it on). When the
    bars do not fit one request of ``page`` rows (the exchange's cap), they are fetched page by
    page from the first one forward (``fetch_ohlcv(since=..., limit=...)``); an exchange that
    caps a page lower than asked is paged on from the last row it sent. An answer with no closed
    row raises :class:`~mlcoord.live.retry.MalformedAnswer` (retried by the caller); so does one
    with a bad closed row (:func:`~mlcoord.live.bar_screen.screen_rows`), with the sound rows
    attached as ``usable`` for the caller to take once the retries are spent
    (:func:`~mlcoord.live.bar_screen.salvage`). ``skip``: open times (ms) of bad rows already
    reported, left out without a retry."""
    from mlcoord.candles import candles_from_rows, timeframe_to_ns
    from mlcoord.errors import DataError
    from mlcoord.live.bar_screen import screen_rows
    from mlcoord.live.retry import MalformedAnswer

    from mlcoord.live.dialects import dialect_for

    where = f"{exchange.id} {symbol} {timeframe}"
    page = min(page, dialect_for(exchange).candle_page)     # the exchange's own cap per request
    tf_ms = timeframe_to_ns(timeframe) // 1_000_000
    bad: list = []
    try:
        if limit + 1 <= page:
            rows = exchange.fetch_ohlcv(symbol, timeframe, limit=limit + 1)
            t, v, bad = screen_rows(rows, where, tf_ms, skip)
            keep = t + tf_ms <= now_ms
            t, v = t[keep][-limit:], v[keep][-limit:]
        else:
            since = first_ms if first_ms is not None else (now_ms // tf_ms - limit) * tf_ms
            end = since + limit * tf_ms                    # open time after the last bar wanted
            times, values = [], []
            while since < end:
                rows = exchange.fetch_ohlcv(symbol, timeframe, since=since, limit=min(page, (end - since) // tf_ms))
                t, v, found = screen_rows(rows, where, tf_ms, skip)
                bad += found
                keep = (t >= since) & (t < end) & (t + tf_ms <= now_ms)
                if not keep.any():
                    if found and len(rows) >= min(page, (end - since) // tf_ms):   # a page of bad rows only
                        since += len(rows) * tf_ms
                        continue
                    break
                times.append(t[keep])
                values.append(v[keep])
                since = int(t[keep][-1]) + tf_ms
            t = np.concatenate(times) if times else np.empty(0, np.int64)
            v = np.concatenate(values) if values else np.empty((0, 5), np.float64)
            if len(times) > 1:
                log.info("catch_up_fetched", symbol=symbol, bars=len(t), pages=len(times))
        bad = [b for b in bad if b.time_ms is None or b.time_ms + tf_ms <= now_ms]   # the open bar is not judged
        if not len(t):
            raise MalformedAnswer(f"{where}: no closed candle in the answer (asked for {limit})", bad=tuple(bad))
        candles = candles_from_rows(t, v, symbol=symbol, timeframe=timeframe, source=f"{exchange.id} {timeframe}")
    except DataError as exc:
        raise MalformedAnswer(str(exc)) from exc
    if bad:
        raise MalformedAnswer(f"{where}: {len(bad)} bad row(s), the first: {bad[0].reason}", usable=candles,
                              bad=tuple(bad))
    return candles
