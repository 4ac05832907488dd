"""Hedge legs (futures, hedge mode), a part of :class:`mlcoord.live.trader.LiveTrader`.

They mirror the backtest: when the loop asks for a hedge (an ``OpenHedge`` intent) for a
symbol whose plan holds a position, the plan journals a :class:`~mlcoord.live.records.HedgeLeg`
(opposite side, the guard's fraction of what the plan holds now, resized as that changes) and opens it at
market on the opposite position side (``hedge:open:<n>``); it is closed at market
(``hedge:close:<n>``) when the guard releases the hedge (``CloseHedge``) or when the plan
closes, whatever closed it (stop, take profit, flatten, kill switch). As in the backtest the leg
has no stop of its own (it offsets the plan's position, whose stop stays; the exchange's
liquidation is its limit). Its fills stay out of the plan's own quantities and build
the ledger's hedge leg of the symbol (through :mod:`mlcoord.live.venue`), which the guards and
equity see. A crash
between the journal and the order opens the leg once on restart (client ids; PENDING rules). After
a restart the journaled leg is kept, and the hedging guard, whose state (active triggers, its own
hedge) is restored from the store (:mod:`mlcoord.live.memory`), releases it by the same hysteresis.
"""

from __future__ import annotations

import attrs
import structlog

from mlcoord.live.plan_orders import HEDGE_ADJUST, EPS, HEDGE_CLOSE, HEDGE_OPEN, SEND_TRIES, Tally
from mlcoord.live.records import HedgeLeg, PlanRecord, PlanStatus
from mlcoord.model import Order, OrderKind
from mlcoord.live.trader_parts import TraderParts
from mlcoord.loop import hedge_fraction

log = structlog.get_logger("mlcoord.live.hedge_legs")


