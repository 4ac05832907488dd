"""What the conformance checks feed components: real candles, fake portfolio and position views.

The data is a fixed 3,000-bar slice of the bundled BTC/USDT 1h candles (2023-01-02 to 2023-05-07),
with 4h and 1d views and the bundled ETH/USDT bars of the same hours as a peer (``data.inputs``,
so a component reading other symbols is checked too; no funding: the bundled data has none):
real prices (gaps, trends, ranges) keep the checks honest, and a slice keeps them fast. It lies
within the shipped ML models' validity, so ML voters do vote on it.
"""

from __future__ import annotations

import copy
import functools
import hashlib
from typing import Mapping, Optional

import attrs
import numpy as np
import pandas as pd

from mlcoord.model import Side
from mlcoord.views import PendingEntry, PortfolioSnapshot, PositionSnapshot  # noqa: F401  (PendingEntry: for users)

SYMBOL = "BTC/USDT"
START, BARS = 20_000, 3_000
TIMEFRAMES = ("4h", "1d")


PEER = "ETH/USDT"


@functools.lru_cache(maxsize=2)
def _bundled_candles(symbol: str = SYMBOL):
    from mlcoord.candles import load_candles
    from mlcoord.datasets import bundled_path
    return load_candles(bundled_path(symbol), symbol=symbol)


_cache: dict[str, tuple] = {}


def conformance_data():
    """The kit's MarketData (cached; rebuilt if a misbehaving component changed it in place)."""
    from mlcoord.components import build_market_data
    cached = _cache.get("data")
    if cached is not None and fingerprint(cached[0]) == cached[1]:
        for array in _arrays(cached[0]).values():     # a plugin may have made one writeable, and not written
            array.flags.writeable = False
        return cached[0]
    if cached is not None:          # changed in place: the candles it came from may be changed too
        _bundled_candles.cache_clear()
    # bars of their own: a plugin that changes them in place must not reach the cached candles
    from mlcoord.market_inputs import MarketInputs
    peer = _bundled_candles(PEER).slice(START, START + BARS, own=True)
    data = build_market_data(_bundled_candles().slice(START, START + BARS, own=True), TIMEFRAMES,
                             inputs=MarketInputs(peers={PEER: peer}))
    _cache["data"] = (data, fingerprint(data))
    return data


def private_copy(data):
    """A deep copy a check may hand to a component without risking the shared data: as read-only
    as the engine's (a deep copy of a numpy array is writeable; these are frozen again)."""
    copied = copy.deepcopy(data)
    for c in (copied.candles, *_input_candles(copied).values()):
        object.__setattr__(c, "_frame", None)              # rebuilt on demand from the read-only arrays
    for array in _arrays(copied).values():
        array.flags.writeable = False
    return copied


def _arrays(data) -> dict[str, np.ndarray]:
    """Every array a component can reach through ``data``, by name."""
    arrays: dict[str, np.ndarray] = {}
    c = data.candles
    for name in ("time", "open", "high", "low", "close", "volume"):
        arrays[f"candles.{name}"] = getattr(c, name)
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
    for where, c in _input_candles(data).items():
        for name in ("time", "open", "high", "low", "close", "volume"):
            arrays[f"{where}.{name}"] = getattr(c, name)
    if data.inputs.funding is not None:
        arrays["inputs.funding.time"], arrays["inputs.funding.rate"] = data.inputs.funding.time, data.inputs.funding.rate
    return arrays


def _input_candles(data) -> dict:
    """The candles in ``data.inputs`` by where they are (``inputs.spot``, ``inputs.peers[ETH/USDT]``...)."""
    i = data.inputs
    found = {f"inputs.{k}": getattr(i, k) for k in ("spot", "perpetual", "mark") if getattr(i, k) is not None}
    return {**found, **{f"inputs.peers[{s}]": c for s, c in i.peers.items()}}


def array_digests(data) -> dict[str, str]:
    """A digest of every array a component can reach through ``data``, by name."""
    arrays = _arrays(data)
    arrays["candles.frame"] = data.candles.frame.to_numpy()
    return {name: hashlib.sha256(np.ascontiguousarray(a).tobytes() + str(np.shape(a)).encode()).hexdigest()
            for name, a in arrays.items()}


def fingerprint(data) -> str:
    return hashlib.sha256("".join(sorted(f"{k}={v}" for k, v in array_digests(data).items())).encode()).hexdigest()


@attrs.define
class FakePosition:
    """An open position (or a hedge leg) the kit moves bar by bar, as the engine's ledger would;
    plugins get it through :meth:`view`, never itself."""

    side: Side
    entry_price: float
    opened_index: int
    best_price: float
    symbol: str = SYMBOL
    quantity: float = 1.0
    entries_filled: int = 1
    entries_planned: int = 1
    hedge: bool = False
    opened_at: int = 0
    liquidation_price: float = 0.0

    def view(self, levels=None) -> PositionSnapshot:
        """What the engine hands an exit manager: the engine's snapshot, which refuses writes."""
        return PositionSnapshot(self, levels.stop if levels else None, levels.take_profit if levels else None)


