"""Bybit's v5 REST dialect (unified trading account: ``category`` spot and linear) over the
shared accounts and matching engine: requests are translated into the spot and futures accounts'
(Binance-shaped) parameters, their answers and errors into Bybit's ``{"retCode", "retMsg",
"result"}``. Sources: see ``tests/exchange_sim/README.md``."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from decimal import Decimal

from .bybit_views import (execution_json, funding_json, linear_instrument, order_json, position_json,
                          spot_instrument)
from .dialect import Answer, Dialect
from .futures import ALGO_TYPES
from .futures_views import Position
from .markets import MarketSpec, dec
from .spot import STOP_TYPES
from .state import FUNDING_INTERVAL_MS, BinanceError, Options, Order

ORDER_LINK_ID = re.compile(r"^[A-Za-z0-9_-]{1,36}$")
INTERVALS = {"1": 1, "3": 3, "5": 5, "15": 15, "30": 30, "60": 60, "120": 120, "240": 240, "360": 360,
             "720": 720, "D": 1440, "W": 10080}
#: Bybit's rules for the bundled pairs (2025): spot BTCUSDT / ETHUSDT, linear perpetuals
BYBIT_SPOT_MARKETS = (
    MarketSpec("BTC/USDT", tick=Decimal("0.01"), step=Decimal("0.000001"), min_notional=Decimal(1),
               min_qty=Decimal("0.000048"), max_qty=Decimal(71)),
    MarketSpec("ETH/USDT", tick=Decimal("0.01"), step=Decimal("0.00001"), min_notional=Decimal(1),
               min_qty=Decimal("0.00062"), max_qty=Decimal(1229)),
)
BYBIT_LINEAR_MARKETS = (
    MarketSpec("BTC/USDT", tick=Decimal("0.10"), step=Decimal("0.001"), min_notional=Decimal(5),
               max_qty=Decimal(1190), maint_margin_ratio=Decimal("0.005")),
    MarketSpec("ETH/USDT", tick=Decimal("0.01"), step=Decimal("0.01"), min_notional=Decimal(5),
               max_qty=Decimal(7240), maint_margin_ratio=Decimal("0.005")),
)


def bybit_options(**changes) -> Options:
    """The emulator's defaults for a Bybit non-VIP account: spot 0.1 %/0.1 %, derivatives taker
    0.055 %, maker 0.02 %; leverage 10; an orderLinkId unique among all orders."""
    base = dict(futures_taker_fee=Decimal("0.00055"), futures_maker_fee=Decimal("0.0002"), default_leverage=10,
                duplicate_client_ids="all")
    return Options(**{**base, **changes})


class BybitError(BinanceError):
    """An error in Bybit's own words (retCode, retMsg)."""


# -- errors of the shared accounts in Bybit's words ------------------------------------------------
def _translate(err: BinanceError, spot: bool) -> tuple[int, str]:
    if isinstance(err, BybitError):
        return err.code, err.msg
    code, msg = err.code, err.msg
    if code in (-2011, -2013):
        return (170213, "Order does not exist.") if spot else (110001, "Order does not exist")
    if code == -2010 and "insufficient" in msg:
        return 170131, "Insufficient balance."
    if code == -2010 and "Duplicate" in msg:
        return 110072, "OrderLinkedID is duplicate"
    if code == -2010 and "match and take" in msg:
        return 10001, "params error: a PostOnly order would take liquidity"
    if code in (-2010, -2021):
        return 110092 if "rise" in msg else 110093, "Trigger price would trigger immediately: " + msg
    if code == -1013:
        return {"LOT_SIZE": (170136, "Order quantity lower than the minimum or precision too long."),
                "PRICE_FILTER": (170134, "Order price decimal too long."),
                "NOTIONAL": (170140, "Order value exceeded lower limit.")}.get(msg.split(": ")[-1], (10001, msg))
    table = {-4116: (110072, "OrderLinkedID is duplicate"), -2019: (110007, "ab not enough for new order"),
             -4164: (110094, "Order does not meet minimum order value"), -2022: (110017, "Reduce-only rule not "
             "satisfied"), -4014: (10001, "Price invalid: not a multiple of the tick size"),
             -1111: (10001, "Qty invalid: not a multiple of the qty step"), -4003: (10001, "Qty below minimum"),
             -4005: (10001, "Qty exceeds maximum"), -4061: (10001, "position idx not match position mode"),
             -4059: (110025, "Position mode is not modified"),
             -4068: (110024, "position mode cannot be switched: existing position"),
             -4067: (110024, "position mode cannot be switched: existing order"),
             -4028: (10001, "leverage invalid"), -1121: (10001, "params error: symbol invalid"),
             -1000: (10016, "Internal server error."), -2015: (10003, "API key is invalid.")}
    return table.get(code, (10001, f"params error: {msg}"))


