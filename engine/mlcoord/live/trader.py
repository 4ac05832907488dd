"""The live order loop (USD-M futures in hedge mode, or spot): the paper trader's decisions as exchange orders.

Per newly closed bar :class:`LiveTrader` steps the one trading loop (:class:`mlcoord.loop.TradingLoop`,
through :class:`mlcoord.live.runner.PaperTrader`): same preparation, guards, exit-manager updates
and entry decisions as a backtest. Its venue is the exchange (:class:`mlcoord.live.venue.ExchangeVenue`):
the exchange's fills, which the broker records in the store, are booked in the ledger before the
bar is stepped, so the exit manager and the risk manager see what the account really holds; the
loop's intents become the orders below once the bar is stepped.

Each entered decision becomes ONE journaled plan (:meth:`Store.save_plan`, written before any
order): its ladder legs, stop, take profit, exchange-side trailing stop and hedge leg. Orders
follow from the stored plan alone, so a restart resumes exactly where the process died:

* entry legs: market legs at once, limit legs with ``expires_after_bars`` (unfilled ones are
  cancelled after that many bars); a market leg that was never sent is dropped once its bar has
  passed (it would no longer be the decided price); with ``[live] reprice_after_bars`` an unfilled
  limit leg older than that is cancelled and placed again (next attempt's client id) at the plan's
  offset from the current close (a leg with a partial fill keeps its price);
* once a fill exists: a STOP_MARKET and a TAKE_PROFIT_MARKET (closing side, hedge-mode position
  side) for the filled quantity. They are replaced (the next attempt's client id) when the filled
  quantity grows or the exit manager moves the stop (it only tightens), without leaving the
  position bare: an atomic cancel-replace on spot where the symbol allows it, the new order
  before the old one's cancel on futures (:mod:`mlcoord.live.exit_moves`); a stop the exchange
  refuses (e.g. it would trigger at once) closes the position at market;
* the exit manager's optional partial take profit: once per plan, ``partial_fraction`` of what is
  held; a TAKE_PROFIT_MARKET on futures (resized while the ladder fills), sold by the bot on spot
  when a closed bar reaches it; the stop and take profit then cover the rest;
* when the stop, the trailing stop or the take profit fills, the others and the remaining legs are
  cancelled, any remainder is closed at market (and the hedge leg with it) and the plan is closed.

The rest of the loop has a module each (the mixins :class:`LiveTrader` is made of, and the session):

* exchange-side trailing stops (``[live] trailing = "exchange"``): :mod:`mlcoord.live.trailing`;
* hedge legs from the portfolio guards (futures, hedge mode): :mod:`mlcoord.live.hedge_legs`;
* spot accounts (long plans, stop-limit orders, monitored take profit, fee-aware holdings):
  :mod:`mlcoord.live.spot`;
* fees as the exchange's trade list shows them: :mod:`mlcoord.live.fees` (the ledger folds trades
  and the loop feeds them back to the plugins, as in a backtest);
* liquidation prices, funding and positions gone from the exchange (futures):
  :mod:`mlcoord.live.futures_marks`;
* what a restart keeps besides orders and plans (decisions, learning and guard state, the equity
  peak): :mod:`mlcoord.live.memory`;
* ``mlcoord live`` itself (start-up, reconciliation, kill switch, heartbeat, scan mode):
  :func:`mlcoord.live.session.run_live`;
* the plan's order tags and :class:`~mlcoord.live.plan_orders.Tally`: :mod:`mlcoord.live.plan_orders`;
* placing and moving exit orders: :mod:`mlcoord.live.exit_moves`.
"""

from __future__ import annotations

import math
from typing import Optional

import attrs
import numpy as np
import structlog

