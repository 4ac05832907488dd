"""OKX's v5 REST dialect (one trading account: ``SPOT`` with ``tdMode`` cash, USDT ``SWAP`` in
long/short or net position mode) over the shared accounts and matching engine: requests are
translated into the spot and futures accounts' (Binance-shaped) parameters, swap sizes from
contracts into base units (``ctVal``), answers and errors into OKX's ``{"code", "msg", "data"}``
(an order endpoint's refusal: ``code`` "1" and ``sCode``/``sMsg`` in ``data``). Sources: see
``tests/exchange_sim/README.md``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from datetime import datetime, timezone
from decimal import Decimal

from .dialect import Answer, Dialect
from .futures_views import Position
from .markets import MarketSpec, dec
from .okx_views import algo_json, ct_val, fill_json, inst_id, instrument, order_json, position_json
from .spot import STOP_TYPES
from .state import FUNDING_INTERVAL_MS, BinanceError, Options, Order

PASSPHRASE = "sim-passphrase"
CL_ORD_ID = re.compile(r"^[A-Za-z0-9]{1,32}$")
BARS = {"1m": 1, "3m": 3, "5m": 5, "15m": 15, "30m": 30, "1H": 60, "2H": 120, "4H": 240, "6Hutc": 360,
        "12Hutc": 720, "1Dutc": 1440, "1Wutc": 10080, "6H": 360, "12H": 720, "1D": 1440, "1W": 10080}
#: OKX's rules for the bundled pairs (2025): spot BTC-USDT / ETH-USDT; swaps in base units
#: (BTC-USDT-SWAP: ctVal 0.01 BTC, lotSz 0.01 contracts; ETH-USDT-SWAP: ctVal 0.1 ETH, lotSz 0.01)
OKX_SPOT_MARKETS = (
    MarketSpec("BTC/USDT", tick=Decimal("0.1"), step=Decimal("0.00000001"), min_notional=Decimal(0),
               min_qty=Decimal("0.00001"), max_qty=Decimal(9999999999)),
    MarketSpec("ETH/USDT", tick=Decimal("0.01"), step=Decimal("0.000001"), min_notional=Decimal(0),
               min_qty=Decimal("0.0001"), max_qty=Decimal(9999999999)),
)
OKX_SWAP_MARKETS = (
    MarketSpec("BTC/USDT", tick=Decimal("0.1"), step=Decimal("0.0001"), min_notional=Decimal(0),
               min_qty=Decimal("0.0001"), max_qty=Decimal(1000), maint_margin_ratio=Decimal("0.004")),
    MarketSpec("ETH/USDT", tick=Decimal("0.01"), step=Decimal("0.001"), min_notional=Decimal(0),
               min_qty=Decimal("0.001"), max_qty=Decimal(10000), maint_margin_ratio=Decimal("0.005")),
)


def okx_options(**changes) -> Options:
    """The emulator's defaults for an OKX regular (Lv1) account: spot maker 0.08 %, taker 0.1 %;
    swap maker 0.02 %, taker 0.05 %; leverage 10; a clOrdId unique among all orders."""
    base = dict(spot_maker_fee=Decimal("0.0008"), futures_taker_fee=Decimal("0.0005"),
                futures_maker_fee=Decimal("0.0002"), default_leverage=10, duplicate_client_ids="all")
    return Options(**{**base, **changes})


class OkxError(BinanceError):
    """An error in OKX's own words (code, msg); ``item``: an order endpoint's per-order refusal."""


# -- errors of the shared accounts in OKX's words ---------------------------------------------------
def _translate(err: BinanceError) -> tuple[str, str]:
    if isinstance(err, OkxError):
        return str(err.code), err.msg
    code, msg = err.code, err.msg
    if code >= 50000:                      # already OKX's (an injected reject or auth error)
        return str(code), msg
    if code in (-2011, -2013):
        return "51603", "Order does not exist"
    if code == -2010 and "Duplicate" in msg:
        return "51016", "Duplicated clOrdId"
    if code == -2010 and "match and take" in msg:
        return "51000", "Parameter ordType error: a post_only order would take liquidity"
    if code == -2010 and "insufficient" in msg:
        return "51008", "Order failed. Insufficient balance in account."
    if code in (-2010, -2021):
        return "51000", f"Parameter triggerPx error: the order would trigger immediately ({msg})"
    if code == -1013:
        return {"LOT_SIZE": ("51121", "Order quantity must be a multiple of the lot size."),
                "PRICE_FILTER": ("51000", "Parameter px error"),
                "NOTIONAL": ("51020", "Your order should meet or exceed the minimum order amount.")}.get(
                    msg.split(": ")[-1], ("51000", f"Parameter error: {msg}"))
    table = {-4116: ("51016", "Duplicated clOrdId"), -2019: ("51008", "Order failed. Insufficient USDT margin in account"),
             -2022: ("51205", "Reduce Only is not available"), -4014: ("51000", "Parameter px error"),
             -1111: ("51121", "Order quantity must be a multiple of the lot size."),
             -4003: ("51020", "Your order should meet or exceed the minimum order amount."),
             -4005: ("51004", "Order amount exceeds the current tier limit"),
             -4061: ("51000", "Parameter posSide error"),
             -4068: ("59000", "Settings failed. Close any open positions or orders before modifying settings."),
             -4067: ("59000", "Settings failed. Close any open positions or orders before modifying settings."),
             -1121: ("51001", "Instrument ID does not exist"), -1000: ("50013", "Systems are busy. Please try again later."),
             -2015: ("50111", "Invalid OK-ACCESS-KEY")}
    return table.get(code, ("51000", f"Parameter error: {msg}"))


def _error(err: BinanceError) -> Answer:
    code, msg = _translate(err)
    if code in ("50111", "50113", "50105", "50102"):
        return Answer(401, {"code": code, "msg": msg, "data": []})
    if getattr(err, "item", None) is not None:          # an order endpoint: refused per order
        item = {"clOrdId": "", "ordId": "", "tag": "", "ts": str(int(time.time() * 1000)), **err.item,  # type: ignore[attr-defined]
                "sCode": code, "sMsg": msg}
        return Answer(200, {"code": "1", "msg": "All operations failed", "data": [item], "inTime": "", "outTime": ""})
    return Answer(500 if err.status >= 500 else 200, {"code": code, "msg": msg, "data": []})


def _ok(result, now_ms: int):
    return {"code": "0", "msg": "", "data": result}


def _parse_body(raw: str) -> dict:
    """A JSON object, or a list (batch endpoints: kept whole under ``"_batch"``)."""
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise OkxError(50000, "Body can not be empty or not JSON") from None
    if isinstance(data, list):
        return {"_batch": [_strings(d) for d in data]}
    return _strings(data)


def _strings(data: dict) -> dict:
    return {k: ("true" if v is True else "false" if v is False else v if isinstance(v, (list, dict)) else str(v))
            for k, v in data.items() if v is not None}


def _authenticate(server, headers, method: str, raw_query: str, raw_body: str, params: dict, path: str = "") -> None:
    """OKX v5: ``OK-ACCESS-SIGN = base64(HMAC_SHA256(secret, timestamp + method + requestPath + body))``,
    the request path with its query; the passphrase set with the key; the timestamp within 30 s."""
    if headers.get("OK-ACCESS-KEY") != server.api_key:
        raise OkxError(50111, "Invalid OK-ACCESS-KEY", 401)
    if headers.get("OK-ACCESS-PASSPHRASE") != getattr(server, "passphrase", PASSPHRASE):
        raise OkxError(50105, "Invalid OK-ACCESS-PASSPHRASE", 401)
    stamp = headers.get("OK-ACCESS-TIMESTAMP") or ""
    payload = stamp + method + path + ("?" + raw_query if raw_query else "") + (raw_body if method == "POST" else "")
    expected = base64.b64encode(hmac.new(server.secret.encode(), payload.encode(), hashlib.sha256).digest()).decode()
    if not hmac.compare_digest(expected, headers.get("OK-ACCESS-SIGN") or ""):
        raise OkxError(50113, "Invalid Sign", 401)
    if server.state.options.check_timestamp:
        try:
            sent = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()
        except ValueError:
            raise OkxError(50112, f"Invalid OK-ACCESS-TIMESTAMP {stamp!r}", 401) from None
        if abs(time.time() - sent) > 30:
            raise OkxError(50102, "Timestamp request expired", 401)


# -- request helpers -----------------------------------------------------------------------------------
def _inst(st, inst: str | None) -> tuple[MarketSpec, bool]:
    """(market, swap) of an instId; 51001 for one the exchange does not list."""
    for swap, markets in ((False, st.spot_markets), (True, st.futures_markets)):
        for spec in markets.values():
            if inst_id(spec, swap) == inst:
                return spec, swap
    raise OkxError(51001, f"Instrument ID {inst!r} does not exist")


def _inst_type(p: dict, default: str | None = None) -> str | None:
    kind = p.get("instType", default)
    if kind not in (None, "SPOT", "SWAP"):
        raise OkxError(51000, f"Parameter instType error: {kind!r} not supported by the emulator (SPOT, SWAP)")
    return kind


def _markets(st, kind: str | None) -> list[tuple[MarketSpec, bool]]:
    out = []
    if kind in (None, "SPOT"):
        out += [(s, False) for s in st.spot_markets.values()]
    if kind in (None, "SWAP"):
        out += [(s, True) for s in st.futures_markets.values()]
    return out


def _size(p: dict, spec: MarketSpec, swap: bool, name: str = "sz") -> Decimal:
    raw = p.get(name)
    try:
        value = dec(raw)
    except Exception:
        raise OkxError(51000, f"Parameter {name} error: {raw!r}") from None
    if value <= 0:
        raise OkxError(51000, f"Parameter {name} error: {raw!r}")
    return value * ct_val(spec, swap)


def _td_mode(st, spec: MarketSpec, swap: bool, p: dict) -> str:
    mode = p.get("tdMode")
    if not swap:
        if mode != "cash":
            raise OkxError(51000, f"Parameter tdMode error: {mode!r} (spot without margin trades with tdMode cash)")
        return mode
    if mode not in ("cross", "isolated"):
        raise OkxError(51000, f"Parameter tdMode error: {mode!r} (cross or isolated)")
    return mode


def _pos_side(st, p: dict, side: str, reduce_only: bool) -> str:
    """The shared account's position side of a swap order (long/short mode needs posSide)."""
    fut = st.futures
    ps = p.get("posSide") or "net"
    if fut.dual and ps not in ("long", "short"):
        raise OkxError(51000, "Parameter posSide error: long or short in long/short mode")
    if not fut.dual and ps != "net":
        raise OkxError(51000, "Parameter posSide error: net (or none) in net mode")
    return {"long": "LONG", "short": "SHORT"}.get(ps, "BOTH")


