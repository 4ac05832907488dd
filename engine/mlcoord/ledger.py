"""The one ledger: positions (hedge legs included) and closed trades, folded from fills.

Every venue (the simulator, an exchange) reports fills and funding payments; the ledger alone
turns them into positions, the wallet and trades, so a backtest, a paper session and a live bot
account the same fills the same way. Margin-account accounting (a USD-M futures account): the
wallet holds realised PnL, fees and funding; equity is the wallet plus unrealised PnL. A spot
account is the same with shorts and leverage refused upstream.

Isolated margin: a position's liquidation price is where its loss reaches its margin less the
maintenance margin. What a plan is (its decision, how many entries it planned) is registered
with :meth:`Ledger.expect_plan` before its first fill; it labels the trade, it never moves money.
"""

from __future__ import annotations

from typing import Callable, Optional

from mlcoord.model import Decision, Fill, Side, Trade


class Position:
    """An open position, built by applying fills (what exit managers see as a ``PositionView``)."""

    __slots__ = (
        "symbol", "side", "quantity", "entry_price", "opened_index", "opened_at", "best_price",
        "entries_filled", "entries_planned", "hedge", "decision", "plan_id", "fees", "funding",
        "realised", "entry_qty", "entry_value", "exit_qty", "exit_value", "liquidation_price",
        "entry_reason", "confidence", "entry_tags",
    )

    def __init__(self, symbol: str, side: Side, index: int, time: int, *, hedge: bool = False,
                 decision: Optional[Decision] = None, entries_planned: int = 1, plan_id: str = "",
                 entry_reason: str = "", confidence: float = 0.0):
        self.symbol, self.side, self.hedge, self.decision = symbol, side, hedge, decision
        self.plan_id, self.entry_reason, self.confidence = plan_id, entry_reason, confidence
        self.quantity = 0.0
        self.entry_price = 0.0
        self.opened_index, self.opened_at = index, time
        self.best_price = 0.0
        self.entries_filled, self.entries_planned = 0, entries_planned
        self.fees = self.funding = self.realised = 0.0
        self.entry_qty = self.entry_value = self.exit_qty = self.exit_value = 0.0
        self.liquidation_price = 0.0
        self.entry_tags: set[str] = set()

    def add(self, fill: Fill, leverage: float, maintenance: float) -> None:
        value = self.entry_price * self.quantity + fill.price * fill.quantity
        self.quantity += fill.quantity
        self.entry_price = value / self.quantity
        self.entry_qty += fill.quantity
        self.entry_value += fill.price * fill.quantity
        self.fees += fill.fee
        # one per entry order, however many fills an exchange splits it into
        if not fill.tag or fill.tag not in self.entry_tags:
            self.entries_filled += 1
            self.entry_tags.add(fill.tag)
        if self.best_price == 0.0:
            self.best_price = fill.price
        shift = 1.0 / leverage - maintenance
        self.liquidation_price = max(self.entry_price * (1.0 - self.side * shift), 0.0)

    def reduce(self, fill: Fill) -> float:
        """Apply an exit fill; returns its realised PnL before fees."""
        qty = min(fill.quantity, self.quantity)
        pnl = (fill.price - self.entry_price) * qty * self.side
        self.quantity -= qty
        if self.quantity < 1e-12:
            self.quantity = 0.0
        self.exit_qty += qty
        self.exit_value += fill.price * qty
        self.fees += fill.fee
        self.realised += pnl
        return pnl

    def to_trade(self, trade_id: str, closed_at: int, reason: str) -> Trade:
        decision = self.decision
        return Trade(
            id=trade_id, symbol=self.symbol, side=self.side, opened_at=self.opened_at, closed_at=closed_at,
            entry_price=self.entry_value / self.entry_qty if self.entry_qty else 0.0,
            exit_price=self.exit_value / self.exit_qty if self.exit_qty else 0.0,
            quantity=self.entry_qty, pnl=self.realised - self.fees - self.funding, fees=self.fees,
            funding=self.funding, exit_reason=reason, entries_planned=self.entries_planned,
            entries_filled=self.entries_filled,
            confidence=decision.confidence if decision else self.confidence,
            entry_reason="hedge" if self.hedge else self.entry_reason, hedge=self.hedge,
        )


