"""Binance spot account: free/locked balances, order checks, fills and the JSON it answers with."""

from __future__ import annotations

from decimal import Decimal

from .markets import MarketSpec, fmt
from .orders import (check_stop_not_immediate, crosses_limit, decimal_param, fill_quantity,
                     in_window, is_duplicate, limit_fill_price, lookup, market_of, need, record_trade,
                     rises_to_trigger, select_trades, stop_kind, stop_triggered, trigger_price)
from .state import Bar, BinanceError, Order

FEE_PLACES = Decimal("1e-8")
TYPES = ("LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT",
         "TAKE_PROFIT_LIMIT")
LIMIT_TYPES = ("LIMIT", "LIMIT_MAKER", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT")
STOP_TYPES = ("STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT")
INSUFFICIENT = "Account has insufficient balance for requested action."


class SpotAccount:
    def __init__(self, state, balances: dict) -> None:
        self.state = state
        self.balances: dict[str, list[Decimal]] = {}
        for spec in state.spot_markets.values():
            self._wallet(spec.base), self._wallet(spec.quote)
        for asset, amount in balances.items():
            self._wallet(asset)[0] = Decimal(str(amount))
        self.orders: dict[int, Order] = {}
        self.by_client: dict[str, Order] = {}
        self.trades: list[dict] = []

    def _wallet(self, asset: str) -> list[Decimal]:
        return self.balances.setdefault(asset, [Decimal(0), Decimal(0)])

    def free(self, asset: str) -> Decimal:
        return self._wallet(asset)[0]

    def total(self, asset: str) -> Decimal:
        free, locked = self._wallet(asset)
        return free + locked

    # --- requests -------------------------------------------------------------------------------
    def create(self, params: dict, fill_fraction: Decimal | None = None) -> dict:
        return self._submit(self._checked(params), fill_fraction)

    def _checked(self, params: dict) -> tuple:
        """A new order's parameters and filters checked (nothing changes yet): Binance evaluates
        these before a cancel-replace cancels anything."""
        st = self.state
        spec = market_of(st.spot_markets, params)
        side, otype = need(params, "side"), need(params, "type")
        if side not in ("BUY", "SELL"):
            raise BinanceError(-1102, "Param 'side' was malformed.")
        if otype not in TYPES:
            raise BinanceError(-1116, "Invalid orderType.")
        now_price = st.price(spec.id)
        price = decimal_param(params, "price", required=otype in LIMIT_TYPES)
        stop = decimal_param(params, "stopPrice", required=otype in STOP_TYPES)
        tif = params.get("timeInForce") or ("GTC" if otype == "LIMIT_MAKER" else None)
        if otype in ("LIMIT", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"):
            tif = need(params, "timeInForce")
        qty = decimal_param(params, "quantity")
        quote_qty = decimal_param(params, "quoteOrderQty")
        if otype == "MARKET" and qty is None and quote_qty is not None:
            qty = spec.floor_qty(quote_qty / now_price)
        if qty is None:
            need(params, "quantity")
        ref = stop if stop is not None else now_price
        failure = spec.filter_failure(price, qty, ref)
        if failure is None and stop is not None and stop % spec.tick != 0:
            failure = "PRICE_FILTER"
        if failure:
            raise BinanceError(-1013, f"Filter failure: {failure}")
        return spec, side, otype, price, stop, tif, qty, params.get("newClientOrderId")

    def _submit(self, checked: tuple, fill_fraction: Decimal | None) -> dict:
        """A checked new order to the matching engine: client id, balance, fills."""
        st = self.state
        spec, side, otype, price, stop, tif, qty, client_id = checked
        client_id = client_id or f"sim_{st.next_id()}"
        if is_duplicate(self.by_client, client_id, st.options.duplicate_client_ids):
            raise BinanceError(-2010, "Duplicate order sent.")
        now_price = st.price(spec.id)
        ref = stop if stop is not None else now_price
        order = Order(st.next_id(), client_id, spec.id, side, otype, qty, price, stop, st.now_ms,
                      time_in_force=tif or "GTC", update_time=st.now_ms, fill_fraction=fill_fraction)
        if otype == "LIMIT_MAKER" and crosses_limit(side, price, now_price, now_price):
            raise BinanceError(-2010, "Order would immediately match and take.")
        if otype in STOP_TYPES:
            check_stop_not_immediate(order, now_price, -2010, "Stop price would trigger immediately.")
        self._lock(order, spec, price or ref)
        self._register(order)
        if otype == "MARKET":
            self._fill(order, spec, fill_quantity(order, spec, None), now_price, maker=False)
            self._finish(order, "EXPIRED")
        elif otype in ("LIMIT",) and crosses_limit(side, price, now_price, now_price):
            self._fill(order, spec, fill_quantity(order, spec, None), now_price, maker=False)
        if tif in ("IOC", "FOK") and otype == "LIMIT":
            self._finish(order, "EXPIRED")
        return self.order_json(order, full=True)

    def cancel_replace(self, params: dict, fill_fraction: Decimal | None = None) -> dict:
        """``POST /api/v3/order/cancelReplace``: cancel an order and place a new one on the same
        symbol in one request, as Binance documents it. The new order's parameters and filters are
        checked first (a failure there changes nothing: a plain error). Then the cancel (by
        ``cancelOrderId`` and/or ``cancelOrigClientOrderId``; ``cancelRestrictions`` ONLY_NEW or
        ONLY_PARTIALLY_FILLED): its funds are released before the new order locks its own, so a
        stop can be swapped for another on the coins it held. ``cancelReplaceMode``
        STOP_ON_FAILURE: a failed cancel means the new order is not attempted (HTTP 400, -2022);
        ALLOW_FAILURE: it is attempted anyway. One side failing is HTTP 409, -2021; both, 400,
        -2022; each error's ``data`` holds cancelResult, newOrderResult, cancelResponse and
        newOrderResponse (the failed side's as ``{"code", "msg"}``). A cancelled order stays
        cancelled whatever happens to the new one."""
        spec = market_of(self.state.spot_markets, params)
        mode = need(params, "cancelReplaceMode")
        if mode not in ("STOP_ON_FAILURE", "ALLOW_FAILURE"):
            raise BinanceError(-1102, "Param 'cancelReplaceMode' was malformed.")
        restriction = params.get("cancelRestrictions") or None
        if restriction not in (None, "ONLY_NEW", "ONLY_PARTIALLY_FILLED"):
            raise BinanceError(-1145, "cancelRestrictions has to be either ONLY_NEW or ONLY_PARTIALLY_FILLED.")
        if not spec.cancel_replace_allowed:
            raise BinanceError(-2010, "Order cancel-replace is not supported for this symbol.")
        if not (params.get("cancelOrderId") or params.get("cancelOrigClientOrderId")):
            raise BinanceError(-1102, "Param 'cancelOrderId' or 'cancelOrigClientOrderId' must be sent, but "
                                      "both were empty/null!")
        checked = self._checked({k: v for k, v in params.items() if not k.startswith("cancel")})
        try:
            cancelled = self._cancel_for_replace(params, restriction)
            cancel_ok = True
        except BinanceError as err:
            cancelled, cancel_ok = {"code": err.code, "msg": err.msg}, False
        data: dict = {"cancelResult": "SUCCESS" if cancel_ok else "FAILURE", "newOrderResult": "NOT_ATTEMPTED",
                      "cancelResponse": cancelled, "newOrderResponse": None}
        if not cancel_ok and mode == "STOP_ON_FAILURE":
            raise BinanceError(-2022, "Order cancel-replace failed.", 400, data)
        try:
            data["newOrderResponse"], data["newOrderResult"] = self._submit(checked, fill_fraction), "SUCCESS"
        except BinanceError as err:
            data["newOrderResponse"], data["newOrderResult"] = {"code": err.code, "msg": err.msg}, "FAILURE"
        new_ok = data["newOrderResult"] == "SUCCESS"
        if cancel_ok and new_ok:
            return data
        if cancel_ok or new_ok:
            raise BinanceError(-2021, "Order cancel-replace partially failed.", 409, data)
        raise BinanceError(-2022, "Order cancel-replace failed.", 400, data)

    def _cancel_for_replace(self, params: dict, restriction: str | None) -> dict:
        by_id, by_client = params.get("cancelOrderId"), params.get("cancelOrigClientOrderId")
        order = lookup(self.orders, self.by_client,
                       {"symbol": params["symbol"], "orderId": by_id, "origClientOrderId": by_client}, open_only=True)
        if by_id and by_client and order.client_id != by_client:
            raise BinanceError(-2011, "Unknown order sent.")
        if restriction is not None and order.status != restriction.removeprefix("ONLY_"):
            raise BinanceError(-2011, "Order was not canceled due to cancel restrictions.")
        return self.cancel({"symbol": params["symbol"], "orderId": order.order_id,
                            "newClientOrderId": params.get("cancelNewClientOrderId")})

    def get(self, params: dict) -> dict:
        order = lookup(self.orders, self.by_client, params)
        return self.order_json(order)

    def cancel(self, params: dict) -> dict:
        order = lookup(self.orders, self.by_client, params, open_only=True)
        self._finish(order, "CANCELED")
        out = self.order_json(order)
        out.update(origClientOrderId=order.client_id,
                   clientOrderId=params.get("newClientOrderId") or f"cancel_{self.state.next_id()}",
                   transactTime=self.state.now_ms)
        return out

    def cancel_all(self, params: dict) -> list[dict]:
        spec = market_of(self.state.spot_markets, params)
        return [self.cancel({"orderId": o.order_id}) for o in self.open_orders(spec.id)]

    def open_orders(self, market_id: str | None) -> list[Order]:
        return [o for o in self.orders.values()
                if o.is_open and (market_id is None or o.symbol == market_id)]

    def all_orders(self, params: dict) -> list[dict]:
        spec = market_of(self.state.spot_markets, params)
        rows = [o for o in self.orders.values() if o.symbol == spec.id
                and o.order_id >= int(params.get("orderId") or 0)
                and in_window(params, o.time)]
        return [self.order_json(o) for o in rows[: int(params.get("limit") or 500)]]

    def my_trades(self, params: dict) -> list[dict]:
        spec = market_of(self.state.spot_markets, params)
        rows = select_trades(self.trades, spec.id, params)
        return [_trade_json(t) for t in rows]

    def account(self) -> dict:
        return {"makerCommission": 10, "takerCommission": 10, "buyerCommission": 0,
                "sellerCommission": 0, "commissionRates": {"maker": "0.00100000",
                "taker": "0.00100000", "buyer": "0.00000000", "seller": "0.00000000"},
                "canTrade": True, "canWithdraw": True, "canDeposit": True, "brokered": False,
                "requireSelfTradePrevention": False, "preventSor": False,
                "updateTime": self.state.now_ms, "accountType": "SPOT",
                "balances": [{"asset": a, "free": fmt(f), "locked": fmt(lk)}
                             for a, (f, lk) in sorted(self.balances.items())],
                "permissions": ["SPOT"], "uid": 1}

    # --- matching -------------------------------------------------------------------------------
    def on_bar(self, market_id: str, bar: Bar) -> None:
        spec = self.state.spot_markets[market_id]
        cap = self.state.volume_cap(bar)
        for order in self.open_orders(market_id):
            price, maker = None, True
            if order.type in STOP_TYPES and not order.triggered:
                kind = stop_kind(order.type)
                if not stop_triggered(kind, order.side, order.stop_price, bar.low, bar.high):
                    continue
                order.triggered = True
                at = trigger_price(rises_to_trigger(order), order.stop_price, bar.open)
                if order.price is None:  # STOP_LOSS / TAKE_PROFIT: a market order on trigger
                    price, maker = at, False
                elif crosses_limit(order.side, order.price, at, at):
                    price, maker = at, False
            if price is None and order.price is not None and (order.triggered or order.type in ("LIMIT", "LIMIT_MAKER")) \
                    and crosses_limit(order.side, order.price, bar.low, bar.high):
                price = limit_fill_price(order.side, order.price, bar.open) if not order.triggered else order.price
            if price is not None:
                qty = fill_quantity(order, spec, cap)
                if qty > 0:
                    self._fill(order, spec, qty, price, maker)
                if order.price is None:  # a triggered market stop does not rest
                    self._finish(order, "EXPIRED")

    # --- balances -------------------------------------------------------------------------------
    def _register(self, order: Order) -> None:
        self.orders[order.order_id] = order
        self.by_client[order.client_id] = order

    def _lock(self, order: Order, spec: MarketSpec, unit_price: Decimal) -> None:
        asset, need_ = (spec.quote, order.qty * unit_price) if order.side == "BUY" else (spec.base, order.qty)
        wallet = self._wallet(asset)
        if wallet[0] < need_:
            raise BinanceError(-2010, INSUFFICIENT)
        wallet[0] -= need_
        wallet[1] += need_
        order.locked = need_

    def _unlock(self, order: Order, spec: MarketSpec, amount: Decimal) -> Decimal:
        wallet = self._wallet(spec.quote if order.side == "BUY" else spec.base)
        wallet[1] -= amount
        order.locked -= amount
        return amount

    def _finish(self, order: Order, status: str) -> None:
        """End an order's life: cancel/expire the unfilled rest and give back its funds."""
        if order.remaining > 0 and order.is_open:
            spec = self.state.spot_markets[order.symbol]
            self._wallet(spec.quote if order.side == "BUY" else spec.base)[0] += \
                self._unlock(order, spec, order.locked)
            order.status = status
            order.update_time = self.state.now_ms

    def _fill(self, order: Order, spec: MarketSpec, qty: Decimal, price: Decimal, maker: bool) -> None:
        opts = self.state.options
        rate = opts.spot_maker_fee if maker else opts.spot_taker_fee
        base, quote = self._wallet(spec.base), self._wallet(spec.quote)
        release = self._unlock(order, spec, order.locked * qty / order.remaining)
        if order.side == "BUY":
            fee, fee_asset = (qty * rate).quantize(FEE_PLACES), spec.base
            quote[0] += release - qty * price
            base[0] += qty - fee
        else:
            fee, fee_asset = (qty * price * rate).quantize(FEE_PLACES), spec.quote
            quote[0] += qty * price - fee
        trade = record_trade(order, self.state.next_id(), qty, price, fee, fee_asset, maker,
                             self.state.now_ms, symbol=spec.id, side=order.side)
        self.trades.append(trade)

    # --- JSON -----------------------------------------------------------------------------------
    def order_json(self, o: Order, full: bool = False) -> dict:
        out = {"symbol": o.symbol, "orderId": o.order_id, "orderListId": -1,
               "clientOrderId": o.client_id, "price": fmt(o.price or 0), "origQty": fmt(o.qty),
               "executedQty": fmt(o.executed), "cummulativeQuoteQty": fmt(o.cum_quote),
               "status": o.status, "timeInForce": o.time_in_force, "type": o.type, "side": o.side,
               "workingTime": o.time, "selfTradePreventionMode": "EXPIRE_MAKER"}
        if o.stop_price is not None:
            out["stopPrice"] = fmt(o.stop_price)
        if full:
            out["transactTime"] = o.update_time
            out["fills"] = [{"price": fmt(t["price"]), "qty": fmt(t["qty"]),
                             "commission": fmt(t["fee"]), "commissionAsset": t["feeAsset"],
                             "tradeId": t["id"]} for t in o.trades]
        else:
            out.update(time=o.time, updateTime=o.update_time, isWorking=not o.type in STOP_TYPES or o.triggered,
                       icebergQty="0.00000000", origQuoteOrderQty="0.00000000")
        return out


def _trade_json(t: dict) -> dict:
    return {"symbol": t["symbol"], "id": t["id"], "orderId": t["orderId"], "orderListId": -1,
            "price": fmt(t["price"]), "qty": fmt(t["qty"]), "quoteQty": fmt(t["qty"] * t["price"]),
            "commission": fmt(t["fee"]), "commissionAsset": t["feeAsset"], "time": t["time"],
            "isBuyer": t["side"] == "BUY", "isMaker": t["maker"], "isBestMatch": True}
