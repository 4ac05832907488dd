"""Exchange-side trailing stops (``[live] trailing = "exchange"``, futures), a part of
:class:`mlcoord.live.trader.LiveTrader`.

With ``[live] trailing = "exchange"`` the plan also journals a trailing stop
(``PlanRecord.trailing``): the exit manager's trailing distance (``ExitLevels.trail_distance``)
as a percent of its activation price (else of the average entry), in Binance's 0.1 % steps and
0.1-10 % range (clamped values are logged), and its activation price
(``ExitLevels.trail_activation``). Next to the STOP_MARKET, which then stays at the plan's
initial stop (the exit manager's later stop moves are not sent: the exchange trails), a
TRAILING_STOP_MARKET for the filled quantity is placed, replaced only when that quantity
changes (a new order trails afresh from the current price); its activation price is dropped
once the position's best price has passed it. An exit manager that gives no trailing distance
leaves the plan to the default ``trailing = "bot"``: the bot moves its stop order.

Not yet supported (a clear error when the trader is built): exchange-side trailing stops on spot
(with the default ``trailing = "bot"`` the exit manager's trailing moves the stop order).
"""

from __future__ import annotations

from typing import Optional

import structlog

from mlcoord.live.broker import TRAILING_PERCENT_RANGE, TRAILING_PERCENT_STEP
from mlcoord.live.plan_orders import EPS, TRAILING, Tally
from mlcoord.live.records import OrderRecord, OrderState, PlanRecord, TrailingStop
from mlcoord.model import Order, OrderKind
from mlcoord.live.trader_parts import TraderParts

log = structlog.get_logger("mlcoord.live.trailing")


def exchange_trails(plan: PlanRecord) -> bool:
    """The exchange trails this plan's stop (a ``TRAILING_STOP_MARKET``, journaled in
    ``plan.trailing``): its stop order stays at the initial stop. Decided by the stored plan, so a
    restart keeps managing it the way it was opened."""
    return plan.trailing is not None and plan.trailing.on_exchange


def exchange_trail(symbol: str, levels, entry) -> Optional[TrailingStop]:
    """A plan's trailing stop for the exchange (``[live] trailing = "exchange"``): the exit manager's
    trailing distance (``levels.trail_distance``) as a fraction of the price it trails from (its
    activation price ``levels.trail_activation``, else the plan's average entry), in the exchange's
    0.1 % steps and within its range (clamped: logged). None when the exit manager gives no
    trailing distance: the bot then moves the stop order itself, as with ``trailing = "bot"``."""
    if levels.trail_distance is None:
        log.info("trailing_by_bot", symbol=symbol, reason="the exit manager gives no trailing distance")
        return None
    reference = levels.trail_activation or entry.average_price
    wanted = levels.trail_distance / reference * 100.0
    lo, hi = TRAILING_PERCENT_RANGE
    percent = round(min(max(round(wanted / TRAILING_PERCENT_STEP) * TRAILING_PERCENT_STEP, lo), hi), 1)
    if not lo <= wanted <= hi:
        log.warning("trailing_rate_clamped", symbol=symbol, wanted_percent=round(wanted, 4), percent=percent,
                    allowed=TRAILING_PERCENT_RANGE, distance=levels.trail_distance)
    return TrailingStop(callback_rate=percent / 100.0, activation_price=levels.trail_activation, on_exchange=True)


class ExchangeTrailing(TraderParts):
    """:class:`~mlcoord.live.trader.LiveTrader`'s trailing stop orders (uses its broker, store,
    positions and order helpers)."""

    def _ensure_trailing(self, plan: PlanRecord, tally: Tally, qty: float) -> Optional[OrderRecord]:
        """The plan's ``TRAILING_STOP_MARKET`` for ``qty`` (the filled quantity), next to its fixed
        stop. Replaced (cancel, then the next attempt's id) only when the quantity changes: the
        exchange keeps the best price of the order it has, a new one starts trailing afresh. Its
        activation price is dropped once the position's best price has passed it (the exchange
        would trail from the current price anyway). A refused trailing stop is not sent again for
        the same quantity (the fixed stop keeps protecting the position); one refused with an
        activation price is tried once without."""
        trailing = plan.trailing
        if trailing is None:                  # only plans with an exchange-side trail get here
            return None
        live = tally.live(TRAILING)
        if len(live) == 1 and abs(live[0].order.quantity - qty) <= EPS:
            return live[0]
        for r in live:
            if self.broker.cancel(r).filled_quantity > 0:
                return None                  # it fired meanwhile: the plan is exiting
        tried = [r for r in tally.orders if r.order.tag == TRAILING]
        activation = trailing.activation_price
        if tried and tried[-1].state == OrderState.REJECTED and abs(tried[-1].order.quantity - qty) <= EPS:
            if tried[-1].order.price is None:
                return tried[-1]
            activation = None
        position = self.engine.ledger.positions.get(plan.symbol)
        best = position.best_price if position is not None and position.best_price else None
        if activation is not None and best is not None and (best - activation) * plan.side >= 0:
            activation = None
        attempt = self._next_attempt(plan, TRAILING)
        cid = self.broker.client_id(plan.symbol, plan.decision_time, TRAILING, attempt)
        price = self.broker.price(plan.symbol, activation) if activation is not None else None
        order = Order(cid, plan.symbol, plan.side, OrderKind.TRAILING_STOP, qty, price, self.last_time,
                      reduce_only=True, tag=TRAILING, callback_rate=trailing.callback_rate)
        log.info("trailing_stop_order", plan=plan.plan_id, attempt=attempt, quantity=qty,
                 callback_percent=round(trailing.callback_rate * 100, 4), activation=price,
                 replaced=[r.client_order_id for r in live])
        return self._place(order, plan)
