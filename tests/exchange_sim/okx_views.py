"""The JSON of OKX's v5 API rendered from the shared accounts (see :mod:`exchange_sim.okx`).

Swap sizes are contracts (``sz``, ``accFillSz``, ``pos``): the shared futures account keeps base
units, so every size is divided by the instrument's ``ctVal`` here. An algo order (``trigger``)
keeps its ``algoId``; once triggered it names the order it placed (``ordId``), which carries the
fills and the algo's ``algoClOrdId``, as OKX's order details do.
"""

from __future__ import annotations

from decimal import Decimal

from .futures_views import Position
from .markets import MarketSpec
from .state import Order

ZERO = Decimal(0)
#: contract value (base units per contract) of the bundled USDT swaps, as OKX lists them
CT_VAL = {"BTC": Decimal("0.01"), "ETH": Decimal("0.1")}


def num(value: Decimal | None) -> str:
    return "" if value is None else format(Decimal(value).normalize(), "f")


def inst_id(spec: MarketSpec, swap: bool) -> str:
    return f"{spec.base}-{spec.quote}" + ("-SWAP" if swap else "")


def ct_val(spec: MarketSpec, swap: bool) -> Decimal:
    return CT_VAL[spec.base] if swap else Decimal(1)


def instrument(spec: MarketSpec, swap: bool, list_ms: int) -> dict:
    """One row of ``/api/v5/public/instruments`` (sizes of a swap in contracts)."""
    ct = ct_val(spec, swap)
    return {"instType": "SWAP" if swap else "SPOT", "instId": inst_id(spec, swap), "uly": f"{spec.base}-{spec.quote}" if swap else "",
            "instFamily": f"{spec.base}-{spec.quote}" if swap else "", "baseCcy": "" if swap else spec.base,
            "quoteCcy": "" if swap else spec.quote, "settleCcy": spec.quote if swap else "",
            "ctVal": num(ct) if swap else "", "ctMult": "1" if swap else "", "ctValCcy": spec.base if swap else "",
            "ctType": "linear" if swap else "", "category": "1", "alias": "", "expTime": "", "optType": "",
            "stk": "", "lever": "100" if swap else "10", "listTime": str(list_ms), "state": "live", "ruleType": "normal",
            "tickSz": num(spec.tick), "lotSz": num(spec.step / ct), "minSz": num(spec.lot_min / ct),
            "maxLmtSz": num(spec.max_qty / ct), "maxMktSz": num(spec.max_qty / ct), "maxLmtAmt": "20000000",
            "maxMktAmt": "1000000", "maxTwapSz": "", "maxIcebergSz": "", "maxTriggerSz": num(spec.max_qty / ct),
            "maxStopSz": num(spec.max_qty / ct)}


def order_state(o: Order) -> str:
    if o.status in ("FILLED", "FINISHED"):
        return "filled"
    if o.status in ("CANCELED", "EXPIRED", "REJECTED"):
        return "canceled"
    return "partially_filled" if o.executed > 0 else "live"


