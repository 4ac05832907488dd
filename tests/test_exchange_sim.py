"""The loopback Binance behaves like an exchange when driven by real ccxt objects."""

from __future__ import annotations

import json
import time
import urllib.request
from decimal import ROUND_DOWN, Decimal

import ccxt
import numpy as np
import pytest

from exchange_sim import (ExchangeServer, Options, exchange_server, futures_client,  # noqa: F401
                          spot_client)
from exchange_sim.markets import bundled_series

BTC, BTC_PERP = "BTC/USDT", "BTC/USDT:USDT"
START = 1000  # the fixture's clock: bar 1000 of the bundled data


def tick_floor(x: float, tick: str = "0.01") -> float:
    return float((Decimal(repr(float(x))) / Decimal(tick)).to_integral_value(ROUND_DOWN) * Decimal(tick))


def bars_before(server, k: int) -> int:
    """Clock steps from now to the open of bundled bar ``k`` (the data has a few gaps)."""
    return int(bundled_series(BTC).time[k] - server.now_ms) // 3_600_000


@pytest.fixture
def spot(exchange_server):
    ex = spot_client(exchange_server)
    ex.load_markets()
    return ex


@pytest.fixture
def perp(exchange_server):
    ex = futures_client(exchange_server)
    ex.load_markets()
    return ex


# --- markets and data -----------------------------------------------------------------------------
def test_load_markets_offline_with_binance_filters(exchange_server, spot, perp):
    m = spot.market(BTC)
    assert (m["precision"]["price"], m["precision"]["amount"]) == (0.01, 0.00001)
    assert m["limits"]["cost"]["min"] == 5 and m["limits"]["amount"]["min"] == 0.00001
    assert spot.market("ETH/USDT")["precision"]["amount"] == 0.0001
    f = perp.market(BTC_PERP)
    assert f["swap"] and f["linear"] and f["settle"] == "USDT"
    assert (f["precision"]["price"], f["precision"]["amount"], f["limits"]["cost"]["min"]) == (0.1, 0.001, 100)
    assert {path for _, path in exchange_server.calls} == {"/api/v3/exchangeInfo", "/fapi/v1/exchangeInfo"}


def test_fetch_ohlcv_pages_through_the_real_candles(exchange_server, spot):
    s = bundled_series(BTC)
    rows, since = [], int(s.time[0])
    while True:
        page = spot.fetch_ohlcv(BTC, "1h", since=since, limit=400)
        if not page:
            break
        rows += page
        since = page[-1][0] + 1
    got = np.array(rows, dtype=float)
    assert len(got) == START + 1  # everything up to the clock, nothing after it
    np.testing.assert_array_equal(got[:, 0], s.time[: START + 1])
    for col, arr in enumerate((s.open, s.high, s.low, s.close, s.volume), start=1):
        np.testing.assert_allclose(got[:-1, col], arr[:START], rtol=1e-12)
    # the current bar is shown as just opened: only its open is known
    assert list(got[-1, 1:]) == [s.open[START]] * 4 + [0.0]
    last = spot.fetch_ohlcv(BTC, "1h", limit=3)
    assert [r[0] for r in last] == list(s.time[START - 2: START + 1])
    day = spot.fetch_ohlcv(BTC, "1d", limit=2)
    assert day[0][0] % 86_400_000 == 0
    assert spot.fetch_tickers()[BTC]["quoteVolume"] > 0


# --- spot orders ------------------------------------------------------------------------------------
def test_limit_buy_rests_until_a_real_low_crosses_it(exchange_server, spot):
    s = bundled_series(BTC)
    limit = tick_floor(s.open[START] * 0.97)
    k = START + int(np.argmax(s.low[START:] <= limit))
    assert k > START + 1
    order = spot.create_order(BTC, "limit", "buy", 0.01, limit, {"clientOrderId": "entry-1"})
    assert order["status"] == "open"
    assert spot.fetch_balance()["USDT"]["used"] == pytest.approx(0.01 * limit)
    exchange_server.advance(bars_before(exchange_server, k))  # bars START .. k-1: none reaches the limit
    assert spot.fetch_order(order["id"], BTC)["status"] == "open"
    exchange_server.advance(1)  # bar k: its low crosses
    filled = spot.fetch_order(order["id"], BTC)
    price = min(limit, float(s.open[k]))
    assert (filled["status"], filled["filled"], filled["average"]) == ("closed", 0.01, pytest.approx(price))
    bal = spot.fetch_balance()
    assert bal["BTC"]["total"] == pytest.approx(0.01 * 0.999)  # commission taken in BTC
    assert bal["USDT"]["total"] == pytest.approx(10_000 - 0.01 * price) and bal["USDT"]["used"] == 0
    assert spot.fetch_open_orders(BTC) == []
    assert [t["order"] for t in spot.fetch_my_trades(BTC)] == [order["id"]]


