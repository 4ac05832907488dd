"""What every part of the live order loop (:mod:`mlcoord.live.trader` and its mixins) agrees on:
the tags a plan's orders carry (client ids are derived from them, so they never change) and
:class:`Tally`, a plan's orders and fills as the store has them."""

from __future__ import annotations

import math

import attrs

from mlcoord.live.records import OrderRecord

EPS = 1e-12
SEND_TRIES = 3        # fresh client ids tried for a refused stop or an unfinished close, per cycle
ENTRY, STOP, TAKE_PROFIT, CLOSE = "entry", "stop", "take_profit", "close"
HEDGE_OPEN, HEDGE_CLOSE = "hedge:open", "hedge:close"     # + ":<n>", the plan's n-th hedge leg
HEDGE_ADJUST = "hedge:adj"          # + ":<n>": a market order resizing leg n to its journaled size
TRAILING = "trailing_stop"          # the exchange-side trailing stop ([live] trailing = "exchange")
PARTIAL_TP = "partial_take_profit"  # the exit manager's optional partial take profit (once per plan)


@attrs.frozen
class Tally:
    """A plan's orders as the store has them (after the broker's refresh). ``held`` caps what the
    plan holds (spot: the entry fills less base-asset fees, within the account's balance)."""

    orders: tuple[OrderRecord, ...]
    entered: float
    exited: float
    average: float
    held: float = math.inf
    hedge_entered: float = 0.0     # the hedge leg's fills (opposite side), kept out of the above
    hedge_exited: float = 0.0

    @property
    def net(self) -> float:
        return min(max(self.entered - self.exited, 0.0), self.held)

    @property
    def hedge_net(self) -> float:
        """What the plan's hedge leg holds (futures, hedge mode: the opposite position side)."""
        return max(self.hedge_entered - self.hedge_exited, 0.0)

    @property
    def hedge_number(self) -> int:
        """The number of the plan's latest hedge leg (0: never hedged)."""
        return max((int(r.order.tag.rsplit(":", 1)[1]) for r in self.orders
                    if r.order.hedge and r.order.tag.startswith(HEDGE_OPEN + ":")), default=0)

    def live(self, prefix: str) -> list[OrderRecord]:
        return [r for r in self.orders if r.order.tag.startswith(prefix) and not r.state.terminal]

    @property
    def partial_taken(self) -> bool:
        """The plan's partial take profit has filled (it is taken once, as in the backtest)."""
        return any(r.filled_quantity > 0 for r in self.orders if r.order.tag == PARTIAL_TP)

    @property
    def exit_filled(self) -> bool:
        return any(r.filled_quantity > 0 for r in self.orders if r.order.tag in (STOP, TAKE_PROFIT, TRAILING))
