"""The trade-closed feedback of the live loop, a part of :class:`mlcoord.live.trader.LiveTrader`.

When a plan closes with something filled, the plugins' trade-closed hook
(:meth:`mlcoord.pipeline.Pipeline.trade_closed`, the backtest's learning feedback) gets the
:class:`~mlcoord.model.Trade` built from the plan's fills (fees from the exchange's trade list, one
request per closed plan), with the decision that opened it (a plan opened before a restart has no
Decision object in this session: its trade is built from the stored decision and handed over with
``decision=None``). As in a backtest this informs e.g. the protections
guard (cooldown after a stop, pair locks) and the risk sizer's Kelly history.

Funding (futures) comes from :mod:`mlcoord.live.futures_marks`: the plan's payments over its
life, main position and hedge leg together (the exchange reports funding per symbol).
"""

from __future__ import annotations

from typing import Optional, Sequence

import structlog

from mlcoord.live.broker import BrokerError
from mlcoord.live.plan_orders import EPS, STOP, TAKE_PROFIT, TRAILING, Tally
from mlcoord.live.records import OrderRecord, PlanRecord
from mlcoord.model import Action, OrderKind, Signal, Trade
from mlcoord.live.trader_parts import TraderParts

log = structlog.get_logger("mlcoord.live.feedback")


class TradeFeedback(TraderParts):
    """:class:`~mlcoord.live.trader.LiveTrader`'s closed plans as the backtest's trades (uses its
    broker, store, engine and pipeline)."""

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
        (opened: the bar of the first entry fill; closed: the last closed bar); funding as the
        exchange charged it (:meth:`FuturesMarks.funding_paid`; 0 on spot)."""
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
        funding = self.funding_paid(plan)
        pnl = (exit_price - tally.average) * exit_qty * plan.side - fees - funding
        return Trade(id=plan.plan_id, symbol=plan.symbol, side=plan.side, opened_at=opened,
                     closed_at=closed, entry_price=tally.average, exit_price=exit_price,
                     quantity=tally.entered, pnl=pnl, fees=fees, funding=funding,
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
            if tag.startswith(TRAILING):
                return "trailing_stop"
            if tag.startswith(STOP):
                moved = initial is not None and r.order.price != self.broker.price(plan.symbol, initial)
                return "trailing_stop" if moved else "stop_loss"
        return reason


def _initial_stop(decision, stored: Optional[dict]) -> Optional[float]:
    """The stop the plan was decided with (to tell a stop loss from a trailed stop)."""
    if decision is not None:
        return decision.levels.stop if decision.levels is not None else None
    stop = ((stored or {}).get("levels") or {}).get("stop")
    return float(stop) if stop is not None else None
