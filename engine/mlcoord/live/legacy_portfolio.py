"""Account state of the live stepper (legacy: it goes when the live trader becomes a venue of the loop).

Margin-account accounting (what a USD-M futures account does): the wallet holds realised PnL,
fees and funding; equity is the wallet plus unrealised PnL. A spot account is the same with
shorts and leverage refused upstream.
"""

from __future__ import annotations

from typing import Optional

from mlcoord.ledger import Ledger, Position as LedgerPosition
from mlcoord.model import Decision, ExitLevels, Side


class Position(LedgerPosition):
    """The ledger's position as the live trader sets it from the exchange's fills, with the exit
    levels the live stepper keeps on it."""

    __slots__ = ("levels",)

    def __init__(self, symbol: str, side: Side, index: int, time: int, *, hedge: bool = False,
                 decision: Optional[Decision] = None, levels: Optional[ExitLevels] = None,
                 entries_planned: int = 1):
        super().__init__(symbol, side, index, time, hedge=hedge, decision=decision, entries_planned=entries_planned)
        self.levels = levels


class Portfolio(Ledger):
    """The live stepper's portfolio: the ledger's figures (the live trader sets the positions it
    reads from the exchange's fills), plus what guards and sizers ask of a ``PortfolioView``."""

    def __init__(self, initial_equity: float):
        super().__init__(initial_equity)
        self.hedge_mode: dict[tuple, float] = {}     # (guard, symbol or None) -> fraction while its trigger is on
        self._symbols: tuple[str, ...] = ()

    def open_positions(self) -> int:
        return len(self.positions)

    # the live stepper's books: symbol -> its working entry orders (Leg, or the exchange's OrderRecord)
    books: list = []

    def _working(self):
        for book in self.books:
            for leg in book.legs:
                qty = getattr(leg, "remaining", None)
                if qty is None:
                    yield book.symbol, leg.quantity, leg.price
                else:
                    yield book.symbol, qty, leg.order.price or self.prices.get(book.symbol, 0.0)

    def committed_trades(self) -> int:
        waiting = {sym for sym, *_ in self._working() if sym not in self.positions}
        return len(self.positions) + len(waiting)

    def committed_exposure(self) -> float:
        total = 0.0
        for sym, p in self.positions.items():
            hedge = self.hedges.get(sym)
            net = p.quantity - (hedge.quantity if hedge is not None else 0.0)
            total += abs(net) * self.prices.get(sym, p.entry_price)
        for sym, h in self.hedges.items():
            if sym not in self.positions:
                total += h.quantity * self.prices.get(sym, h.entry_price)
        return total + sum(q * price for _, q, price in self._working())

    def hedged(self, symbol: Optional[str] = None) -> bool:
        if symbol is None:
            return bool(self.hedge_mode) or bool(self.hedges)
        return symbol in self.hedges

    def last_price(self, symbol: str) -> float:
        return self.prices[symbol]

    def symbols(self) -> tuple[str, ...]:
        """The priced symbols (the same tuple until a new symbol gets its first price)."""
        if len(self._symbols) != len(self.prices):
            self._symbols = tuple(self.prices)
        return self._symbols
