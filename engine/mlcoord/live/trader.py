"""The live order loop (USD-M futures in hedge mode, or spot): the paper trader's decisions as exchange orders.

Per newly closed bar :class:`LiveTrader` runs the backtest's own per-bar code
(:meth:`mlcoord.backtest.engine.Backtest.step`, through :class:`mlcoord.live.runner.PaperTrader`):
same preparation, guards, exit-manager updates and entry decisions. Only the fill model is taken
out (:class:`LiveEngine`): positions are built from the exchange's fills, which the broker records
in the store, and are handed to the step before it runs, so the exit manager and the risk manager
see what the account really holds.

Each entered decision becomes ONE journaled plan (:meth:`Store.save_plan`, written before any
order): its ladder legs, stop, take profit, exchange-side trailing stop and hedge leg. Orders
follow from the stored plan alone, so a restart resumes exactly where the process died:

* entry legs: market legs at once, limit legs with ``expires_after_bars`` (unfilled ones are
  cancelled after that many bars); a market leg that was never sent is dropped once its bar has
  passed (it would no longer be the decided price); with ``[live] reprice_after_bars`` an unfilled
  limit leg older than that is cancelled and placed again (next attempt's client id) at the plan's
  offset from the current close (a leg with a partial fill keeps its price);
* once a fill exists: a STOP_MARKET and a TAKE_PROFIT_MARKET (closing side, hedge-mode position
  side) for the filled quantity. They are replaced (cancel, then place with the next attempt's
  client id) when the filled quantity grows or the exit manager moves the stop (it only tightens);
  a stop the exchange refuses (e.g. it would trigger at once) closes the position at market;
* with ``[live] trailing = "exchange"`` (futures) the plan also journals a trailing stop
  (``PlanRecord.trailing``): the exit manager's trailing distance (``ExitLevels.trail_distance``)
  as a percent of its activation price (else of the average entry), in Binance's 0.1 % steps and
  0.1-10 % range (clamped values are logged), and its activation price
  (``ExitLevels.trail_activation``). Next to the STOP_MARKET, which then stays at the plan's
  initial stop (the exit manager's later stop moves are not sent: the exchange trails), a
  TRAILING_STOP_MARKET for the filled quantity is placed, replaced only when that quantity
  changes (a new order trails afresh from the current price); its activation price is dropped
  once the position's best price has passed it. An exit manager that gives no trailing distance
  leaves the plan to the default ``trailing = "bot"``: the bot moves its stop order;
* when the stop, the trailing stop or the take profit fills, the others and the remaining legs are
  cancelled, any remainder is closed at market (and the hedge leg with it) and the plan is closed.

Hedge legs (futures, hedge mode) mirror the backtest: when a portfolio guard turns the hedge on
(``book.hedge_open``) for a symbol whose plan holds a position, the plan journals a
:class:`~mlcoord.live.records.HedgeLeg` (opposite side, the guard's fraction of what the plan holds
then, never resized) and opens it at market on the opposite position side (``hedge:open:<n>``); it
is closed at market (``hedge:close:<n>``) when the guard releases the hedge (``book.hedge_close``)
or when the plan closes, whatever closed it (stop, take profit, flatten, kill switch). As in the
backtest the leg has no stop of its own (it offsets the plan's position, whose stop stays; the
exchange's liquidation is its limit). Its fills stay out of the plan's own quantities and build
``portfolio.hedges[symbol]`` (``Position(hedge=True)``), which the guards and equity see. A crash
between the journal and the order opens the leg once on restart (client ids; PENDING rules). After
a restart the journaled leg is kept, and the hedging guard, whose state (active triggers, its own
hedge) is restored from the store (:mod:`mlcoord.live.memory`), releases it by the same hysteresis.

At start: reconciliation (:func:`mlcoord.live.reconcile.reconcile`), the session's memory
(decisions, learning and guard state, equity peak: :mod:`mlcoord.live.memory`), then every active
plan is brought up to date and protected, so a position without a stop gets one before any new
entry.
The kill switch blocks new entries (and with ``flatten_on_kill`` closes positions); the loop keeps
running while it is on, so open positions keep their stops moving. The heartbeat is written after
every cycle.

With ``[live] scan = true`` the scanner picks the symbols every cycle and fetches their candles
concurrently (:meth:`mlcoord.live.scanner.Scanner.fetch_closed`); a symbol that drops out keeps its
bars and stops while its plan is active, with no new entry.

A spot account (``[exchange] market = "spot"``) trades long plans only, as the backtest with
``market = "spot"`` does: the pipeline never enters a short, and a SELL signal while long closes
the position at market (``sell_signal``). No leverage (``[backtest] leverage`` must be 1), no hedge
mode; closing orders are plain sells of the coins the plan holds. What differs from futures:

* the stop is an exchange order, ``STOP_LOSS_LIMIT`` (trigger at the stop, limit
  ``stop_limit_offset`` below it). Binance locks the coins for it, so the take profit cannot be a
  second exchange order: the bot monitors it (a closed bar whose high reaches it: the stop is
  cancelled and the coins sold at market, ``take_profit_monitored``). A stop limit that triggered
  but did not fill (the price gapped below its limit) is seen after the bar: a bar that closes
  below the stop while the plan still holds coins closes it at market (``stop_limit_not_filled``);
* before any closing sell the stop is cancelled (it locks the coins); a sell that fails or fills
  partly gets a new stop for what is left;
* the quantity held is what the fills bought less the fees Binance took in the base asset (as the
  fills report them), capped by the account's free + locked balance of that asset; a remainder
  below the market's minimum amount or notional counts as flat (dust stays in the account);
* the engine's cash is the quote balance plus the held coins at their entry cost, so its equity
  (cash plus unrealised PnL) is the account's quote balance plus the coins at the last close.

When a plan closes with something filled, the plugins' trade-closed hook
(:meth:`mlcoord.pipeline.Pipeline.trade_closed`, the backtest's learning feedback) gets the
:class:`~mlcoord.model.Trade` built from the plan's fills (fees from the exchange's trade list, one
request per closed plan), with the decision that opened it (a plan opened before a restart has no
Decision object in this session: its trade is built from the stored decision and handed over with
``decision=None``). As in a backtest this informs e.g. the protections
guard (cooldown after a stop, pair locks) and the risk sizer's Kelly history.

Not yet supported (clear errors or log lines): exchange-side trailing stops on spot (with the
default ``trailing = "bot"`` the exit manager's trailing moves the stop order), spot symbols that
share a base asset or have different quote assets, and funding in the trades fed back.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import attrs
import numpy as np
import structlog

from mlcoord.backtest.engine import Backtest
from mlcoord.backtest.portfolio import Position
from mlcoord.live.broker import (TRAILING_PERCENT_RANGE, TRAILING_PERCENT_STEP, Broker, BrokerError,
                                 not_yet_supported)
from mlcoord.live.memory import SessionMemory
from mlcoord.live.records import HedgeLeg, OrderRecord, OrderState, PlanRecord, PlanStatus, TrailingStop
from mlcoord.live.runner import PaperTrader
from mlcoord.model import Action, Order, OrderKind, Side, Signal, Trade

log = structlog.get_logger("mlcoord.live.trader")

EPS = 1e-12
SEND_TRIES = 3        # fresh client ids tried for a refused stop or an unfinished close, per cycle
ENTRY, STOP, TAKE_PROFIT, CLOSE = "entry", "stop", "take_profit", "close"
HEDGE_OPEN, HEDGE_CLOSE = "hedge:open", "hedge:close"     # + ":<n>", the plan's n-th hedge leg
TRAILING = "trailing_stop"          # the exchange-side trailing stop ([live] trailing = "exchange")


class LiveEngine(Backtest):
    """The backtest's per-bar code without simulated fills: the trader supplies positions."""

    trader: "LiveTrader"

    def _fill_bar(self, book, i, t):
        # what Backtest._protect keeps for the exit manager: the best price since entry
        book.prev_time = t
        position = self.portfolio.positions.get(book.symbol)
        if position is not None:
            if position.side > 0:
                position.best_price = max(position.best_price, book.h[i])
            else:
                position.best_price = min(position.best_price, book.l[i])
            if self.trader.spot:
                self.trader.monitor_spot(book, i, position)

    def _decide(self, book, i, t):
        picked = self.trader.entry_symbols
        if self.trader.entries_blocked or (picked is not None and book.symbol not in picked):
            return
        super()._decide(book, i, t)
        if book.legs:
            self.trader.entered.append((book.symbol, t, self.journal.decisions[-1]))


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
    hedge_average: float = 0.0

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
    def exit_filled(self) -> bool:
        return any(r.filled_quantity > 0 for r in self.orders if r.order.tag in (STOP, TAKE_PROFIT, TRAILING))


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


