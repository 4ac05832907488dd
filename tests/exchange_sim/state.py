"""The exchange's state: market clock, replayed candles, and the spot and futures accounts.

The clock stands at the open of the *current* bar: its open is the last traded price, klines show
it as a just-opened candle (high = low = close = open, volume 0) and nothing later is visible.
:meth:`ExchangeState.advance` plays the current bar's whole range against resting orders, moves the
clock one bar on, and charges funding at every 8h boundary it crosses.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Callable

import numpy as np

from .coverage import StopCoverage
from .markets import FUTURES_MARKETS, HOUR_MS, SPOT_MARKETS, MarketSpec, Series, bundled_series, dec

FUNDING_INTERVAL_MS = 8 * HOUR_MS


class BinanceError(Exception):
    """A Binance error response: HTTP status plus the ``{"code": ..., "msg": ...}`` body (and its
    ``data``, which a partly failed cancel-replace carries)."""

    def __init__(self, code: int, msg: str, status: int = 400, data: dict | None = None) -> None:
        super().__init__(f"{code} {msg}")
        self.code, self.msg, self.status, self.data = code, msg, status, data

    def body(self) -> dict:
        return {"code": self.code, "msg": self.msg} | ({} if self.data is None else {"data": self.data})


@dataclass(frozen=True)
class Bar:
    time: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


@dataclass
class Order:
    """An order as the matching engine tracks it (spot, futures or futures algo)."""

    order_id: int
    client_id: str
    symbol: str  # exchange id, "BTCUSDT"
    side: str  # BUY / SELL
    type: str
    qty: Decimal
    price: Decimal | None
    stop_price: Decimal | None
    time: int
    time_in_force: str = "GTC"
    status: str = "NEW"
    executed: Decimal = Decimal(0)
    cum_quote: Decimal = Decimal(0)
    update_time: int = 0
    position_side: str = "BOTH"
    reduce_only: bool = False
    close_position: bool = False
    callback_rate: Decimal | None = None
    activation_price: Decimal | None = None
    peak: Decimal | None = None  # trailing stops: best price since activation
    triggered: bool = False
    fill_fraction: Decimal | None = None  # fault-injected partial fills: max share of qty per fill
    locked: Decimal = Decimal(0)  # spot: funds still reserved for the unfilled part
    child_id: int | None = None  # algo orders: the order placed on trigger
    trades: list = field(default_factory=list)

    @property
    def remaining(self) -> Decimal:
        return self.qty - self.executed

    @property
    def is_open(self) -> bool:
        return self.status in ("NEW", "PARTIALLY_FILLED")

    @property
    def avg_price(self) -> Decimal:
        return self.cum_quote / self.executed if self.executed else Decimal(0)


FundingRate = Callable[[str, int], float]


@dataclass
class Options:
    """Exchange behaviour that tests may change (every default is Binance's for a VIP 0 account)."""

    spot_maker_fee: Decimal = Decimal("0.001")
    spot_taker_fee: Decimal = Decimal("0.001")
    futures_maker_fee: Decimal = Decimal("0.0002")
    futures_taker_fee: Decimal = Decimal("0.0005")
    default_leverage: int = 20
    # "open": a client order id must be unique among OPEN orders (Binance's documented rule; a
    # filled order's id may be reused); "all": unique forever (stricter, catches sloppy retries).
    duplicate_client_ids: str = "open"
    # Share of a bar's volume a resting order may take per bar (None: no cap); gives natural
    # partial fills on thin bars.
    max_volume_fraction: float | None = None
    check_timestamp: bool = True  # reject signed requests outside recvWindow (-1021)


class ExchangeState:
    """All mutable exchange state behind one lock (HTTP handler threads and ``advance``)."""

    def __init__(self, *, series: dict[str, Series] | None = None,
                 spot_markets: tuple[MarketSpec, ...] = SPOT_MARKETS,
                 futures_markets: tuple[MarketSpec, ...] = FUTURES_MARKETS,
                 start: int | str | None = 1000, spot_balances: dict | None = None,
                 futures_wallet: float = 10_000, funding_rate: float | FundingRate = 0.0001,
                 options: Options | None = None) -> None:
        from .futures import FuturesAccount
        from .spot import SpotAccount

        symbols = {m.symbol for m in (*spot_markets, *futures_markets)}
        self.series = series or {s: bundled_series(s) for s in symbols}
        self.options = options or Options()
        self.lock = threading.RLock()
        self.spot_markets = {m.id: m for m in spot_markets}
        self.futures_markets = {m.id: m for m in futures_markets}
        self._by_id = {m.id: m.symbol for m in (*spot_markets, *futures_markets)}
        first = self.series[next(iter(sorted(symbols)))]
        self.step_ms = first.step_ms
        self.now_ms = self._start_time(first, start)
        self.first_ms = min(int(s.time[0]) for s in self.series.values())
        self.funding_rate = funding_rate
        self._ids = 0
        self.spot = SpotAccount(self, spot_balances or {"USDT": 10_000})
        self.futures = FuturesAccount(self, dec(futures_wallet))
        self.coverage = StopCoverage(self)    # when a holding had no resting stop

    @staticmethod
    def _start_time(series: Series, start) -> int:
        if start is None:
            return int(series.time[0])
        if isinstance(start, str):
            import pandas as pd

            return int(pd.Timestamp(start, tz="UTC").value // 1_000_000)
        if start < len(series.time):  # a bar index
            return int(series.time[start])
        return int(start)  # a timestamp in ms

    # --- ids and prices -------------------------------------------------------------------------
    def next_id(self) -> int:
        self._ids += 1
        return self._ids

    def unified(self, market_id: str) -> str:
        return self._by_id[market_id]

    def bar_at(self, market_id: str, time_ms: int) -> Bar | None:
        s = self.series[self.unified(market_id)]
        i = s.index_at(time_ms)
        if i < 0 or s.time[i] != time_ms:
            return None
        return Bar(int(s.time[i]), dec(s.open[i]), dec(s.high[i]), dec(s.low[i]), dec(s.close[i]),
                   dec(s.volume[i]))

    def price(self, market_id: str) -> Decimal:
        """Last traded price: the current bar's open, else the last close before the clock."""
        s = self.series[self.unified(market_id)]
        i = s.index_at(self.now_ms)
        if i < 0:
            raise BinanceError(-1121, "Invalid symbol.")
        return dec(s.open[i]) if s.time[i] == self.now_ms else dec(s.close[i])

    def funding_rate_at(self, market_id: str, time_ms: int) -> Decimal:
        rate = self.funding_rate
        return dec(rate(self.unified(market_id), time_ms) if callable(rate) else rate)

    # --- the clock --------------------------------------------------------------------------------
    def advance(self, bars: int = 1) -> int:
        """Replay ``bars`` bars: fill/trigger resting orders on each bar's range, then move on."""
        with self.lock:
            for _ in range(bars):
                for market_id in self.spot_markets:
                    bar = self.bar_at(market_id, self.now_ms)
                    if bar is not None:
                        self.spot.on_bar(market_id, bar)
                for market_id in self.futures_markets:
                    bar = self.bar_at(market_id, self.now_ms)
                    if bar is not None:
                        self.futures.on_bar(market_id, bar)
                self.now_ms += self.step_ms
                if self.now_ms % FUNDING_INTERVAL_MS == 0:
                    self.futures.apply_funding(self.now_ms)
                self.coverage.observe("bar", at_ms=self.now_ms - self.step_ms)
            return self.now_ms

    def volume_cap(self, bar: Bar) -> Decimal | None:
        frac = self.options.max_volume_fraction
        return None if frac is None else bar.volume * dec(frac)

    # --- market data ------------------------------------------------------------------------------
    def klines(self, market_id: str, interval_ms: int, start: int | None, end: int | None,
               limit: int) -> list[list]:
        """Binance klines as of the clock: complete bars, then the current one as just opened."""
        s = self.series[self.unified(market_id)]
        i_now = s.index_at(self.now_ms)
        t, o, h, l, c, v = (a[: i_now + 1].copy() for a in (s.time, s.open, s.high, s.low, s.close,
                                                             s.volume))
        if len(t) and t[-1] == self.now_ms:  # the forming bar: only its open is known
            h[-1] = l[-1] = c[-1] = o[-1]
            v[-1] = 0.0
        if interval_ms != s.step_ms:
            t, o, h, l, c, v = _resample(t, o, h, l, c, v, interval_ms)
        lo = 0 if start is None else int(np.searchsorted(t, start, side="left"))
        hi = len(t) if end is None else int(np.searchsorted(t, end, side="right"))
        rows = range(lo, min(hi, lo + limit)) if start is not None else range(max(lo, hi - limit), hi)
        return [[int(t[k]), f"{o[k]:.8f}", f"{h[k]:.8f}", f"{l[k]:.8f}", f"{c[k]:.8f}",
                 f"{v[k]:.8f}", int(t[k]) + interval_ms - 1, f"{v[k] * c[k]:.8f}", 0, "0", "0", "0"]
                for k in rows]

    def ticker(self, market_id: str) -> dict:
        """24h rolling statistics from the last 24 complete bars plus the current open."""
        s = self.series[self.unified(market_id)]
        i = s.index_at(self.now_ms)
        current = s.time[i] == self.now_ms
        last = float(s.open[i] if current else s.close[i])
        done = i if current else i + 1
        lo = max(0, done - 24)
        highs, lows = list(s.high[lo:done]) + [last], list(s.low[lo:done]) + [last]
        vol = float(np.sum(s.volume[lo:done]))
        qvol = float(np.sum(s.volume[lo:done] * s.close[lo:done]))
        open_ = float(s.open[lo]) if done > lo else last
        tick = (self.spot_markets.get(market_id) or self.futures_markets[market_id]).tick
        return {"symbol": market_id, "priceChange": f"{last - open_:.8f}",
                "priceChangePercent": f"{(last / open_ - 1) * 100:.3f}",
                "weightedAvgPrice": f"{(qvol / vol if vol else last):.8f}",
                "prevClosePrice": f"{float(s.close[done - 1]) if done else last:.8f}",
                "lastPrice": f"{last:.8f}", "lastQty": "0.00000000",
                "bidPrice": f"{last - float(tick):.8f}", "bidQty": "1.00000000",
                "askPrice": f"{last:.8f}", "askQty": "1.00000000",
                "openPrice": f"{open_:.8f}", "highPrice": f"{max(highs):.8f}",
                "lowPrice": f"{min(lows):.8f}", "volume": f"{vol:.8f}", "quoteVolume": f"{qvol:.8f}",
                "openTime": int(self.now_ms - 24 * HOUR_MS), "closeTime": int(self.now_ms),
                "firstId": 0, "lastId": 0, "count": int(done - lo)}


def _resample(t, o, h, l, c, v, interval_ms: int):
    """Aggregate to a larger interval with UTC-aligned buckets (weeks open on Mondays)."""
    if len(t) == 0:
        return t, o, h, l, c, v
    origin = 4 * 86_400_000 if interval_ms == 7 * 86_400_000 else 0
    bucket = (t - origin) // interval_ms * interval_ms + origin
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    return (bucket[starts], o[starts], np.maximum.reduceat(h, starts), np.minimum.reduceat(l, starts),
            c[np.r_[starts[1:] - 1, len(c) - 1]], np.add.reduceat(v, starts))