def test_market_order_fills_at_the_current_open_and_stop_limit_triggers(exchange_server, spot):
    s = bundled_series(BTC)
    buy = spot.create_order(BTC, "market", "buy", 0.02)
    assert buy["average"] == pytest.approx(s.open[START]) and buy["status"] == "closed"
    stop = tick_floor(s.open[START] * 0.98)
    k = START + int(np.argmax(s.low[START:] <= stop))
    sl = spot.create_order(BTC, "limit", "sell", 0.0199, tick_floor(stop * 0.99), {"triggerPrice": stop})
    assert spot.fetch_balance()["BTC"]["used"] == pytest.approx(0.0199)
    exchange_server.advance(bars_before(exchange_server, k))
    assert spot.fetch_order(sl["id"], BTC)["status"] == "open"
    exchange_server.advance(1)
    done = spot.fetch_order(sl["id"], BTC)
    assert done["status"] == "closed" and done["average"] <= stop
    with pytest.raises(ccxt.OrderImmediatelyFillable):  # a stop already through the market
        spot.create_order(BTC, "limit", "sell", 0.001, 20_000, {"triggerPrice": 1e6})


def test_filters_reject_bad_tick_step_and_notional(exchange_server, spot, perp):
    base = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC"}
    with pytest.raises(ccxt.InvalidOrder, match="PRICE_FILTER"):  # bypass ccxt's own rounding
        spot.private_post_order({**base, "quantity": "0.01", "price": "10000.005"})
    with pytest.raises(ccxt.InvalidOrder, match="LOT_SIZE"):
        spot.private_post_order({**base, "quantity": "0.000015", "price": "10000"})
    with pytest.raises((ccxt.InvalidOrder, ccxt.BadRequest), match="NOTIONAL"):  # ccxt: -1013 BadRequest
        spot.create_order(BTC, "limit", "buy", 0.0003, 10_000)
    with pytest.raises(ccxt.InvalidOrder, match="-4164"):
        perp.create_order(BTC_PERP, "limit", "buy", 0.005, 10_000)
    with pytest.raises(ccxt.BadRequest, match="-4014"):
        perp.fapiPrivatePostOrder({**base, "quantity": "0.01", "price": "10000.05"})
    with pytest.raises(ccxt.BadRequest, match="-1111"):
        perp.fapiPrivatePostOrder({**base, "quantity": "0.0101", "price": "10000"})
    assert spot.fetch_open_orders(BTC) == [] and perp.fetch_open_orders(BTC_PERP) == []


def test_orders_the_account_cannot_cover_are_refused(exchange_server, spot, perp):
    with pytest.raises(ccxt.InsufficientFunds):
        spot.create_order(BTC, "market", "buy", 1.0)  # ~13,852 USDT > 10,000
    with pytest.raises(ccxt.InsufficientFunds):
        spot.create_order(BTC, "limit", "sell", 0.001, 20_000)  # no BTC
    perp.set_leverage(1, BTC_PERP)
    with pytest.raises(ccxt.InsufficientFunds, match="-2019"):
        perp.create_order(BTC_PERP, "market", "buy", 1.0)
    perp.set_leverage(2, BTC_PERP)
    assert perp.create_order(BTC_PERP, "market", "buy", 1.0)["status"] == "closed"
    assert spot.fetch_balance()["USDT"]["free"] == 10_000


