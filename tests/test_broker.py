"""The broker against the loopback Binance with a real ccxt object: orders placed at most once
under injected faults, every order accounted for exactly once in the store and on the server."""

from __future__ import annotations

import os
import random

import pytest

from exchange_sim import exchange_server, venue_client, venue_server  # noqa: F401 (fixture)
from mlcoord.live.broker import Broker
from mlcoord.live.records import OrderState
from mlcoord.live.retry import ExchangeHealth, ManualClock, RetryPolicy
from mlcoord.live.store import Store
from mlcoord.model import Order, OrderKind, Side

T0 = 1_600_000_000_000_000_000

#: the exchanges these live tests run on (their emulators)
VENUES = ["binance", "bybit", "okx"]


def _broker(server, tmp_path, market="spot", name="store"):
    exchange = venue_client(server, market, timeout_ms=250)
    store = Store.open(f"sqlite:///{tmp_path / name}.db")
    health = ExchangeHealth(RetryPolicy(max_attempts=8, max_outage=1e9), ManualClock())  # backoff never sleeps
    broker = Broker(exchange, store, market, health=health)
    broker.setup(["BTC/USDT", "ETH/USDT"], leverage=3)
    return broker, store


def _server_orders(server, market):
    account = server.state.spot if market == "spot" else server.state.futures
    return {o.client_id: o for o in account.orders.values()}


def _check_accounted(server, store, broker, market):
    """Store and server agree: the same client ids, states and filled quantities, each once."""
    for record in store.open_orders():
        broker.refresh(record)
    on_server = _server_orders(server, market)
    ours = {r.client_order_id: r for r in _all_orders(store)}
    placed = {cid for cid, r in ours.items() if r.state != OrderState.REJECTED}
    assert set(on_server) == placed, (set(on_server) ^ placed)
    assert not [r for r in ours.values() if r.state == OrderState.PENDING]
    for cid, o in on_server.items():
        r = ours[cid]
        assert abs(float(o.executed) - r.filled_quantity) < 1e-9, cid
        assert abs(sum(f.fill.quantity for f in store.fills(cid)) - float(o.executed)) < 1e-9, cid
        want = {"NEW": OrderState.OPEN, "PARTIALLY_FILLED": OrderState.PARTIALLY_FILLED, "FILLED": OrderState.FILLED,
                "CANCELED": OrderState.CANCELLED, "EXPIRED": OrderState.EXPIRED}[o.status]
        # Bybit spot answers one status, PartiallyFilledCanceled, for a partly filled order cancelled
        # by the bot or by the exchange (an IOC's rest): the dialect books it expired with its fills;
        # a market order's unfilled rest: expired on Binance and Bybit, "canceled" on OKX (its own word)
        either = server.dialect.name == "bybit" and market == "spot" and o.status == "CANCELED" and o.executed > 0
        assert r.state == want or (want == OrderState.EXPIRED and o.executed > 0 and r.state in (
            OrderState.PARTIALLY_FILLED, OrderState.CANCELLED)) or (either and r.state == OrderState.EXPIRED), \
            (cid, o.status, r.state)
    return ours


def _all_orders(store):
    from sqlalchemy import select
    from mlcoord.live import rows
    from mlcoord.live.schema import orders
    with store.engine.connect() as conn:
        return [rows.order_record(r) for r in conn.execute(select(orders)).mappings().all()]


@pytest.mark.parametrize("venue_server", VENUES, indirect=True)
def test_500_orders_under_faults_are_each_placed_once(venue_server, tmp_path):
    """On Binance 520 orders, on Bybit 100, on OKX 200 (the same paths; CI time; OKX needs more for a
    market order to meet a partial fill with this seed); ``MLCOORD_FULL_RUNS=1``: 1,000 on each (the
    issue's full run, a script's, not CI's)."""
    server = venue_server
    broker, store = _broker(server, tmp_path)
    faults = server.faults
    faults.timeout(delay=0.3, probability=0.03)
    faults.rate_limit(probability=0.03)
    faults.server_error(probability=0.03)
    faults.reject(probability=0.04)
    faults.partial_fill(fraction=0.4, probability=0.1)
    for mode in ("drop", "500", "unknown"):
        faults.lose_response(mode=mode, probability=0.03)
    faults.lose_response(mode="timeout", delay=0.3, probability=0.02)
    rng = random.Random(7)
    n = {"binance": 520, "bybit": 100}.get(server.dialect.name, 200)
    if os.environ.get("MLCOORD_FULL_RUNS") == "1":
        n = 1000
    for k in range(n):
        sym = rng.choice(["BTC/USDT", "ETH/USDT"])
        if k % 20 == 0:
            prices = {s: broker.call(lambda s=s: broker.exchange.fetch_ticker(s)["last"], "ticker")
                      for s in ("BTC/USDT", "ETH/USDT")}
        last = prices[sym]
        if rng.random() < 0.3:
            kind, price = OrderKind.MARKET, None
        else:
            kind, price = OrderKind.LIMIT, broker.price(sym, last * rng.uniform(0.97, 1.0))
        qty = broker.amount(sym, 12.0 / last)
        order = Order(broker.client_id(sym, T0 + k, f"entry:{k}"), sym, Side.LONG, kind, qty, price, T0 + k,
                      tag=f"entry:{k}")
        record = broker.place(order, plan_id=None)
        assert broker.place(order).client_order_id == record.client_order_id   # a replay sends nothing new
        if k % 25 == 24:
            server.advance(1)
        if k % 40 == 39:
            for live in store.open_orders()[:5]:
                broker.cancel(live)
    server.faults.clear()
    ours = _check_accounted(server, store, broker, "spot")
    fired = {kind for kind, *_ in server.faults.log}
    assert len(ours) == n
    assert {"timeout", "rate_limit", "server_error", "reject", "partial_fill", "lost_response"} <= fired
    rejected = sum(r.state == OrderState.REJECTED for r in ours.values())
    assert 0 < rejected < n * 0.2
    assert any(r.state == OrderState.PARTIALLY_FILLED for r in ours.values()) or \
        any(0 < r.filled_quantity < r.order.quantity for r in ours.values())
    print(f"orders={n} rejected={rejected} faults={len(server.faults.log)} sends={broker.sent}")


