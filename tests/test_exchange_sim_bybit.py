"""The loopback Bybit v5 emulator against an unmodified ``ccxt.bybit``: every unified structure
ccxt parses from it carries the fields ccxt's manual calls for, and the Bybit behaviours a bot
must cope with (ids-only order answers, one id through a conditional order's life, orderLinkId
rules, "not modified" answers, retCode 10006 with its headers) are there."""

from __future__ import annotations

import ccxt
import pytest

from exchange_sim import bybit_client, bybit_server, missing_fields  # noqa: F401 (fixture)

LINEAR, SPOT = "BTC/USDT:USDT", "BTC/USDT"


def _by_link(ex, symbol: str, cid: str) -> dict:
    """The order with orderLinkId ``cid`` (``/v5/order/realtime`` finds open and recent closed ones:
    ccxt's fetch_open_order would send ``orderId=None``)."""
    rows = ex.fetch_open_orders(symbol, None, None, {"orderLinkId": cid})
    assert len(rows) == 1, rows
    return rows[0]


def _hedged(server):
    ex = bybit_client(server, "linear", timeout_ms=3000)
    ex.load_markets()
    ex.set_position_mode(True)
    return ex


def test_every_unified_structure_has_its_required_fields(bybit_server):
    linear, spot = _hedged(bybit_server), bybit_client(bybit_server, "spot", timeout_ms=3000)
    spot.load_markets()
    market_fields = ("id", "symbol", "base", "quote", "type", "precision.amount", "precision.price",
                     "limits.amount.min", "limits.amount.max", "active")
    for ex in (linear, spot):
        for m in ex.markets.values():
            assert not missing_fields(m, market_fields), (m["symbol"], missing_fields(m, market_fields))
    assert spot.markets[SPOT]["limits"]["cost"]["min"] == 1.0
    assert linear.markets[LINEAR]["contractSize"] == 1 and linear.markets[LINEAR]["settle"] == "USDT"
    price = linear.fetch_ticker(LINEAR)["last"]
    linear.create_order(LINEAR, "market", "buy", 0.01, None, {"clientOrderId": "mc-entry", "hedged": True})
    linear.create_order(LINEAR, "limit", "buy", 0.01, round(price * 0.9, 1), {"clientOrderId": "mc-leg", "hedged": True})
    linear.create_order(LINEAR, "market", "sell", 0.01, None, {
        "clientOrderId": "mc-stop", "hedged": True, "reduceOnly": True, "triggerPrice": round(price * 0.95, 1),
        "triggerDirection": "descending"})
    bybit_server.advance(9)                        # one funding time passes
    order_fields = ("id", "clientOrderId", "timestamp", "symbol", "type", "side", "status", "amount", "filled",
                    "remaining", "reduceOnly", "lastUpdateTimestamp")
    orders = [_by_link(linear, LINEAR, cid) for cid in ("mc-leg", "mc-stop")]
    orders += linear.fetch_closed_orders(LINEAR)
    assert {o["clientOrderId"] for o in orders} == {"mc-entry", "mc-leg", "mc-stop"}
    for o in orders:
        assert not missing_fields(o, order_fields), (o["clientOrderId"], missing_fields(o, order_fields))
    stop = next(o for o in orders if o["clientOrderId"] == "mc-stop")
    assert stop["triggerPrice"] == round(price * 0.95, 1) and stop["reduceOnly"] is True
    trade_fields = ("id", "order", "timestamp", "symbol", "side", "price", "amount", "cost", "fee.cost",
                    "fee.currency", "takerOrMaker")
    trades = linear.fetch_my_trades(LINEAR)
    assert trades and all(not missing_fields(t, trade_fields) for t in trades)
    # not marginMode: a unified account's is account-wide (/v5/account/info), ccxt leaves it None; not
    # liquidationPrice: Bybit sends "" when cross margin cannot liquidate the position (as here)
    position_fields = ("symbol", "side", "contracts", "entryPrice", "markPrice", "notional", "leverage",
                       "unrealizedPnl", "timestamp", "hedged", "initialMargin")
    held = [p for p in linear.fetch_positions([LINEAR]) if p["contracts"]]
    assert len(held) == 1 and not missing_fields(held[0], position_fields), missing_fields(held[0], position_fields)
    assert held[0]["side"] == "long" and held[0]["hedged"] is True
    rates = linear.fetch_funding_rate_history(LINEAR, limit=5)
    assert rates and all(not missing_fields(r, ("symbol", "fundingRate", "timestamp")) for r in rates)
    paid = linear.fetch_funding_history(LINEAR)
    assert paid and all(not missing_fields(f, ("symbol", "code", "amount", "timestamp", "id")) for f in paid)
    fee = linear.fetch_trading_fee(LINEAR)
    assert (fee["maker"], fee["taker"]) == (0.0002, 0.00055)
    balance = linear.fetch_balance()
    assert not missing_fields(balance, ("USDT.free", "USDT.used", "USDT.total"))
    candles = spot.fetch_ohlcv(SPOT, "1h", limit=5)
    assert len(candles) == 5 and candles[0][0] < candles[-1][0] and all(None not in c for c in candles)