def test_duplicate_client_order_ids(exchange_server, spot, perp):
    spot.create_order(BTC, "limit", "buy", 0.01, 9_000, {"clientOrderId": "dup"})
    with pytest.raises(ccxt.InvalidOrder, match="Duplicate order sent"):
        spot.create_order(BTC, "limit", "buy", 0.01, 9_000, {"clientOrderId": "dup"})
    assert len(spot.fetch_open_orders(BTC)) == 1
    spot.cancel_order(None, BTC, {"clientOrderId": "dup"})
    # Binance's documented rule: unique among OPEN orders, so an ended order's id may come back
    assert spot.create_order(BTC, "limit", "buy", 0.01, 9_000, {"clientOrderId": "dup"})["status"] == "open"
    perp.create_order(BTC_PERP, "limit", "buy", 0.02, 9_000, {"clientOrderId": "f-dup"})
    with pytest.raises(ccxt.InvalidOrder, match="-4116"):
        perp.create_order(BTC_PERP, "limit", "buy", 0.02, 9_000, {"clientOrderId": "f-dup"})


def test_strict_client_id_rule_rejects_reuse_forever():
    with ExchangeServer(options=Options(duplicate_client_ids="all")) as server:
        ex = spot_client(server)
        ex.create_order(BTC, "market", "buy", 0.001, None, {"clientOrderId": "once"})
        with pytest.raises(ccxt.InvalidOrder):
            ex.create_order(BTC, "market", "buy", 0.001, None, {"clientOrderId": "once"})


# --- authentication and faults -----------------------------------------------------------------
def test_bad_signature_and_bad_key_are_refused(exchange_server):
    with pytest.raises(ccxt.AuthenticationError, match="-1022"):
        spot_client(exchange_server, secret="not-the-secret").fetch_balance()
    with pytest.raises(ccxt.AuthenticationError, match="-2015"):
        futures_client(exchange_server, api_key="someone-else").fetch_balance()


def test_rate_limit_and_server_errors_map_to_ccxt_network_errors(exchange_server, spot):
    exchange_server.faults.rate_limit(retry_after=2, endpoint="/api/v3/account")
    with pytest.raises(ccxt.DDoSProtection):  # RateLimitExceeded is a DDoSProtection too
        spot.fetch_balance()
    assert spot.last_response_headers["Retry-After"] == "2"
    assert spot.fetch_balance()["USDT"]["free"] == 10_000  # one-shot
    exchange_server.faults.server_error(status=503, endpoint="/api/v3/klines")
    with pytest.raises(ccxt.ExchangeNotAvailable):
        spot.fetch_ohlcv(BTC, "1h", limit=5)
    exchange_server.faults.server_error(status=502, at_call=1)  # the 2nd request of any kind
    spot.fetch_ticker(BTC)
    with pytest.raises(ccxt.ExchangeNotAvailable):
        spot.fetch_ticker(BTC)
    assert [k for k, _, _ in exchange_server.faults.log] == ["rate_limit", "server_error", "server_error"]


def test_timeout_loses_the_request_before_it_is_processed(exchange_server, spot):
    exchange_server.faults.timeout(delay=0.8, endpoint="/api/v3/order", method="POST")
    t0 = time.monotonic()
    with pytest.raises(ccxt.RequestTimeout):
        spot.create_order(BTC, "limit", "buy", 0.01, 9_000, {"clientOrderId": "t-1"})
    assert time.monotonic() - t0 < 0.8
    with pytest.raises(ccxt.OrderNotFound):
        spot.fetch_order(None, BTC, {"clientOrderId": "t-1"})


@pytest.mark.parametrize("mode, error", [("drop", ccxt.NetworkError), ("500", ccxt.OperationFailed),
                                         ("unknown", ccxt.RequestTimeout),
                                         ("timeout", ccxt.RequestTimeout)])
def test_lost_response_after_the_order_was_accepted(exchange_server, spot, mode, error):
    exchange_server.faults.lose_response(mode=mode, delay=0.7)
    with pytest.raises(error):
        spot.create_order(BTC, "limit", "buy", 0.01, 9_000, {"clientOrderId": "lost-1"})
    found = spot.fetch_order(None, BTC, {"clientOrderId": "lost-1"})  # it exists all the same
    assert (found["status"], found["amount"], found["price"]) == ("open", 0.01, 9_000)
    assert len(spot.fetch_open_orders(BTC)) == 1
    with pytest.raises(ccxt.InvalidOrder, match="Duplicate"):  # a blind retry is refused
        spot.create_order(BTC, "limit", "buy", 0.01, 9_000, {"clientOrderId": "lost-1"})


