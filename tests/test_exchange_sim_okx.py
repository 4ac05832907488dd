"""The loopback OKX v5 emulator against an unmodified ``ccxt.okx``: every unified structure ccxt
parses from it carries the fields ccxt's manual calls for, and the OKX behaviours a bot must cope
with are there: signing with a passphrase, swap sizes in contracts (``ctVal``), stops as algo
orders with their own id and ``algoClOrdId`` that name the order they placed once triggered,
clOrdId rules, per-order ``sCode`` refusals, 50011 rate limits."""

from __future__ import annotations

import ccxt
import pytest

from exchange_sim import okx_client, okx_server, missing_fields  # noqa: F401 (fixture)

SWAP, SPOT = "BTC/USDT:USDT", "BTC/USDT"


def _hedged(server):
    ex = okx_client(server, "swap", timeout_ms=3000)
    ex.load_markets()
    ex.set_position_mode(True)
    return ex


def _buy(ex, cid: str, contracts: float = 1.0) -> dict:
    return ex.create_order(SWAP, "market", "buy", contracts, None, {"clientOrderId": cid, "hedged": True})


def _stop(ex, cid: str, trigger: float, **extra) -> dict:
    return ex.create_order(SWAP, "market", "sell", 1, None, {"algoClOrdId": cid, "hedged": True, "reduceOnly": True,
                                                             "triggerPrice": trigger, **extra})


def test_every_unified_structure_has_its_required_fields(okx_server):
    swap, spot = _hedged(okx_server), okx_client(okx_server, "spot", timeout_ms=3000)
    spot.load_markets()
    market_fields = ("id", "symbol", "base", "quote", "type", "precision.amount", "precision.price",
                     "limits.amount.min", "limits.amount.max", "active")
    for ex in (swap, spot):
        for m in ex.markets.values():
            assert not missing_fields(m, market_fields), (m["symbol"], missing_fields(m, market_fields))
    assert swap.markets[SWAP]["contractSize"] == 0.01 and swap.markets[SWAP]["settle"] == "USDT"
    assert swap.markets["ETH/USDT:USDT"]["contractSize"] == 0.1
    price = swap.fetch_ticker(SWAP)["last"]
    _buy(swap, "mcentry")
    swap.create_order(SWAP, "limit", "buy", 1, round(price * 0.9, 1), {"clientOrderId": "mcleg", "hedged": True})
    _stop(swap, "mcstop", round(price * 0.95, 1))
    okx_server.advance(9)                        # one funding time passes
    order_fields = ("id", "timestamp", "symbol", "type", "side", "status", "amount", "filled", "remaining",
                    "reduceOnly", "lastUpdateTimestamp")
    orders = swap.fetch_open_orders(SWAP) + swap.fetch_closed_orders(SWAP)
    assert {o["clientOrderId"] for o in orders} == {"mcentry", "mcleg"}
    stops = swap.fetch_open_orders(SWAP, None, None, {"trigger": True})
    assert [s["info"]["algoClOrdId"] for s in stops] == ["mcstop"]
    for o in orders:
        assert not missing_fields(o, order_fields), (o["id"], missing_fields(o, order_fields))
    # an algo order has no fills of its own (OKX lists no accFillSz for it): the order it places does
    algo_fields = tuple(f for f in order_fields if f not in ("filled", "remaining"))
    assert not missing_fields(stops[0], algo_fields), missing_fields(stops[0], algo_fields)
    assert stops[0]["triggerPrice"] == round(price * 0.95, 1) and stops[0]["clientOrderId"] is None
    assert stops[0]["info"]["posSide"] == "long" and stops[0]["side"] == "sell"
    trade_fields = ("id", "order", "timestamp", "symbol", "side", "price", "amount", "cost", "fee.cost",
                    "fee.currency", "takerOrMaker")
    trades = swap.fetch_my_trades(SWAP)
    assert trades and all(not missing_fields(t, trade_fields) for t in trades)
    assert trades[0]["amount"] == 1.0                                      # contracts
    position_fields = ("symbol", "side", "contracts", "contractSize", "entryPrice", "markPrice", "notional",
                       "leverage", "unrealizedPnl", "timestamp", "hedged", "marginMode", "initialMargin")
    held = swap.fetch_positions([SWAP])
    assert len(held) == 1 and not missing_fields(held[0], position_fields), missing_fields(held[0], position_fields)
    assert (held[0]["side"], held[0]["contracts"], held[0]["hedged"]) == ("long", 1.0, True)
    assert float(okx_server.state.futures.positions[("BTCUSDT", "LONG")].amt) == pytest.approx(held[0]["contractSize"])
    rates = swap.fetch_funding_rate_history(SWAP, limit=5)
    assert rates and all(not missing_fields(r, ("symbol", "fundingRate", "timestamp")) for r in rates)
    assert not missing_fields(swap.fetch_funding_rate(SWAP), ("symbol", "fundingRate", "fundingTimestamp"))
    paid = swap.fetch_funding_history(SWAP)
    assert paid and all(not missing_fields(f, ("symbol", "code", "amount", "timestamp", "id")) for f in paid)
    fee = swap.fetch_trading_fee(SWAP)
    assert (fee["maker"], fee["taker"]) == (0.0002, 0.0005)
    balance = swap.fetch_balance()
    assert not missing_fields(balance, ("USDT.free", "USDT.used", "USDT.total"))
    assert swap.fetch_position_mode(SWAP)["hedged"] is True
    candles = spot.fetch_ohlcv(SPOT, "1h", limit=5)
    assert len(candles) == 5 and candles[0][0] < candles[-1][0] and all(None not in c for c in candles)
    since = candles[0][0] - 50 * 3_600_000
    older = spot.fetch_ohlcv(SPOT, "1h", since=since, limit=10)
    assert [c[0] for c in older] == [since + k * 3_600_000 for k in range(10)]