@attrs.define
class FakePortfolio:
    """The account the kit moves bar by bar: positions and hedge legs (:class:`FakePosition`),
    working entries (:class:`mlcoord.views.PendingEntry`), last prices and hedge triggers
    (``(guard, symbol or None) -> fraction``). Plugins get :meth:`view`, the engine's own
    :class:`~mlcoord.views.PortfolioSnapshot`: every write into it, or into what it holds, raises.
    The figures (``drawdown``, ``exposure()``, ...) are the snapshot's, so they match the engine's."""

    equity: float = 10_000.0
    peak_equity: float = 10_000.0
    cash: float = 10_000.0
    day_start_equity: float = 10_000.0
    time: int = 0
    positions: list = attrs.field(factory=list)          # FakePosition, hedge legs with hedge=True
    pending_entries: list = attrs.field(factory=list)    # PendingEntry
    prices: dict = attrs.field(factory=dict)             # symbol -> last price (symbols() in this order)
    hedge_triggers: dict = attrs.field(factory=dict)     # (guard, symbol or None) -> fraction

    def view(self) -> PortfolioSnapshot:
        """What the engine hands a guard: a snapshot that refuses writes."""
        return PortfolioSnapshot(equity=self.equity, peak_equity=self.peak_equity, cash=self.cash,
                                 day_start_equity=self.day_start_equity, time=self.time,
                                 positions=[p.view() for p in self.positions], pending_entries=self.pending_entries,
                                 prices=self.prices, hedge_triggers=self.hedge_triggers)

    @property
    def drawdown(self) -> float:
        return self.view().drawdown

    def open_positions(self) -> int:
        return self.view().open_positions()

    def committed_trades(self) -> int:
        return self.view().committed_trades()

    def committed_exposure(self) -> float:
        return self.view().committed_exposure()

    def exposure(self, symbol: Optional[str] = None) -> float:
        return self.view().exposure(symbol)

    def gross_exposure(self) -> float:
        return self.view().gross_exposure()

    def hedged(self, symbol: Optional[str] = None) -> bool:
        return self.view().hedged(symbol)

    def last_price(self, symbol: str) -> float:
        return self.prices[symbol]

    def symbols(self) -> tuple[str, ...]:
        return tuple(self.prices)


def expect_read_only(spec, obj, what: str, depth: int = 3) -> None:
    """The kit tries attribute, nested and array writes on what it hands a plugin (and what that
    holds: positions, mappings, arrays): each must be refused, as the engine's views refuse them,
    so a plugin that writes fails at the line that wrote, not silently inside the engine."""
    from mlcoord.testing.core import expect, who

    leaks: list[str] = []
    _probe(obj, what, depth, leaks, set())
    expect(not leaks, f"{who(spec)}: {what}, as the kit made it, accepts writes ({', '.join(leaks[:6])}); the "
                      f"engine's would refuse them (a fault of the kit or of the data given to it, not of the plugin)")


def _probe(obj, path: str, depth: int, leaks: list[str], seen: set[int]) -> None:
    if id(obj) in seen or depth < 0 or isinstance(obj, (str, bytes, int, float, bool, type(None))):
        return
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        if obj.size and obj.flags.writeable:
            leaks.append(f"{path}[0] = ... (a writeable array)")
        return
    if isinstance(obj, list):
        leaks.append(f"{path} is a list (a plugin could change it: use a tuple)")
        return
    if isinstance(obj, tuple):
        for i, item in enumerate(obj[:3]):
            _probe(item, f"{path}[{i}]", depth - 1, leaks, seen)
        return
    if isinstance(obj, Mapping):
        for key in list(obj.keys())[:3]:
            try:
                obj[key] = obj[key]           # type: ignore[index]
                leaks.append(f"{path}[{key!r}] = ...")
            except (TypeError, AttributeError):
                pass
            _probe(obj[key], f"{path}[{key!r}]", depth - 1, leaks, seen)
        return
    if not (attrs.has(type(obj)) or hasattr(type(obj), "__slots__")):
        return                                # e.g. a DataFrame: documented read-only, not probed
    for name in [n for n in dir(obj) if not n.startswith("_")]:
        try:
            value = getattr(obj, name)
        except Exception:   # noqa: BLE001 - a property that needs state: not a write target
            continue
        if callable(value) or isinstance(value, (pd.DataFrame, pd.Series)):
            continue
        try:
            setattr(obj, name, value)
            leaks.append(f"{path}.{name} = ...")
        except (AttributeError, TypeError):
            pass
        _probe(value, f"{path}.{name}", depth - 1, leaks, seen)