def test_rejected_and_partially_filled_orders(exchange_server, spot):
    exchange_server.faults.reject(code=-2010, msg="Order would immediately match and take.")
    with pytest.raises(ccxt.OrderImmediatelyFillable):
        spot.create_order(BTC, "market", "buy", 0.01)
    assert spot.fetch_balance()["BTC"]["total"] == 0
    exchange_server.faults.partial_fill(fraction=0.4)
    order = spot.create_order(BTC, "market", "buy", 0.01)
    assert (order["status"], order["filled"]) == ("expired", 0.004)  # the rest found no liquidity
    s = bundled_series(BTC)
    limit = tick_floor(s.open[START] * 1.5)  # far above: rests, then fills in 40% slices
    exchange_server.faults.partial_fill(fraction=0.4)
    sell = spot.create_order(BTC, "limit", "sell", 0.0039, limit)
    k = START + int(np.argmax(s.high[START:] >= limit))
    exchange_server.advance(bars_before(exchange_server, k) + 1)
    part = spot.fetch_order(sell["id"], BTC)
    assert (part["status"], part["filled"]) == ("open", pytest.approx(0.00156))
    for _ in range(500):  # each later bar through the limit takes another 40% slice
        exchange_server.advance(1)
        if spot.fetch_order(sell["id"], BTC)["status"] != "open":
            break
    trades = spot.fetch_my_trades(BTC, params={"orderId": sell["id"]})
    assert [t["amount"] for t in trades] == pytest.approx([0.00156, 0.00156, 0.00078])
    assert spot.fetch_order(sell["id"], BTC)["status"] == "closed"


def test_async_ccxt_fetches_concurrently(exchange_server):
    import asyncio

    async def scan():
        ex = spot_client(exchange_server, asyncio=True)
        try:
            await ex.load_markets()
            return await asyncio.gather(*(ex.fetch_ohlcv(sym, "4h", limit=10)
                                          for sym in ("BTC/USDT", "ETH/USDT")))
        finally:
            await ex.close()

    btc, eth = asyncio.run(scan())
    assert len(btc) == len(eth) == 10 and btc[-1][0] == eth[-1][0]


def test_seeded_probabilistic_faults_are_reproducible():
    logs = []
    for _ in range(2):
        with ExchangeServer(seed=7) as server:
            ex = spot_client(server)
            server.faults.server_error(probability=0.3, endpoint="/api/v3/ticker/24hr")
            outcome = []
            for _ in range(20):
                try:
                    ex.fetch_ticker(BTC)
                    outcome.append(1)
                except ccxt.ExchangeNotAvailable:
                    outcome.append(0)
            logs.append(outcome)
    assert logs[0] == logs[1] and 0 < sum(logs[0]) < 20


# --- futures ----------------------------------------------------------------------------------------
def test_hedge_mode_long_and_short_with_entry_liquidation_and_funding(exchange_server, perp):
    s = bundled_series(BTC)
    with pytest.raises(ccxt.OperationRejected, match="-4061"):  # one-way mode: no position side
        perp.create_order(BTC_PERP, "market", "buy", 0.01, None, {"positionSide": "LONG"})
    perp.set_position_mode(True)
    perp.set_leverage(10, BTC_PERP)
    perp.set_margin_mode("isolated", BTC_PERP)
    with pytest.raises(ccxt.MarginModeAlreadySet):
        perp.set_margin_mode("isolated", BTC_PERP)
    perp.create_order(BTC_PERP, "market", "buy", 0.05, None, {"positionSide": "LONG"})
    perp.create_order(BTC_PERP, "market", "sell", 0.03, None, {"positionSide": "SHORT"})
    entry = s.open[START]
    pos = {p["side"]: p for p in perp.fetch_positions([BTC_PERP])}
    assert pos["long"]["contracts"] == 0.05 and pos["short"]["contracts"] == 0.03
    assert pos["long"]["entryPrice"] == pos["short"]["entryPrice"] == pytest.approx(entry)
    assert pos["long"]["leverage"] == 10 and pos["long"]["marginMode"] == "isolated"
    mmr = 0.004  # isolated: margin = notional / leverage; liquidation where equity = maintenance
    assert pos["long"]["liquidationPrice"] == pytest.approx(entry * 0.9 / (1 - mmr), abs=0.1)
    assert pos["short"]["liquidationPrice"] == pytest.approx(entry * 1.1 / (1 + mmr), abs=0.1)
    with pytest.raises(ccxt.InvalidOrder, match="-2022"):  # cannot close more than the side holds
        perp.create_order(BTC_PERP, "market", "sell", 0.06, None, {"positionSide": "LONG"})
    wallet = float(exchange_server.state.futures.wallet)
    to_funding = (8 * 3_600_000 - exchange_server.now_ms % (8 * 3_600_000)) // 3_600_000
    exchange_server.advance(to_funding)
    mark = float(exchange_server.state.price("BTCUSDT"))
    fees = perp.fetch_funding_history(BTC_PERP)
    assert [f["amount"] for f in fees] == pytest.approx([-0.05 * mark * 1e-4, 0.03 * mark * 1e-4])
    assert float(exchange_server.state.futures.wallet) == pytest.approx(wallet - 0.02 * mark * 1e-4)
    history = perp.fetch_funding_rate_history(BTC_PERP, limit=5)
    assert history[-1]["timestamp"] == exchange_server.now_ms and history[-1]["fundingRate"] == 1e-4
    bal = perp.fetch_balance()["USDT"]
    assert bal["total"] == pytest.approx(float(exchange_server.state.futures.wallet) + (mark - entry) * 0.02)


