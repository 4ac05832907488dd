"""Placing and moving a plan's exit orders without leaving its position bare, a part of
:class:`mlcoord.live.trader.LiveTrader`.

A stop (likewise a take profit or partial take profit) is replaced when the exit manager moves its
level or the held quantity changes. The exchange should hold one at every moment, so how a move
is made depends on the market:

* spot, where the symbol allows it (Binance exchangeInfo ``cancelReplaceAllowed``): one atomic
  cancel-replace request (:meth:`~mlcoord.live.broker.Broker.replace`); the coins the old stop
  locked carry over to the new one;
* USD-M futures: the new order is placed first and the old one cancelled once the new one rests
  (closing orders of a hedge-mode position side coexist; a failure in between leaves both, and
  the next cycle cancels the stale one);
* spot without cancel-replace: the same when the account's free balance of the coin covers the
  new stop (the old one locks what it covers, so usually it does not), else cancel, then place.

Every new order is journaled (committed) before the old one is touched: a store that fails stops
the move with the old order in place. Cancel-then-place is the one path where the store can fail
after the old order is gone: the journaled replacement is then still sent (its client id is in
the store, so a restart recognises it), and the error stops the bot.
"""

from __future__ import annotations

from typing import Callable, Optional

import structlog

from mlcoord.errors import StoreError
from mlcoord.live.plan_orders import EPS, Tally
from mlcoord.live.records import OrderRecord, OrderState, PlanRecord
from mlcoord.live.trader_parts import TraderParts
from mlcoord.model import Order, OrderKind

log = structlog.get_logger("mlcoord.live.exit_moves")

#: what a new order's answer says when it rests on the exchange (the old one may then go)
_RESTING = (OrderState.OPEN, OrderState.PARTIALLY_FILLED, OrderState.FILLED)


class ExitMoves(TraderParts):
    """:class:`~mlcoord.live.trader.LiveTrader`'s exit orders (uses its broker, store and order
    helpers)."""

    def _ensure_exit(self, plan: PlanRecord, tally: Tally, tag: str, level: float,
                     qty: float) -> Optional[OrderRecord]:
        """The plan's ``tag`` exit order at ``level`` for ``qty``: the working one if it matches
        (any other working one of that role, left by an interrupted move, is cancelled), else a
        new one (the next attempt's client id) that replaces the others. None: one of them filled
        meanwhile (the plan is exiting)."""
        price = self.broker.price(plan.symbol, level)
        live = tally.live(tag)
        match = next((r for r in live if r.order.price == price and abs(r.order.quantity - qty) <= EPS), None)
        if match is not None:
            for r in live:
                if r is not match and r.state != OrderState.PENDING and self.broker.cancel(r).filled_quantity > EPS:
                    return None
            return match
        attempt = self._next_attempt(plan, tag)
        cid = self.broker.client_id(plan.symbol, plan.decision_time, tag, attempt)
        order = Order(cid, plan.symbol, plan.side, OrderKind.STOP, qty, price, self.last_time, reduce_only=True,
                      tag=tag)
        how = self._move_kind(plan, live, order)
        log.info("exit_order", plan=plan.plan_id, tag=tag, attempt=attempt, price=price, quantity=qty,
                 replaced=[r.client_order_id for r in live], how=how)
        if how == "new":
            return self._place(order, plan)
        if how == "cancel_replace":
            return self._replace_exit(plan, live[0], order)
        if how == "place_first":
            return self._place_first(plan, live, order)
        return self._cancel_first(plan, live, order)

    def _move_kind(self, plan: PlanRecord, live: list[OrderRecord], order: Order) -> str:
        """How ``order`` replaces ``live`` (see the module docstring)."""
        if not live:
            return "new"
        if self.spot and len(live) == 1 and live[0].state == OrderState.OPEN and live[0].filled_quantity <= EPS \
                and self.broker.can_cancel_replace(plan.symbol):
            return "cancel_replace"
        if not self.spot or self._free(plan.symbol) >= order.quantity:
            return "place_first"
        return "cancel_first"

    def _replace_exit(self, plan: PlanRecord, old: OrderRecord, order: Order) -> Optional[OrderRecord]:
        record = self.broker.replace(old, order, plan.plan_id)
        if (self.store.order(old.client_order_id) or old).filled_quantity > EPS:
            return None                        # it filled meanwhile: the plan is exiting
        return record

    def _place_first(self, plan: PlanRecord, live: list[OrderRecord], order: Order) -> Optional[OrderRecord]:
        """The new order first; the old ones are cancelled once it rests. Refused or unresolved,
        the old ones stay (the caller handles a refused stop; an unresolved one is resolved by
        its client id next cycle)."""
        record = self._place(order, plan)
        if record.state in _RESTING:
            for r in live:
                if r.state != OrderState.PENDING and self.broker.cancel(r).filled_quantity > EPS:
                    return None
        return record

    def _cancel_first(self, plan: PlanRecord, live: list[OrderRecord], order: Order) -> Optional[OrderRecord]:
        """Cancel, then place; the new order journaled before the cancel."""
        def cancel() -> float:
            for r in live:
                if self.broker.cancel(r).filled_quantity > EPS:
                    return 0.0                 # it filled meanwhile: the plan is exiting
            return order.quantity
        return self._journal_then(plan, order, cancel)

    def _journal_then(self, plan: PlanRecord, order: Order, clear: Callable[[], float]) -> Optional[OrderRecord]:
        """``order`` journaled, then ``clear()`` run (it cancels what ``order`` takes over from, or
        what locks the coins it sells, and returns the quantity ``order`` is to have now; 0: it is
        withdrawn, never sent), then ``order`` sent. A store that fails after the journal, while
        ``clear`` runs or before ``order`` goes out, still sends it (journaled, it is recognised by
        its client id after the restart): what ``clear`` cancelled is never left without it."""
        record, new = self.broker.journal(order, plan.plan_id)
        sent = None
        try:
            qty = clear()
            if qty <= EPS:
                self.broker.withdraw(record, "not sent: the order it was to follow filled")
                return None
            if abs(qty - order.quantity) > EPS:
                record = self.broker.amend(record, qty)
            sent = self.broker.sent
            return self.broker.send(record, new)
        except StoreError as exc:
            if sent is None or self.broker.sent == sent:      # it has not gone out yet
                self._send_regardless(record, new, exc)
            raise

    def _send_regardless(self, record: OrderRecord, new: bool, failure: StoreError) -> None:
        """The store failed after ``record`` was journaled and what it follows was (maybe)
        cancelled: it still goes out. What the store cannot record of it is resolved by its
        client id after the restart."""
        log.error("order_sent_despite_store_failure", client_id=record.client_order_id, tag=record.order.tag,
                  error=str(failure))
        try:
            self.broker.send(record, new)
        except StoreError:
            pass                               # the answer is not stored: the restart reads it back
