"""The JSON of Bybit's v5 API rendered from the shared accounts (see :mod:`exchange_sim.bybit`).

Bybit keeps one order id through a conditional order's life (Untriggered -> Triggered -> Filled),
where the shared futures account, as Binance, places a child order on trigger: the child's fills
are shown under its conditional order's id here.
"""

from __future__ import annotations

from decimal import Decimal

from .futures_views import Position
from .markets import MarketSpec, fmt
from .spot import STOP_TYPES
from .state import Order

ZERO = Decimal(0)
SIDES = {"BUY": "Buy", "SELL": "Sell"}
POSITION_IDX = {"BOTH": 0, "LONG": 1, "SHORT": 2}
TIF = {"GTC": "GTC", "IOC": "IOC", "FOK": "FOK", "GTX": "PostOnly"}


def _num(value: Decimal | None) -> str:
    return "" if value is None else format(Decimal(value).normalize(), "f")


def spot_instrument(spec: MarketSpec) -> dict:
    return {"symbol": spec.id, "baseCoin": spec.base, "quoteCoin": spec.quote, "innovation": "0",
            "status": "Trading", "marginTrading": "none", "stTag": "0",
            "lotSizeFilter": {"basePrecision": _num(spec.step), "quotePrecision": "0.00000001",
                              "minOrderQty": _num(spec.lot_min), "maxOrderQty": _num(spec.max_qty),
                              "minOrderAmt": _num(spec.min_notional), "maxOrderAmt": "2000000"},
            "priceFilter": {"tickSize": _num(spec.tick)},
            "riskParameters": {"priceLimitRatioX": "0.05", "priceLimitRatioY": "0.1"}}


def linear_instrument(spec: MarketSpec, launch_ms: int) -> dict:
    return {"symbol": spec.id, "contractType": "LinearPerpetual", "status": "Trading",
            "baseCoin": spec.base, "quoteCoin": spec.quote, "settleCoin": spec.quote,
            "launchTime": str(launch_ms), "deliveryTime": "0", "deliveryFeeRate": "",
            "priceScale": str(max(0, -spec.tick.normalize().as_tuple().exponent)),
            "leverageFilter": {"minLeverage": "1", "maxLeverage": "100.00", "leverageStep": "0.01"},
            "priceFilter": {"minPrice": _num(spec.tick), "maxPrice": "1999999.80", "tickSize": _num(spec.tick)},
            "lotSizeFilter": {"maxOrderQty": _num(spec.max_qty), "minOrderQty": _num(spec.lot_min),
                              "qtyStep": _num(spec.step), "postOnlyMaxOrderQty": _num(spec.max_qty),
                              "maxMktOrderQty": _num(spec.max_qty), "minNotionalValue": _num(spec.min_notional)},
            "unifiedMarginTrade": True, "fundingInterval": 480, "settleCoin_": spec.quote,
            "copyTrading": "both", "upperFundingRate": "0.00375", "lowerFundingRate": "-0.00375",
            "isPreListing": False}


def order_status(o: Order, conditional: bool, child: Order | None = None, category: str = "linear") -> str:
    """Bybit's orderStatus of ``o`` (a conditional order's from its child once triggered). Only
    spot says ``PartiallyFilledCanceled``; a derivatives order cancelled after a partial fill is
    ``Cancelled`` with its executed qty (Bybit's v5 enum page)."""
    if conditional and not o.triggered:
        return {"NEW": "Untriggered", "CANCELED": "Deactivated"}.get(o.status, "Deactivated")
    src = child if child is not None else o
    if category == "spot" and src.status in ("EXPIRED", "CANCELED") and src.executed > 0:
        return "PartiallyFilledCanceled"
    return {"NEW": "New", "PARTIALLY_FILLED": "PartiallyFilled", "FILLED": "Filled", "CANCELED": "Cancelled",
            "EXPIRED": "Cancelled", "FINISHED": "Filled", "REJECTED": "Rejected"}.get(src.status, "New")


def order_json(o: Order, category: str, *, conditional: bool, child: Order | None = None,
               trigger_direction: int = 0) -> dict:
    """One order as ``/v5/order/realtime`` and ``/v5/order/history`` list it."""
    src = child if child is not None else o
    executed, value = src.executed, src.cum_quote
    fee = sum((t["fee"] for t in src.trades), ZERO)
    market = o.price is None or (o.type in ("MARKET", "STOP_MARKET", "TAKE_PROFIT_MARKET", "STOP_LOSS", "TAKE_PROFIT"))
    status = order_status(o, conditional, child, category)
    leaves = ZERO if status in ("Filled", "Cancelled", "PartiallyFilledCanceled", "Deactivated", "Rejected") \
        else o.qty - executed
    stop_type = "Stop" if conditional else ""
    return {"orderId": str(o.order_id), "orderLinkId": o.client_id, "blockTradeId": "", "symbol": o.symbol,
            "price": _num(o.price) if o.price is not None else "0", "qty": _num(o.qty), "side": SIDES[o.side],
            "isLeverage": "", "positionIdx": POSITION_IDX.get(o.position_side, 0), "orderStatus": status,
            "createType": "CreateByUser", "cancelType": "UNKNOWN", "rejectReason": "EC_NoError",
            "avgPrice": _num(src.avg_price) if executed else "", "leavesQty": _num(leaves),
            "leavesValue": _num(leaves * (o.price or ZERO)), "cumExecQty": _num(executed),
            "cumExecValue": _num(value), "cumExecFee": _num(fee),
            "timeInForce": "IOC" if market else TIF.get(o.time_in_force, "GTC"),
            "orderType": "Market" if market else "Limit", "stopOrderType": stop_type, "orderIv": "",
            "marketUnit": "", "triggerPrice": _num(o.stop_price) if o.stop_price is not None else "",
            "takeProfit": "", "stopLoss": "", "tpslMode": "", "ocoTriggerBy": "", "tpLimitPrice": "",
            "slLimitPrice": "", "tpTriggerBy": "", "slTriggerBy": "", "triggerDirection": trigger_direction,
            "triggerBy": "LastPrice" if conditional else "", "lastPriceOnCreated": "", "basePrice": "",
            "reduceOnly": o.reduce_only, "closeOnTrigger": bool(conditional and o.reduce_only),
            "placeType": "", "smpType": "None", "smpGroup": 0, "smpOrderId": "",
            "createdTime": str(o.time), "updatedTime": str(max(o.update_time, src.update_time))}


