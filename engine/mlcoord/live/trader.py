"""The live order loop (USD-M futures, hedge mode): the paper trader's decisions as exchange orders.

Per newly closed bar :class:`LiveTrader` runs the backtest's own per-bar code
(:meth:`mlcoord.backtest.engine.Backtest.step`, through :class:`mlcoord.live.runner.PaperTrader`):
same preparation, guards, exit-manager updates and entry decisions. Only the fill model is taken
out (:class:`LiveEngine`): positions are built from the exchange's fills, which the broker records
in the store, and are handed to the step before it runs, so the exit manager and the risk manager
see what the account really holds.

Each entered decision becomes ONE journaled plan (:meth:`Store.save_plan`, written before any
order): its ladder legs, stop and take profit. Orders follow from the stored plan alone, so a
restart resumes exactly where the process died:

* entry legs: market legs at once, limit legs with ``expires_after_bars`` (unfilled ones are
  cancelled after that many bars); a market leg that was never sent is dropped once its bar has
  passed (it would no longer be the decided price); with ``[live] reprice_after_bars`` an unfilled
  limit leg older than that is cancelled and placed again (next attempt's client id) at the plan's
  offset from the current close (a leg with a partial fill keeps its price);
* once a fill exists: a STOP_MARKET and a TAKE_PROFIT_MARKET (closing side, hedge-mode position
  side) for the filled quantity. They are replaced (cancel, then place with the next attempt's
  client id) when the filled quantity grows or the exit manager moves the stop (it only tightens);
  a stop the exchange refuses (e.g. it would trigger at once) closes the position at market;
* when the stop or take profit fills, the other one and the remaining legs are cancelled, any
  remainder is closed at market and the plan is closed.

At start: reconciliation (:func:`mlcoord.live.reconcile.reconcile`), then every active plan is
brought up to date and protected, so a position without a stop gets one before any new entry.
The kill switch blocks new entries (and with ``flatten_on_kill`` closes positions); the loop keeps
running while it is on, so open positions keep their stops moving. The heartbeat is written after
every cycle.

With ``[live] scan = true`` the scanner picks the symbols every cycle; a symbol that drops out
keeps its bars and stops while its plan is active, with no new entry.

Not yet supported (clear errors or log lines): spot accounts, hedge legs from the hedging guard,
exchange-side trailing stops (the exit manager's trailing logic
moves the stop order instead), and the trade-closed learning feedback to plugins.
"""

from __future__ import annotations

from typing import Optional, Sequence

import attrs
import numpy as np
import structlog

from mlcoord.backtest.engine import Backtest
from mlcoord.backtest.portfolio import Position
from mlcoord.live.broker import Broker, BrokerError, not_yet_supported
from mlcoord.live.records import OrderRecord, OrderState, PlanRecord, PlanStatus
from mlcoord.live.runner import PaperTrader
from mlcoord.model import Order, OrderKind, Side

log = structlog.get_logger("mlcoord.live.trader")

EPS = 1e-12
SEND_TRIES = 3        # fresh client ids tried for a refused stop or an unfinished close, per cycle
ENTRY, STOP, TAKE_PROFIT, CLOSE = "entry", "stop", "take_profit", "close"


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

    def _decide(self, book, i, t):
        picked = self.trader.entry_symbols
        if self.trader.entries_blocked or (picked is not None and book.symbol not in picked):
            return
        super()._decide(book, i, t)
        if book.legs:
            self.trader.entered.append((book.symbol, t, self.journal.decisions[-1]))


@attrs.frozen
class Tally:
    """A plan's orders as the store has them (after the broker's refresh)."""

    orders: tuple[OrderRecord, ...]
    entered: float
    exited: float
    average: float

    @property
    def net(self) -> float:
        return max(self.entered - self.exited, 0.0)

    def live(self, prefix: str) -> list[OrderRecord]:
        return [r for r in self.orders if r.order.tag.startswith(prefix) and not r.state.terminal]

    @property
    def exit_filled(self) -> bool:
        return any(r.filled_quantity > 0 for r in self.orders if r.order.tag in (STOP, TAKE_PROFIT))


