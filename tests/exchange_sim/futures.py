"""Binance USD-M futures account: wallet, margin, hedge-mode positions, algo (stop) orders,
liquidation and funding, with the JSON of the ``/fapi`` endpoints.

Conditional orders (STOP_MARKET, TAKE_PROFIT_MARKET, STOP, TAKE_PROFIT, TRAILING_STOP_MARKET) live
on the algo-order API (``/fapi/v1/algoOrder``) as on Binance since December 2025; on trigger they
place a regular order carrying the same client id. Liquidation price is exact for one symbol's
positions (cross: account equity against the symbol's maintenance margin, other symbols held at
their mark; isolated: the position's own margin) with a single maintenance-margin bracket.
"""

from __future__ import annotations

from decimal import Decimal

from .markets import MAX_LEVERAGE, MarketSpec, fmt
from .orders import (crosses_limit, decimal_param, fill_quantity, in_window, is_duplicate,
                     limit_fill_price, lookup, market_of, need, record_trade, rises_to_trigger, select_trades, stop_kind,
                     stop_triggered, trigger_price)
from .futures_views import FuturesViews, Position
from .state import FUNDING_INTERVAL_MS, Bar, BinanceError, Order

ZERO = Decimal(0)
CENT8 = Decimal("1e-8")
ALGO_TYPES = ("STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET")
MARGIN_INSUFFICIENT = "Margin is insufficient."


def _bool(params: dict, name: str) -> bool:
    return str(params.get(name, "false")).lower() == "true"


