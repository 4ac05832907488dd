"""What the conformance checks feed components: real candles, fake portfolio and position views.

The data is a fixed 3,000-bar slice of the bundled BTC/USDT 1h candles (2023-01-02 to 2023-05-07),
with 4h and 1d views: real prices (gaps, trends, ranges) keep the checks honest, and a slice
keeps them fast. It lies within the shipped ML models' validity, so ML voters do vote on it.
"""

from __future__ import annotations

import copy
import functools
import hashlib
from types import MappingProxyType
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
    # bars of their own: a plugin that changes them in place must not reach the cached candles
    data = build_market_data(_bundled_candles().slice(START, START + BARS, own=True), TIMEFRAMES)
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

    def view(self, levels=None):
        """What the engine hands an exit manager: a snapshot that refuses writes."""
        from mlcoord.views import PositionSnapshot

        return PositionSnapshot(_PositionFields(self), levels.stop if levels else None,
                                levels.take_profit if levels else None)


class _PositionFields:
    """A :class:`FakePosition` in the shape of the ledger's position."""

    def __init__(self, p: FakePosition):
        self.symbol, self.side, self.quantity, self.entry_price = p.symbol, p.side, p.quantity, p.entry_price
        self.opened_index, self.opened_at, self.best_price = p.opened_index, 0, p.best_price
        self.entries_filled, self.entries_planned, self.hedge, self.liquidation_price = \
            p.entries_filled, p.entries_planned, False, 0.0


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

    def view(self) -> "_ReadOnlyPortfolio":
        """What the engine hands a guard: this portfolio as a proxy that refuses writes."""
        return _ReadOnlyPortfolio(self)


class _ReadOnlyPortfolio:
    """A read-only face of a :class:`FakePortfolio`: attributes read through, mappings as
    read-only proxies; every write raises :class:`~mlcoord.views.ReadOnlyViewError`."""

    __slots__ = ("_of",)

    def __init__(self, of: FakePortfolio):
        object.__setattr__(self, "_of", of)

    def __getattr__(self, name):
        value = getattr(self._of, name)
        return MappingProxyType(value) if isinstance(value, dict) else value

    def __setattr__(self, name, value):
        from mlcoord.views import ReadOnlyViewError

        raise ReadOnlyViewError(f"the portfolio's {name} is read-only: guards ask for changes through GuardAction")

    def __delattr__(self, name):
        self.__setattr__(name, None)


def expect_read_only(spec, obj, what: str) -> None:
    """The kit tries attribute, nested and array writes on what it hands a plugin: each must raise,
    so a plugin that writes fails here, not silently inside the engine."""
    from mlcoord.testing.core import expect, who

    leaks = []
    names = [n for n in dir(obj) if not n.startswith("_")]
    for name in names:
        try:
            value = getattr(obj, name)
        except Exception:   # noqa: BLE001 - a property that needs state: not a write target
            continue
        if callable(value):
            continue
        try:
            setattr(obj, name, value)
            leaks.append(f".{name} = ...")
        except (AttributeError, TypeError):
            pass
        if isinstance(value, dict) or (hasattr(value, "__setitem__") and hasattr(value, "keys")):
            for key in list(value.keys())[:1]:
                try:
                    value[key] = value[key]
                    leaks.append(f".{name}[{key!r}] = ...")
                except (TypeError, AttributeError):
                    pass
        elif isinstance(value, list):
            leaks.append(f".{name} is a list (use a tuple)")
        elif isinstance(value, np.ndarray) and value.size and value.flags.writeable:
            leaks.append(f".{name}[0] = ... (a writeable array)")
    expect(not leaks, f"{who(spec)}: {what} accepts writes: {', '.join(leaks)}")