class _Plan:
    __slots__ = ("plan_id", "decision", "entries_planned", "entry_reason", "confidence")

    def __init__(self, plan_id: str, decision: Optional[Decision], entries_planned: int, entry_reason: str,
                 confidence: float):
        self.plan_id, self.decision, self.entries_planned = plan_id, decision, entries_planned
        self.entry_reason, self.confidence = entry_reason, confidence


#: called with (trade, position) when a fill closes a position
ClosedListener = Callable[[Trade, Position], None]


class Ledger:
    """Wallet, open positions and closed trades of one account, from its fills only."""

    def __init__(self, initial_equity: float, *, leverage: float = 1.0, maintenance_margin: float = 0.0):
        self.initial_equity = initial_equity
        self.cash = initial_equity            # wallet balance
        self.equity = initial_equity
        self.peak_equity = initial_equity
        self.day_start_equity = initial_equity
        self.time = 0
        self.leverage, self.maintenance = leverage, maintenance_margin
        self.positions: dict[str, Position] = {}     # directional position per symbol
        self.hedges: dict[str, Position] = {}        # hedge leg per symbol
        self.prices: dict[str, float] = {}
        self.marked_exposure = 0.0
        self.trades: list[Trade] = []
        self.fills: list[Fill] = []
        self.on_closed: list[ClosedListener] = []
        self.on_opened: list[Callable[[Position], None]] = []
        self.on_fill: list[Callable[[Fill], None]] = []
        self._plans: dict[str, _Plan] = {}           # symbol -> the plan its next entry fill opens
        self._trade_seq = 0
        self.version = 0                             # bumped by every fill and payment (views cache on it)
        #: names a closed trade (position, sequence number); None: T00001, T00002, ... A live venue
        #: names them after its journaled plans, so a trade can be found in the store
        self.trade_id: Optional[Callable[[Position, int], str]] = None

    # -- what the fills are for ------------------------------------------------------------
    def expect_plan(self, symbol: str, plan_id: str, decision: Optional[Decision], entries_planned: int,
                    entry_reason: str = "", confidence: Optional[float] = None) -> None:
        """The next entry fill of ``symbol`` (not a hedge) belongs to this plan (``entry_reason``:
        the decisive reason of its signal, what trade breakdowns group by; ``confidence``: the
        decision's, for a plan whose Decision object is gone, e.g. one resumed after a restart)."""
        if confidence is None:
            confidence = decision.confidence if decision is not None else 0.0
        self._plans[symbol] = _Plan(plan_id, decision, entries_planned, entry_reason, confidence)

    # -- folding fills ---------------------------------------------------------------------
    def apply(self, fill: Fill, index: int = 0) -> Optional[Trade]:
        """Book ``fill`` (``index``: its bar, for the position's ``opened_index``); returns the
        trade when it closed a position."""
        book = self.hedges if fill.hedge else self.positions
        position = book.get(fill.symbol)
        self.fills.append(fill)
        self.version += 1
        if not fill.reduce_only:
            if position is None:
                plan = None if fill.hedge else self._plans.get(fill.symbol)
                position = Position(fill.symbol, fill.side, index, fill.time, hedge=fill.hedge,
                                    decision=plan.decision if plan else None,
                                    entries_planned=plan.entries_planned if plan else 1,
                                    plan_id=plan.plan_id if plan else "",
                                    entry_reason=plan.entry_reason if plan else "",
                                    confidence=plan.confidence if plan else 0.0)
                book[fill.symbol] = position
                position.add(fill, self.leverage, self.maintenance)
                for opened in self.on_opened:
                    opened(position)
            else:
                position.add(fill, self.leverage, self.maintenance)
            self.cash -= fill.fee
            for listener in self.on_fill:
                listener(fill)
            return None
        if position is None:
            raise ValueError(f"exit fill {fill.order_id!r} for {fill.symbol} "
                             f"({'hedge' if fill.hedge else 'position'}) with nothing open")
        pnl = position.reduce(fill)
        self.cash += pnl - fill.fee
        if position.quantity > 0:
            return None
        self._trade_seq += 1
        name = self.trade_id(position, self._trade_seq) if self.trade_id is not None else f"T{self._trade_seq:05d}"
        trade = position.to_trade(name, fill.time, fill.tag)
        self.trades.append(trade)
        del book[fill.symbol]
        for closed in self.on_closed:
            closed(trade, position)
        return trade

    def charge_fee(self, position: Position, amount: float) -> None:
        """A fee known only after its fill was booked (an exchange's trade list): ``amount`` more."""
        position.fees += amount
        self.cash -= amount
        self.version += 1

    def mark_liquidation(self, position: Position, price: float) -> None:
        """The venue's own liquidation price for ``position`` (an exchange computes it with its
        margin tiers; the ledger's isolated-margin estimate is replaced)."""
        position.liquidation_price = price
        self.version += 1

    def set_wallet(self, cash: float, *, reset_peak: bool = False, equity: Optional[float] = None) -> None:
        """The venue's wallet balance replaces the folded one (an exchange is the truth about its
        own wallet); ``reset_peak``: a session's first reading also starts the peak and the day,
        at ``equity`` (default: the cash; a spot account's holdings are valued at the last close)."""
        self.cash = cash
        if reset_peak:
            self.equity = self.peak_equity = self.day_start_equity = cash if equity is None else equity
        self.version += 1

    def observe_range(self, symbol: str, high: float, low: float) -> None:
        """A bar's range: the best price the position has seen since entry (what trailing exit
        managers measure from)."""
        p = self.positions[symbol]
        if p.side > 0:
            if high > p.best_price:
                p.best_price = high
        elif low < p.best_price:
            p.best_price = low

    def restore_peak(self, peak: float) -> None:
        """An earlier session's equity peak (drawdown guards measure from it), if above today's."""
        if peak > self.peak_equity:
            self.peak_equity = peak

    def pay_funding(self, position: Position, amount: float) -> None:
        """Funding on ``position``: ``amount`` > 0 is paid by the account, < 0 received."""
        position.funding += amount
        self.cash -= amount
        self.version += 1

    # -- marking ---------------------------------------------------------------------------
    def mark(self) -> float:
        """Equity at the latest prices; also refreshes ``marked_exposure`` (gross notional)."""
        equity = self.cash
        gross = 0.0
        prices = self.prices
        for book in (self.positions, self.hedges):
            for sym, p in book.items():
                price = prices[sym]
                equity += (price - p.entry_price) * p.quantity * p.side
                gross += p.quantity * price
        self.equity = equity
        self.marked_exposure = gross
        if equity > self.peak_equity:
            self.peak_equity = equity
        return equity

    def mark_flat(self) -> float:
        equity = self.equity = self.cash
        self.marked_exposure = 0.0
        if equity > self.peak_equity:
            self.peak_equity = equity
        return equity

    @property
    def drawdown(self) -> float:
        return 1.0 - self.equity / self.peak_equity if self.peak_equity > 0 else 0.0

    def exposure(self, symbol: Optional[str] = None) -> float:
        total = 0.0
        for book in (self.positions, self.hedges):
            for sym, p in book.items():
                if symbol is None or sym == symbol:
                    total += p.side * p.quantity * self.prices.get(sym, p.entry_price)
        return total

    def gross_exposure(self) -> float:
        return sum(p.quantity * self.prices.get(s, p.entry_price)
                   for book in (self.positions, self.hedges) for s, p in book.items())
