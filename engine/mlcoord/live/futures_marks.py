"""What only a futures exchange knows about the positions the plans hold, read every cycle, a part
of :class:`mlcoord.live.trader.LiveTrader`:

* the liquidation price of each plan's position and hedge leg (``fetch_positions``): stored on
  the store's position rows and booked on the ledger's positions, which guards and exit managers see;
* funding paid or received (``fetch_funding_history``, Binance's income history), once per new
  bar, booked in the ledger on the symbol's position and hedge leg (split by signed quantity:
  the exchange reports funding per symbol), so each trade's ``funding`` is its own, as in a
  backtest; the plan's total is kept in the store for a restart;
* a position the exchange no longer holds although the plan's fills say it should (liquidated, or
  closed by hand): the plan's working orders are cancelled and the plan closed, said loudly, so
  no stop is left guarding nothing and no new stop is placed for a position that is gone.
"""

from __future__ import annotations

import math
from typing import Optional

import structlog

from mlcoord.live.plan_orders import EPS
from mlcoord.live.records import PlanRecord
from mlcoord.model import Side
from mlcoord.live.trader_parts import TraderParts

log = structlog.get_logger("mlcoord.live.futures_marks")

FUNDING = "funding"          # the store's state row: paid per plan, and the newest event seen per symbol
GONE_REASON = "position closed on the exchange (liquidated or by hand)"
FUNDING_PAGE = 1000          # Binance's largest income page: a full one may be cut off


class FuturesMarks(TraderParts):
    """Liquidation prices, funding and vanished positions (futures only; uses the trader's broker,
    store, engine and tally)."""

    def mark_futures(self, new_bar: bool) -> None:
        if self.spot:
            return
        plans = self.active_plans()
        if not plans:
            return
        broker = self.broker
        symbols = sorted({broker.symbol(p.symbol) for p in plans})
        rows = broker.fetch_positions(symbols)
        held = {}
        for row in rows or []:
            side = str(row.get("side") or "").lower()
            contracts = abs(_number(row.get("contracts")) or 0.0)
            held[(row.get("symbol"), side)] = (contracts, _number(row.get("liquidationPrice")))
        for plan in plans:
            self._mark_plan(plan, held)
        if new_bar:
            self._collect_funding(plans)

    def _mark_plan(self, plan: PlanRecord, held: dict) -> None:
        sym = self.broker.symbol(plan.symbol)
        side = "long" if plan.side == Side.LONG else "short"
        contracts, liquidation = held.get((sym, side), (0.0, None))
        position = self.engine.ledger.positions.get(plan.symbol)
        last_known = position.liquidation_price if position is not None else None
        self._mark(plan.symbol, plan.side, False, position, liquidation)
        if plan.hedge is not None:
            other = "short" if side == "long" else "long"
            self._mark(plan.symbol, plan.side.opposite, True, self.engine.ledger.hedges.get(plan.symbol),
                       held.get((sym, other), (0.0, None))[1])
        tally = self.tally(plan)
        if tally.net <= EPS or contracts > EPS:
            return
        # an exit that filled since the last refresh is no mystery: asked again, whatever this cycle
        # already refreshed (the positions were read after it)
        self._fresh.pop(plan.plan_id, None)
        tally = self.tally(plan, refresh=True)
        if tally.net <= EPS or tally.exit_filled:
            return
        log.error("position_gone", plan=plan.plan_id, symbol=plan.symbol, side=side, expected=tally.net,
                  on_exchange=contracts, last_liquidation_price=last_known or None,
                  note="the plan's orders are cancelled and the plan closed; its position is written off at the "
                       "last liquidation price known (else the last close) and fed back as a trade")
        for r in tally.orders:
            if not r.state.terminal:
                self.broker.cancel(r)
        self._close_plan(plan, self.tally(plan), GONE_REASON)

    def _mark(self, symbol: str, side: Side, hedge: bool, position, liquidation: Optional[float]) -> None:
        """A new liquidation price on the engine's position and the store's row (written only when
        it changed; an absent price, e.g. of a position already gone, keeps the last known)."""
        if not liquidation or (position is not None and position.liquidation_price == liquidation):
            return
        self.venue.mark_liquidation(symbol, hedge, liquidation)
        self.store.mark_position(symbol, side, hedge=hedge, liquidation_price=liquidation)

    def _collect_funding(self, plans) -> None:
        """Funding events since the newest one seen per symbol (the plan's decision bar at first).
        Plans on several symbols share one request for all symbols (since the earliest of them),
        unless its answer may be cut off; then each symbol is asked on its own, as one alone is."""
        broker = self.broker
        state = self.store.load_state(FUNDING) or {"paid": {}, "seen": {}}
        paid, seen = state["paid"], state["seen"]
        changed = False
        shared = self._shared_funding(plans, seen)
        for plan in plans:
            sym = broker.symbol(plan.symbol)
            since = max(int(seen.get(sym, 0)), plan.decision_time // 1_000_000) + 1
            if shared is not None:
                events = [e for e in shared if e.get("symbol") == sym]
            else:
                events = broker.call(lambda s=sym, t=since: broker.exchange.fetch_funding_history(s, t),
                                     f"fetch_funding_history {sym}")
            for e in events or []:
                amount, when = _number(broker.dialect.received_funding(e)), e.get("timestamp")
                if amount is None or when is None or int(when) < since:
                    continue
                paid[plan.plan_id] = paid.get(plan.plan_id, 0.0) - amount    # income < 0: paid
                seen[sym] = max(int(seen.get(sym, 0)), int(when))
                self.store.mark_position(plan.symbol, plan.side, funding=-amount)
                self.venue.book_funding(plan.symbol, -amount)
                changed = True
                log.info("funding", plan=plan.plan_id, symbol=plan.symbol, amount=amount, paid=paid[plan.plan_id])
        if changed:
            self.store.save_state(FUNDING, {"paid": paid, "seen": seen})

    def _shared_funding(self, plans, seen) -> Optional[list]:
        """Every symbol's funding events since the earliest any plan waits for (None: one symbol,
        or a full page, which may leave later events out)."""
        broker = self.broker
        symbols = {broker.symbol(p.symbol) for p in plans}
        if len(symbols) < 2:
            return None
        since = min(max(int(seen.get(broker.symbol(p.symbol), 0)), p.decision_time // 1_000_000) + 1 for p in plans)
        events = broker.call(lambda: broker.exchange.fetch_funding_history(None, since, FUNDING_PAGE),
                             "fetch_funding_history (all symbols)")
        return None if events is None or len(events) >= FUNDING_PAGE else list(events)


def _number(value) -> Optional[float]:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None