def order_json(o: Order, spec: MarketSpec, swap: bool, *, td_mode: str, algo: Order | None = None, lever: int = 1) -> dict:
    """One order as ``/api/v5/trade/order`` and the order listings show it."""
    ct = ct_val(spec, swap)
    fee = sum((t["fee"] for t in o.trades), ZERO)
    fee_ccy = o.trades[-1]["feeAsset"] if o.trades else (spec.quote if swap or o.side == "SELL" else spec.base)
    last = o.trades[-1] if o.trades else None
    ord_type = {"MARKET": "market", "LIMIT_MAKER": "post_only"}.get(o.type, "limit")
    if ord_type == "limit" and o.time_in_force in ("IOC", "FOK"):
        ord_type = o.time_in_force.lower()
    if o.type in ("STOP_LOSS", "TAKE_PROFIT"):
        ord_type = "market"
    pos_side = {"LONG": "long", "SHORT": "short"}.get(o.position_side, "net") if swap else ""
    return {"instType": "SWAP" if swap else "SPOT", "instId": inst_id(spec, swap), "ordId": str(o.order_id),
            "clOrdId": "" if algo is not None else o.client_id, "tag": "", "px": num(o.price) if o.price is not None else "",
            "sz": num(o.qty / ct), "notionalUsd": "", "ordType": ord_type, "side": o.side.lower(), "posSide": pos_side,
            "tdMode": td_mode, "tgtCcy": "" if swap else "base_ccy", "accFillSz": num(o.executed / ct),
            "fillPx": num(Decimal(last["price"])) if last else "", "tradeId": str(last["id"]) if last else "",
            "fillSz": num(Decimal(last["qty"]) / ct) if last else "", "fillTime": str(last["time"]) if last else "",
            "avgPx": num(o.avg_price) if o.executed else "", "state": order_state(o), "lever": str(lever) if swap else "",
            "attachAlgoClOrdId": "", "tpTriggerPx": "", "tpTriggerPxType": "", "tpOrdPx": "", "slTriggerPx": "",
            "slTriggerPxType": "", "slOrdPx": "", "attachAlgoOrds": [], "stpId": "", "stpMode": "cancel_maker",
            "feeCcy": fee_ccy, "fee": num(-fee) if o.trades else "0", "rebateCcy": fee_ccy, "rebate": "0",
            "pnl": "0", "source": "", "category": "normal", "reduceOnly": "true" if o.reduce_only else "false",
            "cancelSource": "", "quickMgnType": "", "algoClOrdId": algo.client_id if algo is not None else "",
            "algoId": str(algo.order_id) if algo is not None else "", "isTpLimit": "false",
            "uTime": str(max(o.update_time, o.time)), "cTime": str(o.time)}


def algo_state(algo: Order, child_id: int | None) -> str:
    """live until triggered; effective once it placed its order; order_failed if triggered with
    nothing to place (a reduce-only order with no position left); canceled."""
    if algo.triggered:
        return "effective" if child_id is not None else "order_failed"
    return "live" if algo.status == "NEW" else "canceled"


def algo_json(algo: Order, spec: MarketSpec, swap: bool, *, td_mode: str, ord_type: str, child_id: int | None) -> dict:
    """One algo order as ``/api/v5/trade/order-algo`` and the algo listings show it."""
    ct = ct_val(spec, swap)
    trig = num(algo.stop_price)
    px = num(algo.price) if algo.price is not None else "-1"
    sl_tp = {"sl": ("", "", ""), "tp": ("", "", "")}
    if ord_type == "conditional":
        sl_tp[getattr(algo, "okx_leg", "sl")] = (trig, px, "last")
    pos_side = {"LONG": "long", "SHORT": "short"}.get(algo.position_side, "net") if swap else ""
    triggered = algo.triggered and child_id is not None
    return {"instType": "SWAP" if swap else "SPOT", "instId": inst_id(spec, swap), "ccy": "", "ordId": str(child_id) if triggered else "",
            "ordIdList": [str(child_id)] if triggered else [], "algoId": str(algo.order_id), "clOrdId": "",
            "algoClOrdId": algo.client_id, "sz": num(algo.qty / ct), "closeFraction": "", "ordType": ord_type,
            "side": algo.side.lower(), "posSide": pos_side, "tdMode": td_mode, "tgtCcy": "" if swap else "base_ccy",
            "state": algo_state(algo, child_id), "lever": "", "tpTriggerPx": sl_tp["tp"][0], "tpOrdPx": sl_tp["tp"][1],
            "tpTriggerPxType": sl_tp["tp"][2], "slTriggerPx": sl_tp["sl"][0], "slOrdPx": sl_tp["sl"][1],
            "slTriggerPxType": sl_tp["sl"][2], "triggerPx": trig if ord_type == "trigger" else "",
            "triggerPxType": "last" if ord_type == "trigger" else "", "ordPx": px if ord_type == "trigger" else "",
            "actualSz": num(algo.qty / ct) if triggered else "", "actualPx": px if triggered else "",
            "actualSide": ("sl" if getattr(algo, "okx_leg", "sl") == "sl" else "tp") if triggered else "",
            "triggerTime": str(algo.update_time) if algo.triggered else "", "pxVar": "", "pxSpread": "",
            "szLimit": "", "pxLimit": "", "tag": "", "timeInterval": "", "callbackRatio": "", "callbackSpread": "",
            "activePx": "", "moveTriggerPx": "", "reduceOnly": "true" if algo.reduce_only else "false",
            "quickMgnType": "", "last": "", "failCode": "" if algo_state(algo, child_id) != "order_failed" else "51205",
            "isTradeBorrowMode": "", "chaseType": "", "chaseVal": "", "maxChaseType": "", "maxChaseVal": "",
            "cTime": str(algo.time), "uTime": str(algo.update_time)}


