"""What plugins see of the account: snapshots that refuse writes.

A guard, a sizer or an exit manager gets a copy of the figures it needs, taken when it is called,
never the engine's own objects: a third-party guard that wrote into the portfolio once turned a
-7.28 % backtest into +39.62 % without anyone noticing. Every attribute write, and every write into
a nested mapping or sequence, raises :class:`ReadOnlyViewError` naming what was written. Plugins
ask for changes through their return values (guard actions, levels, ``PositionExit``).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Optional

from mlcoord.model import Side

from mlcoord.model import ExitLevels


class ReadOnlyViewError(AttributeError):
    """A plugin tried to change what the engine showed it."""


class FrozenDict(dict):
    """A dict that refuses writes (TypeError) but pickles and copies (which a mapping proxy does
    not): the mappings plugins are handed inside market data."""

    __slots__ = ()

    def _refuse(self, *args, **kwargs):
        raise TypeError(f"this mapping is read-only ({', '.join(map(str, list(self)[:4]))}): plugins must not change "
                        "what the engine hands them")

    __setitem__ = __delitem__ = update = pop = popitem = clear = setdefault = _refuse
    __ior__ = _refuse

    def __reduce__(self):
        return (type(self), (dict(self),))

    def __deepcopy__(self, memo):
        import copy

        return type(self)({copy.deepcopy(k, memo): copy.deepcopy(v, memo) for k, v in self.items()})


class _Frozen:
    __slots__ = ()

    def __setattr__(self, name, value):
        raise ReadOnlyViewError(f"{type(self).__name__}.{name} is read-only: plugins see a snapshot of the account "
                                "and ask for changes through what they return (guard actions, exit levels)")

    def __delattr__(self, name):
        self.__setattr__(name, None)

    def _set(self, **values) -> None:
        for name, value in values.items():
            object.__setattr__(self, name, value)


class PositionSnapshot(_Frozen):
    """An open position as exit managers and guards see it (a ``PositionView``)."""

    __slots__ = ("symbol", "side", "quantity", "entry_price", "opened_index", "opened_at", "best_price",
                 "entries_filled", "entries_planned", "hedge", "liquidation_price", "stop", "take_profit")
    symbol: str
    side: Side
    quantity: float
    entry_price: float
    opened_index: int
    opened_at: int
    best_price: float
    entries_filled: int
    entries_planned: int
    hedge: bool
    liquidation_price: float
    stop: Optional[float]
    take_profit: Optional[float]

    def __init__(self, position, stop: Optional[float] = None, take_profit: Optional[float] = None):
        self._set(symbol=position.symbol, side=Side(position.side), quantity=float(position.quantity),
                  entry_price=float(position.entry_price), opened_index=int(position.opened_index),
                  opened_at=int(position.opened_at), best_price=float(position.best_price),
                  entries_filled=int(position.entries_filled), entries_planned=int(position.entries_planned),
                  hedge=bool(position.hedge), liquidation_price=float(position.liquidation_price),
                  stop=stop, take_profit=take_profit)

    def __repr__(self) -> str:
        return (f"PositionSnapshot({self.symbol} {self.side.name} {self.quantity:g} @ {self.entry_price:g}"
                f"{' hedge' if self.hedge else ''})")


class PositionProxy(_Frozen):
    """A read-only proxy onto one of the engine's open positions (a ``PositionView``): every read
    gives the position's current value, every write raises. The loop keeps one per position for its
    whole life, so handing it to the exit manager and the guards every bar costs no copy."""

    __slots__ = ("_p", "_levels")
    _p: Any                       # the ledger's Position (the views stay below the ledger: no import)
    _levels: Callable[[], Optional[ExitLevels]]

    def __init__(self, position: Any, levels: Callable[[], Optional[ExitLevels]] = lambda: None):
        self._set(_p=position, _levels=levels)

    symbol = property(lambda self: self._p.symbol)
    side = property(lambda self: self._p.side)
    quantity = property(lambda self: self._p.quantity)
    entry_price = property(lambda self: self._p.entry_price)
    opened_index = property(lambda self: self._p.opened_index)
    opened_at = property(lambda self: self._p.opened_at)
    best_price = property(lambda self: self._p.best_price)
    entries_filled = property(lambda self: self._p.entries_filled)
    entries_planned = property(lambda self: self._p.entries_planned)
    hedge = property(lambda self: self._p.hedge)
    liquidation_price = property(lambda self: self._p.liquidation_price)

    @property
    def stop(self) -> Optional[float]:
        levels = self._levels()
        return levels.stop if levels is not None else None

    @property
    def take_profit(self) -> Optional[float]:
        levels = self._levels()
        return levels.take_profit if levels is not None else None

    def __repr__(self) -> str:
        p = self._p
        return f"PositionProxy({p.symbol} {p.side.name} {p.quantity:g} @ {p.entry_price:g}{' hedge' if p.hedge else ''})"


class PendingEntry(_Frozen):
    """A working entry order: committed, not yet filled."""

    __slots__ = ("symbol", "side", "quantity", "price")
    symbol: str
    side: Side
    quantity: float
    price: float

    def __init__(self, symbol: str, side: int, quantity: float, price: float):
        self._set(symbol=symbol, side=Side(side), quantity=float(quantity), price=float(price))

    def __repr__(self) -> str:
        return f"PendingEntry({self.symbol} {self.side.name} {self.quantity:g} @ {self.price:g})"


class PortfolioMath:
    """The ``PortfolioView`` protocol computed from ``positions`` (snapshots, hedge legs
    flagged), ``pending_entries``, ``prices`` and ``hedge_triggers``: one definition of each figure
    for the engine's live view and for snapshots."""

    __slots__ = ()

    if TYPE_CHECKING:   # what the class using this mixin provides
        @property
        def positions(self) -> tuple[Any, ...]: ...       # PositionSnapshot or PositionProxy

        @property
        def pending_entries(self) -> tuple[PendingEntry, ...]: ...

        @property
        def prices(self) -> Mapping[str, float]: ...

        @property
        def hedge_triggers(self) -> Mapping: ...

    def open_positions(self) -> int:
        """Filled directional positions (hedge legs are not trades)."""
        return sum(1 for p in self.positions if not p.hedge)

    def committed_trades(self) -> int:
        """Open positions plus plans with working, unfilled entries: what entry caps count."""
        held = {p.symbol for p in self.positions if not p.hedge}
        return len(held) + len({e.symbol for e in self.pending_entries if e.symbol not in held})

    def committed_exposure(self) -> float:
        """Per symbol the net of position and hedge leg at the last price (a hedge reduces it),
        plus every working entry order at its price: the exposure entry caps use."""
        net: dict[str, float] = {}
        for p in self.positions:
            price = self.prices.get(p.symbol, p.entry_price)
            net[p.symbol] = net.get(p.symbol, 0.0) + (-1.0 if p.hedge else 1.0) * p.quantity * price
        return sum(abs(v) for v in net.values()) + sum(e.quantity * e.price for e in self.pending_entries)

    def exposure(self, symbol: Optional[str] = None) -> float:
        """Net notional (long minus short, hedge legs included), quote currency."""
        return sum(p.side * p.quantity * self.prices.get(p.symbol, p.entry_price)
                   for p in self.positions if symbol is None or p.symbol == symbol)

    def gross_exposure(self) -> float:
        return sum(p.quantity * self.prices.get(p.symbol, p.entry_price) for p in self.positions)

    def hedged(self, symbol: Optional[str] = None) -> bool:
        if symbol is None:
            return bool(self.hedge_triggers) or any(p.hedge for p in self.positions)
        return any(p.hedge and p.symbol == symbol for p in self.positions)

    def last_price(self, symbol: str) -> float:
        return self.prices[symbol]

    def positions_of(self, symbol: str, side: Optional[Side] = None, *, hedge: Optional[bool] = None
                     ) -> tuple[Any, ...]:
        """The positions of ``symbol`` (by side, and hedge legs or not, when given)."""
        return tuple(p for p in self.positions if p.symbol == symbol and (side is None or p.side == side)
                     and (hedge is None or p.hedge == hedge))