def _mode_of(st, spec: MarketSpec, swap: bool) -> str:
    if not swap:
        return "cash"
    return "isolated" if st.futures.margin_type.get(spec.id) == "ISOLATED" else "cross"


# -- market data ------------------------------------------------------------------------------------------
def _instruments(st, p: dict, _):
    kind = _inst_type(p)
    if kind is None:
        raise OkxError(51000, "Parameter instType error: instType is required")
    return [instrument(s, swap, st.first_ms) for s, swap in _markets(st, kind)
            if not p.get("instId") or inst_id(s, swap) == p["instId"]]


def _candles(history: bool):
    def handler(st, p: dict, _):
        spec, _swap = _inst(st, p.get("instId"))
        minutes = BARS.get(p.get("bar") or "1m")
        if minutes is None or minutes * 60_000 < st.step_ms:
            raise OkxError(51000, f"Parameter bar error: {p.get('bar')!r}")
        limit = int(p.get("limit") or 100)
        if not 1 <= limit <= (100 if history else 300):
            raise OkxError(51000, f"Parameter limit error: {limit} (at most {100 if history else 300})")
        # after: records older than this ts; before: newer than this ts (both exclusive)
        after, before = p.get("after"), p.get("before")
        end = int(after) - 1 if after else None
        start = int(before) + 1 if before else None
        rows = st.klines(spec.id, minutes * 60_000, None if end is not None else start, end, 10**6 if start else limit)
        if start is not None:
            rows = [r for r in rows if r[0] >= start]
        rows = rows[-limit:]
        now_bar = st.now_ms // (minutes * 60_000) * (minutes * 60_000)
        return [[str(r[0]), r[1], r[2], r[3], r[4], r[5], r[7], r[7], "0" if r[0] >= now_bar else "1"]
                for r in reversed(rows)]
    return handler