class LiveTrader(PaperTrader):
    """The paper trader with the broker in place of the simulated fills (futures, hedge mode)."""

    engine_class = LiveEngine

    def __init__(self, pipeline, settings, history, broker: Broker, *, timeframe_ns: int, journal=None,
                 reprice_after_bars: int = 0):
        if broker.market != "futures":
            raise not_yet_supported("live trading on a spot account (the live order loop handles USD-M "
                                    "futures in hedge mode; use `mlcoord paper` on spot)")
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
        self._warned_hedge = False
        self.placed = 0

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
                position.quantity, position.entry_price = tally.net, tally.average
                position.entries_filled = sum(1 for r in tally.orders
                                              if r.order.tag.startswith(ENTRY) and r.filled_quantity > 0)
                portfolio.positions[sym] = position
            book.legs = list(tally.live(ENTRY)) if tally is not None else []

    def _after_step(self, t: int) -> None:
        plans = {p.symbol: p for p in self.store.active_plans()}
        for sym, position in list(self.engine.portfolio.positions.items()):
            plan = plans.get(sym)
            if plan is not None and position.levels is not None and position.levels != plan.levels:
                log.info("exit_levels_moved", plan=plan.plan_id, stop=position.levels.stop,
                         previous_stop=plan.levels.stop, take_profit=position.levels.take_profit)
                self.store.save_plan(attrs.evolve(plan, levels=position.levels, updated_at=t))
        for sym, t_decided, decision in self.entered:
            self._open_plan(sym, t_decided, decision)
        for sym, book in self.books.items():
            if book.hedge_open or book.hedge_close:
                if not self._warned_hedge:
                    log.warning("not_yet_supported", what="hedge legs in live trading; the hedging guard's "
                                "hedge is not placed")
                    self._warned_hedge = True
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
        plan = PlanRecord(plan_id, symbol, t, float(decision.sizing.quantity), decision.plan, decision.levels,
                          updated_at=t)
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
        for r in records:
            if r.order.reduce_only:
                exited += r.filled_quantity
            else:
                entered += r.filled_quantity
                value += r.filled_quantity * (r.average_price or 0.0)
        return Tally(tuple(records), entered, exited, value / entered if entered > EPS else 0.0)

    def manage_all(self) -> None:
        for plan in self.store.active_plans():
            self.manage(plan)

    def manage(self, plan: PlanRecord) -> None:
        """Bring one plan's orders in line with the plan and the exchange (idempotent)."""
        tally = self.tally(plan, refresh=True)
        if tally.exit_filled:
            return self._finish(plan, tally, "exit filled")
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
        qty = self.broker.amount(plan.symbol, tally.net)
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
        if plan.levels.take_profit is not None:
            self._ensure_exit(plan, self.tally(plan), TAKE_PROFIT, plan.levels.take_profit, qty)
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
        close that fills partly (or is refused) leaves the position protected."""
        for r in tally.live(ENTRY):
            self.broker.cancel(r)
        tally = self.tally(plan)
        for _ in range(SEND_TRIES):
            qty = self.broker.amount(plan.symbol, tally.net) if tally.net > EPS else 0.0
            if qty <= 0:
                break
            attempt = self._next_attempt(plan, CLOSE)
            cid = self.broker.client_id(plan.symbol, plan.decision_time, CLOSE, attempt)
            self._place(Order(cid, plan.symbol, plan.side, OrderKind.MARKET, qty, None, self.last_time,
                              reduce_only=True, tag=CLOSE), plan)
            tally = self.tally(plan, refresh=True)
        if tally.net <= EPS or self.broker.amount(plan.symbol, tally.net) <= 0:
            for r in tally.orders:
                if not r.state.terminal:
                    self.broker.cancel(r)
            self._close_plan(plan, self.tally(plan), reason)
            return
        log.error("plan_close_incomplete", plan=plan.plan_id, remaining=tally.net,
                  note="the stop stays (resized); closing is retried next cycle")
        self._ensure_exit(plan, tally, STOP, plan.levels.stop, self.broker.amount(plan.symbol, tally.net))

    def _close_plan(self, plan: PlanRecord, tally: Tally, reason: str) -> None:
        status = PlanStatus.CLOSED if tally.entered > EPS else PlanStatus.CANCELLED
        self.store.save_plan(attrs.evolve(plan, status=status, updated_at=max(self.last_time, plan.updated_at)))
        self._positions.pop(plan.plan_id, None)
        log.info("plan_closed", plan=plan.plan_id, status=status.value, reason=reason, entered=tally.entered,
                 exited=tally.exited)

    # -- the account ---------------------------------------------------------------------------
    def sync_wallet(self, reset_peak: bool = False) -> None:
        """The engine's cash from the futures wallet (risk sizing and drawdown guards see it)."""
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


def run_live(settings, options, exchange, plugins, *, clock=None, health_clock=None, cycles: Optional[int] = None,
             timeframe: str = "1h", store=None, on_cycle=None, make_exchange=None) -> LiveTrader:
    """``mlcoord live``: closed candles and real orders on ``exchange`` (USD-M futures, hedge mode).

    Start: broker setup (hedge mode, leverage, margin mode), reconciliation, every active plan
    protected before anything else. Then per poll: kill switch, new closed bars through
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

    if settings.exchange.market != "futures":
        raise not_yet_supported("live trading on a spot account (the live order loop handles USD-M futures "
                                "in hedge mode; use `mlcoord paper` on spot)")
    clock = clock or SystemClock()
    health = ExchangeHealth(clock=health_clock or clock)
    supervisor = Supervisor(options)
    store = store or Store.open(options.store)
    broker = Broker(exchange, store, "futures", health=health)
    scanner = None
    if getattr(options, "scan", False):
        from mlcoord.live.scanner import Scanner

        scanner = Scanner(make_exchange or (lambda: exchange), options.scanner, "futures",
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
    trader = LiveTrader(build_pipeline(settings, plugins), settings, history, broker,
                        timeframe_ns=timeframe_to_ns(timeframe),
                        reprice_after_bars=getattr(options, "reprice_after_bars", 0))
    if scanner is not None:
        trader.entry_symbols = set(picked)
    trader.sync_wallet(reset_peak=True)
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
                fresh = fetch_closed(exchange, health, symbols, ccxt_symbols, timeframe, 5)
                steps = trader.on_candles(fresh)
                trader.manage_all()
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