def test_order_answers_carry_ids_only_and_a_conditional_keeps_its_id_when_it_fills(bybit_server):
    ex = _hedged(bybit_server)
    price = ex.fetch_ticker(LINEAR)["last"]
    created = ex.create_order(LINEAR, "market", "buy", 0.01, None, {"clientOrderId": "mc-a", "hedged": True})
    assert created["status"] is None and created["filled"] is None       # Bybit answers with the ids only
    tp_id = ex.create_order(LINEAR, "market", "sell", 0.01, None, {"clientOrderId": "mc-tp", "hedged": True,
                                                           "reduceOnly": True, "triggerPrice": round(price * 1.001, 1),
                                                           "triggerDirection": "ascending"})["id"]
    assert _by_link(ex, LINEAR, "mc-tp")["info"]["orderStatus"] == "Untriggered"
    for _ in range(200):
        bybit_server.advance(1)
        done = _by_link(ex, LINEAR, "mc-tp")
        if done["status"] != "open":
            break
    assert done["id"] == tp_id and done["status"] == "closed" and done["filled"] == 0.01
    assert done["info"]["orderStatus"] == "Filled"
    fills = ex.fetch_my_trades(LINEAR, None, None, {"orderLinkId": "mc-tp"})
    assert [t["order"] for t in fills] == [tp_id]                         # under the conditional order's id
    assert not [p for p in ex.fetch_positions([LINEAR]) if p["contracts"]]


def test_bybit_rules_and_refusals_map_to_ccxt_errors(bybit_server):
    ex = _hedged(bybit_server)
    with pytest.raises(ccxt.NoChange):                           # 110025 Position mode is not modified
        ex.set_position_mode(True)
    ex.set_leverage(5, LINEAR)
    with pytest.raises(ccxt.BadRequest, match="110043"):          # Set leverage not modified
        ex.set_leverage(5, LINEAR)
    with pytest.raises(ccxt.BadRequest, match="orderLinkId"):
        ex.create_order(LINEAR, "market", "buy", 0.01, None, {"clientOrderId": "has a space", "hedged": True})
    with pytest.raises(ccxt.BadRequest, match="orderLinkId"):
        ex.create_order(LINEAR, "market", "buy", 0.01, None, {"clientOrderId": "x" * 37, "hedged": True})
    ex.create_order(LINEAR, "market", "buy", 0.01, None, {"clientOrderId": "mc-once", "hedged": True})
    with pytest.raises(ccxt.InvalidOrder, match="110072"):        # an orderLinkId is never reused
        ex.create_order(LINEAR, "market", "buy", 0.01, None, {"clientOrderId": "mc-once", "hedged": True})
    price = ex.fetch_ticker(LINEAR)["last"]
    with pytest.raises(ccxt.InvalidOrder, match="110093"):        # a falling trigger above the price
        ex.create_order(LINEAR, "market", "sell", 0.01, None, {"clientOrderId": "mc-bad", "hedged": True,
                        "reduceOnly": True, "triggerPrice": price * 1.01, "triggerDirection": "descending"})
    with pytest.raises(ccxt.OrderNotFound):
        ex.cancel_order(None, LINEAR, {"orderLinkId": "mc-never"})
    with pytest.raises(ccxt.AuthenticationError):
        bybit_client(bybit_server, "linear", secret="wrong").fetch_balance()


def test_faults_speak_bybit(bybit_server):
    ex = _hedged(bybit_server)
    bybit_server.faults.rate_limit(retry_after=2, endpoint="/v5/order/create")
    with pytest.raises(ccxt.RateLimitExceeded, match="10006"):
        ex.create_order(LINEAR, "market", "buy", 0.01, None, {"clientOrderId": "mc-r", "hedged": True})
    assert ex.last_response_headers["X-Bapi-Limit-Status"] == "0"
    assert int(ex.last_response_headers["X-Bapi-Limit-Reset-Timestamp"]) > 0
    bybit_server.faults.lose_response(mode="drop")
    with pytest.raises(ccxt.NetworkError):
        ex.create_order(LINEAR, "market", "buy", 0.01, None, {"clientOrderId": "mc-lost", "hedged": True})
    assert _by_link(ex, LINEAR, "mc-lost")["filled"] == 0.01   # it went through
    bybit_server.faults.partial_fill(0.5)
    ex.create_order(LINEAR, "market", "buy", 0.02, None, {"clientOrderId": "mc-half", "hedged": True})
    half = _by_link(ex, LINEAR, "mc-half")
    # derivatives: "Cancelled" with the executed qty (PartiallyFilledCanceled is spot's alone)
    assert half["filled"] == 0.01 and half["info"]["orderStatus"] == "Cancelled" and half["status"] == "canceled"
    bybit_server.faults.server_error(503, endpoint="/v5/position/list")
    with pytest.raises(ccxt.ExchangeNotAvailable):
        ex.fetch_positions([LINEAR])


def test_spot_stop_orders_are_listed_only_with_their_order_filter(bybit_server):
    ex = bybit_client(bybit_server, "spot", timeout_ms=3000)
    ex.load_markets()
    ex.create_order(SPOT, "market", "buy", 0.01, None, {"clientOrderId": "mc-buy"})
    price = ex.fetch_ticker(SPOT)["last"]
    ex.create_order(SPOT, "limit", "sell", 0.009, round(price * 0.94, 2), {"clientOrderId": "mc-sl",
                                                                           "triggerPrice": round(price * 0.95, 2)})
    assert ex.fetch_open_orders(SPOT) == []
    stops = ex.fetch_open_orders(SPOT, None, None, {"trigger": True})
    assert [o["clientOrderId"] for o in stops] == ["mc-sl"] and stops[0]["info"]["orderStatus"] == "Untriggered"
    ex.edit_order(stops[0]["id"], SPOT, "limit", "sell", None, None, {"triggerPrice": round(price * 0.96, 2)})
    assert ex.fetch_open_orders(SPOT, None, None, {"trigger": True})[0]["triggerPrice"] == round(price * 0.96, 2)