def _ticker_row(st, spec: MarketSpec, swap: bool) -> dict:
    t = st.ticker(spec.id)
    return {"instType": "SWAP" if swap else "SPOT", "instId": inst_id(spec, swap), "last": t["lastPrice"], "lastSz": "1",
            "askPx": t["askPrice"], "askSz": "1", "bidPx": t["bidPrice"], "bidSz": "1", "open24h": t["openPrice"],
            "high24h": t["highPrice"], "low24h": t["lowPrice"], "volCcy24h": t["quoteVolume"], "vol24h": t["volume"],
            "sodUtc0": t["openPrice"], "sodUtc8": t["openPrice"], "ts": str(st.now_ms)}


def _ticker(st, p: dict, _):
    return [_ticker_row(st, *_inst(st, p.get("instId")))]


def _tickers(st, p: dict, _):
    kind = _inst_type(p)
    if kind is None:
        raise OkxError(51000, "Parameter instType error: instType is required")
    return [_ticker_row(st, s, swap) for s, swap in _markets(st, kind)]


def _swap(st, p: dict) -> MarketSpec:
    spec, swap = _inst(st, p.get("instId"))
    if not swap:
        raise OkxError(51000, f"Parameter instId error: {p.get('instId')!r} is not a swap")
    return spec


def _funding_rate(st, p: dict, _):
    spec = _swap(st, p)
    nxt = (st.now_ms // FUNDING_INTERVAL_MS + 1) * FUNDING_INTERVAL_MS
    return [{"instType": "SWAP", "instId": inst_id(spec, True), "fundingRate": str(st.funding_rate_at(spec.id, nxt)),
             "nextFundingRate": "", "fundingTime": str(nxt), "nextFundingTime": str(nxt + FUNDING_INTERVAL_MS),
             "minFundingRate": "-0.0075", "maxFundingRate": "0.0075", "method": "current_period",
             "settState": "settled", "settFundingRate": "0", "premium": "0", "sign": "", "interestRate": "0",
             "impactValue": "", "ts": str(st.now_ms)}]


def _funding_history(st, p: dict, _):
    spec = _swap(st, p)
    limit = int(p.get("limit") or 100)
    if not 1 <= limit <= 100:
        raise OkxError(51000, f"Parameter limit error: {limit} (at most 100)")
    q = {"symbol": spec.id, "limit": "1000"}
    rows = st.futures.funding_history(q if not p.get("before") else {**q, "startTime": str(int(p["before"]) + 1)})
    if p.get("after"):
        rows = [r for r in rows if r["fundingTime"] < int(p["after"])]
    rows = rows[:limit] if p.get("before") and not p.get("after") else rows[-limit:]
    return [{"instType": "SWAP", "instId": inst_id(spec, True), "formulaType": "noRate", "fundingRate": r["fundingRate"],
             "realizedRate": r["fundingRate"], "fundingTime": str(r["fundingTime"]), "method": "current_period"}
            for r in reversed(rows)]


# -- account ------------------------------------------------------------------------------------------------
def _config(st, p, _):
    return [{"uid": "1", "mainUid": "1", "acctLv": "2", "acctStpMode": "cancel_maker",
             "posMode": "long_short_mode" if st.futures.dual else "net_mode", "autoLoan": False,
             "greeksType": "PA", "feeType": "0", "level": "Lv1", "levelTmp": "", "ctIsoMode": "automatic",
             "mgnIsoMode": "automatic", "roleType": "0", "traderInsts": [], "spotRoleType": "0", "spotTraderInsts": [],
             "opAuth": "0", "kycLv": "2", "label": "sim", "ip": "", "perm": "read_only,trade", "liquidationGear": "-1",
             "enableSpotBorrow": False, "spotBorrowAutoRepay": False, "type": "0", "settleCcy": "USDT",
             "settleCcyList": ["USDT"]}]


def _set_position_mode(st, p, _):
    mode = p.get("posMode")
    if mode not in ("long_short_mode", "net_mode"):
        raise OkxError(51000, f"Parameter posMode error: {mode!r}")
    if (mode == "long_short_mode") != st.futures.dual:      # the same mode again: success, as on OKX
        st.futures.set_dual({"dualSidePosition": "true" if mode == "long_short_mode" else "false"})
    return [{"posMode": mode}]


def _set_leverage(st, p, _):
    spec = _swap(st, p)
    mode, pos = p.get("mgnMode"), p.get("posSide")
    if mode not in ("cross", "isolated"):
        raise OkxError(51000, f"Parameter mgnMode error: {mode!r}")
    if mode == "isolated" and st.futures.dual and pos not in ("long", "short"):
        raise OkxError(51000, "Parameter posSide error: long or short with isolated margin in long/short mode")
    lever = dec(p.get("lever") or "0")
    if lever != lever.to_integral_value() or not 1 <= lever <= 100:
        raise OkxError(51000, f"Parameter lever error: {p.get('lever')!r} (the emulator takes whole numbers 1..100)")
    wanted = "ISOLATED" if mode == "isolated" else "CROSSED"
    fut = st.futures
    if fut.margin_type.get(spec.id, "CROSSED") != wanted:
        if any(pos_.amt for (m, _s), pos_ in fut.positions.items() if m == spec.id):
            raise OkxError(59000, "Settings failed. Close any open positions or orders before modifying settings.")
        fut.margin_type[spec.id] = wanted
    if fut.lev(spec.id) != int(lever):
        fut.set_leverage({"symbol": spec.id, "leverage": str(int(lever))})
    return [{"instId": inst_id(spec, True), "lever": str(int(lever)), "mgnMode": mode, "posSide": pos or "net"}]


def _currencies(st, p, _):
    """``/api/v5/asset/currencies``: the bundled assets, each on one chain (ccxt reads it at load_markets)."""
    assets = sorted({a for spec in (*st.spot_markets.values(), *st.futures_markets.values()) for a in (spec.base, spec.quote)})
    return [{"ccy": a, "name": a, "chain": f"{a}-{a}", "canDep": True, "canWd": True, "canInternal": True,
             "minDep": "0", "minWd": "0", "maxWd": "1000000", "wdTickSz": "8", "minFee": "0", "maxFee": "0",
             "mainNet": True, "needTag": False, "logoLink": "", "minDepArrivalConfirm": "1",
             "minWdUnlockConfirm": "1", "depQuotaFixed": "", "usedDepQuotaFixed": "", "wdQuota": "1000000",
             "usedWdQuota": "0", "burningFeeRate": ""} for a in assets]


def _balance(st, p, _):
    fut = st.futures
    upnl = fut.total_upnl()
    details = []
    for asset, (free, locked) in sorted(st.spot.balances.items()):
        usdt = asset == "USDT"
        cash = free + locked + (fut.wallet if usdt else 0)
        frozen = locked + ((fut.position_margin() + fut.order_margin()) if usdt else 0)
        details.append({"ccy": asset, "cashBal": str(cash), "eq": str(cash + (upnl if usdt else 0)),
                        "availBal": str(cash - frozen), "availEq": str(cash - frozen), "frozenBal": str(frozen),
                        "ordFrozen": str(locked + (fut.order_margin() if usdt else 0)), "upl": str(upnl if usdt else 0),
                        "isoEq": "0", "disEq": str(cash), "eqUsd": str(cash), "uTime": str(st.now_ms), "liab": "0",
                        "crossLiab": "0", "isoLiab": "0", "interest": "0", "maxLoan": "0", "notionalLever": "0",
                        "stgyEq": "0", "twap": "0", "spotInUseAmt": "", "borrowFroz": "", "clSpotInUseAmt": ""})
    total = sum((Decimal(d["eqUsd"]) for d in details if d["ccy"] == "USDT"), Decimal(0))
    return [{"totalEq": str(total), "adjEq": str(total), "isoEq": "0", "ordFroz": str(fut.order_margin()),
             "imr": str(fut.position_margin()), "mmr": "0", "mgnRatio": "", "notionalUsd": "0", "upl": str(upnl),
             "uTime": str(st.now_ms), "details": details}]


def _trade_fee(st, p, _):
    kind = _inst_type(p)
    o = st.options
    spot = kind == "SPOT"
    maker, taker = (o.spot_maker_fee, o.spot_taker_fee) if spot else (o.futures_maker_fee, o.futures_taker_fee)
    # OKX answers fee rates as negative numbers (a charge)
    return [{"category": "1", "instType": kind, "level": "Lv1", "maker": str(-maker), "taker": str(-taker),
             "makerU": "" if spot else str(-maker), "takerU": "" if spot else str(-taker), "delivery": "",
             "exercise": "", "ts": str(st.now_ms)}]


def _positions(st, p, _):
    _inst_type(p, "SWAP")
    fut = st.futures
    wanted = set((p.get("instId") or "").split(",")) - {""}
    rows = []
    for spec in st.futures_markets.values():
        if wanted and inst_id(spec, True) not in wanted:
            continue
        for side in (("LONG", "SHORT") if fut.dual else ("BOTH",)):
            pos = fut.positions.get((spec.id, side)) or Position()
            if pos.amt:
                rows.append(position_json(fut, spec, side, pos, _mode_of(st, spec, True)))
    return rows


def _bills(st, p, _):
    """Funding fees (``type`` 8) of ``/api/v5/account/bills``: ``balChg`` negative when paid."""
    if p.get("type") not in (None, "8"):
        return []
    rows = []
    for r in st.futures.income:
        if r["incomeType"] != "FUNDING_FEE":
            continue
        spec = st.futures_markets[r["symbol"]]
        rows.append({"bal": "0", "balChg": str(r["income"]), "billId": str(r["tranId"]), "ccy": "USDT", "execType": "",
                     "fee": "0", "from": "", "instId": inst_id(spec, True), "instType": "SWAP", "mgnMode": "cross",
                     "notes": "", "ordId": "", "pnl": str(r["income"]), "posBal": "0", "posBalChg": "0",
                     "subType": "173" if Decimal(str(r["income"])) < 0 else "174", "sz": "0", "to": "", "ts": str(r["time"]),
                     "type": "8"})
    if p.get("instId"):
        rows = [r for r in rows if r["instId"] == p["instId"]]
    rows.sort(key=lambda r: int(r["ts"]), reverse=True)
    return rows[: int(p.get("limit") or 100)]


# -- orders --------------------------------------------------------------------------------------------------
def _check_cl_ord_id(cid: str | None, key: str = "clOrdId") -> None:
    if cid is not None and cid != "" and not CL_ORD_ID.match(cid):
        raise OkxError(51000, f"Parameter {key} error: {cid!r}: at most 32 letters and digits")


def _duplicate(st, cid: str, algo: bool) -> bool:
    if not cid:
        return False
    return any(o.client_id == cid for o, is_algo in _books(st) if is_algo == algo)


def _place(st, p: dict, fraction) -> Order:
    spec, swap = _inst(st, p.get("instId"))
    side = {"buy": "BUY", "sell": "SELL"}.get(p.get("side") or "")
    otype = p.get("ordType")
    if side is None:
        raise OkxError(51000, f"Parameter side error: {p.get('side')!r}")
    if otype not in ("market", "limit", "post_only", "ioc", "fok", "optimal_limit_ioc"):
        raise OkxError(51000, f"Parameter ordType error: {otype!r} not supported by the emulator")
    cid = p.get("clOrdId") or ""
    _check_cl_ord_id(cid)
    if _duplicate(st, cid, algo=False):
        raise OkxError(51016, "Duplicated clOrdId")
    td = _td_mode(st, spec, swap, p)
    limit = otype in ("limit", "post_only", "ioc", "fok")
    q = {"symbol": spec.id, "side": side, "newClientOrderId": cid or f"okx{st.next_id()}"}
    if limit:
        q["price"] = p.get("px") or ""
        q["timeInForce"] = {"ioc": "IOC", "fok": "FOK", "post_only": "GTX"}.get(otype, "GTC")
    if not swap:
        if p.get("reduceOnly") == "true":
            raise OkxError(51205, "Reduce Only is not available for spot cash trading")
        if otype == "market" and side == "BUY" and p.get("tgtCcy", "quote_ccy") == "quote_ccy":
            q["quoteOrderQty"] = p.get("sz") or ""
        else:
            q["quantity"] = str(_size(p, spec, False))
        q["type"] = "MARKET" if not limit else "LIMIT"
        if otype == "post_only":
            q["type"] = "LIMIT_MAKER"
            q.pop("timeInForce")
        answer = st.spot.create(q, fraction)
        return st.spot.orders[answer["orderId"]]
    pside = _pos_side(st, p, side, p.get("reduceOnly") == "true")
    q.update(quantity=str(_size(p, spec, True)), positionSide=pside, type="LIMIT" if limit else "MARKET")
    if pside == "BOTH" and p.get("reduceOnly") == "true":
        q["reduceOnly"] = "true"
    if pside != "BOTH" and p.get("reduceOnly") == "true" and (pside == "LONG") == (side == "BUY"):
        raise OkxError(51205, "Reduce Only is not available: the order would open the position")
    _mark_mode(st, spec, td)
    answer = st.futures.create(q, fraction)
    return st.futures.orders[answer["orderId"]]


def _mark_mode(st, spec: MarketSpec, td: str) -> None:
    """An order's tdMode is the position's margin mode (refused if the open position has the other)."""
    fut = st.futures
    wanted = "ISOLATED" if td == "isolated" else "CROSSED"
    if fut.margin_type.get(spec.id, "CROSSED") != wanted:
        if any(pos.amt for (m, _s), pos in fut.positions.items() if m == spec.id):
            raise OkxError(51000, f"Parameter tdMode error: {td} while the position is in the other margin mode")
        fut.margin_type[spec.id] = wanted


def _order_item(p: dict) -> dict:
    return {"clOrdId": p.get("clOrdId") or "", "tag": p.get("tag") or ""}


def _ack(o: Order, p: dict) -> dict:
    return {"ordId": str(o.order_id), "clOrdId": p.get("clOrdId") or "", "tag": p.get("tag") or "",
            "ts": str(int(time.time() * 1000)), "sCode": "0", "sMsg": "Order placed"}


def _per_order(fn, item=_order_item):
    """Run an order request; a refusal is OKX's per-order ``sCode``/``sMsg`` (``code`` "1")."""
    def run(st, p: dict, fraction):
        try:
            return fn(st, p, fraction)
        except BinanceError as err:
            err.item = item(p)      # type: ignore[attr-defined]
            raise
    return run


def _order(st, p: dict, fraction):
    return [_ack(_place(st, p, fraction), p)]


def _batch_orders(st, p: dict, fraction):
    batch = p.get("_batch") or [p]
    if len(batch) != 1:
        raise OkxError(51000, "Parameter error: the emulator takes one order per batch-orders request")
    return [_ack(_place(st, batch[0], fraction), batch[0])]


def _place_algo(st, p: dict, fraction):
    spec, swap = _inst(st, p.get("instId"))
    side = {"buy": "BUY", "sell": "SELL"}.get(p.get("side") or "")
    kind = p.get("ordType")
    if side is None:
        raise OkxError(51000, f"Parameter side error: {p.get('side')!r}")
    if kind not in ("trigger", "conditional"):
        raise OkxError(51000, f"not yet supported by the emulator: algo ordType {kind!r} (trigger, conditional)")
    cid = p.get("algoClOrdId") or ""
    _check_cl_ord_id(cid, "algoClOrdId")
    if _duplicate(st, cid, algo=True):
        raise OkxError(51016, "Duplicated algoClOrdId")
    td = _td_mode(st, spec, swap, p)
    if kind == "trigger":
        trig, px, leg = p.get("triggerPx"), p.get("orderPx"), ""
        if not trig or not px:
            raise OkxError(51000, "Parameter triggerPx or orderPx error: both are required for a trigger order")
    else:
        sl, tp = p.get("slTriggerPx"), p.get("tpTriggerPx")
        if bool(sl) == bool(tp):
            raise OkxError(51000, "not yet supported by the emulator: a conditional order with both or neither of "
                                  "slTriggerPx and tpTriggerPx (oco)")
        trig, px, leg = (sl, p.get("slOrdPx"), "sl") if sl else (tp, p.get("tpOrdPx"), "tp")
        if not px:
            raise OkxError(51000, f"Parameter {leg}OrdPx error: required (-1: market)")
    trigger, now = dec(trig), st.price(spec.id)
    if trigger <= 0 or trigger % spec.tick:
        raise OkxError(51000, f"Parameter triggerPx error: {trig}")
    rises = trigger > now
    if kind == "conditional":
        # a sell's stop loss triggers on a fall, its take profit on a rise (a buy's the other way)
        want_rise = (side == "SELL") == (leg == "tp")
        if want_rise != rises:
            code = {("sl", True): 51280, ("sl", False): 51279, ("tp", True): 51277, ("tp", False): 51278}[(leg, side == "SELL")]
            raise OkxError(code, f"{leg.upper()} trigger price must be {'higher' if want_rise else 'lower'} than "
                                 f"the last price {now}")
    elif trigger == now:
        raise OkxError(51000, "Parameter triggerPx error: equal to the last price")
    limit = px != "-1"
    stop = (side == "BUY") == rises           # buys above / sells below the price: a stop
    if swap:
        pside = _pos_side(st, p, side, True)
        _mark_mode(st, spec, td)
        q = {"symbol": spec.id, "side": side, "positionSide": pside, "quantity": str(_size(p, spec, True)),
             "type": ("STOP" if stop else "TAKE_PROFIT") + ("" if limit else "_MARKET"), "triggerPrice": trig,
             "clientAlgoId": cid or f"okx{st.next_id()}"}
        if limit:
            q["price"] = px
        if pside == "BOTH" and p.get("reduceOnly") == "true":
            q["reduceOnly"] = "true"
        st.futures.create_algo(q, fraction)
        order = st.futures.algo_by_client[q["clientAlgoId"]]
    else:
        q = {"symbol": spec.id, "side": side, "quantity": str(_size(p, spec, False)), "stopPrice": trig,
             "type": ("STOP_LOSS" if stop else "TAKE_PROFIT") + ("_LIMIT" if limit else ""),
             "newClientOrderId": cid or f"okx{st.next_id()}"}
        if limit:
            q.update(price=px, timeInForce="GTC")
        answer = st.spot.create(q, fraction)
        order = st.spot.orders[answer["orderId"]]
    order.okx_kind, order.okx_leg = kind, leg or ("sl" if stop else "tp")     # type: ignore[attr-defined]
    return [{"algoId": str(order.order_id), "clOrdId": "", "algoClOrdId": cid, "sCode": "0", "sMsg": "Order placed",
             "tag": p.get("tag") or ""}]


def _books(st) -> list[tuple[Order, bool]]:
    """(order, algo) of both markets: spot stops and swap algo orders are algo orders; a swap algo's
    triggered child order is a regular order."""
    rows = [(o, o.type in STOP_TYPES) for o in st.spot.orders.values()]
    fut = st.futures
    rows += [(o, False) for o in fut.orders.values() if not o.client_id.startswith("autoclose-")]
    return rows + [(a, True) for a in fut.algos.values()]


def _swap_of(st, o: Order) -> bool:
    return o.order_id in st.futures.orders or o.order_id in st.futures.algos


def _spec_of(st, o: Order) -> MarketSpec:
    return (st.futures_markets if _swap_of(st, o) else st.spot_markets)[o.symbol]


def _parent(st, o: Order) -> Order | None:
    """The swap algo order whose trigger placed ``o`` (None: placed by the user)."""
    return next((a for a in st.futures.algos.values() if a.child_id == o.order_id), None)


def _regular_json(st, o: Order) -> dict:
    swap = _swap_of(st, o)
    spec = _spec_of(st, o)
    algo = _parent(st, o) if swap else (o if o.type in STOP_TYPES else None)
    return order_json(o, spec, swap, td_mode=_mode_of(st, spec, swap), algo=algo,
                      lever=st.futures.lev(spec.id) if swap else 1)


def _algo_json(st, a: Order) -> dict:
    swap = _swap_of(st, a)
    spec = _spec_of(st, a)
    if swap:
        child = a.child_id if a.child_id in st.futures.orders else None
    else:
        child = a.order_id if a.triggered else None
    return algo_json(a, spec, swap, td_mode=_mode_of(st, spec, swap), ord_type=getattr(a, "okx_kind", "trigger"),
                     child_id=child)


def _regular(st, p: dict) -> list[Order]:
    """Regular orders: user orders, a triggered spot stop (the order it became) and swap children."""
    return [o for o, algo in _books(st) if not algo or (o.triggered and o.order_id in st.spot.orders)]


def _find_regular(st, p: dict) -> Order:
    spec, swap = _inst(st, p.get("instId"))
    oid, cid = p.get("ordId"), p.get("clOrdId")
    if not (oid or cid):
        raise OkxError(51000, "Parameter ordId or clOrdId error: one is required")
    found = [o for o in _regular(st, p) if o.symbol == spec.id and _swap_of(st, o) == swap
             and ((oid and str(o.order_id) == oid) or (not oid and o.client_id == cid and not o.type in STOP_TYPES))]
    if not found:
        raise OkxError(51603, "Order does not exist")
    return max(found, key=lambda o: o.order_id)


def _get_order(st, p: dict, _):
    return [_regular_json(st, _find_regular(st, p))]


def _listing(st, p: dict, open_only: bool) -> list[dict]:
    kind = _inst_type(p)
    rows = []
    for o in _regular(st, p):
        swap = _swap_of(st, o)
        spec = _spec_of(st, o)
        if kind is not None and (kind == "SWAP") != swap:
            continue
        if p.get("instId") and inst_id(spec, swap) != p["instId"]:
            continue
        if o.is_open != open_only or (o.type in STOP_TYPES and not o.triggered):
            continue
        row = _regular_json(st, o)
        if not open_only and p.get("state") and row["state"] != p["state"]:
            continue
        rows.append(row)
    rows.sort(key=lambda r: (int(r["cTime"]), int(r["ordId"])), reverse=True)
    return rows[: min(int(p.get("limit") or 100), 100)]


def _history(st, p: dict, _):
    if not p.get("instType"):
        raise OkxError(51000, "Parameter instType error: instType is required")
    return _listing(st, p, open_only=False)


def _cancel(st, p: dict, _):
    o = _find_regular(st, p)
    if not o.is_open:
        raise OkxError(51400, "Order cancellation failed as the order has been filled, canceled or does not exist")
    if _swap_of(st, o):
        st.futures.cancel({"orderId": o.order_id})
    else:
        st.spot.cancel({"orderId": o.order_id})
    return [{"ordId": str(o.order_id), "clOrdId": o.client_id, "ts": str(int(time.time() * 1000)), "sCode": "0",
             "sMsg": ""}]


def _cancel_batch(st, p: dict, f):
    return [_per_order(_cancel)(st, q, f)[0] for q in p.get("_batch") or [p]]


def _amend(st, p: dict, _):
    o = _find_regular(st, p)
    if not o.is_open:
        raise OkxError(51503, "Order modification failed as the order has been filled, canceled or does not exist")
    spec, swap = _spec_of(st, o), _swap_of(st, o)
    if p.get("newSz") and not swap:
        raise OkxError(51000, "not yet supported by the emulator: amending a spot order's size (locked funds)")
    if p.get("newPx"):
        px = dec(p["newPx"])
        if px <= 0 or px % spec.tick:
            raise OkxError(51000, f"Parameter newPx error: {p['newPx']}")
        if not swap and o.side == "BUY":
            raise OkxError(51000, "not yet supported by the emulator: amending a spot buy's price (locked funds)")
        o.price = px
    if p.get("newSz"):
        qty = _size({"sz": p["newSz"]}, spec, swap)
        if qty <= o.executed or qty % spec.step:
            raise OkxError(51000, f"Parameter newSz error: {p['newSz']}")
        o.qty = qty
    o.update_time = st.now_ms
    return [{"ordId": str(o.order_id), "clOrdId": o.client_id, "reqId": p.get("reqId") or "",
             "ts": str(int(time.time() * 1000)), "sCode": "0", "sMsg": ""}]


def _algos(st) -> list[Order]:
    return [o for o, algo in _books(st) if algo]


def _find_algo(st, p: dict) -> Order:
    aid, cid = p.get("algoId"), p.get("algoClOrdId")
    if not (aid or cid):
        raise OkxError(51000, "Parameter algoId or algoClOrdId error: one is required")
    found = [a for a in _algos(st) if (aid and str(a.order_id) == aid) or (not aid and a.client_id == cid)]
    if not found:
        raise OkxError(51603, "Order does not exist")
    return max(found, key=lambda o: o.order_id)


def _get_algo(st, p: dict, _):
    return [_algo_json(st, _find_algo(st, p))]


def _algo_listing(st, p: dict, pending: bool):
    kind = p.get("ordType")
    if not kind:
        raise OkxError(51000, "Parameter ordType error: ordType is required")
    kinds = set(kind.split(","))
    rows = []
    for a in _algos(st):
        row = _algo_json(st, a)
        if row["ordType"] not in kinds or (p.get("instId") and row["instId"] != p["instId"]):
            continue
        if p.get("instType") and row["instType"] != p["instType"]:
            continue
        if p.get("algoId") and row["algoId"] != p["algoId"]:
            continue
        if (row["state"] == "live") != pending:
            continue
        if not pending and p.get("state") and row["state"] != p["state"]:
            continue
        rows.append(row)
    if not pending and not (p.get("state") or p.get("algoId")):
        raise OkxError(51000, "Parameter state or algoId error: one is required")
    rows.sort(key=lambda r: int(r["algoId"]), reverse=True)
    return rows[: min(int(p.get("limit") or 100), 100)]


def _cancel_algos(st, p: dict, _):
    out = []
    for q in p.get("_batch") or [p]:
        a = _find_algo(st, q)
        if a.status != "NEW":
            raise OkxError(51400, "Cancellation failed as the order has been filled, canceled or does not exist")
        if a.order_id in st.futures.algos:
            st.futures.cancel_algo({"algoId": a.order_id})
        else:
            st.spot.cancel({"orderId": a.order_id})
        out.append({"algoId": str(a.order_id), "algoClOrdId": a.client_id, "clOrdId": "", "sCode": "0", "sMsg": "",
                    "tag": ""})
    return out


def _fills(st, p: dict, _):
    kind = _inst_type(p)
    owner: dict[int, Order] = {}
    for o, _algo in _books(st):
        owner[o.order_id] = o
    rows = []
    for trades, swap in ((st.spot.trades, False), (st.futures.trades, True)):
        if kind is not None and (kind == "SWAP") != swap:
            continue
        for t in trades:
            o = owner.get(t["orderId"])
            if o is None:
                continue
            spec = (st.futures_markets if swap else st.spot_markets)[t["symbol"]]
            if p.get("instId") and inst_id(spec, swap) != p["instId"]:
                continue
            if p.get("ordId") and str(o.order_id) != p["ordId"]:
                continue
            rows.append(fill_json(t, o, spec, swap))
    start, end = int(p.get("begin") or 0), int(p.get("end") or 2**62)
    rows = [r for r in rows if start <= int(r["ts"]) <= end]
    rows.sort(key=lambda r: int(r["ts"]), reverse=True)
    return rows[: min(int(p.get("limit") or 100), 100)]


PUBLIC = {
    ("GET", "/api/v5/public/time"): lambda st, p, _: [{"ts": str(st.now_ms)}],
    ("GET", "/api/v5/public/instruments"): _instruments,
    ("GET", "/api/v5/market/candles"): _candles(False),
    ("GET", "/api/v5/market/history-candles"): _candles(True),
    ("GET", "/api/v5/market/ticker"): _ticker,
    ("GET", "/api/v5/market/tickers"): _tickers,
    ("GET", "/api/v5/public/funding-rate"): _funding_rate,
    ("GET", "/api/v5/public/funding-rate-history"): _funding_history,
}
SIGNED = {
    ("GET", "/api/v5/asset/currencies"): _currencies,
    ("GET", "/api/v5/account/config"): _config,
    ("POST", "/api/v5/account/set-position-mode"): _set_position_mode,
    ("POST", "/api/v5/account/set-leverage"): _set_leverage,
    ("GET", "/api/v5/account/balance"): _balance,
    ("GET", "/api/v5/account/trade-fee"): _trade_fee,
    ("GET", "/api/v5/account/positions"): _positions,
    ("GET", "/api/v5/account/bills"): _bills,
    ("GET", "/api/v5/account/bills-archive"): _bills,
    ("POST", "/api/v5/trade/order"): _per_order(_order),
    ("POST", "/api/v5/trade/batch-orders"): _per_order(_batch_orders,
                                                       lambda p: _order_item((p.get("_batch") or [p])[0])),
    ("POST", "/api/v5/trade/cancel-order"): _per_order(_cancel),
    ("POST", "/api/v5/trade/cancel-batch-orders"): _cancel_batch,
    ("POST", "/api/v5/trade/amend-order"): _per_order(_amend),
    ("GET", "/api/v5/trade/order"): _get_order,
    ("GET", "/api/v5/trade/orders-pending"): lambda st, p, _: _listing(st, p, open_only=True),
    ("GET", "/api/v5/trade/orders-history"): _history,
    ("GET", "/api/v5/trade/orders-history-archive"): _history,
    ("GET", "/api/v5/trade/fills"): _fills,
    ("GET", "/api/v5/trade/fills-history"): _fills,
    ("POST", "/api/v5/trade/order-algo"): _per_order(_place_algo, lambda p: {"algoClOrdId": p.get("algoClOrdId") or ""}),
    ("POST", "/api/v5/trade/cancel-algos"): _per_order(_cancel_algos, lambda p: {}),
    ("GET", "/api/v5/trade/order-algo"): _get_algo,
    ("GET", "/api/v5/trade/orders-algo-pending"): lambda st, p, _: _algo_listing(st, p, pending=True),
    ("GET", "/api/v5/trade/orders-algo-history"): lambda st, p, _: _algo_listing(st, p, pending=False),
}
ORDER_ENDPOINTS = ("/api/v5/trade/order", "/api/v5/trade/batch-orders", "/api/v5/trade/order-algo")


OKX = Dialect(
    name="okx", public=PUBLIC, signed=SIGNED, order_endpoints=ORDER_ENDPOINTS,
    kline_endpoints=("/api/v5/market/candles", "/api/v5/market/history-candles"), key_header="OK-ACCESS-KEY",
    authenticate=_authenticate, parse_body=_parse_body, error=_error, ok=_ok,
    rate_limited=lambda retry, now_ms: Answer(429, {"code": "50011", "msg": "Too Many Requests", "data": []}),
    lost=lambda mode: Answer(500, {"code": "50013", "msg": "Systems are busy. Please try again later.", "data": []})
    if mode == "500" else Answer(200, {"code": "50004", "msg": "API endpoint request timeout (does not mean that "
                                       "the request was successful or failed, please check the request result).",
                                       "data": []}),
    usage_headers=lambda now_ms: {},
    reject=(51008, "Order failed. Insufficient USDT balance in account."),
    auth_error=(50111, "Invalid OK-ACCESS-KEY", 401), signs_path=True,
)

__all__ = ["OKX", "OKX_SPOT_MARKETS", "OKX_SWAP_MARKETS", "OkxError", "PASSPHRASE", "okx_options"]