class LiveTrader(PaperTrader):
    """The paper trader with the broker in place of the simulated fills (futures in hedge mode, or spot)."""

    engine_class = LiveEngine

    def __init__(self, pipeline, settings, history, broker: Broker, *, timeframe_ns: int, journal=None,
                 reprice_after_bars: int = 0, margin_mode: str = "isolated", trailing: str = "bot"):
        from mlcoord.live.runner import TRAILING_MODES

        if trailing not in TRAILING_MODES:
            raise ValueError(f"trailing must be one of {TRAILING_MODES}, got {trailing!r}")
        if trailing == "exchange" and broker.market != "futures":
            raise not_yet_supported("exchange-side trailing stops on spot ([live] trailing = \"exchange\")")
        if broker.market != settings.backtest.market:
            raise BrokerError(f"the broker trades {broker.market} but [backtest] market is "
                              f"{settings.backtest.market!r}: the engine must decide for the market it trades "
                              "(load_live_settings sets it from [exchange] market)")
        super().__init__(pipeline, settings, history, journal)
        self.engine.trader = self
        self.broker, self.store = broker, broker.store
        self.timeframe_ns = int(timeframe_ns)
        self.reprice_after_bars = int(reprice_after_bars)
        self.entries_blocked = False
        self.entry_symbols: Optional[set] = None     # the scanner's pick (None: every symbol)
        self.entered: list = []
        self._positions: dict[str, Position] = {}     # plan id -> the Position the exit manager sees
        self._decisions: dict[str, object] = {}       # plan id -> Decision (this session's only)
        self._hedges: dict[str, Position] = {}        # plan id -> its hedge leg, as guards and equity see it
        self.margin_mode = margin_mode
        self.trailing = trailing
        self.placed = 0
        self.spot = broker.market == "spot"
        self._balances: dict[str, float] = {}          # spot: asset -> free + locked, as last fetched
        self._balance_seen: dict[str, tuple] = {}      # spot: plan id -> (entered, exited) at that fetch
        self.quote = spot_quote(broker, list(self.history)) if self.spot else "USDT"

    # -- the bar -------------------------------------------------------------------------------
    def _step(self, t, fresh) -> None:
        self.sync_positions()
        self.entered = []
        super()._step(t, fresh)
        self._after_step(t)

    def sync_positions(self) -> None:
        """Positions from the exchange's fills (refreshed by the broker) into the engine's portfolio;
        a symbol with a working plan is busy (no new decision), as in the backtest."""
        portfolio = self.engine.portfolio
        plans = {p.symbol: p for p in self.store.active_plans()}
        for sym, book in self.books.items():
            plan = plans.get(sym)
            tally = self.tally(plan, refresh=True) if plan is not None else None
            if tally is None or tally.net <= EPS:
                portfolio.positions.pop(sym, None)
            else:
                position = self._positions.get(plan.plan_id)
                if position is None:
                    position = Position(sym, plan.side, len(self.history[sym]), self.last_time,
                                        decision=self._decisions.get(plan.plan_id), levels=plan.levels,
                                        entries_planned=len(plan.entry.legs))
                    position.best_price = tally.average
                    self._positions[plan.plan_id] = position
                    self.engine._hedges_dirty = True     # as the backtest's first fill: hedged if hedge mode is on
                position.quantity, position.entry_price = tally.net, tally.average
                position.entries_filled = sum(1 for r in tally.orders
                                              if r.order.tag.startswith(ENTRY) and r.filled_quantity > 0)
                portfolio.positions[sym] = position
            self._sync_hedge(sym, plan, tally)
            book.legs = list(tally.live(ENTRY)) if tally is not None else []
        if self.spot:
            self._spot_cash()

    def _sync_hedge(self, sym: str, plan: Optional[PlanRecord], tally: Optional[Tally]) -> None:
        """The plan's hedge leg, from its fills, as ``portfolio.hedges[sym]`` (a ``Position`` with
        ``hedge=True``, as the backtest keeps it): the guards, exposure and equity see it."""
        hedges = self.engine.portfolio.hedges
        if tally is None or tally.hedge_net <= EPS:
            gone = hedges.pop(sym, None)
            if gone is not None:
                self._hedges = {k: v for k, v in self._hedges.items() if v is not gone}
            return
        leg = self._hedges.get(plan.plan_id)
        if leg is None:
            leg = self._hedges[plan.plan_id] = Position(sym, plan.side.opposite, len(self.history[sym]),
                                                        self.last_time, hedge=True)
        leg.quantity, leg.entry_price = tally.hedge_net, tally.hedge_average
        leg.best_price = leg.best_price or tally.hedge_average
        hedges[sym] = leg

    def _after_step(self, t: int) -> None:
        plans = {p.symbol: p for p in self.store.active_plans()}
        for sym, position in list(self.engine.portfolio.positions.items()):
            plan = plans.get(sym)
            if plan is None or position.levels is None:
                continue
            levels = position.levels
            if exchange_trails(plan):    # the exchange trails: the stop order stays at the initial stop
                levels = attrs.evolve(plan.levels, take_profit=levels.take_profit)
            if levels != plan.levels:
                log.info("exit_levels_moved", plan=plan.plan_id, stop=levels.stop,
                         previous_stop=plan.levels.stop, take_profit=levels.take_profit)
                self.store.save_plan(attrs.evolve(plan, levels=levels, updated_at=t))
        for sym, t_decided, decision in self.entered:
            self._open_plan(sym, t_decided, decision)
        for sym, book in self.books.items():
            if book.hedge_close or book.hedge_open:
                plan = plans.get(sym)
                plan = self.store.plan(plan.plan_id) if plan is not None else None    # levels saved above
                if plan is not None and book.hedge_close:
                    self._release_hedge(plan, book.hedge_close)
                elif plan is not None and book.hedge_open:
                    self._want_hedge(plan, book.hedge_open)
                book.hedge_open, book.hedge_close = 0.0, None
            if book.exit_reason:
                plan = plans.get(sym)
                if plan is not None:
                    self.flatten(plan, book.exit_reason)
                book.exit_reason = None

    def _open_plan(self, symbol: str, t: int, decision) -> None:
        plan_id = self.broker.client_id(symbol, t, "plan")
        if self.store.plan(plan_id) is not None:
            return
        if self.spot and decision.plan.side != Side.LONG:     # the pipeline never enters one; never send it
            log.error("short_plan_on_spot_refused", symbol=symbol, time=t)
            return
        trailing = exchange_trail(symbol, decision.levels, decision.plan) if self.trailing == "exchange" else None
        plan = PlanRecord(plan_id, symbol, t, float(decision.sizing.quantity), decision.plan, decision.levels,
                          trailing=trailing, updated_at=t)
        self.store.save_plan(plan)            # journaled before any of its orders
        self._decisions[plan_id] = decision
        log.info("plan_opened", plan=plan_id, symbol=symbol, side=plan.side.name, quantity=plan.quantity,
                 legs=len(plan.entry.legs), stop=plan.levels.stop, take_profit=plan.levels.take_profit)
        self.manage(plan)

    # -- plans ---------------------------------------------------------------------------------
    def plan_orders(self, plan_id: str) -> list[OrderRecord]:
        from sqlalchemy import select

        from mlcoord.live import rows
        from mlcoord.live.schema import orders

        with self.store.engine.connect() as conn:
            found = conn.execute(select(orders).where(orders.c.plan_id == plan_id)
                                 .order_by(orders.c.created_at, orders.c.client_order_id)).mappings().all()
        return [rows.order_record(r) for r in found]

    def tally(self, plan: PlanRecord, refresh: bool = False) -> Tally:
        records = self.plan_orders(plan.plan_id)
        if refresh:
            for r in records:
                if not r.state.terminal:
                    self.broker.refresh(r)
            records = self.plan_orders(plan.plan_id)
        entered = exited = value = 0.0
        hedged = unhedged = hedge_value = 0.0
        for r in records:
            if r.order.hedge:                # the hedge leg: the opposite position, never the plan's own
                if r.order.reduce_only:
                    unhedged += r.filled_quantity
                else:
                    hedged += r.filled_quantity
                    hedge_value += r.filled_quantity * (r.average_price or 0.0)
            elif r.order.reduce_only:
                exited += r.filled_quantity
            else:
                entered += r.filled_quantity
                value += r.filled_quantity * (r.average_price or 0.0)
        held = self._spot_held(plan, records, entered, exited, refresh) if self.spot and entered > EPS else math.inf
        return Tally(tuple(records), entered, exited, value / entered if entered > EPS else 0.0, held,
                     hedged, unhedged, hedge_value / hedged if hedged > EPS else 0.0)

    def manage_all(self) -> None:
        for plan in self.store.active_plans():
            self.manage(plan)

    def manage(self, plan: PlanRecord) -> None:
        """Bring one plan's orders in line with the plan and the exchange (idempotent)."""
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
        if exchange_trails(plan) and not self.spot:
            self._ensure_trailing(plan, self.tally(plan), qty)
        if not self.spot:
            self._manage_hedge(plan, self.tally(plan))
        tally = self.tally(plan)
        if tally.exit_filled:
            self._finish(plan, tally, "exit filled")

    def _place_entries(self, plan: PlanRecord, tally: Tally, now: int) -> None:
        known = {r.client_order_id for r in tally.orders}
        n = len(plan.entry.legs)
        expiry = plan.decision_time + max(plan.entry.expires_after_bars, 1) * self.timeframe_ns
        closing = any(r.order.tag == CLOSE for r in tally.orders)    # flattening: its legs stay cancelled
        for j, leg in enumerate(plan.entry.legs):
            tag = f"{ENTRY}:{j + 1}/{n}"
            cid = self.broker.client_id(plan.symbol, plan.decision_time, tag, 0)
            if cid in known and self.store.order(cid).state != OrderState.PENDING:
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
        if latest.filled_quantity > EPS or latest.state == OrderState.REJECTED:
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
        qty = self.broker.amount(plan.symbol, plan.quantity * leg.fraction)
        cid = self.broker.client_id(plan.symbol, plan.decision_time, tag, attempt + 1)
        log.info("entry_leg_repriced", plan=plan.plan_id, tag=tag, attempt=attempt + 1, price=price,
                 previous_price=latest.order.price, replaced=latest.client_order_id)
        self._place(Order(cid, plan.symbol, plan.side, OrderKind.LIMIT, qty, price, now, tag=tag,
                          expires_at=expiry), plan)

    def _ensure_exit(self, plan: PlanRecord, tally: Tally, tag: str, level: float, qty: float):
        price = self.broker.price(plan.symbol, level)
        live = tally.live(tag)
        if len(live) == 1 and live[0].order.price == price and abs(live[0].order.quantity - qty) <= EPS:
            return live[0]
        for r in live:                       # replace: cancel first, then place the next attempt
            if self.broker.cancel(r).filled_quantity > 0:
                return None                  # it filled meanwhile: the plan is exiting
        attempt = self._next_attempt(plan, tag)
        cid = self.broker.client_id(plan.symbol, plan.decision_time, tag, attempt)
        order = Order(cid, plan.symbol, plan.side, OrderKind.STOP, qty, price, self.last_time, reduce_only=True,
                      tag=tag)
        log.info("exit_order", plan=plan.plan_id, tag=tag, attempt=attempt, price=price, quantity=qty,
                 replaced=[r.client_order_id for r in live])
        return self._place(order, plan)

    def _next_attempt(self, plan: PlanRecord, tag: str) -> int:
        attempt = 0
        while self.store.order(self.broker.client_id(plan.symbol, plan.decision_time, tag, attempt)) is not None:
            attempt += 1
        return attempt

    def _place(self, order: Order, plan: PlanRecord) -> OrderRecord:
        self.placed += 1
        return self.broker.place(order, plan_id=plan.plan_id)

    # -- exchange-side trailing stops ([live] trailing = "exchange") ----------------------------
    def _ensure_trailing(self, plan: PlanRecord, tally: Tally, qty: float) -> Optional[OrderRecord]:
        """The plan's ``TRAILING_STOP_MARKET`` for ``qty`` (the filled quantity), next to its fixed
        stop. Replaced (cancel, then the next attempt's id) only when the quantity changes: the
        exchange keeps the best price of the order it has, a new one starts trailing afresh. Its
        activation price is dropped once the position's best price has passed it (the exchange
        would trail from the current price anyway). A refused trailing stop is not sent again for
        the same quantity (the fixed stop keeps protecting the position); one refused with an
        activation price is tried once without."""
        live = tally.live(TRAILING)
        if len(live) == 1 and abs(live[0].order.quantity - qty) <= EPS:
            return live[0]
        for r in live:
            if self.broker.cancel(r).filled_quantity > 0:
                return None                  # it fired meanwhile: the plan is exiting
        tried = [r for r in tally.orders if r.order.tag == TRAILING]
        activation = plan.trailing.activation_price
        if tried and tried[-1].state == OrderState.REJECTED and abs(tried[-1].order.quantity - qty) <= EPS:
            if tried[-1].order.price is None:
                return tried[-1]
            activation = None
        position = self._positions.get(plan.plan_id)
        best = position.best_price if position is not None and position.best_price else None
        if activation is not None and best is not None and (best - activation) * plan.side >= 0:
            activation = None
        attempt = self._next_attempt(plan, TRAILING)
        cid = self.broker.client_id(plan.symbol, plan.decision_time, TRAILING, attempt)
        price = self.broker.price(plan.symbol, activation) if activation is not None else None
        order = Order(cid, plan.symbol, plan.side, OrderKind.TRAILING_STOP, qty, price, self.last_time,
                      reduce_only=True, tag=TRAILING, callback_rate=plan.trailing.callback_rate)
        log.info("trailing_stop_order", plan=plan.plan_id, attempt=attempt, quantity=qty,
                 callback_percent=round(plan.trailing.callback_rate * 100, 4), activation=price,
                 replaced=[r.client_order_id for r in live])
        return self._place(order, plan)

    # -- hedge legs (futures, hedge mode) -------------------------------------------------------
    # The backtest's hedge (Backtest._fill_bar / _cover_hedges / _exit): while a guard's hedge trigger
    # is on, every open position gets ONE opposite-side leg of ``fraction`` x its quantity at that
    # moment (never resized); it is closed when the trigger is released or its position closes. As
    # in the backtest the leg has no stop or take profit of its own: it only offsets the plan's
    # position, whose stop stays in force; the exchange's liquidation is its only limit.

    def _want_hedge(self, plan: PlanRecord, quantity: float) -> None:
        """The guard turned the hedge on while ``plan`` holds a position (the backtest's
        ``book.hedge_open``: ``quantity`` is the guard's fraction of what the plan holds). The leg is
        journaled with the plan first, then opened at market on the opposite position side; a crash
        in between leaves a wanted leg without an order, which the next :meth:`manage` opens (once:
        the order's client id comes from the plan, the leg's number and the attempt)."""
        tally = self.tally(plan)
        if plan.status != PlanStatus.ACTIVE or plan.hedge is not None or tally.net <= EPS:
            return
        if self._hedge_held(plan, tally):
            log.warning("hedge_still_closing", plan=plan.plan_id, held=tally.hedge_net,
                        note="the previous leg closes first; no second leg")
            return
        qty = self.broker.amount(plan.symbol, quantity)
        if qty <= 0:
            log.info("hedge_below_minimum", plan=plan.plan_id, quantity=quantity)
            return
        fractions = list(self.engine.portfolio.hedge_mode.values())
        fraction = max(fractions) if fractions and 0 < max(fractions) <= 1 else None
        leg = HedgeLeg(plan.side.opposite, qty, leverage=float(self.settings.backtest.leverage),
                       margin_mode=self.margin_mode, number=tally.hedge_number + 1, fraction=fraction)
        plan = attrs.evolve(plan, hedge=leg, updated_at=max(self.last_time, plan.updated_at))
        self.store.save_plan(plan)            # journaled before its order
        log.info("hedge_on", plan=plan.plan_id, symbol=plan.symbol, side=leg.side.name, quantity=qty,
                 fraction=fraction, number=leg.number, position=tally.net, bar_time=self.last_time)
        self._manage_hedge(plan, tally)

    def _release_hedge(self, plan: PlanRecord, reason: str) -> None:
        """The guard released the hedge (the backtest's ``book.hedge_close``): journaled first (the
        plan wants no leg any more), then what the leg holds is closed at market."""
        if plan.hedge is not None:
            plan = attrs.evolve(plan, hedge=None, updated_at=max(self.last_time, plan.updated_at))
            self.store.save_plan(plan)
        log.info("hedge_off", plan=plan.plan_id, symbol=plan.symbol, reason=reason, bar_time=self.last_time)
        self._close_hedge(plan, self.tally(plan))

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

    def flatten(self, plan: PlanRecord, reason: str) -> None:
        """Cancel the plan's working orders and close what it holds at market."""
        log.warning("plan_flatten", plan=plan.plan_id, reason=reason)
        tally = self.tally(plan, refresh=True)
        self._finish(plan, tally, reason)

    def flatten_all(self, reason: str) -> None:
        for plan in self.store.active_plans():
            self.flatten(plan, reason)

    def _finish(self, plan: PlanRecord, tally: Tally, reason: str) -> None:
        """Entries cancelled, the rest closed at market; the stop is cancelled only once flat, so a
        close that fills partly (or is refused) leaves the position protected. On spot the stop locks
        the coins, so it is cancelled first; a close that fails gets a new stop for what is left."""
        for r in tally.live(ENTRY):
            self.broker.cancel(r)
        tally = self.tally(plan)
        if self.spot:
            tally = self._release_stops(plan, tally)
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
        self._positions.pop(plan.plan_id, None)
        self._balance_seen.pop(plan.plan_id, None)
        log.info("plan_closed", plan=plan.plan_id, status=status.value, reason=reason, entered=tally.entered,
                 exited=tally.exited)
        if status == PlanStatus.CLOSED:
            self._trade_closed(plan, tally, reason)

    # -- learning feedback ---------------------------------------------------------------------
    def _trade_closed(self, plan: PlanRecord, tally: Tally, reason: str) -> None:
        """The backtest's feedback for a closed position (:meth:`Backtest._exit` calls the same
        :meth:`Pipeline.trade_closed`): the plan's :class:`Trade`, built from its fills, with the
        decision that opened it. A plan opened before a restart has no Decision object in this
        session: its trade is built from the stored decision (confidence, reasons, initial stop)
        and handed over with ``decision=None`` (the hook allows it), so cooldowns, pair locks and
        the sizer's trade history still see it."""
        decision = self._decisions.pop(plan.plan_id, None)
        stored = None
        if decision is None:
            stored = self.store.decision(plan.symbol, plan.decision_time)
            if stored is None:
                log.warning("trade_feedback_without_decision", plan=plan.plan_id, symbol=plan.symbol,
                            note="the opening decision was not stored; confidence 0 and reason unspecified")
        trade = self.plan_trade(plan, tally, reason, decision, stored)
        self.engine.trades.append(trade)
        self.pipeline.trade_closed(trade, decision)
        log.info("trade_feedback", plan=plan.plan_id, symbol=plan.symbol, exit_reason=trade.exit_reason,
                 pnl=round(trade.pnl, 8), entry=trade.entry_price, exit=trade.exit_price, quantity=trade.quantity,
                 decision="this session" if decision is not None else ("stored" if stored else "unknown"))

    def plan_trade(self, plan: PlanRecord, tally: Tally, reason: str, decision, stored=None) -> Trade:
        """A closed plan as the backtest's :class:`Trade`: entry and exit averages from the fills,
        fees from the exchange's trade list (:meth:`_exchange_fees`), PnL net of fees, bar times
        (opened: the bar of the first entry fill; closed: the last closed bar). Funding is not
        tracked live (0)."""
        from mlcoord.coordinator import decisive_reason

        own = [r for r in tally.orders if not r.order.hedge]      # the hedge leg is not this trade's
        entries = [r for r in own if not r.order.reduce_only and r.filled_quantity > 0]
        exits = [r for r in own if r.order.reduce_only and r.filled_quantity > 0]
        exit_qty = sum(r.filled_quantity for r in exits)
        exit_price = sum(r.filled_quantity * (r.average_price or 0.0) for r in exits) / exit_qty \
            if exit_qty > EPS else 0.0
        fills = [f.fill for r in entries + exits for f in self.store.fills(r.client_order_id)]
        fees = self._exchange_fees(plan, entries + exits)
        if fees is None:
            fees = sum(f.fee for f in fills)
        first = min((f.time for f in fills if not f.reduce_only), default=plan.decision_time)
        opened = max(first - first % self.timeframe_ns, plan.decision_time) if self.timeframe_ns else first
        closed = max(self.last_time, plan.decision_time)
        opened = min(opened, closed)     # an exchange clock ahead of the bars must not date a trade ahead
        pnl = (exit_price - tally.average) * exit_qty * plan.side - fees
        return Trade(id=plan.plan_id, symbol=plan.symbol, side=plan.side, opened_at=opened,
                     closed_at=closed, entry_price=tally.average, exit_price=exit_price,
                     quantity=tally.entered, pnl=pnl, fees=fees, funding=0.0,
                     exit_reason=self._exit_reason(plan, tally, reason, _initial_stop(decision, stored)),
                     entries_planned=len(plan.entry.legs), entries_filled=len({r.order.tag for r in entries}),
                     confidence=decision.confidence if decision is not None else float((stored or {}).get(
                         "confidence", 0.0)),
                     entry_reason=decisive_reason(decision.technical if decision is not None else Signal(
                         Action.HOLD, 0.0, tuple((stored or {}).get("reasons", ())))))

    def _exchange_fees(self, plan: PlanRecord, filled: Sequence[OrderRecord]) -> Optional[float]:
        """The fees of the plan's filled orders in the quote asset, from the exchange's trade list
        (one request per filled order, by its exchange id, so no time window can cut trades off):
        order answers often carry no fee (futures orders, orders that filled while resting), so the
        fills alone would count none. A fee in the base asset is converted at the trade's price.
        None (the fills' own fees are used, logged) when the trades cannot be read, or a fee is in a
        third asset (e.g. BNB) that this cannot price."""
        broker = self.broker
        sym = broker.symbol(plan.symbol)
        market = broker.exchange.market(sym)
        total, ids = 0.0, set()
        try:
            for r in filled:
                if broker.market == "futures" and r.order.kind not in (OrderKind.MARKET, OrderKind.LIMIT):
                    found = broker.lookup(r) or {}       # an algo order: its triggered order has the trades
                    child = (found.get("info") or {}).get("actualOrderId") or found.get("id")
                    ids.add(str(child or r.exchange_order_id or ""))
                else:
                    ids.add(str(r.exchange_order_id or ""))
            if "" in ids:
                raise BrokerError("a filled order has no exchange id")
            for oid in sorted(ids):
                trades = broker.call(lambda oid=oid: broker.exchange.fetch_my_trades(sym, None, None, {"orderId": oid}),
                                     f"fetch_my_trades {sym} {oid}")
                for t in trades:
                    fee = t.get("fee") or {}
                    cost, currency = float(fee.get("cost") or 0.0), fee.get("currency")
                    if not cost or currency == market["quote"]:
                        total += cost
                    elif currency == market["base"]:
                        total += cost * float(t["price"])
                    else:
                        raise BrokerError(f"a fee in {currency}, which this cannot price")
        except Exception as exc:
            log.warning("trade_fees_unavailable", plan=plan.plan_id, error=f"{type(exc).__name__}: {exc}",
                        note="using the fees the order answers reported")
            return None
        return total

    def _exit_reason(self, plan: PlanRecord, tally: Tally, reason: str, initial: Optional[float]) -> str:
        """In the backtest's words when an exit order did it (``stop_loss``, ``trailing_stop`` for a
        stop moved from the decision's, ``take_profit``); else why the bot closed it."""
        for r in tally.orders:
            if not r.order.reduce_only or r.filled_quantity <= 0:
                continue
            tag = r.order.tag
            if tag.startswith(TAKE_PROFIT):
                return "take_profit"
            if tag.startswith("trailing"):
                return "trailing_stop"
            if tag.startswith(STOP):
                moved = initial is not None and r.order.price != self.broker.price(plan.symbol, initial)
                return "trailing_stop" if moved else "stop_loss"
        return reason

    # -- spot ----------------------------------------------------------------------------------
    def monitor_spot(self, book, i: int, position: Position) -> None:
        """Spot, per closed bar of a held long, what no exchange order covers: the take profit (the
        stop locks the coins, so it cannot be an order too) and a ``STOP_LOSS_LIMIT`` that triggered
        but did not fill because the price gapped below its limit (the bar closed below the stop
        with coins still held). Either closes the position at market in :meth:`_after_step`."""
        levels = position.levels
        if levels is None or position.side != Side.LONG or position.quantity <= EPS:
            return
        if book.c[i] < levels.stop:
            decision = position.decision
            initial = decision.levels.stop if decision is not None and decision.levels is not None else levels.stop
            book.exit_reason = "stop_loss" if levels.stop == initial else "trailing_stop"
            log.warning("stop_limit_not_filled", symbol=book.symbol, stop=levels.stop, close=book.c[i],
                        held=position.quantity, note="the bar closed below the stop: closing at market")
        elif levels.take_profit is not None and book.h[i] >= levels.take_profit:
            book.exit_reason = "take_profit"
            log.info("take_profit_monitored", symbol=book.symbol, take_profit=levels.take_profit, high=book.h[i],
                     note="stop cancelled, selling at market")

    def _release_stops(self, plan: PlanRecord, tally: Tally) -> Tally:
        """Spot: the stop locks the coins it would sell, so it is cancelled before a closing sell
        (what it filled meanwhile is read back by the cancel)."""
        live = [r for r in tally.orders if r.order.kind == OrderKind.STOP and not r.state.terminal]
        for r in live:
            self.broker.cancel(r)
        if live:
            log.info("spot_stop_released", plan=plan.plan_id, client_ids=[r.client_order_id for r in live])
        return self.tally(plan) if live else tally

    def _closable(self, symbol: str, quantity: float) -> float:
        """``quantity`` rounded as a closing order carries it; 0.0 when it is dust (below the minimum
        amount, or on spot below the minimum notional at the last close): dust counts as flat."""
        qty = self.broker.amount(symbol, quantity)
        if self.spot and qty > 0:
            close = self._last_close(symbol)
            if close is not None and qty * close < self.broker.min_notional(symbol):
                return 0.0
        return qty

    def _last_close(self, symbol: str, default: Optional[float] = None) -> Optional[float]:
        history = self.history.get(symbol)
        return float(history.close[-1]) if history is not None and len(history) else default

    def _spot_held(self, plan: PlanRecord, records, entered: float, exited: float, refresh: bool) -> float:
        """What a spot plan really holds: its entry fills less the fees Binance took in the base
        asset (as the fills report them), capped by the account's free + locked balance of that
        asset (fees a fill did not report; coins sold outside the bot). The balance is fetched
        again on a refresh or when the plan's fills changed since the last fetch."""
        base = self._base(plan.symbol)
        fees = 0.0
        for r in records:
            if not r.order.reduce_only and r.filled_quantity > 0:
                fees += sum(f.fill.fee / f.fill.price for f in self.store.fills(r.client_order_id)
                            if f.fee_currency == base and f.fill.price > 0)
        seen = (entered, exited)
        if refresh or base not in self._balances or self._balance_seen.get(plan.plan_id) != seen:
            self._fetch_balances()
            self._balance_seen[plan.plan_id] = seen
        return max(min(entered - exited - fees, self._balances.get(base, 0.0)), 0.0)

    def _base(self, symbol: str) -> str:
        return self.broker.exchange.market(self.broker.symbol(symbol))["base"]

    def _fetch_balances(self) -> dict[str, float]:
        balance = self.broker.call(self.broker.exchange.fetch_balance, "fetch_balance")
        self._balances = {a: float(v or 0.0) for a, v in (balance.get("total") or {}).items()}
        return self._balances

    def _spot_cash(self) -> None:
        """Spot: the engine keeps the backtest's margin-style books (equity = cash + unrealised PnL),
        so its cash is the quote balance plus the held coins at their entry cost; the equity it
        marks is then the quote balance plus the coins at the last close: the real account."""
        if not self._balances:
            self._fetch_balances()
        p = self.engine.portfolio
        p.cash = self._balances.get(self.quote, 0.0) + sum(pos.quantity * pos.entry_price
                                                           for pos in p.positions.values())

    def _sync_spot_wallet(self, reset_peak: bool) -> None:
        """:meth:`sync_wallet` on spot: the quote balance and the coins the active plans hold."""
        self._fetch_balances()
        held = []
        for plan in self.store.active_plans():
            tally = self.tally(plan)
            if tally.net > EPS:
                held.append((plan.symbol, tally.net, tally.average))
        p = self.engine.portfolio
        quote = self._balances.get(self.quote, 0.0)
        p.cash = quote + sum(q * average for _, q, average in held)
        if reset_peak:
            p.equity = p.peak_equity = p.day_start_equity = \
                quote + sum(q * self._last_close(s, average) for s, q, average in held)

    # -- the account ---------------------------------------------------------------------------
    def sync_wallet(self, reset_peak: bool = False) -> None:
        """The engine's cash from the futures wallet (risk sizing and drawdown guards see it)."""
        if self.spot:
            return self._sync_spot_wallet(reset_peak)
        balance = self.broker.call(self.broker.exchange.fetch_balance, "fetch_balance")
        info = balance.get("info") or {}
        wallet = info.get("totalWalletBalance") if isinstance(info, dict) else None
        if wallet is None:
            wallet = (balance.get("total") or {}).get("USDT")
        if wallet is None:
            return
        p = self.engine.portfolio
        p.cash = float(wallet)
        if reset_peak:
            p.equity = p.peak_equity = p.day_start_equity = p.cash