def test_futures_stop_and_trailing_orders_trigger_on_replayed_candles(exchange_server, perp):
    s = bundled_series(BTC)
    perp.set_position_mode(True)
    perp.create_order(BTC_PERP, "market", "buy", 0.02, None, {"positionSide": "LONG"})
    stop = round(float(s.open[START]) * 0.97, 1)  # ccxt ignores numpy floats in params!
    k = START + int(np.argmax(s.low[START:] <= stop))
    sl = perp.create_order(BTC_PERP, "market", "sell", 0.01, None,
                           {"positionSide": "LONG", "stopLossPrice": stop, "clientOrderId": "plan-sl"})
    trail = perp.create_order(BTC_PERP, "market", "sell", 0.01, None,
                              {"positionSide": "LONG", "trailingPercent": 1.0})
    assert {o["id"] for o in perp.fetch_open_orders(BTC_PERP, params={"trigger": True})} == {sl["id"], trail["id"]}
    with pytest.raises(ccxt.OrderImmediatelyFillable):
        perp.create_order(BTC_PERP, "market", "sell", 0.01, None,
                          {"positionSide": "LONG", "stopLossPrice": round(float(s.open[START]) * 1.1, 1)})
    exchange_server.advance(bars_before(exchange_server, k))
    assert perp.fetch_order(sl["id"], BTC_PERP, {"trigger": True})["status"] == "open"
    exchange_server.advance(1)
    done = perp.fetch_order(sl["id"], BTC_PERP, {"trigger": True})
    assert done["status"] == "closed" and done["filled"] == 0.01 and done["average"] <= stop
    child = perp.fetch_order(None, BTC_PERP, {"clientOrderId": "plan-sl"})  # the order it placed
    assert child["status"] == "closed" and child["type"] == "market"
    assert perp.fetch_order(trail["id"], BTC_PERP, {"trigger": True})["status"] == "closed"
    assert perp.fetch_positions([BTC_PERP]) == []


def test_control_endpoint_advances_the_clock(exchange_server):
    before = exchange_server.now_ms
    req = urllib.request.Request(f"{exchange_server.url}/__control/advance?bars=3", method="POST")
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert json.load(resp)["now"] == before + 3 * 3_600_000 == exchange_server.now_ms