def _error(err: BinanceError) -> Answer:
    code, msg = _translate(err, getattr(err, "spot", False))
    status = 401 if code in (10003, 10004) else 500 if err.status >= 500 else 200
    return Answer(status, {"retCode": code, "retMsg": msg, "result": {}, "retExtInfo": {}, "time": int(time.time() * 1000)})


def _ok(result, now_ms: int):
    return {"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {}, "time": now_ms}


def _parse_body(raw: str) -> dict:
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise BybitError(10001, "request body is not JSON") from None
    return {k: ("true" if v is True else "false" if v is False else v if isinstance(v, (list, dict)) else str(v))
            for k, v in data.items() if v is not None}


def _authenticate(server, headers, method: str, raw_query: str, raw_body: str, params: dict) -> None:
    """Bybit v5 HMAC: ``sign = HMAC_SHA256(secret, timestamp + api_key + recv_window + payload)``,
    payload the query string (GET) or the JSON body (POST); checked against recv_window."""
    key = headers.get("X-BAPI-API-KEY")
    if key != server.api_key:
        raise BybitError(10003, "API key is invalid.", 401)
    stamp, window = headers.get("X-BAPI-TIMESTAMP") or "", headers.get("X-BAPI-RECV-WINDOW") or "5000"
    payload = stamp + key + window + (raw_body if method == "POST" else raw_query)
    expected = hmac.new(server.secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, headers.get("X-BAPI-SIGN") or ""):
        raise BybitError(10004, f"error sign! origin_string[{payload.replace(key, '***')}]")
    if server.state.options.check_timestamp:
        now = int(time.time() * 1000)
        if not stamp.isdigit() or not now - int(window) <= int(stamp) < now + 1000:
            raise BybitError(10002, f"invalid request, please check your server timestamp or recv_window param. "
                                    f"req_timestamp[{stamp}],server_timestamp[{now}],recv_window[{window}]")


# -- request helpers --------------------------------------------------------------------------------
def _category(p: dict, allowed=("spot", "linear")) -> str:
    cat = p.get("category")
    if cat not in allowed:
        raise BybitError(10001, f"params error: category {cat!r} not supported (expected {', '.join(allowed)})")
    return cat


def _markets(st, cat: str) -> dict:
    return st.spot_markets if cat == "spot" else st.futures_markets


def _spec(st, p: dict, cat: str) -> MarketSpec:
    spec = _markets(st, cat).get(p.get("symbol") or "")
    if spec is None:
        raise BybitError(10001, "params error: symbol invalid")
    return spec


def _spot_err(fn):
    """Spot errors keep Bybit's spot codes (170xxx)."""
    def run(*args):
        try:
            return fn(*args)
        except BinanceError as err:
            err.spot = True      # type: ignore[attr-defined]
            raise
    return run


# -- market data -------------------------------------------------------------------------------------
def _instruments(st, p: dict, _):
    cat = _category(p)
    specs = [s for s in _markets(st, cat).values() if not p.get("symbol") or s.id == p["symbol"]]
    rows = [spot_instrument(s) if cat == "spot" else linear_instrument(s, st.first_ms) for s in specs]
    return {"category": cat, "list": rows, "nextPageCursor": ""}


def _kline(st, p: dict, _):
    cat = _category(p)
    spec = _spec(st, p, cat)
    minutes = INTERVALS.get(p.get("interval", ""))
    if minutes is None or minutes * 60_000 < st.step_ms:
        raise BybitError(10001, "params error: interval invalid")
    limit = int(p.get("limit") or 200)
    if not 1 <= limit <= 1000:
        raise BybitError(10001, "params error: limit must be within [1, 1000]")
    start, end = p.get("start"), p.get("end")
    rows = st.klines(spec.id, minutes * 60_000, int(start) if start else None, int(end) if end else None, limit)
    return {"category": cat, "symbol": spec.id,
            "list": [[str(r[0]), r[1], r[2], r[3], r[4], r[5], r[7]] for r in reversed(rows)]}


def _tickers(st, p: dict, _):
    cat = _category(p)
    out = []
    for spec in _markets(st, cat).values():
        if p.get("symbol") and spec.id != p["symbol"]:
            continue
        t = st.ticker(spec.id)
        row = {"symbol": spec.id, "lastPrice": t["lastPrice"], "bid1Price": t["bidPrice"], "bid1Size": "1",
               "ask1Price": t["askPrice"], "ask1Size": "1", "prevPrice24h": t["openPrice"],
               "price24hPcnt": str(Decimal(t["priceChangePercent"]) / 100), "highPrice24h": t["highPrice"],
               "lowPrice24h": t["lowPrice"], "turnover24h": t["quoteVolume"], "volume24h": t["volume"]}
        if cat == "linear":
            nxt = (st.now_ms // FUNDING_INTERVAL_MS + 1) * FUNDING_INTERVAL_MS
            row.update(markPrice=t["lastPrice"], indexPrice=t["lastPrice"], fundingRate=str(st.funding_rate_at(spec.id, nxt)),
                       nextFundingTime=str(nxt), openInterest="0", openInterestValue="0")
        out.append(row)
    return {"category": cat, "list": out}


def _funding_history(st, p: dict, _):
    _category(p, ("linear",))
    spec = _spec(st, p, "linear")
    limit = int(p.get("limit") or 200)
    if not 1 <= limit <= 200:
        raise BybitError(10001, "params error: limit must be within [1, 200]")
    q = {"symbol": spec.id, "limit": "1000"}
    if p.get("startTime"):
        q["startTime"] = p["startTime"]
    if p.get("endTime"):
        q["endTime"] = p["endTime"]
    rows = st.futures.funding_history(q)
    rows = [r for r in rows if not p.get("endTime") or r["fundingTime"] <= int(p["endTime"])]
    rows = rows[:limit] if p.get("startTime") and not p.get("endTime") else rows[-limit:]
    return {"category": "linear", "list": [{"symbol": r["symbol"], "fundingRate": r["fundingRate"],
                                            "fundingRateTimestamp": str(r["fundingTime"])} for r in reversed(rows)]}


def _risk_limit(st, p, _):
    """One risk tier per linear symbol: the maintenance margin the liquidation price uses."""
    _category(p, ("linear",))
    return {"category": "linear", "list": [
        {"id": 1, "symbol": s.id, "riskLimitValue": "2000000", "maintenanceMargin": str(s.maint_margin_ratio),
         "initialMargin": "0.01", "isLowestRisk": 1, "maxLeverage": "100.00", "mmDeduction": ""}
        for s in st.futures_markets.values() if not p.get("symbol") or s.id == p["symbol"]], "nextPageCursor": ""}


# -- account ----------------------------------------------------------------------------------------
def _query_api(st, p, _):
    return {"id": "1", "note": "sim", "apiKey": "***", "readOnly": 0, "secret": "", "type": 1,
            "permissions": {"ContractTrade": ["Order", "Position"], "Spot": ["SpotTrade"], "Wallet": [],
                            "Options": [], "Derivatives": [], "Exchange": [], "NFT": []},
            "ips": ["*"], "unified": 0, "uta": 1, "userID": 1, "vipLevel": "No VIP", "isMaster": True}


def _coins(st, p, _):
    assets = sorted({a for spec in (*st.spot_markets.values(), *st.futures_markets.values()) for a in (spec.base, spec.quote)})
    return {"rows": [{"name": a, "coin": a, "remainAmount": "1000000", "chains": [
        {"chainType": a, "confirmation": "1", "withdrawFee": "0", "depositMin": "0", "withdrawMin": "0",
         "chain": a, "chainDeposit": "1", "chainWithdraw": "1", "minAccuracy": "8", "withdrawPercentageFee": "0"}]}
        for a in assets]}


def _account_info(st, p, _):
    isolated = any(v == "ISOLATED" for v in st.futures.margin_type.values())
    return {"unifiedMarginStatus": 5, "marginMode": "ISOLATED_MARGIN" if isolated else "REGULAR_MARGIN",
            "isMasterTrader": False, "spotHedgingStatus": "OFF", "updatedTime": str(st.now_ms),
            "dcpStatus": "OFF", "timeWindow": 10, "smpGroup": 0}


def _set_margin_mode(st, p, _):
    mode = p.get("setMarginMode")
    kinds = {"ISOLATED_MARGIN": "ISOLATED", "REGULAR_MARGIN": "CROSSED"}
    if mode not in kinds:
        raise BybitError(10001, f"params error: setMarginMode {mode!r} not supported by the emulator")
    if any(pos.amt for pos in st.futures.positions.values()) and \
            any(st.futures.margin_type.get(m, "CROSSED") != kinds[mode] for m in st.futures_markets):
        return {"reasons": [{"reasonCode": "3400045", "reasonMsg": "Positions exist: margin mode cannot be switched"}]}
    for m in st.futures_markets:
        st.futures.margin_type[m] = kinds[mode]
    return {"reasons": []}


def _wallet(st, p, _):
    if p.get("accountType") != "UNIFIED":
        raise BybitError(10001, "accountType only support UNIFIED.")
    fut = st.futures
    upnl, pim, oim = fut.total_upnl(), fut.position_margin(), fut.order_margin()
    coins = []
    for asset, (free, locked) in sorted(st.spot.balances.items()):
        total = free + locked + (fut.wallet if asset == "USDT" else 0)
        row = {"coin": asset, "walletBalance": str(total), "equity": str(total + (upnl if asset == "USDT" else 0)),
               "locked": str(locked), "usdValue": str(total), "unrealisedPnl": str(upnl if asset == "USDT" else 0),
               "totalOrderIM": str(oim if asset == "USDT" else 0), "totalPositionIM": str(pim if asset == "USDT" else 0),
               "totalPositionMM": "0", "cumRealisedPnl": "0", "borrowAmount": "0", "accruedInterest": "0",
               "availableToWithdraw": "", "bonus": "0", "marginCollateral": True, "collateralSwitch": True}
        coins.append(row)
    equity = sum((Decimal(c["equity"]) for c in coins if c["coin"] == "USDT"), Decimal(0))
    return {"list": [{"accountType": "UNIFIED", "totalEquity": str(equity), "totalWalletBalance": str(equity),
                      "totalMarginBalance": str(equity), "totalAvailableBalance": str(fut.available()),
                      "totalPerpUPL": str(upnl), "totalInitialMargin": str(pim + oim), "totalMaintenanceMargin": "0",
                      "accountIMRate": "0", "accountMMRate": "0", "accountLTV": "0", "coin": coins}]}


def _fee_rate(st, p, _):
    cat = _category(p)
    o = st.options
    taker, maker = (o.spot_taker_fee, o.spot_maker_fee) if cat == "spot" else (o.futures_taker_fee, o.futures_maker_fee)
    return {"category": cat, "list": [{"symbol": s.id, "baseCoin": s.base, "takerFeeRate": str(taker),
                                       "makerFeeRate": str(maker)}
                                      for s in _markets(st, cat).values() if not p.get("symbol") or s.id == p["symbol"]]}


# -- positions ----------------------------------------------------------------------------------------
def _switch_mode(st, p, _):
    _category(p, ("linear",))
    mode = p.get("mode")
    if mode not in ("0", "3"):
        raise BybitError(10001, "params error: mode must be 0 (one-way) or 3 (hedge)")
    if not (p.get("symbol") or p.get("coin")):
        raise BybitError(10001, "params error: symbol or coin is required")
    st.futures.set_dual({"dualSidePosition": "true" if mode == "3" else "false"})
    return {}


def _set_leverage(st, p, _):
    _category(p, ("linear",))
    spec = _spec(st, p, "linear")
    buy, sell = p.get("buyLeverage"), p.get("sellLeverage")
    if not buy or buy != sell:
        raise BybitError(10001, "params error: buyLeverage must equal sellLeverage")
    lev = Decimal(buy)
    if lev != lev.to_integral_value() or not 1 <= lev <= 100:
        raise BybitError(10001, f"leverage invalid: {buy} (the emulator takes whole numbers 1..100)")
    if st.futures.lev(spec.id) == int(lev):
        raise BybitError(110043, "Set leverage not modified")
    st.futures.set_leverage({"symbol": spec.id, "leverage": str(int(lev))})
    return {}


def _position_list(st, p, _):
    _category(p, ("linear",))
    fut = st.futures
    if not (p.get("symbol") or p.get("settleCoin") or p.get("baseCoin")):
        raise BybitError(10001, "params error: symbol or settleCoin is required")
    rows = []
    for m in st.futures_markets:
        if p.get("symbol") and m != p["symbol"]:
            continue
        for side in (("LONG", "SHORT") if fut.dual else ("BOTH",)):
            pos = fut.positions.get((m, side)) or Position()
            if p.get("symbol") or pos.amt:
                rows.append(position_json(fut, m, side, pos))
    return {"category": "linear", "list": rows, "nextPageCursor": ""}


# -- orders ----------------------------------------------------------------------------------------
def _conditional_type(side: str, direction: str, limit: bool) -> str:
    """Binance's conditional type for a Bybit trigger: a buy that triggers on a rise (a sell on a
    fall) is a stop, otherwise a take profit."""
    stop = (side == "BUY") == (direction == "1")
    return ("STOP" if stop else "TAKE_PROFIT") + ("" if limit else "_MARKET")


def _linear_order(st, p: dict, fraction) -> Order:
    fut = st.futures
    spec = _spec(st, p, "linear")
    side = {"Buy": "BUY", "Sell": "SELL"}.get(p.get("side", ""))
    otype = p.get("orderType")
    if side is None or otype not in ("Market", "Limit"):
        raise BybitError(10001, "params error: side or orderType invalid")
    idx = p.get("positionIdx", "0")
    pside = {"0": "BOTH", "1": "LONG", "2": "SHORT"}.get(idx)
    if pside is None or (pside == "BOTH") == fut.dual:
        raise BybitError(10001, "position idx not match position mode")
    if fut.dual and p.get("reduceOnly") == "true" and (pside == "LONG") == (side == "BUY"):
        raise BybitError(110017, "Reduce-only rule not satisfied")
    q = {"symbol": spec.id, "side": side, "quantity": p.get("qty", ""), "positionSide": pside,
         "newClientOrderId": p.get("orderLinkId") or "", "clientAlgoId": p.get("orderLinkId") or ""}
    if not fut.dual and p.get("reduceOnly") == "true":
        q["reduceOnly"] = "true"
    if otype == "Limit":
        q["price"] = p.get("price", "")
        q["timeInForce"] = {"GTC": "GTC", "IOC": "IOC", "FOK": "FOK", "PostOnly": "GTX"}.get(p.get("timeInForce") or "GTC", "GTC")
    if p.get("triggerPrice"):
        direction = p.get("triggerDirection")
        if direction not in ("1", "2"):
            raise BybitError(10001, "params error: triggerDirection must be 1 (rise) or 2 (fall)")
        q["type"] = _conditional_type(side, direction, otype == "Limit")
        q["triggerPrice"] = p["triggerPrice"]
        price = st.price(spec.id)
        trigger = dec(p["triggerPrice"])
        if (direction == "1") != (trigger > price):
            raise BybitError(110092 if direction == "1" else 110093,
                             f"expect {'Rising' if direction == '1' else 'Falling'}, but trigger_price[{trigger}] "
                             f"{'<=' if direction == '1' else '>='} current[{price}]")
        fut.create_algo(q, fraction)
        order = fut.algo_by_client[q["clientAlgoId"]] if q["clientAlgoId"] else max(fut.algos.values(), key=lambda o: o.order_id)
        order.trigger_direction = int(direction)      # type: ignore[attr-defined]
        return order
    q["type"] = otype.upper()
    answer = fut.create(q, fraction)
    return fut.orders[answer["orderId"]]


@_spot_err
def _spot_order(st, p: dict, fraction) -> Order:
    spec = _spec(st, p, "spot")
    side = {"Buy": "BUY", "Sell": "SELL"}.get(p.get("side", ""))
    otype = p.get("orderType")
    if side is None or otype not in ("Market", "Limit"):
        raise BybitError(10001, "params error: side or orderType invalid")
    q = {"symbol": spec.id, "side": side, "newClientOrderId": p.get("orderLinkId") or ""}
    if otype == "Market" and side == "BUY" and p.get("marketUnit", "quoteCoin") == "quoteCoin":
        q["quoteOrderQty"] = p.get("qty", "")
    else:
        q["quantity"] = p.get("qty", "")
    trigger = p.get("triggerPrice")
    if trigger and p.get("orderFilter") not in ("StopOrder", "tpslOrder"):
        raise BybitError(10001, "params error: a spot triggerPrice needs orderFilter StopOrder")
    if trigger:
        price = st.price(spec.id)
        stop = (side == "SELL") == (dec(trigger) < price)        # sells below / buys above the price: stop loss
        q["type"] = ("STOP_LOSS" if stop else "TAKE_PROFIT") + ("_LIMIT" if otype == "Limit" else "")
        q["stopPrice"] = trigger
    else:
        q["type"] = otype.upper()
    if otype == "Limit":
        q["price"] = p.get("price", "")
        q["timeInForce"] = {"GTC": "GTC", "IOC": "IOC", "FOK": "FOK"}.get(p.get("timeInForce") or "GTC", "GTC")
        if p.get("timeInForce") == "PostOnly" and not trigger:
            q["type"] = "LIMIT_MAKER"
            q.pop("timeInForce")
    answer = st.spot.create(q, fraction)
    return st.spot.orders[answer["orderId"]]


def _create(st, p: dict, fraction):
    cat = _category(p)
    link = p.get("orderLinkId")
    if link is not None and not ORDER_LINK_ID.match(link):
        raise BybitError(10001, f"params error: orderLinkId {link!r}: at most 36 characters of letters, digits, - and _")
    if link and _find(st, cat, {"orderLinkId": link}) is not None:
        raise BybitError(110072, "OrderLinkedID is duplicate")
    order = _spot_order(st, p, fraction) if cat == "spot" else _linear_order(st, p, fraction)
    return {"orderId": str(order.order_id), "orderLinkId": order.client_id}    # Bybit answers with ids only


def _books(st, cat: str) -> list[tuple[Order, bool]]:
    """(order, conditional) of a category, conditional orders' triggered children left out."""
    if cat == "spot":
        return [(o, o.type in STOP_TYPES) for o in st.spot.orders.values()]
    fut = st.futures
    children = {a.child_id for a in fut.algos.values() if a.child_id is not None}
    rows = [(o, False) for o in fut.orders.values() if o.order_id not in children and not o.client_id.startswith("autoclose-")]
    return rows + [(a, True) for a in fut.algos.values()]


def _find(st, cat: str, p: dict) -> tuple[Order, bool] | None:
    oid, link = p.get("orderId"), p.get("orderLinkId")
    matches = [(o, c) for o, c in _books(st, cat)
               if (oid and str(o.order_id) == oid) or (not oid and link and o.client_id == link)]
    return max(matches, key=lambda oc: oc[0].order_id) if matches else None


def _json(st, cat: str, o: Order, conditional: bool) -> dict:
    child = st.futures.orders.get(o.child_id) if cat == "linear" and o.child_id is not None else None
    direction = getattr(o, "trigger_direction", 0)
    if cat == "spot" and conditional:
        direction = 0
    return order_json(o, cat, conditional=conditional, child=child, trigger_direction=direction)


def _is_open(st, cat: str, o: Order, conditional: bool) -> bool:
    if cat == "linear" and conditional and o.child_id is not None:
        child = st.futures.orders.get(o.child_id)
        return child is not None and child.is_open
    return o.is_open


def _filter_ok(cat: str, o: Order, conditional: bool, wanted: str | None) -> bool:
    """``orderFilter``: spot lists plain orders unless StopOrder is asked for (a triggered stop is
    then an order); linear lists both unless one is named."""
    if wanted is None:
        return not (cat == "spot" and conditional and not o.triggered)
    if wanted == "StopOrder":
        return conditional
    if wanted == "Order":
        return not conditional or o.triggered
    return False      # tpslOrder: the emulator has none


def _listing(st, p: dict, history: bool):
    cat = _category(p)
    if cat == "linear" and not (p.get("symbol") or p.get("settleCoin") or p.get("baseCoin")):
        raise BybitError(10001, "params error: symbol, settleCoin or baseCoin is required")
    named = p.get("orderId") or p.get("orderLinkId")
    rows = []
    for o, cond in _books(st, cat):
        if p.get("symbol") and o.symbol != p["symbol"]:
            continue
        if p.get("orderId") and str(o.order_id) != p["orderId"]:
            continue
        if not p.get("orderId") and p.get("orderLinkId") and o.client_id != p["orderLinkId"]:
            continue
        if not named and not _filter_ok(cat, o, cond, p.get("orderFilter")):
            continue
        is_open = _is_open(st, cat, o, cond)
        if not history and not named and (is_open != (p.get("openOnly", "0") == "0")):
            continue
        if history and is_open:
            continue
        rows.append(_json(st, cat, o, cond))
    rows.sort(key=lambda r: (int(r["createdTime"]), int(r["orderId"])), reverse=True)
    limit = int(p.get("limit") or (50 if not history else 50))
    return {"category": cat, "list": rows[: min(limit, 50 if not history else 50)], "nextPageCursor": ""}


def _cancel(st, p: dict, _):
    cat = _category(p)
    found = _find(st, cat, p)
    if not (p.get("orderId") or p.get("orderLinkId")):
        raise BybitError(10001, "params error: orderId or orderLinkId is required")
    if found is None or not _is_open(st, cat, *found):
        raise BybitError(*((170213, "Order does not exist.") if cat == "spot" else (110001, "Order does not exist")))
    o, cond = found
    if cat == "spot":
        st.spot.cancel({"orderId": o.order_id})
    elif cond and o.child_id is None:
        st.futures.cancel_algo({"algoId": o.order_id})
    else:
        st.futures.cancel({"orderId": o.child_id or o.order_id})
    return {"orderId": str(o.order_id), "orderLinkId": o.client_id}


def _cancel_all(st, p: dict, _):
    cat = _category(p)
    done = []
    for o, cond in _books(st, cat):
        if (not p.get("symbol") or o.symbol == p["symbol"]) and _is_open(st, cat, o, cond):
            done.append(_cancel(st, {"category": cat, "orderId": str(o.order_id)}, None))
    return {"list": done, "success": "1"}


def _amend(st, p: dict, _):
    """Change an open order's qty, price or (untriggered) trigger price in place, same ids."""
    cat = _category(p)
    found = _find(st, cat, p)
    if found is None or not _is_open(st, cat, *found):
        raise BybitError(*((170213, "Order does not exist.") if cat == "spot" else (110001, "Order does not exist")))
    o, cond = found
    spec = _markets(st, cat)[o.symbol]
    qty, price, trigger = (dec(p[k]) if p.get(k) else None for k in ("qty", "price", "triggerPrice"))
    if qty is None and price is None and trigger is None:
        raise BybitError(10001, "The order remains unchanged as the parameters entered match the existing ones.")
    for value, rule in ((price, spec.tick), (trigger, spec.tick), (qty, spec.step)):
        if value is not None and (value <= 0 or value % rule):
            raise BybitError(10001, "params error: price or qty not a multiple of its step")
    if trigger is not None:
        if not cond or o.triggered:
            raise BybitError(10001, "params error: triggerPrice can only be amended on an untriggered conditional order")
        now = st.price(o.symbol)
        rising = getattr(o, "trigger_direction", 0) == 1 if cat == "linear" else trigger > now
        if cat == "linear" and (trigger > now) != rising:
            raise BybitError(110092 if rising else 110093, f"trigger_price[{trigger}] would trigger immediately")
        o.stop_price = trigger
    if cat == "spot" and (qty is not None or (price is not None and o.side == "BUY")):
        # the locked funds would change: the emulator does not re-lock (a clear refusal, not a fake)
        raise BybitError(10001, "not yet supported by the emulator: amending a spot order's qty or a spot buy's price")
    if qty is not None:
        if qty <= o.executed:
            raise BybitError(10001, "params error: qty must exceed the filled quantity")
        o.qty = qty
    if price is not None:
        o.price = price
    o.update_time = st.now_ms
    return {"orderId": str(o.order_id), "orderLinkId": o.client_id}


def _executions(st, p: dict, _):
    cat = _category(p)
    kind = p.get("execType")
    rows = []
    if kind in (None, "Trade"):
        owner = {}
        for o, cond in _books(st, cat):
            owner[o.order_id] = o
            if cond and o.child_id is not None:
                owner[o.child_id] = o
        trades = st.spot.trades if cat == "spot" else st.futures.trades
        for t in trades:
            o = owner.get(t["orderId"])
            if o is None or (p.get("symbol") and t["symbol"] != p["symbol"]):
                continue
            if p.get("orderId") and str(o.order_id) != p["orderId"]:
                continue
            if p.get("orderLinkId") and o.client_id != p["orderLinkId"]:
                continue
            rows.append(execution_json(t, o, cat, t["feeAsset"]))
    if kind in (None, "Funding") and cat == "linear" and not (p.get("orderId") or p.get("orderLinkId")):
        for r in st.futures.income:
            if r["incomeType"] != "FUNDING_FEE" or (p.get("symbol") and r["symbol"] != p["symbol"]):
                continue
            bar = st.bar_at(r["symbol"], r["time"])
            price = bar.open if bar else st.price(r["symbol"])
            rate = st.funding_rate_at(r["symbol"], r["time"])
            size = -dec(r["income"]) / (price * rate) if rate else Decimal(0)
            rows.append(funding_json(r, size, rate, price))
    start, end = int(p.get("startTime") or 0), int(p.get("endTime") or 2**62)
    rows = [r for r in rows if start <= int(r["execTime"]) <= end]
    rows.sort(key=lambda r: int(r["execTime"]), reverse=True)
    return {"category": cat, "list": rows[: min(int(p.get("limit") or 50), 100)], "nextPageCursor": ""}


PUBLIC = {
    ("GET", "/v5/market/time"): lambda st, p, _: {"timeSecond": str(st.now_ms // 1000),
                                                   "timeNano": str(st.now_ms * 1_000_000)},
    ("GET", "/v5/market/instruments-info"): _instruments,
    ("GET", "/v5/market/kline"): _kline,
    ("GET", "/v5/market/tickers"): _tickers,
    ("GET", "/v5/market/funding/history"): _funding_history,
    ("GET", "/v5/market/risk-limit"): _risk_limit,
}
SIGNED = {
    ("GET", "/v5/user/query-api"): _query_api,
    ("GET", "/v5/asset/coin/query-info"): _coins,
    ("GET", "/v5/account/info"): _account_info,
    ("POST", "/v5/account/set-margin-mode"): _set_margin_mode,
    ("GET", "/v5/account/wallet-balance"): _wallet,
    ("GET", "/v5/account/fee-rate"): _fee_rate,
    ("POST", "/v5/position/switch-mode"): _switch_mode,
    ("POST", "/v5/position/set-leverage"): _set_leverage,
    ("GET", "/v5/position/list"): _position_list,
    ("POST", "/v5/order/create"): _create,
    ("POST", "/v5/order/amend"): _amend,
    ("POST", "/v5/order/cancel"): _cancel,
    ("POST", "/v5/order/cancel-all"): _cancel_all,
    ("GET", "/v5/order/realtime"): lambda st, p, _: _listing(st, p, history=False),
    ("GET", "/v5/order/history"): lambda st, p, _: _listing(st, p, history=True),
    ("GET", "/v5/execution/list"): _executions,
}


def _rate_limited(retry: int, now_ms: int) -> Answer:
    reset = int(time.time() * 1000) + retry * 1000
    return Answer(200, {"retCode": 10006, "retMsg": "Too many visits!", "result": {}, "retExtInfo": {},
                        "time": now_ms},
                  {"X-Bapi-Limit-Status": "0", "X-Bapi-Limit": "10", "X-Bapi-Limit-Reset-Timestamp": str(reset)})


BYBIT = Dialect(
    name="bybit", public=PUBLIC, signed=SIGNED, order_endpoints=("/v5/order/create",),
    kline_endpoints=("/v5/market/kline",), key_header="X-BAPI-API-KEY", authenticate=_authenticate,
    parse_body=_parse_body, error=_error, ok=_ok, rate_limited=_rate_limited,
    lost=lambda mode: Answer(500, {"retCode": 10016, "retMsg": "Internal server error.", "result": {}})
    if mode == "500" else Answer(200, {"retCode": 10000, "retMsg": "Server Timeout", "result": {}}),
    usage_headers=lambda now_ms: {"X-Bapi-Limit-Status": "9", "X-Bapi-Limit": "10",
                                  "X-Bapi-Limit-Reset-Timestamp": str(int(time.time() * 1000))},
    reject=(110007, "ab not enough for new order"),
    auth_error=(10003, "API key is invalid", 401),
)

__all__ = ["BYBIT", "BYBIT_LINEAR_MARKETS", "BYBIT_SPOT_MARKETS", "BybitError", "bybit_options"]