def _initial_stop(decision, stored: Optional[dict]) -> Optional[float]:
    """The stop the plan was decided with (to tell a stop loss from a trailed stop)."""
    if decision is not None:
        return decision.levels.stop if decision.levels is not None else None
    stop = ((stored or {}).get("levels") or {}).get("stop")
    return float(stop) if stop is not None else None


def run_live(settings, options, exchange, plugins, *, clock=None, health_clock=None, cycles: Optional[int] = None,
             timeframe: str = "1h", store=None, on_cycle=None, make_exchange=None) -> LiveTrader:
    """``mlcoord live``: closed candles and real orders on ``exchange`` (USD-M futures in hedge mode,
    or spot: ``[exchange] market``).

    Start: the pipeline is built first (the hedging guard on spot stops here, before the account
    is touched; so does a spot config with leverage), broker setup (futures: hedge mode, leverage,
    margin mode), reconciliation, every active plan protected before anything else. Then per poll: kill switch, new closed bars through
    :class:`LiveTrader`, every plan managed, heartbeat. ``cycles`` bounds the polls; ``on_cycle(trader)``
    is called after each (tests check invariants there). ``health_clock`` times the retry backoff
    (default ``clock``). With ``[live] scan = true`` the scanner picks the symbols every cycle
    (``make_exchange`` builds its ccxt instances; default: ``exchange`` itself); symbols with an
    active plan stay in the loop (bars, exit updates, stops) until the plan closes, without new
    entries."""
    from mlcoord.candles import timeframe_to_ns
    from mlcoord.live.reconcile import reconcile
    from mlcoord.live.retry import ExchangeHealth, ExchangeUnavailable, SystemClock
    from mlcoord.live.runner import fetch_closed, market_symbols
    from mlcoord.live.store import Store
    from mlcoord.live.supervisor import Supervisor
    from mlcoord.pipeline import build_pipeline

    settings = _for_market(settings)
    market = settings.exchange.market
    pipeline = build_pipeline(settings, plugins)
    clock = clock or SystemClock()
    health = ExchangeHealth(clock=health_clock or clock)
    supervisor = Supervisor(options)
    store = store or Store.open(options.store)
    broker = Broker(exchange, store, market, health=health)
    scanner = None
    if getattr(options, "scan", False):
        from mlcoord.live.scanner import Scanner

        scanner = Scanner(make_exchange or (lambda: exchange), options.scanner, market,
                          clock=health_clock or clock)
        picked = _scan(scanner, health)
        symbols = picked + sorted({p.symbol for p in store.active_plans()} - set(picked))
        if not symbols:
            raise BrokerError("the scanner found no pair to trade (see [live.scanner] filters)")
        ccxt_symbols = {s: broker.symbol(s) for s in symbols}
    else:
        symbols, ccxt_symbols = market_symbols(settings)
    broker.setup(symbols, settings.backtest.leverage, options.margin_mode)
    found = reconcile(broker, symbols, options.unknown_orders)
    history = fetch_closed(exchange, health, symbols, ccxt_symbols, timeframe, options.history_bars)
    trader = LiveTrader(pipeline, settings, history, broker,
                        timeframe_ns=timeframe_to_ns(timeframe),
                        reprice_after_bars=getattr(options, "reprice_after_bars", 0),
                        margin_mode=getattr(options, "margin_mode", "isolated"),
                        trailing=getattr(options, "trailing", "bot"))
    if scanner is not None:
        trader.entry_symbols = set(picked)
    trader.sync_wallet(reset_peak=True)
    memory = SessionMemory(store)
    restored = memory.restore(trader)
    if restored:
        log.info("session_state_restored", **restored)
    for plan in found.unprotected:
        log.warning("position_without_stop", plan=plan.plan_id, symbol=plan.symbol, stop=plan.levels.stop,
                    note="placing its stop before any new entry")
    trader.manage_all()
    log.info("live_started", symbols=symbols, timeframe=timeframe, history_bars=[len(c) for c in history],
             active_plans=len(store.active_plans()))
    done = 0
    try:
        while cycles is None or done < cycles:
            done += 1
            status = "ok"
            try:
                trader.entries_blocked = supervisor.killed()
                if trader.entries_blocked:
                    status = "killed"
                    log.warning("kill_switch_on", path=options.kill_switch, flatten=options.flatten_on_kill)
                    if options.flatten_on_kill:
                        trader.flatten_all("kill switch")
                trader.sync_wallet()
                if scanner is not None:
                    symbols = _rescan(scanner, health, trader, symbols, settings, options, timeframe)
                    ccxt_symbols = {s: broker.symbol(s) for s in symbols}
                if scanner is not None:           # many pairs: their requests overlap
                    fresh = _scan_fetch(scanner, health, symbols, ccxt_symbols, timeframe)
                else:
                    fresh = fetch_closed(exchange, health, symbols, ccxt_symbols, timeframe, 5)
                steps = trader.on_candles(fresh)
                trader.manage_all()
                memory.save(trader)
            except ExchangeUnavailable as exc:
                steps, status = 0, f"paused: {exc}"
            supervisor.beat(wall_time=clock.now(), bar_time=trader.last_time, status=status,
                            equity=trader.portfolio.equity)
            if steps:
                log.info("live_cycle", bars=steps, positions=sorted(trader.portfolio.positions),
                         plans=len(store.active_plans()))
            if on_cycle is not None:
                on_cycle(trader)
            if cycles is None or done < cycles:
                clock.sleep(options.poll_seconds)
    finally:
        if scanner is not None:
            scanner.close()
    return trader