class PortfolioSnapshot(_Frozen, PortfolioMath):
    """The account at one moment, copied (a ``PortfolioView``): what a test, the conformance kit or
    a record hands a plugin."""

    __slots__ = ("equity", "peak_equity", "cash", "day_start_equity", "time", "drawdown", "positions",
                 "pending_entries", "prices", "hedge_triggers", "_symbols")
    equity: float
    peak_equity: float
    cash: float
    day_start_equity: float
    time: int
    drawdown: float
    _symbols: tuple[str, ...]

    def __init__(self, *, equity: float, peak_equity: float, cash: float, day_start_equity: float, time: int,
                 positions: Iterable[PositionSnapshot] = (), pending_entries: Iterable[PendingEntry] = (),
                 prices: Mapping[str, float] = {}, hedge_triggers: Mapping = {}):
        prices = MappingProxyType(dict(prices))
        self._set(equity=float(equity), peak_equity=float(peak_equity), cash=float(cash),
                  day_start_equity=float(day_start_equity), time=int(time),
                  drawdown=1.0 - equity / peak_equity if peak_equity > 0 else 0.0,
                  positions=tuple(positions), pending_entries=tuple(pending_entries), prices=prices,
                  hedge_triggers=MappingProxyType(dict(hedge_triggers)), _symbols=tuple(prices))

    def symbols(self) -> tuple[str, ...]:
        return self._symbols

    def __repr__(self) -> str:
        return (f"PortfolioSnapshot(equity={self.equity:.2f}, positions={len(self.positions)}, "
                f"pending={len(self.pending_entries)})")