def test_a_triggered_stop_names_the_order_that_carries_its_fills(okx_server):
    ex = _hedged(okx_server)
    price = ex.fetch_ticker(SWAP)["last"]
    created = _buy(ex, "mca")
    assert created["status"] is None and created["filled"] is None       # OKX answers with the ids only
    tp = ex.create_order(SWAP, "market", "sell", 1, None, {"algoClOrdId": "mctp", "hedged": True,
                                                           "takeProfitPrice": round(price * 1.001, 1)})
    assert ex.fetch_order(tp["id"], SWAP, {"trigger": True})["info"]["ordType"] == "conditional"
    for _ in range(200):
        okx_server.advance(1)
        done = ex.fetch_order(None, SWAP, {"trigger": True, "clientOrderId": "mctp"})
        if done["status"] != "open":
            break
    assert done["id"] == tp["id"] and done["status"] == "closed" and done["info"]["state"] == "effective"
    child = ex.fetch_order(done["info"]["ordId"], SWAP)
    assert child["status"] == "closed" and child["filled"] == 1.0
    assert child["info"]["algoClOrdId"] == "mctp" and child["info"]["algoId"] == tp["id"]
    assert not ex.fetch_positions([SWAP])


def test_okx_rules_and_refusals_map_to_ccxt_errors(okx_server):
    ex = _hedged(okx_server)
    ex.set_position_mode(True)                                       # the same mode again: success
    with pytest.raises(ccxt.BadRequest, match="posSide"):          # isolated in long/short mode needs a side
        ex.set_leverage(5, SWAP, {"marginMode": "isolated"})
    ex.set_leverage(5, SWAP, {"marginMode": "isolated", "posSide": "long"})
    with pytest.raises(ccxt.BadRequest, match="clOrdId"):
        _buy(ex, "has-a-dash")
    with pytest.raises(ccxt.BadRequest, match="clOrdId"):
        _buy(ex, "x" * 33)
    _buy(ex, "mconce")
    with pytest.raises(ccxt.InvalidOrder, match="51016"):          # a clOrdId is never reused
        _buy(ex, "mconce")
    with pytest.raises(ccxt.InvalidOrder, match="51121"):          # not a multiple of lotSz (0.01)
        ex.create_order(SWAP, "market", "buy", 1, None, {"clientOrderId": "mcodd", "hedged": True, "sz": "1.005"})
    price = ex.fetch_ticker(SWAP)["last"]
    with pytest.raises(ccxt.InvalidOrder, match="51280"):          # a sell's stop loss above the price
        ex.create_order(SWAP, "market", "sell", 1, None, {"algoClOrdId": "mcbad", "hedged": True,
                                                          "stopLossPrice": round(price * 1.01, 1)})
    with pytest.raises(ccxt.OrderNotFound):
        ex.cancel_order(None, SWAP, {"clientOrderId": "mcnever"})
    with pytest.raises(ccxt.OrderNotFound):
        ex.fetch_order(None, SWAP, {"trigger": True, "clientOrderId": "mcnever"})
    with pytest.raises(ccxt.AuthenticationError, match="50113"):
        okx_client(okx_server, "swap", secret="wrong").fetch_balance()
    with pytest.raises(ccxt.AuthenticationError, match="50105"):
        okx_client(okx_server, "swap", password="wrong").fetch_balance()
    with pytest.raises(ccxt.AuthenticationError, match="password"):   # ccxt refuses before sending
        okx_client(okx_server, "swap", password="").fetch_balance()