from mlcoord.live.broker import Broker, BrokerError, not_yet_supported
from mlcoord.live.cycle import CycleShare
from mlcoord.live.exit_moves import ExitMoves
from mlcoord.live.fees import ExchangeFees
from mlcoord.live.futures_marks import FUNDING, FuturesMarks
from mlcoord.live.hedge_legs import HedgeLegs
from mlcoord.live.plan_orders import CLOSE, ENTRY, EPS, PARTIAL_TP, SEND_TRIES, STOP, TAKE_PROFIT, TRAILING, Tally
from mlcoord.live.records import OrderRecord, OrderState, PlanRecord, PlanStatus
from mlcoord.live.runner import PaperTrader
from mlcoord.live.venue import ExchangeVenue
from mlcoord.model import CancelEntries, ClosePosition, ExitReason, PlaceEntryPlan
from mlcoord.model.intents import STOP_PASSED
from mlcoord.simulation import TradingSession
from mlcoord.live.spot import SpotAccount, spot_quote
from mlcoord.live.trailing import ExchangeTrailing, exchange_trail, exchange_trails
from mlcoord.model import Order, OrderKind, Side

log = structlog.get_logger("mlcoord.live.trader")


class LiveTrader(CycleShare, ExitMoves, SpotAccount, HedgeLegs, ExchangeTrailing, FuturesMarks, ExchangeFees, PaperTrader):
    """The paper trader's loop on the exchange venue (:class:`~mlcoord.live.venue.ExchangeVenue`)
    instead of the simulated one (futures in hedge mode, or spot)."""

    def __init__(self, pipeline, settings, history, broker: Broker, *, timeframe_ns: int, journal=None,
                 reprice_after_bars: int = 0, margin_mode: str = "isolated", trailing: str = "bot",
                 prepare_bars: Optional[int] = None, screen=None):
        from mlcoord.live.runner import TRAILING_MODES

        if trailing not in TRAILING_MODES:
            raise ValueError(f"trailing must be one of {TRAILING_MODES}, got {trailing!r}")
        if trailing == "exchange" and broker.market != "futures":
            raise not_yet_supported("exchange-side trailing stops on spot ([live] trailing = \"exchange\")")
        if broker.market != settings.backtest.market:
            raise BrokerError(f"the broker trades {broker.market} but [backtest] market is "
                              f"{settings.backtest.market!r}: the engine must decide for the market it trades "
                              "(load_live_settings sets it from [exchange] market)")
        self.broker, self.store = broker, broker.store
        self.timeframe_ns = int(timeframe_ns)
        self.reprice_after_bars = int(reprice_after_bars)
        self.entries_blocked = False
        self.margin_mode = margin_mode
        self.trailing = trailing
        self.spot = broker.market == "spot"
        self._balances: dict[str, float] = {}          # spot: asset -> free + locked, as last fetched
        self._balance_seen: dict[str, tuple] = {}      # spot: plan id -> (entered, exited) at that fetch
        self.last_time = -1
        self._newest: Optional[int] = None     # the newest bar of the candles being stepped
        self._replaying = False                # stepping a bar older than that one (catch-up)
        self._start_sharing()
        broker.on_change = self._order_changed
        super().__init__(pipeline, settings, history, journal, prepare_bars=prepare_bars, screen=screen)
        self.venue: ExchangeVenue = self.engine.venue
        self.venue.loop = self.engine.loop
        self.engine.loop.may_enter = self._may_enter
        self.engine.ledger.on_closed.append(self._trade_fed_back)
        self.quote = spot_quote(broker, list(self.history)) if self.spot else "USDT"
        self._synced = False
        self._resume()

    def _make_engine(self, journal, funding) -> TradingSession:
        return TradingSession(self.pipeline, self.settings, lambda costs, ledger: ExchangeVenue(self, ledger),
                              journal, funding)

    def _may_enter(self, symbol: str) -> bool:
        return not self.entries_blocked and not self._replaying and PaperTrader._may_enter(self, symbol)

    def _resume(self) -> None:
        """Plans journaled by an earlier session: their positions rebuilt in the ledger from their
        stored fills (their orders are refreshed by the first cycle; a finished order's fee is
        read from the exchange's trade list, as when it was first booked), their levels handed
        to the loop, the funding they paid carried over."""
        paid = (self.store.load_state(FUNDING) or {}).get("paid") or {}
        recorded = {f.key: k for k, f in enumerate(self.store.fills())}
        for plan in self.store.active_plans():
            if plan.symbol not in self.books:
                continue
            self.venue.expect(plan, None)
            self.engine.loop.resume_position(plan.symbol, plan.levels)
            self.venue.book(plan, self.tally(plan), recorded=recorded)
            if paid.get(plan.plan_id):
                self.venue.book_funding(plan.symbol, float(paid[plan.plan_id]))

    def _trade_fed_back(self, trade, position) -> None:
        if position.hedge:
            decision = "none (a hedge leg)"
        elif position.decision is not None:
            decision = "this session"
        else:
            decision = "stored" if self.venue.stored_decision(position) else "unknown"
        log.info("trade_feedback", plan=trade.id if position.hedge else self.venue.live_plan_id(position),
                 symbol=trade.symbol, hedge=trade.hedge, exit_reason=trade.exit_reason, pnl=round(trade.pnl, 8),
                 entry=trade.entry_price, exit=trade.exit_price, quantity=trade.quantity, decision=decision)

    @property
    def ledger(self):
        """The account as the ledger folds it from the exchange's fills."""
        return self.engine.ledger

    # -- the bar -------------------------------------------------------------------------------
    def on_candles(self, candles) -> int:
        """New closed bars stepped in time order. When more than one arrives (the bot fell behind:
        a pause, an outage), every bar older than the newest is *replayed* (catch-up): guards and
        exit managers see it as in a backtest, but no entry is decided on it, and any close it
        calls for (an exit manager's, a guard's, a moved stop the replayed bars already crossed)
        is sent now at market with reason ``catch_up:`` and its own (``catch_up:trailing_stop``); one
        ``catch_up_bar`` line per bar."""
        candles = self.screened(candles)         # implausible bars left out before the newest is known
        self._newest = max((int(c.time[-1]) for c in candles if len(c)), default=None)
        try:
            return self._step_bars(candles)
        finally:
            self._newest = None

    def _step(self, t, fresh) -> None:
        """The exchange's fills booked first (once per cycle unless orders went out since), then
        the loop's bar, then its intents as orders."""
        if not self._synced:
            self.venue.sync()
        if self.spot:
            self._spot_cash()
        replay = self._newest is not None and t < self._newest
        crossed = self._stops_crossed(t, fresh) if replay else []
        self._replaying = replay
        try:
            super()._step(t, fresh)
        finally:
            self._replaying = False
        if replay:
            decided = self.venue.catch_up(ExitReason.CATCH_UP.value)
            log.warning("catch_up_bar", time=t, newest=self._newest,
                        behind=(self._newest - t) // self.timeframe_ns if self.timeframe_ns else None,
                        symbols=sorted(fresh), stops_crossed=crossed, closes=decided)
        self.venue.execute()
        self._synced = False

    def _stops_crossed(self, t, fresh) -> list[str]:
        """A replayed bar whose range crosses the stop the loop holds (moved on an earlier replayed
        bar, so the exchange's stop order is still the old one): the position is closed now. What
        the exchange's own stop took is booked from its fills instead."""
        loop, ledger = self.engine.loop, self.engine.ledger
        crossed = []
        for sym, c in fresh.items():
            position, levels = ledger.positions.get(sym), loop.levels.get(sym)
            if position is None or levels is None:
                continue
            j = int(np.searchsorted(c.time, t))
            if j >= len(c) or int(c.time[j]) != t:
                continue
            low, high = float(c.low[j]), float(c.high[j])
            if (position.side > 0 and low <= levels.stop) or (position.side < 0 and high >= levels.stop):
                crossed.append(sym)
                loop.submit(ClosePosition(sym, self.venue.stop_reason(position, levels.stop)))
        return crossed

    def open_plan(self, intent: PlaceEntryPlan) -> None:
        """An entered decision as ONE journaled plan (written before any of its orders)."""
        symbol, t, decision = intent.symbol, intent.time, intent.decision
        entry, levels, sizing = decision.plan, decision.levels, decision.sizing
        assert entry is not None and levels is not None and sizing is not None, "an entered decision has all three"
        plan_id = self.broker.client_id(symbol, t, "plan")
        if self.store.plan(plan_id) is not None:
            return
        if self.spot and entry.side != Side.LONG:     # the pipeline never enters one; never send it
            log.error("short_plan_on_spot_refused", symbol=symbol, time=t)
            return
        trailing = exchange_trail(symbol, levels, entry) if self.trailing == "exchange" else None
        plan = PlanRecord(plan_id, symbol, t, float(sizing.quantity), entry, levels, trailing=trailing, updated_at=t)
        with self.store.deferring():
            # journaled before any of its orders, with its decision: committed with the first one's
            # journal (a kill -9 after that order went out must not leave the plan without it)
            with self.store.transaction(deferrable=True):
                self.store.save_plan(plan)
                self.store.record_decision(decision)
            self.venue.expect(plan, decision)
            log.info("plan_opened", plan=plan_id, symbol=symbol, side=plan.side.name, quantity=plan.quantity,
                     legs=len(plan.entry.legs), stop=plan.levels.stop, take_profit=plan.levels.take_profit)
            self.manage(plan)

    def move_levels(self, plan: PlanRecord, levels) -> None:
        """The exit manager moved the plan's levels: journaled; :meth:`manage` moves the orders."""
        if exchange_trails(plan):    # the exchange trails: the stop order stays at the initial stop
            levels = attrs.evolve(plan.levels, take_profit=levels.take_profit)
        if levels != plan.levels:
            log.info("exit_levels_moved", plan=plan.plan_id, stop=levels.stop, previous_stop=plan.levels.stop,
                     take_profit=levels.take_profit)
            self.store.save_plan(attrs.evolve(plan, levels=levels, updated_at=max(self.last_time, plan.updated_at)))

    def cancel_entries(self, plan: PlanRecord, reason: str, beyond: Optional[float] = None) -> None:
        """The plan's working entry legs cancelled (a guard's close-all with nothing filled yet).
        ``beyond``: only the limit legs at or beyond that stop price (the stop moved past them)."""
        passed = CancelEntries(plan.symbol, reason, beyond=None if beyond is None
                               else self.broker.price(plan.symbol, beyond))
        tally = self.cancel_legs(plan, self.tally(plan, refresh=True), reason, passed)
        if tally.net <= EPS and not tally.live(ENTRY):
            self._close_plan(plan, tally, reason)

    def cancel_legs(self, plan: PlanRecord, tally: Tally, reason: str,
                    passed: Optional[CancelEntries] = None) -> Tally:
        """The one loop that cancels a plan's working entry legs (all, or those ``passed`` covers),
        each logged (``entry_leg_cancelled``), for a guard, a moved stop and a filled exit
        (:meth:`mlcoord.live.venue.ExchangeVenue.sync`) alike; the plan's tally afterwards."""
        for r in tally.live(ENTRY):
            if passed is None or passed.covers(plan.side, r.order.price, r.order.kind == OrderKind.MARKET):
                log.info("entry_leg_cancelled", plan=plan.plan_id, client_id=r.client_order_id, tag=r.order.tag,
                         price=r.order.price, stop=None if passed is None else passed.beyond, reason=reason)
                self.broker.cancel(r)
        return self.tally(plan)

    # -- plans ---------------------------------------------------------------------------------
    def tally(self, plan: PlanRecord, refresh: bool = False) -> Tally:
        """The plan's orders as stored; ``refresh``: brought up to date from the exchange first,
        unless they already were in this cycle after the symbol's last order went out or was
        cancelled (:mod:`mlcoord.live.cycle`)."""
        records = self.plan_orders(plan.plan_id)
        refresh = refresh and self._fresh.get(plan.plan_id) != plan.symbol
        if refresh:
            self.broker.refresh_all(records)
            records = self.plan_orders(plan.plan_id)
            if self._in_cycle:
                self._fresh[plan.plan_id] = plan.symbol
        entered = exited = value = 0.0
        hedged = unhedged = 0.0
        for r in records:
            if r.order.hedge:                # the hedge leg: the opposite position, never the plan's own
                if r.order.reduce_only:
                    unhedged += r.filled_quantity
                else:
                    hedged += r.filled_quantity
            elif r.order.reduce_only:
                exited += r.filled_quantity
            else:
                entered += r.filled_quantity
                value += r.filled_quantity * (r.average_price or 0.0)
        held = self._spot_held(plan, records, entered, exited, refresh) if self.spot and entered > EPS else math.inf
        return Tally(tuple(records), entered, exited, value / entered if entered > EPS else 0.0, held,
                     hedged, unhedged)

    def manage_all(self) -> None:
        """Every active plan brought in line with the exchange; first, intents an exchange error
        kept from being carried out in an earlier cycle."""
        self.venue.execute()
        for plan in self.active_plans():
            self.manage(plan)
        self._synced = False

    def manage(self, plan: PlanRecord) -> None:
        """Bring one plan's orders in line with the plan and the exchange (idempotent). The
        exchange's answers to its orders commit with the next write or exchange request (each
        order's journal is still committed before it is sent: :meth:`Store.deferring`)."""
        with self.store.deferring():
            self._manage(plan)

    def _manage(self, plan: PlanRecord) -> None:
        tally = self.tally(plan, refresh=True)
        if tally.exit_filled:
            return self._finish(plan, tally, "exit filled")
        if tally.net <= EPS and tally.hedge_net > EPS:     # the position is gone, its hedge leg is not
            return self._finish(plan, tally, "position closed: closing its hedge leg")
        now = self.last_time
        self._place_entries(plan, tally, now)
        tally = self.tally(plan)
        for r in tally.live(ENTRY):
            if r.order.expires_at is not None and now >= r.order.expires_at:
                log.info("entry_leg_expired", plan=plan.plan_id, client_id=r.client_order_id, tag=r.order.tag)
                self.broker.cancel(r)
                tally = self.tally(plan)
        if tally.exit_filled:
            return self._finish(plan, tally, "exit filled")
        if tally.net <= EPS:
            if not tally.live(ENTRY):
                self._close_plan(plan, tally, "nothing filled")
            return
        qty = self._closable(plan.symbol, tally.net)
        if qty <= 0:
            return self.flatten(plan, "position below the minimum order size")
        for _ in range(SEND_TRIES):          # a refused stop is tried again (new id), then the position closed
            stop = self._ensure_exit(plan, tally, STOP, plan.levels.stop, qty)
            if stop is None or stop.state != OrderState.REJECTED:
                break
            tally = self.tally(plan)
        if stop is not None and stop.state == OrderState.REJECTED:
            log.warning("stop_rejected_flatten", plan=plan.plan_id, reason=stop.reason)
            return self.flatten(plan, f"stop rejected: {stop.reason}")
        if plan.levels.take_profit is not None and not self.spot:     # spot: the bot monitors it
            self._ensure_exit(plan, self.tally(plan), TAKE_PROFIT, plan.levels.take_profit, qty)
        self._ensure_partial(plan, self.tally(plan), qty)
        if exchange_trails(plan) and not self.spot:
            self._ensure_trailing(plan, self.tally(plan), qty)
        if not self.spot:
            self._manage_hedge(plan, self.tally(plan))
        tally = self.tally(plan)
        if tally.exit_filled:
            self._finish(plan, tally, "exit filled")

    def _ensure_partial(self, plan: PlanRecord, tally: Tally, qty: float) -> None:
        """The exit manager's partial take profit (``ExitLevels.partial_take_profit``), as the
        backtest takes it: once, ``partial_fraction`` of what is held. Futures: a
        TAKE_PROFIT_MARKET for that part, resized while the ladder fills; once it fills, the stop
        and take profit are resized to the rest by the next :meth:`manage`. Spot: monitored by the
        bot (:meth:`~mlcoord.live.venue.ExchangeVenue.monitor_spot`)."""
        levels = plan.levels
        if self.spot or levels.partial_take_profit is None or levels.partial_fraction <= 0 or tally.partial_taken:
            return
        part = self._closable(plan.symbol, qty * levels.partial_fraction)
        if part > 0 and self._closable(plan.symbol, qty - part) > 0:     # never the whole position
            self._ensure_exit(plan, tally, PARTIAL_TP, levels.partial_take_profit, part)

    def take_partial(self, plan: PlanRecord) -> None:
        """Spot: the partial take profit's level was reached on a closed bar: the stop is resized
        to the rest (it locks the coins; :meth:`_shrink_stop`), then the part sold at market (one
        client id per plan: never twice)."""
        tally = self.tally(plan, refresh=True)
        levels = plan.levels
        if tally.partial_taken or any(r.order.tag == PARTIAL_TP and r.state != OrderState.REJECTED
                                      for r in tally.orders) or levels.partial_take_profit is None:
            return
        part = self._closable(plan.symbol, tally.net * levels.partial_fraction)
        if part <= 0 or self._closable(plan.symbol, tally.net - part) <= 0:
            return
        if not self._shrink_stop(plan, tally, part):
            return
        cid = self.broker.client_id(plan.symbol, plan.decision_time, PARTIAL_TP, 0)
        log.info("partial_take_profit_monitored", plan=plan.plan_id, level=levels.partial_take_profit,
                 quantity=part, note="stop resized to the rest, part sold at market")
        self._place(Order(cid, plan.symbol, plan.side, OrderKind.MARKET, part, None, self.last_time,
                          reduce_only=True, tag=PARTIAL_TP), plan)

    def _place_entries(self, plan: PlanRecord, tally: Tally, now: int) -> None:
        known = {r.client_order_id: r for r in tally.orders}     # as stored: the tally was just read
        n = len(plan.entry.legs)
        expiry = plan.decision_time + max(plan.entry.expires_after_bars, 1) * self.timeframe_ns
        closing = any(r.order.tag == CLOSE for r in tally.orders)    # flattening: its legs stay cancelled
        for j, leg in enumerate(plan.entry.legs):
            tag = f"{ENTRY}:{j + 1}/{n}"
            cid = self.broker.client_id(plan.symbol, plan.decision_time, tag, 0)
            stored = known.get(cid)
            if stored is not None and stored.state != OrderState.PENDING:
                if self.reprice_after_bars and not closing and not leg.market and now < expiry:
                    self._reprice_leg(plan, leg, tag, now, expiry)
                continue
            if cid not in known and (now >= expiry or (leg.market and now > plan.decision_time)):
                continue    # never sent and no longer what was decided (a restart after its time)
            qty = self.broker.amount(plan.symbol, plan.quantity * leg.fraction)
            if qty <= 0:
                log.info("entry_leg_below_minimum", plan=plan.plan_id, tag=tag)
                continue
            kind = OrderKind.MARKET if leg.market else OrderKind.LIMIT
            price = None if leg.market else self.broker.price(plan.symbol, leg.price)
            order = Order(cid, plan.symbol, plan.side, kind, qty, price, plan.decision_time, tag=tag,
                          expires_at=None if leg.market else expiry)
            self._place(order, plan)

    def _reprice_leg(self, plan: PlanRecord, leg, tag: str, now: int, expiry: int) -> None:
        """An unfilled limit leg older than ``reprice_after_bars`` bars: cancelled, then placed again
        (next attempt's client id) at the plan's offset from the decision close, applied to the
        current close. Restart-safe: a latest attempt cancelled with nothing filled (a crash between
        the cancel and the new order) is followed by the next attempt; a leg with any fill is left
        as it is (its price has worked)."""
        attempt = self._next_attempt(plan, tag) - 1
        latest = self.store.order(self.broker.client_id(plan.symbol, plan.decision_time, tag, attempt))
        if latest is None or latest.filled_quantity > EPS or latest.state == OrderState.REJECTED:
            return
        if latest.state == OrderState.PENDING:
            self._place(latest.order, plan)          # sent again under its own id (never twice)
            return
        if not latest.state.terminal:
            if now - latest.order.created_at < self.reprice_after_bars * self.timeframe_ns:
                return
            latest = self.broker.cancel(latest)
            if latest.filled_quantity > EPS or not latest.state.terminal:
                return                               # it filled meanwhile, or the cancel is unresolved
        elif latest.state != OrderState.CANCELLED:
            return                                   # expired or lost on the exchange: not re-priced
        history = self.history.get(plan.symbol)
        k = int(np.searchsorted(history.time, plan.decision_time)) if history is not None else -1
        if k < 0 or k >= len(history) or int(history.time[k]) != plan.decision_time:
            log.warning("reprice_skipped", plan=plan.plan_id, tag=tag, reason="decision bar not in the history")
            return
        decided_close, close = float(history.close[k]), float(history.close[-1])
        price = self.broker.price(plan.symbol, close * leg.price / decided_close)
        passed = CancelEntries(plan.symbol, STOP_PASSED, beyond=self.broker.price(plan.symbol, plan.levels.stop))
        if passed.covers(plan.side, latest.order.price) or passed.covers(plan.side, price):
            return                                   # the stop has passed the leg: never placed again
        qty = self.broker.amount(plan.symbol, plan.quantity * leg.fraction)
        cid = self.broker.client_id(plan.symbol, plan.decision_time, tag, attempt + 1)
        log.info("entry_leg_repriced", plan=plan.plan_id, tag=tag, attempt=attempt + 1, price=price,
                 previous_price=latest.order.price, replaced=latest.client_order_id)
        self._place(Order(cid, plan.symbol, plan.side, OrderKind.LIMIT, qty, price, now, tag=tag,
                          expires_at=expiry), plan)

    def _next_attempt(self, plan: PlanRecord, tag: str) -> int:
        """The first attempt whose client id the store does not hold. The plan's own orders are
        known without asking; only the first id not among them is looked up (an order under it
        may be stored without this plan, e.g. one reconciliation adopted)."""
        known = {r.client_order_id for r in self.plan_orders(plan.plan_id)}
        attempt = 0
        while True:
            cid = self.broker.client_id(plan.symbol, plan.decision_time, tag, attempt)
            if cid not in known and self.store.order(cid) is None:
                return attempt
            attempt += 1

    def _place(self, order: Order, plan: PlanRecord) -> OrderRecord:
        before = self.store.writes
        record = self.broker.place(order, plan_id=plan.plan_id)
        self._placed(before, record)
        return record

    def flatten(self, plan: PlanRecord, reason: str) -> None:
        """Cancel the plan's working orders and close what it holds at market."""
        log.warning("plan_flatten", plan=plan.plan_id, reason=reason)
        tally = self.tally(plan, refresh=True)
        self._finish(plan, tally, reason)

    def close_part(self, plan: PlanRecord, reason: str, fraction: float) -> None:
        """An exit manager closes ``fraction`` of the plan's position itself (``PositionExit``): a
        reduce-only market order; the stop and take profit are resized to the rest by :meth:`manage`
        (a stop still sized for more only reduces what is held). Spot: the stop locks the coins, so
        it is resized to the rest first (:meth:`_shrink_stop`), then the part sold at market; a rest
        below the minimum order closes the whole position."""
        tally = self.tally(plan, refresh=True)
        qty = self._closable(plan.symbol, tally.net * fraction)
        if qty <= 0 or tally.exit_filled:
            log.info("partial_close_skipped", plan=plan.plan_id, reason=reason, held=tally.net, fraction=fraction)
            return
        if self.spot and self._closable(plan.symbol, tally.net - qty) <= 0:
            return self.flatten(plan, reason)
        tag = f"{CLOSE}:part"
        self.venue.note_reason(plan, tag, reason)
        if self.spot and not self._shrink_stop(plan, tally, qty):
            return
        attempt = self._next_attempt(plan, tag)
        cid = self.broker.client_id(plan.symbol, plan.decision_time, tag, attempt)
        log.info("plan_partial_close", plan=plan.plan_id, reason=reason, quantity=qty, held=tally.net)
        self._place(Order(cid, plan.symbol, plan.side, OrderKind.MARKET, qty, None, self.last_time, reduce_only=True,
                          tag=tag), plan)
        if self.spot:
            self.manage(plan)              # a sale that failed: the stop covers what is held again

    def _shrink_stop(self, plan: PlanRecord, tally: Tally, part: float) -> bool:
        """Spot, before ``part`` of the holding is sold: the stop (which locks the coins) resized
        to the rest, as any stop move (atomic where the market allows it), so the rest is never
        without a stop and the part is free to sell. False: the stop filled meanwhile (the plan is
        exiting: nothing is sold)."""
        rest = self._closable(plan.symbol, tally.net - part)
        return self._ensure_exit(plan, tally, STOP, plan.levels.stop, rest) is not None

    def flatten_all(self, reason: str) -> None:
        for plan in self.store.active_plans():
            self.flatten(plan, reason)

    def _finish(self, plan: PlanRecord, tally: Tally, reason: str) -> None:
        """Entries cancelled, the rest closed at market; the stop is cancelled only once flat, so a
        close that fills partly (or is refused) leaves the position protected. On spot the stop locks
        the coins, so it is cancelled first, the sale journaled before (:meth:`_sell_after_release`);
        a close that fails gets a new stop for what is left."""
        for r in tally.live(ENTRY):
            self.broker.cancel(r)
        tally = self.tally(plan)
        reason = self._exit_reason(plan, tally, reason)
        self.venue.note_reason(plan, CLOSE, reason)
        if self.spot:
            tally = self._sell_after_release(plan, tally)
        for _ in range(SEND_TRIES):
            qty = self._closable(plan.symbol, tally.net) if tally.net > EPS else 0.0
            if qty <= 0:
                break
            attempt = self._next_attempt(plan, CLOSE)
            cid = self.broker.client_id(plan.symbol, plan.decision_time, CLOSE, attempt)
            self._place(Order(cid, plan.symbol, plan.side, OrderKind.MARKET, qty, None, self.last_time,
                              reduce_only=True, tag=CLOSE), plan)
            tally = self.tally(plan, refresh=True)
        if tally.net <= EPS or self._closable(plan.symbol, tally.net) <= 0:
            tally = self._close_hedge(plan, tally)     # a hedge never outlives the position it protects
            if self._hedge_held(plan, tally):
                log.error("hedge_close_incomplete", plan=plan.plan_id, remaining=tally.hedge_net,
                          note="the plan stays active; closing its hedge leg is retried next cycle")
                return
            for r in tally.orders:
                if not r.state.terminal:
                    self.broker.cancel(r)
            self._close_plan(plan, self.tally(plan), reason)
            return
        log.error("plan_close_incomplete", plan=plan.plan_id, remaining=tally.net,
                  note="the stop stays (resized); closing is retried next cycle")
        self._ensure_exit(plan, tally, STOP, plan.levels.stop, self._closable(plan.symbol, tally.net))

    def _close_plan(self, plan: PlanRecord, tally: Tally, reason: str) -> None:
        status = PlanStatus.CLOSED if tally.entered > EPS else PlanStatus.CANCELLED
        self.store.save_plan(attrs.evolve(plan, status=status, updated_at=max(self.last_time, plan.updated_at)))
        self._balance_seen.pop(plan.plan_id, None)
        log.info("plan_closed", plan=plan.plan_id, status=status.value, reason=reason, entered=tally.entered,
                 exited=tally.exited)
        self.venue.plan_closed(plan, tally, reason)

    def _exit_reason(self, plan: PlanRecord, tally: Tally, reason: str) -> str:
        """Why a plan closes, in the backtest's words when one of its exit orders filled (the rest of
        a stopped-out position closes as a stop loss); else the reason the bot closes it for."""
        for r in tally.orders:
            if r.order.reduce_only and not r.order.hedge and r.filled_quantity > 0 and \
                    r.order.tag in (STOP, TAKE_PROFIT, TRAILING):
                return self.venue.exit_reason(plan, r)
        return reason

    # -- the account ---------------------------------------------------------------------------
    def sync_wallet(self, reset_peak: bool = False) -> None:
        """The ledger's cash from the futures wallet (risk sizing and drawdown guards see it). The
        exchange's fills are booked first, so none is counted in the wallet and again as a fill."""
        self.venue.sync()
        self._synced = True
        if self.spot:
            return self._sync_spot_wallet(reset_peak)
        balance = self.broker.call(self.broker.exchange.fetch_balance, "fetch_balance")
        info = balance.get("info") or {}
        wallet = info.get("totalWalletBalance") if isinstance(info, dict) else None
        if wallet is None:
            wallet = (balance.get("total") or {}).get("USDT")
        if wallet is None:
            return
        self.engine.ledger.set_wallet(float(wallet), reset_peak=reset_peak)