class HedgeLegs(TraderParts):
    """:class:`~mlcoord.live.trader.LiveTrader`'s hedge legs (uses its broker, store, engine and
    order helpers)."""

    # The backtest's hedge (mlcoord.loop's _cover_hedges, the simulated venue's _hedge_to): while a
    # guard's hedge trigger covers a position, it holds ONE opposite-side leg of ``fraction`` x what
    # the position holds now, resized (a market order for the difference, "hedge:adj:<n>") when
    # entries fill or a partial take profit sells; it is closed when the trigger is released or its
    # position closes. As
    # in the backtest the leg has no stop or take profit of its own: it only offsets the plan's
    # position, whose stop stays in force; the exchange's liquidation is its only limit.

    def want_hedge(self, plan: PlanRecord, quantity: float) -> None:
        """The guard turned the hedge on while ``plan`` holds a position (the backtest's
        ``book.hedge_open``: ``quantity`` is the guard's fraction of what the plan holds). The leg is
        journaled with the plan first, then opened at market on the opposite position side; a crash
        in between leaves a wanted leg without an order, which the next :meth:`manage` opens (once:
        the order's client id comes from the plan, the leg's number and the attempt)."""
        tally = self.tally(plan)
        if plan.status != PlanStatus.ACTIVE or tally.net <= EPS:
            return
        if plan.hedge is not None:
            self._resize_hedge(plan, tally, quantity)
            return
        if self._hedge_held(plan, tally):
            log.warning("hedge_still_closing", plan=plan.plan_id, held=tally.hedge_net,
                        note="the previous leg closes first; no second leg")
            return
        qty = self.broker.amount(plan.symbol, quantity)
        if qty <= 0:
            log.info("hedge_below_minimum", plan=plan.plan_id, quantity=quantity)
            return
        fraction = hedge_fraction(self.engine.loop.portfolio.hedge_triggers, plan.symbol)
        fraction = fraction if fraction is not None and 0 < fraction <= 1 else None
        leg = HedgeLeg(plan.side.opposite, qty, leverage=float(self.settings.backtest.leverage),
                       margin_mode=self.margin_mode, number=tally.hedge_number + 1, fraction=fraction)
        plan = attrs.evolve(plan, hedge=leg, updated_at=max(self.last_time, plan.updated_at))
        self.store.save_plan(plan)            # journaled before its order
        log.info("hedge_on", plan=plan.plan_id, symbol=plan.symbol, side=leg.side.name, quantity=qty,
                 fraction=fraction, number=leg.number, position=tally.net, bar_time=self.last_time)
        self._manage_hedge(plan, tally)

    def _resize_hedge(self, plan: PlanRecord, tally: Tally, quantity: float) -> None:
        """The leg should now hold ``quantity`` (the guard's fraction of what the plan holds now):
        the new size is journaled with the plan first, then :meth:`_manage_hedge` sends the
        difference at market (a restart finds the journaled size and sends what is still missing)."""
        leg = plan.hedge
        if tally.exit_filled:       # the plan is closing (a remainder after its stop): the leg goes with it
            return
        qty = self.broker.amount(plan.symbol, quantity)
        if qty <= 0 or leg is None or abs(qty - leg.quantity) <= EPS:
            return
        plan = attrs.evolve(plan, hedge=attrs.evolve(leg, quantity=qty),
                            updated_at=max(self.last_time, plan.updated_at))
        self.store.save_plan(plan)
        log.info("hedge_resize", plan=plan.plan_id, symbol=plan.symbol, quantity=qty, previous=leg.quantity,
                 position=tally.net, bar_time=self.last_time)
        self._manage_hedge(plan, tally)

    def release_hedge(self, plan: PlanRecord, reason: str) -> None:
        """The guard released the hedge (the backtest's ``book.hedge_close``): journaled first (the
        plan wants no leg any more), then what the leg holds is closed at market."""
        if plan.hedge is not None:
            plan = attrs.evolve(plan, hedge=None, updated_at=max(self.last_time, plan.updated_at))
            self.store.save_plan(plan)
        log.info("hedge_off", plan=plan.plan_id, symbol=plan.symbol, reason=reason, bar_time=self.last_time)
        tally = self.tally(plan)
        self.venue.note_reason(plan, f"{HEDGE_CLOSE}:{tally.hedge_number}", reason)
        self._close_hedge(plan, tally)

    def _manage_hedge(self, plan: PlanRecord, tally: Tally) -> None:
        """The hedge leg in line with the journaled plan: a wanted leg without an order is opened
        (a refused open is tried again next cycle with the next attempt's id, at most
        ``SEND_TRIES`` times, then given up: journaled as no leg, logged); a leg no longer wanted
        is closed. An open order still working, or one that filled, is never sent again."""
        leg = plan.hedge
        if leg is None:
            self._close_hedge(plan, tally)
            return
        tag = f"{HEDGE_OPEN}:{leg.number}"
        opens = [r for r in tally.orders if r.order.tag == tag]
        if any(r.filled_quantity > EPS for r in opens) and not any(not r.state.terminal for r in opens):
            self._adjust_hedge(plan, tally, leg)
            return
        if any(not r.state.terminal or r.filled_quantity > EPS for r in opens):
            return
        if len(opens) >= SEND_TRIES:
            log.error("hedge_not_opened", plan=plan.plan_id, number=leg.number, reason=opens[-1].reason)
            self.store.save_plan(attrs.evolve(plan, hedge=None, updated_at=max(self.last_time, plan.updated_at)))
            return
        attempt = self._next_attempt(plan, tag)
        cid = self.broker.client_id(plan.symbol, plan.decision_time, tag, attempt)
        self._place(Order(cid, plan.symbol, leg.side, OrderKind.MARKET, leg.quantity, None, self.last_time,
                          tag=tag, hedge=True), plan)

    def _adjust_hedge(self, plan: PlanRecord, tally: Tally, leg) -> None:
        """Bring what the leg holds to its journaled size: a market order for the difference (adding
        on the leg's side, or reduce-only), once nothing of the leg is still working."""
        if any(r.order.hedge and not r.state.terminal for r in tally.orders):
            return
        delta = leg.quantity - tally.hedge_net
        qty = self.broker.amount(plan.symbol, abs(delta))
        if qty <= 0:
            return
        tag = f"{HEDGE_ADJUST}:{leg.number}"
        attempt = self._next_attempt(plan, tag)
        cid = self.broker.client_id(plan.symbol, plan.decision_time, tag, attempt)
        self._place(Order(cid, plan.symbol, leg.side, OrderKind.MARKET, qty, None, self.last_time,
                          reduce_only=delta < 0, tag=tag, hedge=True), plan)

    def _close_hedge(self, plan: PlanRecord, tally: Tally) -> Tally:
        """Close what the plan's hedge leg holds at market (the closing side of the opposite
        position), with fresh client ids up to ``SEND_TRIES`` times per cycle. While an open or
        close of the leg is still unresolved on the exchange nothing new is sent."""
        tag = f"{HEDGE_CLOSE}:{tally.hedge_number}"
        for _ in range(SEND_TRIES):
            working = [r for r in tally.orders if r.order.hedge and not r.state.terminal]
            if working or tally.hedge_net <= EPS:
                break
            qty = self.broker.amount(plan.symbol, tally.hedge_net)
            if qty <= 0:
                break
            attempt = self._next_attempt(plan, tag)
            cid = self.broker.client_id(plan.symbol, plan.decision_time, tag, attempt)
            log.info("hedge_close", plan=plan.plan_id, quantity=qty, attempt=attempt)
            self._place(Order(cid, plan.symbol, plan.side.opposite, OrderKind.MARKET, qty, None, self.last_time,
                              reduce_only=True, tag=tag, hedge=True), plan)
            tally = self.tally(plan, refresh=True)
        return tally

    def _hedge_held(self, plan: PlanRecord, tally: Tally) -> bool:
        """The leg holds a tradable quantity, or one of its orders is still unresolved."""
        if any(r.order.hedge and not r.state.terminal for r in tally.orders):
            return True
        return tally.hedge_net > EPS and self.broker.amount(plan.symbol, tally.hedge_net) > 0