def fill_json(t: dict, o: Order, spec: MarketSpec, swap: bool) -> dict:
    """One fill as ``/api/v5/trade/fills`` and ``fills-history`` list it (``fee`` negative: charged)."""
    ct = ct_val(spec, swap)
    pos_side = {"LONG": "long", "SHORT": "short"}.get(o.position_side, "net") if swap else ""
    return {"instType": "SWAP" if swap else "SPOT", "instId": inst_id(spec, swap), "tradeId": str(t["id"]),
            "ordId": str(o.order_id), "clOrdId": o.client_id, "billId": str(t["id"]), "subType": "1", "tag": "",
            "fillPx": num(Decimal(t["price"])), "fillSz": num(Decimal(t["qty"]) / ct), "fillIdxPx": "", "fillPnl": "0",
            "fillPxVol": "", "fillPxUsd": "", "fillMarkVol": "", "fillFwdPx": "", "fillMarkPx": "",
            "side": o.side.lower(), "posSide": pos_side, "execType": "M" if t["maker"] else "T",
            "feeCcy": t["feeAsset"], "fee": num(-t["fee"]), "ts": str(t["time"]), "fillTime": str(t["time"])}


def position_json(account, spec: MarketSpec, side: str, pos: Position, td_mode: str) -> dict:
    """One row of ``/api/v5/account/positions`` (long/short mode: ``posSide`` long or short, ``pos``
    in contracts and positive; net mode: ``posSide`` net and ``pos`` signed)."""
    ct = ct_val(spec, True)
    mark = account.state.price(spec.id)
    size = abs(pos.amt)
    lev = account.lev(spec.id)
    signed = pos.amt if side == "BOTH" else size
    im = size * mark / lev
    return {"instType": "SWAP", "instId": inst_id(spec, True), "mgnMode": td_mode, "posId": f"{spec.id}-{side}",
            "posSide": {"LONG": "long", "SHORT": "short"}.get(side, "net"), "pos": num(signed / ct), "baseBal": "",
            "quoteBal": "", "posCcy": "", "availPos": num(size / ct), "avgPx": num(pos.entry), "markPx": num(mark),
            "upl": num(account.upnl(spec.id, pos)), "uplRatio": "0", "uplLastPx": num(account.upnl(spec.id, pos)),
            "lever": str(lev), "liqPx": num(account.liquidation_price(spec.id, side)) if pos.amt else "",
            "imr": num(im) if td_mode == "cross" else "", "margin": num(pos.isolated_margin or im) if td_mode == "isolated" else "",
            "mgnRatio": "", "mmr": num(size * mark * spec.maint_margin_ratio), "liab": "", "liabCcy": "",
            "interest": "0", "tradeId": "", "notionalUsd": num(size * mark), "optVal": "", "adl": "1", "ccy": spec.quote,
            "last": num(mark), "idxPx": num(mark), "usdPx": "", "bePx": num(pos.entry), "deltaBS": "", "deltaPA": "",
            "gammaBS": "", "gammaPA": "", "thetaBS": "", "thetaPA": "", "vegaBS": "", "vegaPA": "", "spotInUseAmt": "",
            "spotInUseCcy": "", "realizedPnl": "0", "pnl": "0", "fee": "0", "fundingFee": "0", "liqPenalty": "0",
            "closeOrderAlgo": [], "cTime": str(pos.update_time), "uTime": str(pos.update_time), "bizRefId": "",
            "bizRefType": ""}