class FuturesAccount(FuturesViews):
    def __init__(self, state, wallet: Decimal) -> None:
        self.state = state
        self.wallet = wallet
        self.dual = False
        self.leverage: dict[str, int] = {}
        self.margin_type: dict[str, str] = {}
        self.positions: dict[tuple[str, str], Position] = {}
        self.orders: dict[int, Order] = {}
        self.by_client: dict[str, Order] = {}
        self.algos: dict[int, Order] = {}
        self.algo_by_client: dict[str, Order] = {}
        self.trades: list[dict] = []
        self.income: list[dict] = []

    # --- account arithmetic -----------------------------------------------------------------------
    def lev(self, market_id: str) -> int:
        return self.leverage.get(market_id, self.state.options.default_leverage)

    def position(self, market_id: str, side: str) -> Position:
        return self.positions.setdefault((market_id, side), Position())

    def upnl(self, market_id: str, pos: Position) -> Decimal:
        return pos.amt * (self.state.price(market_id) - pos.entry) if pos.amt else ZERO

    def position_margin(self) -> Decimal:
        return sum((abs(p.amt) * self.state.price(m) / self.lev(m)
                    for (m, _), p in self.positions.items() if p.amt), ZERO)

    def order_margin(self) -> Decimal:
        return sum((o.remaining * o.price / self.lev(o.symbol) for o in self.orders.values()
                    if o.is_open and o.price is not None and not o.reduce_only), ZERO)

    def total_upnl(self) -> Decimal:
        return sum((self.upnl(m, p) for (m, _), p in self.positions.items()), ZERO)

    def available(self) -> Decimal:
        return self.wallet + self.total_upnl() - self.position_margin() - self.order_margin()

    def liquidation_price(self, market_id: str, side: str) -> Decimal:
        spec = self.state.futures_markets[market_id]
        mmr = spec.maint_margin_ratio
        pos = self.positions.get((market_id, side))
        if pos is None or not pos.amt:
            return ZERO
        if self.margin_type.get(market_id) == "ISOLATED":
            q, m = abs(pos.amt), pos.isolated_margin
            p = (q * pos.entry - m) / (q * (1 - mmr)) if pos.amt > 0 else (m + q * pos.entry) / (q * (1 + mmr))
        else:
            mine = [p for (m, _), p in self.positions.items() if m == market_id and p.amt]
            others = sum((self.upnl(m, p) for (m, _), p in self.positions.items() if m != market_id), ZERO)
            denom = sum((p.amt for p in mine), ZERO) - mmr * sum((abs(p.amt) for p in mine), ZERO)
            if denom == 0:
                return ZERO
            p = (sum((p.amt * p.entry for p in mine), ZERO) - self.wallet - others) / denom
        return spec.round_price(p) if p > 0 else ZERO

    # --- settings -------------------------------------------------------------------------------
    def set_leverage(self, params: dict) -> dict:
        spec = market_of(self.state.futures_markets, params)
        lev = int(need(params, "leverage"))
        if not 1 <= lev <= MAX_LEVERAGE:
            raise BinanceError(-4028, f"Leverage {lev} is not valid")
        self.leverage[spec.id] = lev
        return {"leverage": lev, "maxNotionalValue": "1000000000", "symbol": spec.id}

    def set_margin_type(self, params: dict) -> dict:
        spec = market_of(self.state.futures_markets, params)
        kind = need(params, "marginType").upper()
        if kind not in ("ISOLATED", "CROSSED"):
            raise BinanceError(-1102, "Param 'marginType' was malformed.")
        if self.margin_type.get(spec.id, "CROSSED") == kind:
            raise BinanceError(-4046, "No need to change margin type.")
        if any(p.amt for (m, _), p in self.positions.items() if m == spec.id):
            raise BinanceError(-4048, "Margin type cannot be changed if there exists position.")
        self.margin_type[spec.id] = kind
        return {"code": 200, "msg": "success"}

    def set_dual(self, params: dict) -> dict:
        dual = _bool(params, "dualSidePosition")
        if dual == self.dual:
            raise BinanceError(-4059, "No need to change position side.")
        if any(p.amt for p in self.positions.values()):
            raise BinanceError(-4068, "Position side cannot be changed if there exists position.")
        if any(o.is_open for o in (*self.orders.values(), *self.algos.values())):
            raise BinanceError(-4067, "Position side cannot be changed if there exists open orders.")
        self.dual = dual
        return {"code": 200, "msg": "success"}

    # --- order requests -------------------------------------------------------------------------
    def _common(self, params: dict, algo: bool) -> tuple[MarketSpec, str, str, str, bool]:
        spec = market_of(self.state.futures_markets, params)
        side, otype = need(params, "side"), need(params, "type")
        if side not in ("BUY", "SELL"):
            raise BinanceError(-1102, "Param 'side' was malformed.")
        allowed = ALGO_TYPES if algo else ("LIMIT", "MARKET")
        if otype not in allowed:
            if not algo and otype in ALGO_TYPES:
                raise BinanceError(-4120, "Order type not supported for this endpoint. Please use "
                                          "the Algo Order API endpoints instead.")
            raise BinanceError(-1116, "Invalid orderType.")
        pside = params.get("positionSide") or "BOTH"
        if (pside == "BOTH") == self.dual or pside not in ("BOTH", "LONG", "SHORT"):
            raise BinanceError(-4061, "Order's position side does not match user's setting.")
        reduce_only = _bool(params, "reduceOnly")
        if reduce_only and self.dual:
            raise BinanceError(-1106, "Parameter 'reduceOnly' sent when not required.")
        closing = self.dual and (pside == "LONG") == (side == "SELL")
        return spec, side, otype, pside, reduce_only or closing

    def _check_size(self, spec: MarketSpec, price: Decimal | None, qty: Decimal, ref: Decimal,
                    reducing: bool) -> None:
        failure = spec.filter_failure(price, qty, ref)
        if failure == "PRICE_FILTER":
            raise BinanceError(-4014, "Price not increased by tick size.")
        if failure == "LOT_SIZE":
            if qty % spec.step:
                raise BinanceError(-1111, "Precision is over the maximum defined for this asset.")
            raise BinanceError(-4003 if qty < spec.lot_min else -4005,
                               "Quantity less than or equal to zero." if qty < spec.lot_min
                               else "Quantity greater than max quantity.")
        if failure == "NOTIONAL" and not reducing:
            raise BinanceError(-4164, f"Order's notional must be no smaller than {spec.min_notional} "
                                      "(unless you choose reduce only).")

    def _check_margin(self, spec: MarketSpec, order: Order, ref: Decimal) -> None:
        increase = order.qty - self._reducible(order)
        need_ = increase * ref / self.lev(spec.id) + order.qty * ref * self.state.options.futures_taker_fee
        if increase > 0 and need_ > self.available():
            raise BinanceError(-2019, MARGIN_INSUFFICIENT)

    def _reducible(self, order: Order) -> Decimal:
        pos = self.positions.get((order.symbol, order.position_side))
        amt = pos.amt if pos else ZERO
        sign = 1 if order.side == "BUY" else -1
        return min(order.remaining, abs(amt)) if amt * sign < 0 else ZERO

    def create(self, params: dict, fill_fraction: Decimal | None = None) -> dict:
        st = self.state
        spec, side, otype, pside, reducing = self._common(params, algo=False)
        client_id = params.get("newClientOrderId") or f"sim_{st.next_id()}"
        if is_duplicate(self.by_client, client_id, st.options.duplicate_client_ids):
            raise BinanceError(-4116, "ClientOrderId is duplicated.")
        now_price = st.price(spec.id)
        price = decimal_param(params, "price", required=otype == "LIMIT")
        qty = decimal_param(params, "quantity", required=True)
        tif = need(params, "timeInForce") if otype == "LIMIT" else "GTC"
        self._check_size(spec, price, qty, now_price, reducing)
        order = Order(st.next_id(), client_id, spec.id, side, otype, qty, price, None, st.now_ms,
                      time_in_force=tif, update_time=st.now_ms, position_side=pside,
                      reduce_only=reducing, fill_fraction=fill_fraction)
        if reducing and self._reducible(order) < qty and (self.dual or otype == "MARKET"):
            raise BinanceError(-2022, "ReduceOnly Order is rejected.")
        marketable = otype == "MARKET" or crosses_limit(side, price, now_price, now_price)
        if tif == "GTX" and marketable:
            raise BinanceError(-5022, "Due to the order could not be executed as maker, the Post Only "
                                      "order will be rejected. The order will not be recorded in the "
                                      "order history")
        if not reducing:
            self._check_margin(spec, order, price if price is not None and not marketable else now_price)
        self.orders[order.order_id] = order
        self.by_client[client_id] = order
        if marketable:
            self._execute(order, fill_quantity(order, spec, None), now_price, maker=False)
            if otype == "MARKET" or tif in ("IOC", "FOK"):
                self._finish(order, "EXPIRED")
        return self.order_json(order)

    def create_algo(self, params: dict, fill_fraction: Decimal | None = None) -> dict:
        st = self.state
        if params.get("algoType", "CONDITIONAL") != "CONDITIONAL":
            raise BinanceError(-1102, "Param 'algoType' was malformed.")
        spec, side, otype, pside, reducing = self._common(params, algo=True)
        client_id = params.get("clientAlgoId") or f"sim_{st.next_id()}"
        if is_duplicate(self.algo_by_client, client_id, st.options.duplicate_client_ids):
            raise BinanceError(-4116, "ClientOrderId is duplicated.")
        now_price = st.price(spec.id)
        close_position = _bool(params, "closePosition")
        qty = decimal_param(params, "quantity", required=not close_position) or ZERO
        price = decimal_param(params, "price", required=otype in ("STOP", "TAKE_PROFIT"))
        trailing = otype == "TRAILING_STOP_MARKET"
        stop = decimal_param(params, "triggerPrice", required=not trailing)
        rate = decimal_param(params, "callbackRate", required=trailing)
        activation = decimal_param(params, "activatePrice")
        if trailing and not Decimal("0.1") <= rate <= 10:
            raise BinanceError(-2007, "Invalid callBack rate.")
        for p in (price, stop, activation):
            if p is not None and p % spec.tick:
                raise BinanceError(-4014, "Price not increased by tick size.")
        if not close_position:
            self._check_size(spec, price, qty, stop or activation or now_price, reducing or close_position)
        order = Order(st.next_id(), client_id, spec.id, side, otype, qty, price, stop, st.now_ms,
                      time_in_force=params.get("timeInForce") or "GTC", update_time=st.now_ms,
                      position_side=pside, reduce_only=reducing or close_position,
                      close_position=close_position, callback_rate=rate, activation_price=activation,
                      fill_fraction=fill_fraction)
        if stop is not None and (now_price >= stop if rises_to_trigger(order) else now_price <= stop):
            raise BinanceError(-2021, "Order would immediately trigger.")
        if trailing and activation is None:
            order.peak = now_price
        self.algos[order.order_id] = order
        self.algo_by_client[client_id] = order
        return self.algo_json(order)

    def get(self, params: dict) -> dict:
        order = lookup(self.orders, self.by_client, params)
        return self.order_json(order)

    def get_algo(self, params: dict) -> dict:
        order = lookup(self.algos, self.algo_by_client, params, id_key="algoId", client_key="clientAlgoId")
        return self.algo_json(order)

    def cancel(self, params: dict) -> dict:
        order = lookup(self.orders, self.by_client, params, open_only=True)
        self._finish(order, "CANCELED")
        return self.order_json(order)

    def cancel_algo(self, params: dict) -> dict:
        order = lookup(self.algos, self.algo_by_client, params, open_only=True, id_key="algoId",
                       client_key="clientAlgoId")
        order.status, order.update_time = "CANCELED", self.state.now_ms
        return {"algoId": order.order_id, "clientAlgoId": order.client_id, "code": "200",
                "msg": "success"}

    def cancel_all(self, params: dict) -> dict:
        spec = market_of(self.state.futures_markets, params)
        for order in [*self.orders.values(), *self.algos.values()]:
            if order.symbol == spec.id and order.is_open:
                if order.order_id in self.algos:
                    order.status = "CANCELED"
                else:
                    self._finish(order, "CANCELED")
        return {"code": 200, "msg": "The operation of cancel all open order is done."}

    def listing(self, params: dict, algo: bool, open_only: bool) -> list[dict]:
        book = self.algos if algo else self.orders
        sym = params.get("symbol")
        if not open_only and not sym:
            need(params, "symbol")
        rows = [o for o in book.values() if (not sym or o.symbol == sym) and (o.is_open or not open_only)
                and in_window(params, o.time)
                and o.order_id >= int(params.get("orderId") or params.get("algoId") or 0)]
        rows = rows if open_only else rows[: int(params.get("limit") or 500)]
        return [self.algo_json(o) if algo else self.order_json(o) for o in rows]

    def user_trades(self, params: dict) -> list[dict]:
        spec = market_of(self.state.futures_markets, params)
        rows = select_trades(self.trades, spec.id, params)
        return [{"symbol": t["symbol"], "id": t["id"], "orderId": t["orderId"], "side": t["side"],
                 "price": fmt(t["price"]), "qty": fmt(t["qty"]), "realizedPnl": fmt(t["realized"]),
                 "quoteQty": fmt(t["qty"] * t["price"]), "commission": fmt(t["fee"]),
                 "commissionAsset": t["feeAsset"], "time": t["time"], "positionSide": t["positionSide"],
                 "buyer": t["side"] == "BUY", "maker": t["maker"]}
                for t in rows]

    def income_history(self, params: dict) -> list[dict]:
        rows = [r for r in self.income
                if (not params.get("symbol") or r["symbol"] == params["symbol"])
                and (not params.get("incomeType") or r["incomeType"] == params["incomeType"])
                and in_window(params, r["time"])]
        return rows[: int(params.get("limit") or 100)]

    # --- matching -------------------------------------------------------------------------------
    def on_bar(self, market_id: str, bar: Bar) -> None:
        spec = self.state.futures_markets[market_id]
        cap = self.state.volume_cap(bar)
        for algo in [a for a in self.algos.values() if a.symbol == market_id and a.is_open]:
            self._algo_on_bar(algo, spec, bar)
        for order in [o for o in self.orders.values() if o.symbol == market_id and o.is_open]:
            if order.type == "LIMIT" and crosses_limit(order.side, order.price, bar.low, bar.high):
                qty = fill_quantity(order, spec, cap)
                if qty > 0:
                    self._execute(order, qty, limit_fill_price(order.side, order.price, bar.open), True)
        self._liquidate(market_id, bar)

    def _algo_on_bar(self, algo: Order, spec: MarketSpec, bar: Bar) -> None:
        if algo.type == "TRAILING_STOP_MARKET":
            at = self._trail(algo, spec, bar)
        elif stop_triggered(stop_kind(algo.type), algo.side, algo.stop_price, bar.low, bar.high):
            at = trigger_price(rises_to_trigger(algo), algo.stop_price, bar.open)
        else:
            return
        if at is None:
            return
        qty = algo.qty
        if algo.close_position:
            qty = abs(self.position(spec.id, algo.position_side).amt)
        child = Order(self.state.next_id(), algo.client_id, algo.symbol, algo.side,
                      "MARKET" if algo.price is None else "LIMIT", qty, algo.price, None,
                      self.state.now_ms, update_time=self.state.now_ms,
                      position_side=algo.position_side, reduce_only=algo.reduce_only,
                      fill_fraction=algo.fill_fraction)
        algo.triggered, algo.child_id, algo.update_time = True, child.order_id, self.state.now_ms
        if qty <= 0 or algo.reduce_only and self._reducible(child) == 0:
            algo.status = "EXPIRED"
            return
        self.orders[child.order_id] = child
        self.by_client[child.client_id] = child
        algo.status = "FINISHED"
        if child.price is None or crosses_limit(child.side, child.price, at, at):
            self._execute(child, fill_quantity(child, spec, self.state.volume_cap(bar)), at, maker=False)
            if child.type == "MARKET":
                self._finish(child, "EXPIRED")

    def _trail(self, algo: Order, spec: MarketSpec, bar: Bar) -> Decimal | None:
        """Where a TRAILING_STOP_MARKET triggers within ``bar`` (None: it does not).

        Binance's rule: once active (at placement without ``activatePrice``, else once the price
        reaches it) the order tracks the best price since (highest for a SELL, which closes a
        long; lowest for a BUY) and triggers when the price comes back ``callbackRate`` % from it,
        at ``best x (1 - rate)`` (SELL) or ``best x (1 + rate)`` (BUY), rounded to the tick. The
        bar is walked open -> adverse extreme -> favourable extreme -> close (a SELL sees the low
        before the high): the conservative order the simulator's stops assume, the adverse move
        coming before the bar's best price can lift the level. Between those points the price
        moves monotonically, so the best price only moves at the favourable extreme and a trigger
        fills at the level, or at the open when the bar opened past it (a gap)."""
        sell = algo.side == "SELL"
        rate = algo.callback_rate / 100
        path = (bar.open, bar.low, bar.high, bar.close) if sell else (bar.open, bar.high, bar.low, bar.close)
        for k, price in enumerate(path):
            if algo.peak is None:  # waiting for the activation price
                if not ((price >= algo.activation_price) if sell else (price <= algo.activation_price)):
                    continue
                algo.peak = algo.activation_price if k else price
            level = spec.round_price(algo.peak * (1 - rate) if sell else algo.peak * (1 + rate))
            if (price <= level) if sell else (price >= level):
                return price if k == 0 else level
            algo.peak = max(algo.peak, price) if sell else min(algo.peak, price)
        return None

    def _execute(self, order: Order, qty: Decimal, price: Decimal, maker: bool) -> None:
        """Apply a fill to the position and wallet (reduce first, then increase)."""
        st = self.state
        reducible = self._reducible(order)
        if order.reduce_only:
            qty = min(qty, reducible)
        if qty <= 0:
            return
        pos = self.position(order.symbol, order.position_side)
        sign = Decimal(1 if order.side == "BUY" else -1)
        reduce = min(qty, reducible)
        realized = reduce * (price - pos.entry) * (-sign) if reduce else ZERO
        if reduce:
            old = abs(pos.amt)
            pos.amt += sign * reduce
            pos.isolated_margin = pos.isolated_margin * abs(pos.amt) / old
            if pos.amt == 0:
                pos.entry = ZERO
        increase = qty - reduce
        if increase:
            size = abs(pos.amt)
            pos.entry = (size * pos.entry + increase * price) / (size + increase)
            pos.amt += sign * increase
            if self.margin_type.get(order.symbol) == "ISOLATED":
                pos.isolated_margin += increase * price / self.lev(order.symbol)
        pos.update_time = st.now_ms
        opts = st.options
        fee = (qty * price * (opts.futures_maker_fee if maker else opts.futures_taker_fee)).quantize(CENT8)
        self.wallet += realized - fee
        trade = record_trade(order, st.next_id(), qty, price, fee, "USDT", maker, st.now_ms,
                             symbol=order.symbol, side=order.side, realized=realized,
                             positionSide=order.position_side)
        self.trades.append(trade)
        if realized:
            self._income(order.symbol, "REALIZED_PNL", realized, trade["id"])
        self._income(order.symbol, "COMMISSION", -fee, trade["id"])

    def _finish(self, order: Order, status: str) -> None:
        if order.is_open and order.remaining > 0:
            order.status, order.update_time = status, self.state.now_ms

    def _income(self, market_id: str, kind: str, amount: Decimal, trade_id: int | str = "") -> None:
        self.income.append({"symbol": market_id, "incomeType": kind, "income": fmt(amount),
                            "asset": "USDT", "info": kind, "time": self.state.now_ms,
                            "tranId": self.state.next_id(), "tradeId": str(trade_id)})

    def _liquidate(self, market_id: str, bar: Bar) -> None:
        """Close positions whose liquidation price the bar reached (cross: the symbol's net
        exposure decides the direction, and all its positions go together)."""
        mine = [(side, p) for (m, side), p in self.positions.items() if m == market_id and p.amt]
        if not mine:
            return
        isolated = self.margin_type.get(market_id) == "ISOLATED"
        net = sum((p.amt for _, p in mine), ZERO)
        doomed = []
        for side, pos in mine:
            liq = self.liquidation_price(market_id, side)
            direction = pos.amt if isolated else net
            if liq and ((direction > 0 and bar.low <= liq) or (direction < 0 and bar.high >= liq)):
                doomed.append((side, pos, liq))
        for side, pos, liq in doomed:
            order = Order(self.state.next_id(), f"autoclose-{self.state.now_ms}-{side}", market_id,
                          "SELL" if pos.amt > 0 else "BUY", "LIMIT", abs(pos.amt), liq, None,
                          self.state.now_ms, time_in_force="IOC", position_side=side,
                          reduce_only=True)
            self.orders[order.order_id] = order
            self._execute(order, order.qty, liq, maker=False)

    def apply_funding(self, time_ms: int) -> None:
        for (m, _), pos in self.positions.items():
            if pos.amt:
                payment = (pos.amt * self.state.price(m) * self.state.funding_rate_at(m, time_ms)).quantize(CENT8)
                self.wallet -= payment
                self._income(m, "FUNDING_FEE", -payment)

    def funding_history(self, params: dict) -> list[dict]:
        st = self.state
        ids = [params["symbol"]] if params.get("symbol") else list(st.futures_markets)
        first = -(-st.first_ms // FUNDING_INTERVAL_MS) * FUNDING_INTERVAL_MS
        start = max(first, -(-int(params.get("startTime") or first) // FUNDING_INTERVAL_MS) * FUNDING_INTERVAL_MS)
        end = min(st.now_ms, int(params.get("endTime") or st.now_ms))
        limit = min(int(params.get("limit") or 100), 1000)
        times = range(start, end + 1, FUNDING_INTERVAL_MS)
        times = times[:limit] if params.get("startTime") else times[-limit:]
        rows = []
        for t in times:
            for m in ids:
                bar = st.bar_at(m, t)
                rows.append({"symbol": m, "fundingTime": t, "fundingRate": fmt(st.funding_rate_at(m, t)),
                             "markPrice": fmt(bar.open if bar else st.price(m))})
        return rows