def test_faults_speak_okx(okx_server):
    ex = _hedged(okx_server)
    okx_server.faults.rate_limit(endpoint="/api/v5/trade/batch-orders")
    with pytest.raises(ccxt.RateLimitExceeded, match="50011"):
        _buy(ex, "mcr")
    okx_server.faults.lose_response(mode="drop")
    with pytest.raises(ccxt.NetworkError):
        _buy(ex, "mclost")
    assert ex.fetch_order(None, SWAP, {"clientOrderId": "mclost"})["filled"] == 1.0   # it went through
    okx_server.faults.lose_response(mode="unknown")
    with pytest.raises(ccxt.RequestTimeout, match="50004"):
        _buy(ex, "mcunknown")
    okx_server.faults.partial_fill(0.5)
    _buy(ex, "mchalf", 2.0)
    half = ex.fetch_order(None, SWAP, {"clientOrderId": "mchalf"})
    assert half["filled"] == 1.0 and half["status"] == "canceled"
    okx_server.faults.reject()
    with pytest.raises(ccxt.InsufficientFunds, match="51008"):
        _buy(ex, "mcrej")
    with pytest.raises(ccxt.InvalidOrder, match="sCode"):            # a refusal in data: sCode / sMsg
        _buy(ex, "mchalf")
    okx_server.faults.server_error(503, endpoint="/api/v5/account/positions")
    with pytest.raises(ccxt.ExchangeNotAvailable):
        ex.fetch_positions([SWAP])


def test_spot_stops_are_algo_orders_and_lock_their_coins(okx_server):
    ex = okx_client(okx_server, "spot", timeout_ms=3000)
    ex.load_markets()
    ex.create_order(SPOT, "market", "buy", 0.01, None, {"clientOrderId": "mcbuy"})
    price, held = ex.fetch_ticker(SPOT)["last"], ex.fetch_balance()["BTC"]["free"]    # 0.01 less the fee
    ex.create_order(SPOT, "limit", "sell", held, round(price * 0.89, 1), {"algoClOrdId": "mcspotstop",
                                                                          "triggerPrice": round(price * 0.9, 1)})
    assert ex.fetch_open_orders(SPOT) == []                              # not a regular order ...
    stops = ex.fetch_open_orders(SPOT, None, None, {"trigger": True})     # ... an algo order
    assert [s["info"]["algoClOrdId"] for s in stops] == ["mcspotstop"]
    assert ex.fetch_balance()["BTC"]["free"] == 0.0