def execution_json(t: dict, order: Order, category: str, fee_coin: str) -> dict:
    """One fill as ``/v5/execution/list`` lists it (``t``: a trade of the shared accounts)."""
    qty, price = Decimal(t["qty"]), Decimal(t["price"])
    return {"symbol": t["symbol"], "orderId": str(order.order_id), "orderLinkId": order.client_id,
            "side": SIDES[t["side"]], "orderPrice": _num(order.price or price), "orderQty": _num(order.qty),
            "leavesQty": _num(order.qty - order.executed), "createType": "CreateByUser",
            "orderType": "Limit" if order.price is not None else "Market", "stopOrderType": "",
            "execFee": _num(t["fee"]), "execId": str(t["id"]), "execPrice": _num(price), "execQty": _num(qty),
            "execType": "Trade", "execValue": _num(qty * price), "execTime": str(t["time"]),
            "feeCurrency": fee_coin, "isMaker": bool(t["maker"]), "feeRate": _num(t["fee"] / (qty * price))
            if qty * price else "0", "tradeIv": "", "markIv": "", "markPrice": _num(price), "indexPrice": "",
            "underlyingPrice": "", "blockTradeId": "", "closedSize": "", "seq": t["id"], "category": category}


def funding_json(row: dict, size: Decimal, rate: Decimal, price: Decimal) -> dict:
    """A funding payment as ``/v5/execution/list`` lists it (``execType`` Funding; ``execFee`` > 0: paid)."""
    paid = -Decimal(row["income"])
    return {"symbol": row["symbol"], "orderId": "", "orderLinkId": "", "side": "Buy" if size > 0 else "Sell",
            "orderPrice": "0", "orderQty": "0", "leavesQty": "0", "createType": "", "orderType": "UNKNOWN",
            "stopOrderType": "UNKNOWN", "execFee": _num(paid), "execId": f"funding-{row['tranId']}",
            "execPrice": _num(price), "execQty": _num(abs(size)), "execType": "Funding",
            "execValue": _num(abs(size) * price), "execTime": str(row["time"]), "feeCurrency": "USDT",
            "isMaker": False, "feeRate": _num(rate), "tradeIv": "", "markIv": "", "markPrice": _num(price),
            "indexPrice": "", "underlyingPrice": "", "blockTradeId": "", "closedSize": "0", "seq": row["tranId"]}


def position_json(account, market_id: str, side: str, pos: Position) -> dict:
    """One position row of ``/v5/position/list`` (hedge mode: positionIdx 1 long, 2 short)."""
    st = account.state
    spec = st.futures_markets[market_id]
    mark = st.price(market_id)
    size = abs(pos.amt)
    value = size * pos.entry
    im = size * mark / account.lev(market_id)
    bside = "" if not pos.amt else ("Buy" if pos.amt > 0 else "Sell")
    isolated = account.margin_type.get(market_id) == "ISOLATED"
    return {"positionIdx": POSITION_IDX[side], "riskId": 1, "riskLimitValue": "2000000", "symbol": market_id,
            "side": bside, "size": _num(size), "avgPrice": _num(pos.entry), "positionValue": _num(value),
            "tradeMode": 1 if isolated else 0, "positionStatus": "Normal", "autoAddMargin": 0,
            "adlRankIndicator": 2 if pos.amt else 0, "leverage": str(account.lev(market_id)),
            "positionBalance": _num(pos.isolated_margin if isolated else im), "markPrice": _num(mark),
            "liqPrice": _num(account.liquidation_price(market_id, side)) if pos.amt else "",
            "bustPrice": "", "positionMM": _num(size * mark * spec.maint_margin_ratio), "positionIM": _num(im),
            "tpslMode": "Full", "takeProfit": "0", "stopLoss": "0", "trailingStop": "0",
            "unrealisedPnl": _num(account.upnl(market_id, pos)), "curRealisedPnl": "0", "cumRealisedPnl": "0",
            "seq": pos.update_time, "isReduceOnly": False, "mmrSysUpdatedTime": "", "leverageSysUpdatedTime": "",
            "createdTime": str(pos.update_time), "updatedTime": str(pos.update_time)}


def is_conditional_spot(o: Order) -> bool:
    return o.type in STOP_TYPES


__all__ = ["execution_json", "fmt", "funding_json", "is_conditional_spot", "linear_instrument", "order_json",
           "position_json", "spot_instrument"]
