"""Orders through a real ccxt exchange, placed at most once whatever the network or the process does.

The rules, in order of importance:

1. Every order has a client id derived from its decision (:func:`mlcoord.live.ids.client_order_id`)
   and is written to the store as PENDING *before* it is sent. After a crash, a PENDING order is
   one whose fate is asked of the exchange by that id, never one to send again blindly.
2. After an ambiguous failure (timeout, lost response, 5xx, 429) the broker looks the order up by
   its client id and adopts it if the exchange has it; only if the exchange says it does not is
   the same order (same id) sent again. A "duplicate client id" answer means the order exists:
   it is adopted. A definite answer (insufficient funds, bad price or size) marks it REJECTED.
3. Fills are recorded from the exchange's filled quantity and average price as deltas with a
   per-order sequence number, so refreshing an order twice records nothing twice.

Exchange order types (Binance dialects, as ccxt 4.5 sends them): spot stops are
``STOP_LOSS_LIMIT`` (``stopPrice`` plus a limit ``stop_limit_offset`` beyond it); futures stops and
take profits are ``STOP_MARKET`` / ``TAKE_PROFIT_MARKET`` algo orders in hedge mode
(``positionSide``; hedge mode forbids ``reduceOnly``: closing is implied by the side). A trailing
stop (:attr:`OrderKind.TRAILING_STOP`) is a futures ``TRAILING_STOP_MARKET`` algo order: ccxt's
``trailingPercent`` becomes Binance's ``callbackRate`` (percent: ``Order.callback_rate`` x 100) and
``trailingTriggerPrice`` its ``activatePrice`` (``Order.price``, None: trails at once). A spot
stop is moved in one request where the symbol allows it: ``POST /api/v3/order/cancelReplace``
through ccxt's ``edit_order`` (:meth:`Broker.replace`), its new order journaled first as any other.
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable, Optional, Sequence

import attrs
import structlog

from mlcoord.errors import MlcoordError
from mlcoord.live.dialects import dialect_for, trigger_direction
from mlcoord.live.exchange import market_symbol
from mlcoord.live.ids import client_order_id
from mlcoord.live.plan_orders import PARTIAL_TP, TAKE_PROFIT
from mlcoord.live.records import FillRecord, OrderRecord, OrderState
from mlcoord.live.retry import ExchangeHealth, describe_error
from mlcoord.live.store import Store
from mlcoord.live.trade_fee import fee_in_quote, order_fee, trade_list_fee, warn_unpriced
from mlcoord.model import Fill, Order, OrderKind, Side
from mlcoord.model.instruments import contract_size, in_units

log = structlog.get_logger("mlcoord.live.broker")

_STATES = {"open": OrderState.OPEN, "closed": OrderState.FILLED, "canceled": OrderState.CANCELLED,
           "cancelled": OrderState.CANCELLED, "expired": OrderState.EXPIRED, "rejected": OrderState.REJECTED}
#: how many times one order is sent (same client id) before the broker gives up for this cycle
MAX_SENDS = 4
#: order kinds that are conditional (algo) orders on futures: looked up and cancelled as such
ALGO_KINDS = (OrderKind.STOP, OrderKind.TRAILING_STOP)
#: the callback rates (percent) Binance USD-M accepts for a TRAILING_STOP_MARKET, and their step
TRAILING_PERCENT_RANGE, TRAILING_PERCENT_STEP = (0.1, 10.0), 0.1


class BrokerError(MlcoordError):
    """The exchange account cannot be used as configured."""


#: what each kind of order must carry (a market order and a trailing stop may go without a price)
_REQUIRED = {OrderKind.LIMIT: ("price",), OrderKind.STOP: ("price",), OrderKind.TRAILING_STOP: ("callback_rate",)}


def _required(order: Order, field: str) -> float:
    """A price the order's kind must carry (a limit's price, a stop's trigger, a trailing stop's
    rate); missing, it is a BrokerError naming the order instead of a TypeError deep in ccxt."""
    value = getattr(order, field)
    if value is None:
        raise BrokerError(f"order {order.id!r} ({order.kind.value}, {order.tag}) has no {field}")
    return float(value)


def not_yet_supported(what: str) -> MlcoordError:
    return MlcoordError(f"not yet supported: {what}")


class Broker:
    """Places, refreshes and cancels orders of ``market`` ("spot" or "futures") on ``exchange``."""

    def __init__(self, exchange: Any, store: Store, market: str, *, health: Optional[ExchangeHealth] = None,
                 namespace: str = "", stop_limit_offset: float = 0.01):
        if market not in ("spot", "futures"):
            raise BrokerError(f"market must be spot or futures, got {market!r}")
        self.exchange, self.store, self.market = exchange, store, market
        self.dialect = dialect_for(exchange)          # how this exchange writes what the broker does
        self.health = health or ExchangeHealth()
        self.namespace = namespace
        self.stop_limit_offset = stop_limit_offset
        self.margin_mode = "isolated"     # futures: what setup set (sent per order where the dialect wants it)
        self.sent = 0            # create-order requests sent (for tests, logs, and whether an order went out)
        self.changes = 0         # create and cancel requests that went out: what may move other orders
        self.on_change: Optional[Callable[[str], None]] = None    # told the symbol of each of them

    # -- setup --------------------------------------------------------------------------------
    def setup(self, symbols, leverage: float, margin_mode: str = "isolated") -> None:
        """Load markets; on futures set hedge mode, leverage and margin mode explicitly."""
        self.call(self.exchange.load_markets, "load_markets")
        if self.market != "futures":
            return
        self._tolerant(lambda: self.exchange.set_position_mode(True), "set_position_mode")
        self.setup_symbols(symbols, leverage, margin_mode)
        if self.dialect.verify_hedge_mode:
            self.verify_hedge_mode(symbols)

    def verify_hedge_mode(self, symbols) -> None:
        """The account really is in hedge mode: the exchange says so where it can be asked
        (OKX ``posMode``), else every position row of ``symbols`` is one side's (an exchange that
        kept one-way mode would net a hedge leg into the position it hedges)."""
        if self.dialect.position_mode_query:
            mode = self.call(self.exchange.fetch_position_mode, "fetch_position_mode") or {}
            if mode.get("hedged") is not True:
                raise BrokerError(f"{self.dialect.name}: hedge mode was set but the account reports position mode "
                                  f"{(mode.get('info') or {}).get('posMode', mode.get('hedged'))!r}; switch it to "
                                  f"long/short (hedge) mode and restart")
            return
        field, long_, short = self.dialect.position_side
        rows = self.fetch_positions([self.symbol(s) for s in symbols])
        one_way = sorted({str(r.get("symbol")) for r in rows or []
                          if (r.get("info") or {}).get(field) not in (long_, short, str(long_), str(short))})
        if one_way:
            raise BrokerError(f"{self.dialect.name}: hedge mode was set but {', '.join(one_way)} still show one-way "
                              f"positions ({field}); switch the account to hedge mode (both sides) and restart")

    def setup_symbols(self, symbols, leverage: float, margin_mode: str = "isolated") -> None:
        """Futures: margin mode and leverage of each symbol, set explicitly (also for a symbol the
        scanner adds mid-session, before its first order)."""
        if self.market != "futures":
            return
        self.margin_mode = margin_mode
        lever = int(round(leverage))
        for s in symbols:
            sym = self.symbol(s)
            if self.dialect.margin_per_order:      # OKX: the mode goes with the leverage, per side if isolated
                for side in (("long", "short") if margin_mode == "isolated" else ("",)):
                    params = {"marginMode": margin_mode, **({"posSide": side} if side else {})}
                    self._tolerant(lambda p=params: self.exchange.set_leverage(lever, sym, p),
                                   f"set_leverage {sym} {margin_mode} {side}".rstrip())
                continue
            self._tolerant(lambda: self.exchange.set_margin_mode(margin_mode, sym), f"set_margin_mode {sym}")
            self._tolerant(lambda: self.exchange.set_leverage(lever, sym), f"set_leverage {sym}")

    def _tolerant(self, fn, what: str) -> None:
        """A setting that is already in place is an error on some exchanges (Binance "No need to
        change", Bybit "... not modified"): fine."""
        import ccxt

        try:
            self.call(fn, what)
        except ccxt.ExchangeError as exc:
            if not any(word in str(exc).lower() for word in self.dialect.already_set):
                raise
            log.info("exchange_setting_already_set", what=what)

    def fetch_positions(self, symbols: Sequence[str]) -> list[dict]:
        """ccxt's positions of ``symbols`` (exchange symbols), one request per symbol where the
        exchange takes one at a time; ``contracts`` in coins (x the contract size)."""
        rows: list[dict] = []
        if not self.dialect.positions_one_symbol:
            rows = list(self.call(lambda: self.exchange.fetch_positions(list(symbols)), "fetch_positions") or [])
        else:
            for sym in symbols:
                rows += self.call(lambda s=sym: self.exchange.fetch_positions([s]), f"fetch_positions {sym}") or []
        return [{**r, "contracts": self.coins(str(r["symbol"]), r.get("contracts"))}
                if r.get("contracts") and r.get("symbol") else r for r in rows]

    def in_coins(self, sym: str, row: dict) -> dict:
        """A ccxt order row of exchange symbol ``sym`` as the engine reads it: ``amount`` and
        ``filled`` in coins, ``clientOrderId`` where the dialect keeps a conditional order's."""
        out = {**row, "clientOrderId": self.client_id_of(row)}
        for key in ("amount", "filled"):
            if row.get(key) is not None:
                out[key] = self.coins(sym, row[key])
        return out

    def client_id_of(self, row: dict) -> str:
        """The client id of a ccxt order row (a conditional order's may be in ``info`` only: OKX)."""
        info = row.get("info") or {}
        field = self.dialect.algo_client_field
        return str(row.get("clientOrderId") or (info.get(field) if field and isinstance(info, dict) else "") or "")

    def trigger_listing(self) -> dict[str, Any]:
        """The parameters listing this market's conditional (trigger) book."""
        return {"trigger": True, **self.dialect.trigger_listing.get(self.market, {})}

    def order_trades(self, sym: str, oid: str) -> list[dict]:
        """ccxt's trades of exchange order ``oid`` (amounts as ccxt gives them)."""
        key = self.dialect.trades_order_key
        return list(self.call(lambda: self.exchange.fetch_my_trades(sym, None, None, {key: oid}),
                              f"fetch_my_trades {sym} {oid}") or [])

    def call(self, fn, what: str):
        """An exchange request, once the store has committed what it holds (a deferred answer)."""
        self.store.flush()
        return self.health.call(fn, what=what)

    def symbol(self, symbol: str) -> str:
        return market_symbol(symbol, self.market)

    def client_id(self, symbol: str, decision_time: int, tag: str, attempt: int = 0) -> str:
        return client_order_id(symbol, decision_time, tag, attempt, namespace=self.namespace)

    # -- sizes --------------------------------------------------------------------------------
    def amount(self, symbol: str, quantity: float) -> float:
        """``quantity`` (coins) rounded down to the step size (0.0 below the minimum); on a
        contract market the step and minimum are in contracts, the answer in coins again."""
        sym = self.symbol(symbol)
        unit = self.unit(sym)
        try:
            # a sum of fills (0.093 + 0.078 = 0.17099999999999999) must not round down a whole step
            q = float(self.exchange.amount_to_precision(sym, float(quantity) / unit * (1 + 1e-9)))
        except Exception:   # ccxt raises below the minimum amount
            return 0.0
        minimum = (self.exchange.market(sym).get("limits", {}).get("amount", {}) or {}).get("min") or 0.0
        return in_units(q, unit) if q >= minimum else 0.0

    def unit(self, sym: str) -> float:
        """Coins per ccxt amount of exchange symbol ``sym`` (a contract's size; 1 on spot)."""
        return contract_size(self.exchange.market(sym))

    def coins(self, sym: str, amount: Any) -> float:
        """A ccxt amount of ``sym`` (an order's, a trade's, a position's contracts) in coins."""
        return in_units(float(amount or 0.0), self.unit(sym))

    def price(self, symbol: str, price: float) -> float:
        return float(self.exchange.price_to_precision(self.symbol(symbol), float(price)))

    def base_asset(self, symbol: str) -> str:
        """The asset a spot balance holds for ``symbol`` (BTC for BTC/USDT)."""
        return self.exchange.market(self.symbol(symbol))["base"]

    def min_notional(self, symbol: str) -> float:
        limits = self.exchange.market(self.symbol(symbol)).get("limits", {})
        return float((limits.get("cost", {}) or {}).get("min") or 0.0)

    # -- placing ------------------------------------------------------------------------------
    def place(self, order: Order, plan_id: Optional[str] = None) -> OrderRecord:
        """Send ``order`` (``order.id`` is its client id) unless the store says it went already."""
        record, new = self.journal(order, plan_id)
        return self.send(record, new)

    def journal(self, order: Order, plan_id: Optional[str] = None) -> tuple[OrderRecord, bool]:
        """``order`` written to the store PENDING, committed, before anything is sent (a store
        that fails here stops it unsent). Returns the stored record and whether this call wrote
        it (False: journaled earlier, e.g. before a restart: :meth:`send` asks the exchange first)."""
        if order.kind == OrderKind.TRAILING_STOP and self.market != "futures":
            raise not_yet_supported("exchange-side trailing stops on spot")     # before anything is stored
        if order.kind == OrderKind.TRAILING_STOP and not self.dialect.trailing_orders:
            raise not_yet_supported(f"exchange-side trailing stop orders on {self.dialect.name}")
        for field in _REQUIRED.get(order.kind, ()):
            _required(order, field)                                              # the same
        record = OrderRecord(order, plan_id, OrderState.PENDING, updated_at=order.created_at)
        stored = self.store.journal_order(record)          # journaled before it is sent
        return (record, True) if stored is None else (stored, False)

    def send(self, record: OrderRecord, new: bool = False) -> OrderRecord:
        """A journaled order to the exchange: ``new`` (just journaled by :meth:`journal`) is sent;
        an earlier journal is looked up by its client id first (sent only if the exchange lacks
        it); one already resolved is returned as stored."""
        if new:
            return self._send(record)
        if record.state != OrderState.PENDING:
            return record
        found = self.lookup(record)
        if found is not None:
            return self._apply(record, found)
        return self._send(record)

    def amend(self, record: OrderRecord, quantity: float) -> OrderRecord:
        """A journaled order not sent yet, resized (what it sells changed before it went out)."""
        return self.store.upsert_order(attrs.evolve(record, order=attrs.evolve(record.order, quantity=quantity)))

    def withdraw(self, record: OrderRecord, reason: str) -> OrderRecord:
        """A journaled order that will never be sent (what it was for is gone): REJECTED, so no
        restart sends it."""
        log.info("order_withdrawn", client_id=record.client_order_id, tag=record.order.tag, reason=reason)
        return self.store.upsert_order(attrs.evolve(record, state=OrderState.REJECTED, reason=reason))

    # -- atomic replacement (Binance spot order/cancelReplace) ----------------------------------
    def can_cancel_replace(self, symbol: str) -> bool:
        """The market takes an atomic cancel-and-place (Binance spot exchangeInfo
        ``cancelReplaceAllowed``); per symbol, as the exchange says."""
        if self.market != "spot":
            return False
        info = self.exchange.market(self.symbol(symbol)).get("info") or {}
        return str(info.get("cancelReplaceAllowed", "")).lower() == "true"

    def replace(self, old: OrderRecord, order: Order, plan_id: Optional[str] = None) -> OrderRecord:
        """Cancel the untouched stop ``old`` and place ``order`` in one request (Binance
        ``POST /api/v3/order/cancelReplace`` through ccxt's ``edit_order``: ``cancelReplaceMode``
        STOP_ON_FAILURE, ``cancelRestrictions`` ONLY_NEW), so the exchange is never without one of
        them and the coins ``old`` locked carry over. ``order`` is journaled first, as by
        :meth:`place`. Outcomes: both done; the cancel refused (``old`` filled meanwhile or is
        gone: the new order was not attempted; ``old`` is read back, and ``order`` is withdrawn if
        ``old`` has filled, else placed on its own); the cancel done and ``order`` refused
        (REJECTED: the caller handles a refused stop); the request refused as a whole (filters:
        REJECTED, ``old`` untouched). An answer lost is resolved by both client ids. Returns
        ``order``'s record; ``old``'s is in the store."""
        record, new = self.journal(order, plan_id)
        if not new:                            # journaled before (a restart): resolved by its id first
            if record.state != OrderState.PENDING:
                return record
            found = self.lookup(record)
            if found is not None:
                self.refresh(old)
                return self._apply(record, found)
        return self._replace(old, record)

    def _replace(self, old: OrderRecord, record: OrderRecord) -> OrderRecord:
        import ccxt

        order = record.order
        last: Optional[BaseException] = None
        for _ in range(MAX_SENDS):
            try:
                self.store.flush()
                self.sent += 1
                self._changed(order.symbol)
                response = self._edit(old, order)
            except ccxt.BadResponse as exc:        # ccxt's mapping of -2021/-2022 (an OperationFailed)
                data = _replace_failure(exc)
                if data is not None:
                    return self._replace_failed(old, record, data)
                last = exc
            except ccxt.OperationFailed as exc:    # timeouts, lost answers, 5xx, 429: did it land?
                last = exc
            except ccxt.ExchangeError as exc:      # refused as a whole (checked before the cancel)
                if isinstance(exc, ccxt.AuthenticationError):
                    raise
                log.warning("order_rejected", client_id=order.id, symbol=order.symbol, tag=order.tag,
                            error=describe_error(exc), note=f"{old.client_order_id} stays")
                return self._rejected(record, describe_error(exc))
            else:
                # ONLY_NEW: the order it cancelled was untouched, so it ends cancelled with nothing filled
                self._apply(old, {"status": "canceled", "filled": 0.0, "id": old.exchange_order_id})
                return self._apply(record, response, pending=True)
            found = self.lookup(record)
            if found is not None:
                log.info("order_adopted_after_error", client_id=order.id, error=describe_error(last))
                self.refresh(old)
                return self._apply(record, found)
            now = self.refresh(old)
            if now.state != OrderState.OPEN or now.filled_quantity > 0:
                return self._unreplaced(now, record)     # the cancel happened without the new order
            log.warning("order_resend", client_id=order.id, error=describe_error(last), replaces=old.client_order_id)
        log.error("order_unresolved", client_id=order.id, note="stays PENDING; resolved by its client id later",
                  error=describe_error(last) if last else "")
        return self.store.order(order.id) or record

    def _edit(self, old: OrderRecord, order: Order) -> dict:
        """The cancel-replace request, as ccxt's ``edit_order`` builds it for a spot stop."""
        sym = self.symbol(order.symbol)
        stop = self.price(order.symbol, _required(order, "price"))
        side = "sell" if order.side == Side.LONG else "buy"
        offset = self.stop_limit_offset if side == "buy" else -self.stop_limit_offset
        params = {"stopPrice": stop, "newClientOrderId": order.id, "cancelOrigClientOrderId": old.client_order_id,
                  "cancelReplaceMode": "STOP_ON_FAILURE", "cancelRestrictions": "ONLY_NEW"}
        return self.exchange.edit_order(None, sym, "STOP_LOSS_LIMIT", side, float(order.quantity),
                                        self.price(order.symbol, stop * (1 + offset)), params)

    def _replace_failed(self, old: OrderRecord, record: OrderRecord, data: dict) -> OrderRecord:
        """A cancel-replace that failed in part (-2021) or whole (-2022), as its ``data`` says."""
        if str(data.get("cancelResult")).upper() == "SUCCESS":
            cancelled = data.get("cancelResponse") or {}
            self._apply(old, self.exchange.parse_order(cancelled, self.exchange.market(self.symbol(old.order.symbol))))
            reason = _error_text(data.get("newOrderResponse"))
            log.warning("order_rejected", client_id=record.client_order_id, symbol=record.order.symbol,
                        tag=record.order.tag, error=reason, note=f"{old.client_order_id} was cancelled")
            return self._rejected(record, reason)
        return self._unreplaced(self.refresh(old), record)

    def _unreplaced(self, old: OrderRecord, record: OrderRecord) -> OrderRecord:
        """The cancel of ``old`` failed, so ``record`` was not attempted: withdrawn when ``old``
        has filled (the position is closing) or still works; placed on its own when ``old`` is
        gone without a fill (there is nothing to replace)."""
        if old.filled_quantity > 0 or not old.state.terminal:
            return self.withdraw(record, f"not sent: {old.client_order_id}, which it was to replace, is "
                                         f"{old.state.value} (filled {old.filled_quantity:g})")
        return self._send(record)

    def _replaced_by(self, record: OrderRecord) -> Optional[OrderRecord]:
        """The stop a PENDING spot stop was journaled to replace (a restart between the journal and
        the cancel-replace, or the cancel of a cancel-then-place move): its plan's one other working
        stop of the same role, untouched. The replacement is finished as it was begun, never sent
        on its own while the old stop locks the coins (the exchange refuses it: insufficient
        balance)."""
        o = record.order
        if o.kind != OrderKind.STOP or record.plan_id is None or self.market != "spot":
            return None
        others = [r for r in self.store.orders(record.plan_id) if r.order.tag == o.tag
                  and r.client_order_id != record.client_order_id and not r.state.terminal]
        if len(others) == 1 and others[0].state == OrderState.OPEN and others[0].filled_quantity <= 0:
            return others[0]
        return None

    def _rejected(self, record: OrderRecord, reason: str) -> OrderRecord:
        return self.store.upsert_order(OrderRecord(record.order, record.plan_id, OrderState.REJECTED,
                                                   updated_at=record.order.created_at, reason=reason))

    def _send(self, record: OrderRecord) -> OrderRecord:
        import ccxt

        order = record.order
        last: Optional[BaseException] = None
        for _ in range(MAX_SENDS):
            try:
                self.store.flush()            # nothing deferred may wait on an exchange request
                self.sent += 1
                self._changed(order.symbol)
                response = self._create(order)
                if not self.dialect.answer_has_state:      # ids only: what the order did is read back
                    response = self.lookup(record) or response
                return self._apply(record, response, pending=True)
            except ccxt.OperationFailed as exc:    # timeouts, lost answers, 5xx, 429, -1000: did it land?
                last = exc
            except ccxt.ExchangeError as exc:      # a definite answer; a duplicate id means it exists
                found = self.lookup(record)
                if found is not None:
                    return self._apply(record, found)
                if isinstance(exc, ccxt.AuthenticationError):
                    raise
                log.warning("order_rejected", client_id=order.id, symbol=order.symbol, tag=order.tag,
                            error=describe_error(exc))
                return self._rejected(record, describe_error(exc))
            found = self.lookup(record)
            if found is not None:
                log.info("order_adopted_after_error", client_id=order.id, error=describe_error(last))
                return self._apply(record, found)
            log.warning("order_resend", client_id=order.id, error=describe_error(last))
        log.error("order_unresolved", client_id=order.id, note="stays PENDING; resolved by its client id later",
                  error=describe_error(last) if last else "")
        return self.store.order(order.id) or record

    def _create(self, order: Order) -> dict:
        sym = self.symbol(order.symbol)
        closing = order.reduce_only
        side = "buy" if (order.side == Side.LONG) != closing else "sell"
        params: dict[str, Any] = {"clientOrderId": order.id}
        if self.dialect.algo_client_field and self._in_trigger_book(OrderRecord(order)):
            params = {self.dialect.algo_client_field: order.id}     # an algo order's own client id (OKX)
        amount = float(f"{float(order.quantity) / self.unit(sym):.12g}")     # contracts on a contract market
        if self.market == "spot":
            params.update(self.dialect.spot_order_params)                # amounts in the base asset
        if self.market == "futures" and self.dialect.margin_per_order:
            params["marginMode"] = self.margin_mode                      # OKX tdMode
        if self.market == "futures":
            if self.dialect.hedge_style == "positionSide":
                params["positionSide"] = "LONG" if order.side == Side.LONG else "SHORT"
            else:                          # ccxt's hedged flag: positionIdx from the side and reduceOnly
                params["hedged"] = True
                if closing:
                    params["reduceOnly"] = True
        # spot has no reduceOnly or position side: a closing order is a plain sell of the held coins
        # (the trader sizes it to what the account holds and cancels the stop that locks them first)
        if order.kind == OrderKind.MARKET:
            return self.exchange.create_order(sym, "market", side, amount, None, params)
        if order.kind == OrderKind.LIMIT:
            return self.exchange.create_order(sym, "limit", side, amount, _required(order, "price"), params)
        if order.kind == OrderKind.TRAILING_STOP:
            return self._trailing_stop(order, sym, side, amount, params)
        stop = self.price(order.symbol, _required(order, "price"))
        take_profit = order.tag.startswith((TAKE_PROFIT, PARTIAL_TP))
        if self.market == "futures":
            if self.dialect.stop_style == "conditional":    # OKX: a stop-loss or take-profit algo, at market
                params["takeProfitPrice" if take_profit else "stopLossPrice"] = stop
                return self.exchange.create_order(sym, "market", side, amount, None, params)
            if self.dialect.stop_style == "trigger_direction":
                params.update(triggerPrice=stop, triggerDirection=trigger_direction(order.side == Side.LONG, take_profit))
                return self.exchange.create_order(sym, "market", side, amount, None, params)
            params["stopPrice"] = stop
            kind = "TAKE_PROFIT_MARKET" if take_profit else "STOP_MARKET"
            return self.exchange.create_order(sym, kind, side, amount, None, params)
        if take_profit:
            raise not_yet_supported("take-profit orders on spot (the bot monitors the take profit)")
        offset = self.stop_limit_offset if side == "buy" else -self.stop_limit_offset
        kind, trigger = self.dialect.spot_stop
        params[trigger] = stop
        return self.exchange.create_order(sym, kind, side, amount, self.price(order.symbol, stop * (1 + offset)), params)

    def _trailing_stop(self, order: Order, sym: str, side: str, amount: float, params: dict) -> dict:
        """Futures ``TRAILING_STOP_MARKET``: closes when price falls (rises, for a short) by the
        callback rate from its best since activation. The rate goes in Binance's unit, percent.
        (Spot was refused by :meth:`place` before anything was stored.)"""
        params["trailingPercent"] = round(_required(order, "callback_rate") * 100.0, 4)
        if order.price is not None:
            params["trailingTriggerPrice"] = self.price(order.symbol, order.price)
        return self.exchange.create_order(sym, "TRAILING_STOP_MARKET", side, amount, None, params)

    # -- looking up, refreshing, cancelling ---------------------------------------------------
    def _changed(self, symbol: str) -> None:
        self.changes += 1
        if self.on_change is not None:
            self.on_change(symbol)

    def lookup(self, record: OrderRecord, algo_only: bool = False) -> Optional[dict]:
        """The exchange's view of the order with this client id, or None if it has none.
        ``algo_only``: a futures stop known to be untriggered (its regular lookup would find no
        triggered child order) is asked of the algo endpoint alone."""
        import ccxt

        sym = self.symbol(record.order.symbol)
        cid = record.client_order_id
        if self.dialect.lookup == "listing":
            return self._listed(record, sym, cid)
        algo = self._algo(record)
        if not (algo and algo_only):
            params: dict[str, Any] = {self.dialect.lookup_key: cid}
            if not algo and self._in_trigger_book(record):
                params["trigger"] = True               # its own book (OKX algo orders)
            try:
                found = self.call(lambda: self.exchange.fetch_order(None, sym, params), f"fetch_order {cid}")
            except ccxt.OrderNotFound:
                found = None
            if found is not None:
                return self._child(record, found)
        if algo:
            try:
                return self.call(lambda: self.exchange.fetch_order(None, sym, {"trigger": True, "clientAlgoId": cid}),
                                 f"fetch_algo_order {cid}")
            except ccxt.OrderNotFound:
                pass
        return None

    def _child(self, record: OrderRecord, found: dict) -> dict:
        """A triggered conditional order's answer replaced by the regular order it placed, which
        holds the fills (OKX: the algo's ``ordId``); any other answer as it is."""
        import ccxt

        field = self.dialect.algo_child
        info = found.get("info") or {}
        child = str(info.get(field) or "") if field and self._in_trigger_book(record) else ""
        if not child:
            return found
        sym = self.symbol(record.order.symbol)
        try:
            return self.call(lambda: self.exchange.fetch_order(child, sym),
                             f"fetch_order {child} (of {record.client_order_id})")
        except ccxt.OrderNotFound:    # not listed yet: the algo's own answer until it is
            return found

    def _listed(self, record: OrderRecord, sym: str, cid: str) -> Optional[dict]:
        """An order found by client id in the open-orders listing (Bybit's realtime list, which
        also shows recently closed orders asked for by id), else in the order history."""
        params: dict[str, Any] = {self.dialect.lookup_key: cid}
        if self._in_trigger_book(record):
            params["trigger"] = True
        for fetch, what in ((self.exchange.fetch_open_orders, "fetch_open_orders"),
                            (self.exchange.fetch_closed_orders, "fetch_closed_orders")):
            rows = self.call(lambda f=fetch: f(sym, None, None, dict(params)), f"{what} {cid}") or []
            mine = [r for r in rows if self.client_id_of(r) == cid]
            if mine:
                return mine[0]
        return None

    def _algo(self, record: OrderRecord) -> bool:
        """A Binance futures algo order (its own id and endpoint)."""
        return self.dialect.algo_orders and self.market == "futures" and record.order.kind in ALGO_KINDS

    def _in_trigger_book(self, record: OrderRecord) -> bool:
        """A conditional order the exchange lists and cancels with ``{"trigger": True}``."""
        return self.market in self.dialect.trigger_book and record.order.kind in ALGO_KINDS

    def refresh(self, record: OrderRecord) -> OrderRecord:
        """Bring one stored live order up to date (state and fills) from the exchange."""
        found = self.lookup(record)
        if found is None:
            if record.state == OrderState.PENDING:   # never reached the exchange: send it now
                replaced = self._replaced_by(record)
                if replaced is None:
                    return self._send(record)
                if self.can_cancel_replace(record.order.symbol):
                    return self._replace(replaced, record)
                # cancel, then place: withdrawn if the old stop filled meanwhile or will not go
                return self._unreplaced(self.cancel(replaced), record)
            log.warning("order_missing_on_exchange", client_id=record.client_order_id)
            return self.store.upsert_order(attrs.evolve(record, state=OrderState.EXPIRED,
                                                        reason="not found on the exchange"))
        return self._apply(record, found)

    def refresh_all(self, records: Sequence[OrderRecord]) -> None:
        """:meth:`refresh` of every live order in ``records``, with fewer requests: where one
        open-orders listing of a symbol costs less than the lookups it replaces (a futures stop's
        lookup costs two: the regular endpoint, then the algo one), it is asked once, and an order
        it shows as stored (same state, no more filled) needs no lookup. It stands in only until
        the next order goes out or is cancelled; every other order is looked up as before."""
        live = [r for r in records if not r.state.terminal]
        listed, taken = self._open_listings(live), self.changes
        for r in live:
            row = listed.get(r.client_order_id)
            if row is not None and self.changes == taken and _same(r, *self._parse(r, row)[:2]):
                continue
            self.refresh(r)

    def _open_listings(self, records: Sequence[OrderRecord]) -> dict[str, dict]:
        """client id -> the exchange's open order, from one listing per (symbol, algo or not) whose
        stored working orders would take two lookups or more."""
        groups: dict[tuple[str, bool], int] = {}
        for r in records:
            if r.state in (OrderState.OPEN, OrderState.PARTIALLY_FILLED) and r.exchange_order_id:
                key = (self.symbol(r.order.symbol), self._in_trigger_book(r))
                groups[key] = groups.get(key, 0) + (2 if self._algo(r) else 1)
        out: dict[str, dict] = {}
        for (sym, algo), cost in sorted(groups.items()):
            if cost < 2:
                continue
            params = self.trigger_listing() if algo else {}
            rows = self.call(lambda s=sym, p=params: self.exchange.fetch_open_orders(s, None, None, p),
                             f"fetch_open_orders {sym}{' (algo)' if algo else ''}")
            out.update({self.client_id_of(row): row for row in rows or [] if self.client_id_of(row)})
        return out

    def cancel(self, record: OrderRecord) -> OrderRecord:
        """Cancel a live order by client id; its final state and fills are then read back."""
        import ccxt

        if record.state.terminal:
            return record
        sym = self.symbol(record.order.symbol)
        cid = record.client_order_id
        futures_stop = self._algo(record)
        params: dict[str, Any] = {"trigger": True, "clientAlgoId": cid} if futures_stop else {self.dialect.cancel_key: cid}
        if not futures_stop and self._in_trigger_book(record):
            params["trigger"] = True
        self._changed(record.order.symbol)
        try:
            answer = self.call(lambda: self.exchange.cancel_order(None, sym, params), f"cancel_order {cid}")
        except ccxt.OrderNotFound:
            answer = None      # already filled, cancelled or never there: the refresh below says which
        record = self.store.order(cid) or record
        if answer is not None and futures_stop:
            # cancelled while untriggered: no child order exists, so only the algo endpoint can answer
            found = self.lookup(record, algo_only=True)
            if found is not None:
                return self._apply(record, found)
        elif answer is not None and _STATES.get(str(answer.get("status") or "").lower(), OrderState.OPEN).terminal:
            return self._apply(record, answer)       # the cancel's answer is the order's final state
        return self.refresh(record)

    def _apply(self, record: OrderRecord, response: dict, pending: bool = False) -> OrderRecord:
        """Merge the exchange's answer into the store: state, filled quantity, new fills.
        ``pending``: the answer to its create; the store holds it PENDING, so it tells something new.
        A new fill carries its fee: the answer's, or (an order that filled while resting: its
        answer has none) the one the order's trade list shows, read before the fill is stored."""
        status, filled, average = self._parse(record, response)
        known = None if pending else self.store.order(record.client_order_id)
        if known is not None and _same(known, status, filled):
            return known                     # nothing new: a refresh of an unchanged order writes nothing
        before = (known or record).filled_quantity
        charged = None
        if filled - before > 1e-12 and average and not _answer_fee(response):
            charged = self._trade_fees(record, response, filled)
        # the order's new filled quantity and its fill are one transaction: a crash between the two
        # would leave a filled quantity whose fill is never recorded (the next delta is zero).
        # Deferrable: in the trader's manage it commits with the next write or exchange request
        with self.store.transaction(deferrable=True):
            locked = self.store.order(record.client_order_id, for_update=True)
            stored = locked or record
            previous_qty = stored.filled_quantity
            previous_avg = stored.average_price or 0.0
            update = OrderRecord(record.order, record.plan_id, status, max(filled, previous_qty),
                                 float(average) if average else stored.average_price,
                                 stored.exchange_order_id or str(response.get("id") or "") or None,
                                 max(self._now(), stored.updated_at), stored.reason)
            # the row was read under this transaction's lock: merged into it, not inserted again
            merged = self.store.upsert_order(update) if locked is None else self.store.merge_order(locked, update)
            delta = filled - previous_qty
            if delta > 1e-12 and average:
                price = (float(average) * filled - previous_avg * previous_qty) / delta
                if not (math.isfinite(price) and price > 0):
                    price = float(average)
                earlier = self.store.fills(record.client_order_id)
                sequence = len(earlier)
                if charged is not None:      # the trade list's fee of what has filled, less what is booked
                    fee = max(charged[0] - sum(f.fill.fee for f in earlier), 0.0)
                    currency = charged[1]
                else:
                    fee, currency = self._fee(record, response, delta / filled if filled else 1.0, price)
                o = record.order
                fill = Fill(o.id, o.symbol, o.side, self._now(), price, delta, fee, o.reduce_only, o.tag, o.hedge)
                self.store.record_fill(FillRecord(fill, sequence=sequence, fee_currency=currency))
                log.info("order_fill", client_id=o.id, symbol=o.symbol, tag=o.tag, quantity=delta, price=price,
                         fee=fee, fee_currency=currency)
                merged = self.store.order(record.client_order_id) or merged
        return merged

    def _trade_fees(self, record: OrderRecord, response: dict, filled: float) -> Optional[tuple[float, str]]:
        """The fee of the order's first ``filled`` units from its trade list (by exchange order id;
        a triggered futures stop trades through its child order), in the quote asset (a fee in the
        base asset at the trade's price) and the currency charged (the base asset when any trade
        was charged in it: what a spot holding lacks). A fee in a third asset (e.g. BNB) is kept as
        charged, in that asset, with a warning. None (logged) when the list cannot be read: the
        fill is then booked with the answer's fee and the order's total is corrected when it is done."""
        import ccxt

        info = response.get("info") or {}
        oid = str(info.get("actualOrderId") or response.get("id") or "") if isinstance(info, dict) else \
            str(response.get("id") or "")
        if not oid:
            return None
        sym = self.symbol(record.order.symbol)
        self.store.flush()                   # a store failure is not the trade list's: never swallowed here
        try:
            trades = self.order_trades(sym, oid)
            market = self.exchange.market(sym)
        except ccxt.BaseError as exc:        # an outage (ExchangeUnavailable) pauses the cycle, as elsewhere
            log.warning("fill_fee_unavailable", client_id=record.client_order_id, order=oid,
                        error=f"{type(exc).__name__}: {exc}", note="booked with the order answer's fee")
            return None
        listed = trade_list_fee(trades or [], market, filled)
        for currency, cost in sorted(listed.other.items()):
            warn_unpriced(record.client_order_id, currency, cost)
        if listed.amount < filled * (1 - 1e-9):
            log.warning("fill_fee_unavailable", client_id=record.client_order_id, order=oid, filled=filled,
                        listed=listed.amount, note="the trade list lags the order: corrected when the order is done")
            return None
        return order_fee(listed, market)

    def _parse(self, record: OrderRecord, response: dict) -> tuple[OrderState, float, Any]:
        """The state, filled quantity and average price an exchange answer gives the order."""
        status = _STATES.get(str(response.get("status") or "open").lower(), OrderState.OPEN)
        filled = self.coins(self.symbol(record.order.symbol), response.get("filled"))
        average = response.get("average")
        info = response.get("info") or {}
        field, meaning = self.dialect.info_status
        if field and str(info.get(field)) in meaning:      # the exchange's own status says more than ccxt's
            status = _STATES[meaning[str(info[field])]]
        if self._algo(record) and "algoId" in info:
            # an algo (conditional) order: once triggered, its child order carries the fills
            filled = float(info.get("executedQty") or 0.0)
            average = float(info.get("avgPrice") or 0.0) or None
            algo = str(info.get("algoStatus", "")).upper()
            status = {"NEW": OrderState.OPEN, "CANCELED": OrderState.CANCELLED, "EXPIRED": OrderState.EXPIRED,
                      "REJECTED": OrderState.REJECTED}.get(algo, OrderState.FILLED if filled else OrderState.OPEN)
        if status == OrderState.FILLED and filled < record.order.quantity * (1 - 1e-9):
            status = OrderState.PARTIALLY_FILLED if filled > 0 else OrderState.EXPIRED
        if status == OrderState.OPEN and filled > 0:
            status = OrderState.PARTIALLY_FILLED
        return status, filled, average

    def _fee(self, record: OrderRecord, response: dict, share: float, price: float) -> tuple[float, str]:
        """``share`` of the fee an order answer reports, in the quote asset (a base-asset fee at the
        fill's price) and the currency charged; a third asset's (e.g. BNB) stays in that asset."""
        fee = _answer_fee(response)
        if fee is None:
            return 0.0, ""                   # unknown: the order's trade list corrects it once it is done
        cost = float(fee.get("cost") or 0.0) * share
        market = self.exchange.market(self.symbol(record.order.symbol))
        currency = str(fee.get("currency") or market["quote"])
        priced = fee_in_quote(cost, currency, price, market)
        if priced is None and cost:
            warn_unpriced(record.client_order_id, currency, cost)
        return (cost if priced is None else priced), currency

    def _now(self) -> int:
        try:
            return int(self.exchange.milliseconds()) * 1_000_000
        except Exception:
            return 0


def _replace_failure(exc: Exception) -> Optional[dict]:
    """The ``data`` of a cancel-replace error answer (-2021 partly, -2022 wholly failed: what
    happened to each side), from the body ccxt quotes in the error; None if it is not one."""
    text = str(exc)
    start = text.find("{")
    if start < 0:
        return None
    try:
        body = json.loads(text[start:])
    except ValueError:
        return None
    data = body.get("data") if isinstance(body, dict) and body.get("code") in (-2021, -2022) else None
    return data if isinstance(data, dict) and "cancelResult" in data else None


def _error_text(answer: Any) -> str:
    """An exchange's ``{"code", "msg"}`` as one line."""
    if isinstance(answer, dict) and "msg" in answer:
        return f"{answer.get('code')} {answer['msg']}"
    return str(answer)


def _answer_fee(response: dict) -> Optional[dict]:
    """The fee an order answer reports, or None when it reports none (ccxt: no ``fee``, or one
    without a cost: the answer of an order that filled while resting)."""
    fee = response.get("fee")
    return fee if isinstance(fee, dict) and fee.get("cost") is not None else None


def _same(known: OrderRecord, status: OrderState, filled: float) -> bool:
    """An answer that tells nothing new about a stored order (same state, no more filled)."""
    return known.state == status and filled <= known.filled_quantity + 1e-12 and bool(known.exchange_order_id)