@pytest.mark.parametrize("venue_server", VENUES, indirect=True)
def test_restart_with_pending_order_adopts_it(venue_server, tmp_path):
    """Journaled, sent, answer lost, process died: the restarted broker adopts, never re-sends."""
    server = venue_server
    broker, store = _broker(server, tmp_path)
    last = broker.exchange.fetch_ticker("BTC/USDT")["last"]
    order = Order(broker.client_id("BTC/USDT", T0, "entry:1/1"), "BTC/USDT", Side.LONG, OrderKind.LIMIT,
                  broker.amount("BTC/USDT", 20 / last), broker.price("BTC/USDT", last * 0.95), T0, tag="entry:1/1")
    server.faults.lose_response(mode="drop")
    store.upsert_order(__import__("mlcoord.live.records", fromlist=["OrderRecord"]).OrderRecord(order))
    with pytest.raises(Exception):
        broker.exchange.create_order("BTC/USDT", "limit", "buy", order.quantity, order.price,
                                     {"clientOrderId": order.id})     # the "crashed" send
    again, _ = _broker(server, tmp_path)                              # restart: same store file
    record = again.place(order)
    assert record.state == OrderState.OPEN and again.sent == 0
    assert list(_server_orders(server, "spot")) == [order.id]


@pytest.mark.parametrize("venue_server", VENUES, indirect=True)
def test_futures_hedge_mode_stop_and_take_profit(venue_server, tmp_path):
    server = venue_server
    broker, store = _broker(server, tmp_path, "futures")
    assert server.state.futures.dual
    last = broker.exchange.fetch_ticker("BTC/USDT:USDT")["last"]
    qty = broker.amount("BTC/USDT", 300 / last)
    entry = Order(broker.client_id("BTC/USDT", T0, "entry:1/1"), "BTC/USDT", Side.SHORT, OrderKind.MARKET, qty,
                  None, T0, tag="entry:1/1")
    assert broker.place(entry).state == OrderState.FILLED
    assert [p.quantity for p in store.positions()] == [qty]
    stop = Order(broker.client_id("BTC/USDT", T0, "stop"), "BTC/USDT", Side.SHORT, OrderKind.STOP, qty,
                 broker.price("BTC/USDT", last * 1.02), T0, reduce_only=True, tag="stop")
    tp = Order(broker.client_id("BTC/USDT", T0, "take_profit"), "BTC/USDT", Side.SHORT, OrderKind.STOP, qty,
               broker.price("BTC/USDT", last * 0.5), T0, reduce_only=True, tag="take_profit")
    assert broker.place(stop).state == OrderState.OPEN
    assert broker.place(tp).state == OrderState.OPEN
    assert len(server.state.futures.algos) == 2
    for _ in range(200):                                   # replay bars until the stop triggers
        server.advance(1)
        if broker.refresh(store.order(stop.id)).state.terminal:
            break
    assert store.order(stop.id).state == OrderState.FILLED
    assert store.positions() == []
    assert broker.cancel(store.order(tp.id)).state == OrderState.CANCELLED


def test_rejection_is_recorded_not_retried(exchange_server, tmp_path):
    server = exchange_server
    broker, store = _broker(server, tmp_path)
    order = Order(broker.client_id("BTC/USDT", T0, "entry:1/1"), "BTC/USDT", Side.LONG, OrderKind.MARKET, 5.0,
                  None, T0, tag="entry:1/1")     # 5 BTC: far more than 10,000 USDT buys
    record = broker.place(order)
    assert record.state == OrderState.REJECTED and "insufficient" in record.reason.lower()
    assert broker.sent == 1 and _server_orders(server, "spot") == {}


@pytest.mark.parametrize("kind", [OrderKind.LIMIT, OrderKind.STOP])
def test_an_order_without_its_price_is_refused_before_it_is_stored(exchange_server, tmp_path, kind):
    """It was a TypeError from float(None) after the order was stored PENDING, so every restart
    tried to send it again."""
    from mlcoord.live.broker import BrokerError

    broker, store = _broker(exchange_server, tmp_path)
    order = Order("mc-noprice", "BTC/USDT", Side.LONG, kind, 0.01, None, T0, tag="entry:1/1")
    with pytest.raises(BrokerError, match=r"order 'mc-noprice' .* has no price"):
        broker.place(order)
    assert store.order("mc-noprice") is None and broker.sent == 0