def _for_market(settings):
    """The settings the engine decides with on ``[exchange] market`` (as
    :func:`mlcoord.live.runner.load_live_settings` makes them): ``[backtest] market`` follows it, and
    a spot account cannot borrow, so leverage other than 1 there is refused."""
    market = settings.exchange.market
    if market == "spot" and settings.backtest.leverage != 1:
        from mlcoord.errors import ConfigError

        raise ConfigError(f"[backtest] leverage = {settings.backtest.leverage:g} but [exchange] market = \"spot\": "
                          "a spot account cannot borrow; set leverage = 1 to trade spot live")
    if settings.backtest.market != market:
        settings = attrs.evolve(settings, backtest=attrs.evolve(settings.backtest, market=market))
    return settings


def spot_quote(broker: Broker, symbols: Sequence[str]) -> str:
    """The quote asset a spot session's cash is in. Symbols with different quotes, or sharing a
    base asset (one balance, two plans), are refused: the held-quantity cap could not tell them
    apart."""
    quotes, bases = set(), {}
    for s in symbols:
        market = broker.exchange.market(broker.symbol(s))
        quotes.add(market["quote"])
        if market["base"] in bases:
            raise not_yet_supported(f"spot symbols sharing a base asset ({bases[market['base']]} and {s})")
        bases[market["base"]] = s
    if len(quotes) > 1:
        raise not_yet_supported(f"spot symbols with different quote assets ({', '.join(sorted(quotes))})")
    return quotes.pop() if quotes else "USDT"


