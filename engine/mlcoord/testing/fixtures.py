"""What the conformance checks feed components: real candles, fake portfolio and position views.

The data is a fixed 3,000-bar slice of the bundled BTC/USDT 1h candles (2023-01-02 to 2023-05-07),
with 4h and 1d views: real prices (gaps, trends, ranges) keep the checks honest, and a slice
keeps them fast. It lies within the shipped ML models' validity, so ML voters do vote on it.
"""

from __future__ import annotations

import copy
import functools
import hashlib
from typing import Optional, Sequence

import attrs
import numpy as np

from mlcoord.model import Side

SYMBOL = "BTC/USDT"
START, BARS = 20_000, 3_000
TIMEFRAMES = ("4h", "1d")


@functools.lru_cache(maxsize=1)
def _bundled_candles():
    from mlcoord.candles import load_candles
    from mlcoord.datasets import bundled_path
    return load_candles(bundled_path(SYMBOL), symbol=SYMBOL)


_cache: dict[str, tuple] = {}


def conformance_data():
    """The kit's MarketData (cached; rebuilt if a misbehaving component changed it in place)."""
    from mlcoord.components import build_market_data
    cached = _cache.get("data")
    if cached is not None and fingerprint(cached[0]) == cached[1]:
        return cached[0]
    if cached is not None:          # changed in place: the candles it came from may be changed too
        _bundled_candles.cache_clear()
    data = build_market_data(_bundled_candles().slice(START, START + BARS), TIMEFRAMES)
    _cache["data"] = (data, fingerprint(data))
    return data


def private_copy(data):
    """A deep copy a check may hand to a component without risking the shared data."""
    return copy.deepcopy(data)


def array_digests(data) -> dict[str, str]:
    """A digest of every array a component can reach through ``data``, by name."""
    arrays: dict[str, np.ndarray] = {}
    c = data.candles
    for name in ("time", "open", "high", "low", "close", "volume"):
        arrays[f"candles.{name}"] = getattr(c, name)
    arrays["candles.frame"] = c.frame.to_numpy()
    for field in attrs.fields(type(data.context)):
        if field.name != "options":
            arrays[f"context.{field.name}"] = getattr(data.context, field.name)
    for tf, higher in data.timeframes.items():
        for name in ("time", "open", "high", "low", "close", "volume"):
            arrays[f"timeframes[{tf}].{name}"] = getattr(higher, name)
    for tf, index in data.timeframe_index.items():
        arrays[f"timeframe_index[{tf}]"] = index
    if data.focus is not None:
        arrays["focus"] = data.focus
    return {name: hashlib.sha256(np.ascontiguousarray(a).tobytes() + str(np.shape(a)).encode()).hexdigest()
            for name, a in arrays.items()}


def fingerprint(data) -> str:
    return hashlib.sha256("".join(sorted(f"{k}={v}" for k, v in array_digests(data).items())).encode()).hexdigest()


@attrs.define
class FakePosition:
    """A :class:`mlcoord.components.PositionView` the kit moves bar by bar, as the engine would."""

    side: Side
    entry_price: float
    opened_index: int
    best_price: float
    symbol: str = SYMBOL
    quantity: float = 1.0
    entries_filled: int = 1
    entries_planned: int = 1


@attrs.define
class FakePortfolio:
    """A :class:`mlcoord.components.PortfolioView` of one net position per symbol (quote notional)."""

    equity: float = 10_000.0
    peak_equity: float = 10_000.0
    cash: float = 10_000.0
    day_start_equity: float = 10_000.0
    time: int = 0
    positions: dict = attrs.field(factory=dict)     # symbol -> net notional (long > 0)
    prices: dict = attrs.field(factory=dict)        # symbol -> last price
    hedge: Optional[str] = None                     # "*" for a portfolio hedge, else a symbol

    @property
    def drawdown(self) -> float:
        return 1.0 - self.equity / self.peak_equity if self.peak_equity > 0 else 0.0

    def open_positions(self) -> int:
        return sum(1 for e in self.positions.values() if e)

    def committed_trades(self) -> int:
        return self.open_positions()

    def committed_exposure(self) -> float:
        return self.gross_exposure()

    def exposure(self, symbol: Optional[str] = None) -> float:
        return self.positions.get(symbol, 0.0) if symbol else float(sum(self.positions.values()))

    def gross_exposure(self) -> float:
        return float(sum(abs(e) for e in self.positions.values()))

    def hedged(self, symbol: Optional[str] = None) -> bool:
        return self.hedge is not None and (symbol is None or self.hedge in ("*", symbol))

    def last_price(self, symbol: str) -> float:
        return self.prices[symbol]

    def symbols(self) -> Sequence[str]:
        return tuple(sorted(self.prices))