def test_a_client_killed_mid_connection_is_not_reported_as_a_server_error(exchange_server, capsys):
    """A bot killed with SIGKILL resets its keep-alive connection; socketserver printed that
    ConnectionResetError as a traceback, which read like the cause of any later failure."""
    import socket
    import struct

    sock = socket.create_connection(("127.0.0.1", exchange_server.port), timeout=5)
    sock.sendall(b"GET /fapi/v1/ping HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = b""
    while not answer.endswith(b"\r\n\r\n{}"):                   # all of it: the handler waits for the next request
        answer += sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 200")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()                                               # closed with RST, as the kernel does for a killed process
    assert exchange_server.wait_for_disconnects(1, timeout=10)
    assert "Traceback" not in capsys.readouterr().err and not exchange_server.errors


@pytest.mark.parametrize("processed", [False, True])
def test_a_held_request_waits_unanswered_until_released(exchange_server, processed):
    """The crash test's kill points: the n-th request after k clock advances is held (before or
    after the exchange processed it) until released, then dropped without an answer."""
    import threading
    from http.client import RemoteDisconnected

    def advance():
        req = urllib.request.Request(f"{exchange_server.url}/__control/advance?bars=1", method="POST")
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.load(resp)["now"]

    start = exchange_server.now_ms
    held = exchange_server.hold_request(2, after_advances=1, processed=processed)
    assert advance() == start + 3_600_000                     # the advance counted as "after 1 advance"
    assert advance() == start + 7_200_000                     # request 1 after it: answered
    failed = []
    caller = threading.Thread(target=lambda: failed.append(pytest.raises(RemoteDisconnected, advance)))
    caller.start()                                           # request 2: held
    assert held.reached.wait(10) and caller.is_alive()
    assert held.request == ("POST", "/__control/advance")
    assert exchange_server.now_ms == start + (3 if processed else 2) * 3_600_000
    held.release()
    caller.join(10)
    assert failed and not caller.is_alive()                  # dropped unanswered
    assert advance() == exchange_server.now_ms               # later requests are served again


# --- cancel-replace (spot) and stop coverage --------------------------------------------------------

def _stop_params(cid, old, stop, mode="STOP_ON_FAILURE", **extra):
    return {"stopPrice": stop, "newClientOrderId": cid, "cancelOrigClientOrderId": old,
            "cancelReplaceMode": mode, **extra}


def _replace_error(exc) -> dict:
    text = str(exc)
    return json.loads(text[text.index("{"):])


def test_cancel_replace_swaps_a_stop_on_the_coins_it_locked(exchange_server, spot):
    """Binance's POST /api/v3/order/cancelReplace: the cancel releases the coins, the new order
    locks them, in one request; the exchange is never without a stop."""
    assert spot.market(BTC)["info"]["cancelReplaceAllowed"] is True
    spot.create_order(BTC, "market", "buy", 0.02)
    held = float(exchange_server.state.spot.free("BTC"))
    price = float(exchange_server.state.price("BTCUSDT"))
    stop = tick_floor(price * 0.95)
    spot.create_order(BTC, "STOP_LOSS_LIMIT", "sell", held, tick_floor(stop * 0.99), {"stopPrice": stop,
                                                                                      "clientOrderId": "s0"})
    new = spot.edit_order(None, BTC, "STOP_LOSS_LIMIT", "sell", held, tick_floor(stop * 1.0),
                          _stop_params("s1", "s0", tick_floor(stop * 1.01), cancelRestrictions="ONLY_NEW"))
    assert new["clientOrderId"] == "s1" and new["status"] == "open"
    assert spot.fetch_order(None, BTC, {"origClientOrderId": "s0"})["status"] == "canceled"
    assert spot.fetch_balance()["BTC"]["used"] == pytest.approx(held)          # the coins carried over
    gaps = exchange_server.state.coverage.all()
    assert [g.kind for g in gaps] == ["fill"] and gaps[0].cause == "POST /api/v3/order"   # only the entry's
    # STOP_ON_FAILURE: the cancel fails (s0 is gone), so the new order is not attempted (HTTP 400, -2022)
    with pytest.raises(ccxt.BadResponse) as failed:
        spot.edit_order(None, BTC, "STOP_LOSS_LIMIT", "sell", held, tick_floor(stop), _stop_params("s2", "s0", stop))
    assert _replace_error(failed.value) == {"code": -2022, "msg": "Order cancel-replace failed.", "data": {
        "cancelResult": "FAILURE", "newOrderResult": "NOT_ATTEMPTED",
        "cancelResponse": {"code": -2011, "msg": "Unknown order sent."}, "newOrderResponse": None}}
    # the cancel succeeds, the new order is refused (it would trigger at once): HTTP 409, -2021; s1 stays cancelled
    with pytest.raises(ccxt.BadResponse) as partly:
        spot.edit_order(None, BTC, "STOP_LOSS_LIMIT", "sell", held, tick_floor(price * 1.5),
                        _stop_params("s3", "s1", tick_floor(price * 1.5)))
    body = _replace_error(partly.value)
    assert body["code"] == -2021 and body["data"]["cancelResult"] == "SUCCESS"
    assert body["data"]["cancelResponse"]["status"] == "CANCELED"
    assert body["data"]["newOrderResult"] == "FAILURE" and body["data"]["newOrderResponse"]["code"] == -2010
    assert spot.fetch_order(None, BTC, {"origClientOrderId": "s1"})["status"] == "canceled"
    assert [g.kind for g in exchange_server.state.coverage.all()] == ["fill", "stop"]   # now it is bare
    assert exchange_server.state.coverage.open


def test_cancel_replace_modes_restrictions_filters_and_markets():
    import dataclasses

    from exchange_sim import SPOT_MARKETS

    with ExchangeServer() as server:
        spot = spot_client(server)
        spot.load_markets()
        spot.create_order(BTC, "limit", "buy", 0.01, 9_000, {"clientOrderId": "b0"})
        # ALLOW_FAILURE: the new order is placed although the cancel failed (HTTP 409, -2021)
        with pytest.raises(ccxt.BadResponse) as allowed:
            spot.edit_order(None, BTC, "limit", "buy", 0.01, 9_100, {"newClientOrderId": "b1",
                            "cancelOrigClientOrderId": "nope", "cancelReplaceMode": "ALLOW_FAILURE"})
        data = _replace_error(allowed.value)["data"]
        assert (data["cancelResult"], data["newOrderResult"]) == ("FAILURE", "SUCCESS")
        assert {o["clientOrderId"] for o in spot.fetch_open_orders(BTC)} == {"b0", "b1"}
        # cancelRestrictions ONLY_PARTIALLY_FILLED refuses to cancel a NEW order
        with pytest.raises(ccxt.BadResponse, match="cancel restrictions"):
            spot.edit_order(None, BTC, "limit", "buy", 0.01, 9_200, {"newClientOrderId": "b2",
                            "cancelOrigClientOrderId": "b0", "cancelReplaceMode": "STOP_ON_FAILURE",
                            "cancelRestrictions": "ONLY_PARTIALLY_FILLED"})
        # filters are checked before anything is cancelled: a plain error, b0 untouched
        with pytest.raises(ccxt.BadRequest, match="NOTIONAL"):
            spot.edit_order(None, BTC, "limit", "buy", 0.0001, 9_200, {"newClientOrderId": "b3",
                            "cancelOrigClientOrderId": "b0", "cancelReplaceMode": "STOP_ON_FAILURE"})
        assert spot.fetch_order(None, BTC, {"origClientOrderId": "b0"})["status"] == "open"
    closed = tuple(dataclasses.replace(m, cancel_replace_allowed=False) for m in SPOT_MARKETS)
    with ExchangeServer(spot_markets=closed) as server:
        spot = spot_client(server)
        spot.load_markets()
        assert spot.market(BTC)["info"]["cancelReplaceAllowed"] is False
        spot.create_order(BTC, "limit", "buy", 0.01, 9_000, {"clientOrderId": "b0"})
        with pytest.raises(ccxt.ExchangeError, match="not supported for this symbol"):
            spot.edit_order(None, BTC, "limit", "buy", 0.01, 9_100, {"newClientOrderId": "b1",
                            "cancelOrigClientOrderId": "b0", "cancelReplaceMode": "STOP_ON_FAILURE"})
        assert spot.fetch_order(None, BTC, {"origClientOrderId": "b0"})["status"] == "open"


def test_hold_a_request_of_one_path(exchange_server, spot):
    held = exchange_server.hold_request(1, path="/api/v3/order", method="DELETE", processed=True)
    spot.create_order(BTC, "limit", "buy", 0.01, 9_000, {"clientOrderId": "h0"})   # not counted
    assert not held.reached.is_set()
    import threading
    caller = threading.Thread(target=lambda: pytest.raises(ccxt.NetworkError, spot.cancel_order, None, BTC,
                                                           {"origClientOrderId": "h0"}))
    caller.start()
    assert held.reached.wait(10) and held.request == ("DELETE", "/api/v3/order")
    held.release()
    caller.join(10)
    assert exchange_server.state.spot.by_client["h0"].status == "CANCELED"          # processed, answer lost