def _scan_fetch(scanner, health, symbols, ccxt_symbols, timeframe: str) -> list:
    """This cycle's newest closed bars of every symbol through the scanner's worker threads; a
    symbol whose answer was malformed is left out this cycle (its plan keeps its exchange stop)."""
    from mlcoord.candles import Candles

    by_ccxt = health.call(lambda: scanner.fetch_closed([ccxt_symbols[s] for s in symbols], timeframe, 5),
                          what="candles (scanner)")
    return [Candles(s, by_ccxt[ccxt_symbols[s]].timeframe, by_ccxt[ccxt_symbols[s]].frame)
            for s in symbols if ccxt_symbols[s] in by_ccxt]


def _scan(scanner, health) -> list[str]:
    """The scanner's pick, named as in ``[data] symbols`` (``BTC/USDT:USDT`` -> ``BTC/USDT``)."""
    picked = health.call(scanner.pick, what="scanner pick")
    out = []
    for s in picked:
        base_quote, _, settle = s.partition(":")
        out.append(base_quote if not settle or settle == base_quote.split("/")[-1] else s)
    return out


def _rescan(scanner, health, trader: LiveTrader, current: Sequence[str], settings, options, timeframe: str):
    """This cycle's symbols: the scanner's pick plus every symbol with an active plan. A symbol new
    to the session gets its leverage set and its warm-up history; one back after an absence gets
    the bars it missed (history only, never stepped)."""
    from mlcoord.live.runner import fetch_closed

    picked = _scan(scanner, health)
    held = sorted({p.symbol for p in trader.store.active_plans()} - set(picked))
    symbols = picked + held
    trader.entry_symbols = set(picked)
    catch_up = [s for s in symbols if s not in current]
    if catch_up:
        broker = trader.broker
        broker.setup_symbols([s for s in catch_up if s not in trader.history], settings.backtest.leverage,
                             options.margin_mode)
        found = fetch_closed(broker.exchange, health, catch_up, {s: broker.symbol(s) for s in catch_up},
                             timeframe, options.history_bars)
        for c in found:
            trader.add_history(c)
        log.info("scanner_symbols", picked=picked, managed_only=held, added=catch_up)
    return symbols
