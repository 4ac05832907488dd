"""Order-request parsing and checks shared by the spot and futures dialects."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from .markets import MarketSpec, dec
from .state import BinanceError, Order


def need(params: dict, name: str) -> str:
    value = params.get(name)
    if value in (None, ""):
        raise BinanceError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or "
                                  "malformed.")
    return value


def decimal_param(params: dict, name: str, required: bool = False) -> Decimal | None:
    raw = need(params, name) if required else params.get(name)
    if raw in (None, ""):
        return None
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise BinanceError(-1100, f"Illegal characters found in parameter '{name}'; legal range is "
                                  "'^([0-9]{1,20})(\\.[0-9]{1,20})?$'.") from None
    if not value.is_finite() or value < 0:
        raise BinanceError(-1100, f"Illegal characters found in parameter '{name}'.")
    return value


def market_of(markets: dict[str, MarketSpec], params: dict) -> MarketSpec:
    spec = markets.get(need(params, "symbol"))
    if spec is None:
        raise BinanceError(-1121, "Invalid symbol.")
    return spec


def find_order(orders: dict[int, Order], by_client: dict[str, Order], params: dict,
               id_key: str = "orderId", client_key: str = "origClientOrderId") -> Order | None:
    """The order named by id or client id (the latest order that used that client id)."""
    if params.get(id_key):
        order = orders.get(int(params[id_key]))
    elif params.get(client_key):
        order = by_client.get(params[client_key])
    else:
        raise BinanceError(-1102, f"Param '{id_key}' or '{client_key}' must be sent, but both were "
                                  "empty/null!")
    if order is not None and params.get("symbol") and order.symbol != params["symbol"]:
        return None
    return order


def lookup(orders: dict[int, Order], by_client: dict[str, Order], params: dict, *,
           open_only: bool = False, id_key: str = "orderId",
           client_key: str = "origClientOrderId") -> Order:
    """The named order, or Binance's error: -2013 for a query, -2011 for a cancel (``open_only``)."""
    order = find_order(orders, by_client, params, id_key, client_key)
    if order is None or open_only and not order.is_open:
        raise BinanceError(-2011, "Unknown order sent.") if open_only else \
            BinanceError(-2013, "Order does not exist.")
    return order


def is_duplicate(by_client: dict[str, Order], client_id: str, policy: str) -> bool:
    previous = by_client.get(client_id)
    return previous is not None and (policy == "all" or previous.is_open)


def crosses_limit(side: str, price: Decimal, low: Decimal, high: Decimal) -> bool:
    return low <= price if side == "BUY" else high >= price


def limit_fill_price(side: str, price: Decimal, open_: Decimal) -> Decimal:
    """A resting limit fills at its price, or at a better open when the bar gaps through it."""
    return min(price, open_) if side == "BUY" else max(price, open_)


def stop_triggered(kind: str, side: str, stop: Decimal, low: Decimal, high: Decimal) -> bool:
    """Stop-loss orders trigger when price moves against the closing side, take-profit with it."""
    rising = kind in ("STOP_LOSS", "STOP") and side == "BUY" or kind == "TAKE_PROFIT" and side == "SELL"
    return high >= stop if rising else low <= stop


def trigger_price(side_rising: bool, stop: Decimal, open_: Decimal) -> Decimal:
    """Where a triggered market stop executes: the stop price, or the open if the bar gapped past."""
    return max(stop, open_) if side_rising else min(stop, open_)


def fill_quantity(order: Order, spec: MarketSpec, cap: Decimal | None) -> Decimal:
    """How much of ``order`` may fill now: the remainder, limited by an injected partial-fill
    fraction and by the bar's volume cap, in whole steps (at least one step)."""
    qty = order.remaining
    if order.fill_fraction is not None:
        qty = min(qty, max(spec.step, spec.floor_qty(order.qty * order.fill_fraction)))
    if cap is not None:
        qty = min(qty, spec.floor_qty(cap))
    return max(qty, Decimal(0))


def stop_kind(order_type: str) -> str:
    if order_type.startswith("TAKE_PROFIT"):
        return "TAKE_PROFIT"
    return "STOP" if order_type in ("STOP", "STOP_MARKET") else "STOP_LOSS"


def rises_to_trigger(order: Order) -> bool:
    kind = stop_kind(order.type)
    return kind in ("STOP", "STOP_LOSS") and order.side == "BUY" or kind == "TAKE_PROFIT" and order.side == "SELL"


def check_stop_not_immediate(order: Order, price: Decimal, code: int, msg: str) -> None:
    rising = rises_to_trigger(order)
    if order.stop_price is not None and (price >= order.stop_price if rising else price <= order.stop_price):
        raise BinanceError(code, msg)


def record_trade(order: Order, trade_id: int, qty: Decimal, price: Decimal, fee: Decimal,
                 fee_asset: str, maker: bool, time_ms: int, **extra) -> dict:
    order.executed += qty
    order.cum_quote += qty * price
    order.status = "FILLED" if order.remaining == 0 else "PARTIALLY_FILLED"
    order.update_time = time_ms
    trade = {"id": trade_id, "orderId": order.order_id, "price": price, "qty": qty, "fee": fee,
             "feeAsset": fee_asset, "maker": maker, "time": time_ms, **extra}
    order.trades.append(trade)
    return trade


def in_window(params: dict, time_ms: int) -> bool:
    return int(params.get("startTime") or 0) <= time_ms <= int(params.get("endTime") or 2**62)


def select_trades(trades: list[dict], market_id: str, params: dict) -> list[dict]:
    """A symbol's trades filtered by orderId/fromId/startTime/endTime, first ``limit`` (500)."""
    rows = [t for t in trades if t["symbol"] == market_id
            and (not params.get("orderId") or t["orderId"] == int(params["orderId"]))
            and t["id"] >= int(params.get("fromId") or 0) and in_window(params, t["time"])]
    return rows[: int(params.get("limit") or 500)]


__all__ = ["dec"]
