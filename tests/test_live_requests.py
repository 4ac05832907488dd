"""What a live cycle asks the exchange (loopback Binance, real ccxt, requests counted by the
server): a plan's orders are read once per cycle, not again until one of its symbol's orders goes
out or is cancelled; a resting stop and take profit take one listing, not two lookups each; a
cancelled order's final state comes from its cancel. Fewer requests must miss no fill: fills
between two cycles, and one between a cycle's refresh and its look at the positions, are booked."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

from structlog.testing import capture_logs

from exchange_sim import exchange_server, futures_client  # noqa: F401 (fixture)
from mlcoord.live.broker import Broker
from mlcoord.live.records import OrderState, PlanStatus
from mlcoord.live.retry import ExchangeHealth, ManualClock, RetryPolicy
from mlcoord.live.runner import load_live_settings
from mlcoord.live.session import run_live
from mlcoord.live.store import Store
from mlcoord.model import Order, OrderKind, Side
from mlcoord.registry import load_plugins
from live_helpers import BarClock, live_config, with_pipeline
from test_live_spot import PLANTED, Planted

FIRST = 300                  # history_bars: the first live bar's index
READS = {("GET", "/fapi/v1/order"), ("GET", "/fapi/v1/algoOrder"), ("GET", "/fapi/v1/openOrders"),
         ("GET", "/fapi/v1/openAlgoOrders")}
CHANGES = {("POST", "/fapi/v1/order"), ("POST", "/fapi/v1/algoOrder"), ("DELETE", "/fapi/v1/order"),
           ("DELETE", "/fapi/v1/algoOrder")}


def _calls(server) -> Counter:
    return Counter({k: v for k, v in server.calls.items() if not k[1].startswith("/__control")})


def _session(server, tmp_path, cycles, stop, tp, on_cycle=None, store=None, symbols=("BTC/USDT",)):
    """A planted long at bar FIRST + 2 with fixed exits; per cycle: the requests and the active plans."""
    settings, options = load_live_settings(with_pipeline(live_config(tmp_path, symbols=symbols), PLANTED))
    plugins = load_plugins(extra_plugins={"planted": Planted({FIRST + 2: 1}, stop, tp)})
    seen, last = [], {"calls": None}

    def record(trader):
        now = _calls(server)
        if last["calls"] is not None:
            seen.append((now - last["calls"], len(trader.store.active_plans())))
        last["calls"] = now
        if on_cycle is not None:
            on_cycle(trader)

    with capture_logs() as logs:
        trader = run_live(settings, options, futures_client(server), plugins, clock=BarClock(server),
                          health_clock=ManualClock(), cycles=cycles, on_cycle=record, store=store)
    return trader, seen, logs


def _server_order(server, cid):
    futures = server.state.futures
    return next((o for o in (*futures.orders.values(), *futures.algos.values()) if o.client_id == cid), None)


def test_a_quiet_cycle_reads_a_plans_orders_once(exchange_server, tmp_path):
    """A plan holding a resting stop and take profit: a cycle that sends and cancels nothing reads
    its orders with one open-algo-orders listing (before: each order looked up in the venue's sync
    and again in manage, two requests per stop lookup: 8 reads) and asks 6 requests in all
    (candles, time, balance, the listing, positions, funding; the entry's fee from the trade list
    once, when its fill is booked)."""
    trader, seen, _ = _session(exchange_server, tmp_path, cycles=40, stop=0.2, tp=0.4)
    quiet = [calls for k, (calls, active) in enumerate(seen)
             if active and k and seen[k - 1][1] and not any(calls[c] for c in CHANGES)]
    assert len(quiet) >= 30, len(quiet)
    for calls in quiet:
        assert sum(calls[c] for c in READS) == 1, calls
        assert calls[("GET", "/fapi/v1/openAlgoOrders")] == 1, calls
        assert sum(calls.values()) - calls[("GET", "/fapi/v1/userTrades")] <= 6, calls
    assert sum(calls[("GET", "/fapi/v1/userTrades")] for calls in quiet) <= 1
    plan = trader.store.active_plans()[0]
    assert {r.order.tag for r in trader.plan_orders(plan.plan_id) if r.state == OrderState.OPEN} == \
        {"stop", "take_profit"}


def test_fills_already_booked_are_not_read_again(exchange_server, tmp_path):
    """The venue books a plan's new fills every cycle; an order whose fills are all in the ledger
    and whose filled quantity has not grown is not read again (was: every filled order's fills,
    every cycle)."""
    store = Store.open(tmp_path / "live.db")
    reads, per_cycle = [], []
    fills = store.fills
    store.fills = lambda cid=None: (reads.append(cid), fills(cid))[1]
    trader, seen, _ = _session(exchange_server, tmp_path, cycles=40, stop=0.2, tp=0.4,
                               on_cycle=lambda t: (per_cycle.append(len(reads)), reads.clear()), store=store)
    quiet = [per_cycle[j + 1] for j, (calls, active) in enumerate(seen)   # seen[j]: cycle j + 1
             if active and j and seen[j - 1][1] and not any(calls[c] for c in CHANGES)]
    assert len(quiet) >= 30 and quiet[1:] == [0] * (len(quiet) - 1), quiet   # the first books the entry
    assert trader.engine.ledger.positions["BTC/USDT"].quantity == \
        sum(f.fill.quantity for f in fills() if not f.fill.reduce_only)


def test_within_a_cycle_a_refresh_is_shared_until_an_order_changes(exchange_server, tmp_path):
    server = exchange_server
    trader, _, _ = _session(server, tmp_path, cycles=8, stop=0.2, tp=0.4)
    assert trader.store.active_plans()

    def reads(fn):
        before = _calls(server)
        fn()
        return sum((_calls(server) - before)[c] for c in READS)

    assert reads(trader.manage_all) == 1 and reads(trader.manage_all) == 1    # outside a cycle: asked each time
    with trader.cycle():
        assert reads(trader.sync_wallet) == 1
        assert reads(trader.manage_all) == 0                                 # the sync's refresh, shared
        plan = trader.store.active_plans()[0]
        stop = next(r for r in trader.plan_orders(plan.plan_id) if r.order.tag == "stop" and r.state == OrderState.OPEN)
        trader.broker.cancel(stop)                  # an order of the symbol changed: asked again
        assert reads(trader.manage_all) >= 1
    assert stop.client_order_id != next(r.client_order_id for r in trader.plan_orders(plan.plan_id)
                                        if r.order.tag == "stop" and r.state == OrderState.OPEN)


def test_exits_filled_between_cycles_are_booked(exchange_server, tmp_path):
    """Tight levels: plans stop out or take profit on the server between cycles; each fill is in
    the store as the server executed it, and in the ledger's trades."""
    server = exchange_server
    trader, seen, _ = _session(server, tmp_path, cycles=120, stop=0.01, tp=0.012)
    plans = trader.store.plans()
    assert plans and all(p.status == PlanStatus.CLOSED for p in plans), [p.status for p in plans]
    exits = [r for p in plans for r in trader.plan_orders(p.plan_id)
             if r.order.tag in ("stop", "take_profit") and r.filled_quantity > 0]
    assert exits
    for r in (r for p in plans for r in trader.plan_orders(p.plan_id)):
        o = _server_order(server, r.client_order_id)
        executed = float(o.executed) if o is not None else 0.0
        assert abs(sum(f.fill.quantity for f in trader.store.fills(r.client_order_id)) - executed) < 1e-9, r
    assert [t.exit_reason for t in trader.engine.trades] == \
        [{"stop": "stop_loss", "take_profit": "take_profit"}[r.order.tag] for r in exits]
    assert all(t.quantity > 0 for t in trader.engine.trades)


def test_a_stop_filled_after_the_cycles_refresh_is_no_vanished_position(exchange_server, tmp_path):
    """The stop triggers on the server after this cycle's refresh but before the positions are
    read: the position check asks for the plan's orders again (the refresh it would share is older
    than the positions), finds the stop's fill and closes the plan as stopped out, not as a
    position gone behind the bot's back."""
    server = exchange_server
    trader, _, _ = _session(server, tmp_path, cycles=8, stop=0.2, tp=0.4)
    plan = trader.store.active_plans()[0]
    stop = next(r for r in trader.plan_orders(plan.plan_id) if r.order.tag == "stop" and r.state == OrderState.OPEN)
    with capture_logs() as logs, trader.cycle():
        trader.sync_wallet()
        _server_order(server, stop.client_order_id).stop_price = Decimal(10 ** 7)   # a long's stop: sells now
        server.advance(1)
        trader.mark_futures(new_bar=False)
        trader.manage_all()
    assert not [e for e in logs if e["event"] == "position_gone"]
    assert trader.store.plan(plan.plan_id).status == PlanStatus.CLOSED
    assert trader.store.order(stop.client_order_id).filled_quantity > 0
    assert trader.engine.trades[-1].exit_reason == "stop_loss"


def _broker(server, tmp_path):
    exchange = futures_client(server)
    store = Store.open(f"sqlite:///{tmp_path / 'store'}.db")
    broker = Broker(exchange, store, "futures",
                    health=ExchangeHealth(RetryPolicy(max_attempts=3, max_outage=1e9), ManualClock()))
    broker.setup(["BTC/USDT"], leverage=3)
    return broker, store


def test_a_cancel_reads_the_final_state_with_one_request_or_none(exchange_server, tmp_path):
    """A cancelled limit order's state (and a partial fill before the cancel) comes from the
    cancel's answer: no lookup. A cancelled untriggered stop is asked of the algo endpoint only
    (the regular one has no order under its id). Before: a lookup after each cancel, two for a stop."""
    server = exchange_server
    broker, store = _broker(server, tmp_path)
    price = float(server.state.price("BTCUSDT"))
    buy = broker.place(Order("lim-1", "BTC/USDT", Side.LONG, OrderKind.MARKET, 0.01, None, 1))
    assert buy.state == OrderState.FILLED
    limit = broker.place(Order("lim-2", "BTC/USDT", Side.LONG, OrderKind.LIMIT, 0.01,
                               broker.price("BTC/USDT", price * 0.8), 1))
    server.faults.partial_fill(fraction=0.5, times=1)
    part = broker.place(Order("lim-3", "BTC/USDT", Side.LONG, OrderKind.LIMIT, 0.02,
                              broker.price("BTC/USDT", price * 1.01), 1))
    stop = broker.place(Order("stop-1", "BTC/USDT", Side.LONG, OrderKind.STOP, 0.01,
                              broker.price("BTC/USDT", price * 0.8), 1, reduce_only=True, tag="stop"))
    assert part.state == OrderState.PARTIALLY_FILLED and stop.state == OrderState.OPEN
    for record, want in ((limit, OrderState.CANCELLED), (part, OrderState.CANCELLED), (stop, OrderState.CANCELLED)):
        before = _calls(server)
        done = broker.cancel(record)
        calls = _calls(server) - before
        assert done.state == want
        if record.order.kind == OrderKind.STOP:
            assert dict(calls) == {("DELETE", "/fapi/v1/algoOrder"): 1, ("GET", "/fapi/v1/algoOrder"): 1}
        else:
            assert dict(calls) == {("DELETE", "/fapi/v1/order"): 1}
        on_server = _server_order(server, record.client_order_id)
        assert abs(float(on_server.executed) - done.filled_quantity) < 1e-12
        assert abs(sum(f.fill.quantity for f in store.fills(record.client_order_id)) - done.filled_quantity) < 1e-12
    assert store.order("lim-3").filled_quantity == 0.01


def test_a_listing_that_shows_a_change_is_followed_by_the_lookup(exchange_server, tmp_path):
    """Two stops of a symbol: one listing reads both; one that triggered meanwhile is missing from
    it and is looked up (its fill recorded), the other, unchanged, is not."""
    server = exchange_server
    broker, store = _broker(server, tmp_path)
    price = float(server.state.price("BTCUSDT"))
    broker.place(Order("buy", "BTC/USDT", Side.LONG, OrderKind.MARKET, 0.02, None, 1))
    far = broker.place(Order("stop-far", "BTC/USDT", Side.LONG, OrderKind.STOP, 0.01,
                             broker.price("BTC/USDT", price * 0.5), 1, reduce_only=True, tag="stop"))
    near = broker.place(Order("stop-near", "BTC/USDT", Side.LONG, OrderKind.STOP, 0.01,
                              broker.price("BTC/USDT", price * 0.5), 1, reduce_only=True, tag="stop"))
    before = _calls(server)
    broker.refresh_all([far, near])
    assert dict(_calls(server) - before) == {("GET", "/fapi/v1/openAlgoOrders"): 1}
    _server_order(server, "stop-near").stop_price = Decimal(10 ** 7)
    server.advance(1)
    before = _calls(server)
    broker.refresh_all([store.order("stop-far"), store.order("stop-near")])
    calls = _calls(server) - before
    assert calls[("GET", "/fapi/v1/openAlgoOrders")] == 1 and calls[("GET", "/fapi/v1/order")] == 1, calls
    assert store.order("stop-near").state == OrderState.FILLED and store.order("stop-far").state == OrderState.OPEN
    assert sum(f.fill.quantity for f in store.fills("stop-near")) == 0.01


def test_candles_are_asked_only_for_bars_that_can_have_closed(exchange_server):
    """With the newest bars at hand given, a poll while the next bar is still open asks for the
    time only (was: the time and one candle request per symbol); once bars closed, it asks for
    those (at most ``limit``) and gets what a full ask would bring that is new."""
    from mlcoord.live.runner import fetch_closed

    server = exchange_server
    exchange = futures_client(server)
    exchange.load_markets()
    health = ExchangeHealth(RetryPolicy(max_attempts=2), ManualClock())
    symbols = ["BTC/USDT", "ETH/USDT"]
    ccxt_symbols = {s: s + ":USDT" for s in symbols}
    at_hand = {c.symbol: int(c.time[-1]) for c in fetch_closed(exchange, health, symbols, ccxt_symbols, "1h", 5)}
    before = _calls(server)
    assert fetch_closed(exchange, health, symbols, ccxt_symbols, "1h", 5, at_hand) == []
    assert dict(_calls(server) - before) == {("GET", "/fapi/v1/time"): 1}
    for bars, want in ((3, 3), (7, 5)):
        server.advance(bars)
        before = _calls(server)
        got = fetch_closed(exchange, health, symbols, ccxt_symbols, "1h", 5, at_hand)
        assert dict(_calls(server) - before) == {("GET", "/fapi/v1/time"): 1, ("GET", "/fapi/v1/klines"): 2}
        full = fetch_closed(exchange, health, symbols, ccxt_symbols, "1h", 5)
        assert [c.symbol for c in got] == symbols and [len(c) for c in got] == [want, want]
        for new, every in zip(got, full):
            assert new.time.tolist() == [t for t in every.time.tolist() if t > at_hand[new.symbol]][-want:]
            assert new.frame.equals(every.frame.iloc[-want:])
        at_hand = {c.symbol: int(c.time[-1]) for c in got}


def test_within_a_cycle_stored_plans_and_orders_are_read_again_only_after_a_write(exchange_server, tmp_path):
    """The sync, the marks and manage each asked the store for the active plans and each plan's
    orders, several times per plan; within a cycle one read serves until the store is written."""
    from sqlalchemy import event

    trader, _, _ = _session(exchange_server, tmp_path, cycles=8, stop=0.2, tp=0.4)
    reads = []
    event.listen(trader.store.engine, "before_cursor_execute",
                 lambda conn, cursor, statement, *rest: reads.append(statement)
                 if "WHERE orders.plan_id" in statement or "WHERE plans.status" in statement else None)

    def count(fn):
        reads.clear()
        result = fn()
        return len(reads), result

    assert count(trader.manage_all)[0] >= 4               # outside a cycle: every look reads
    with trader.cycle():
        assert count(trader.sync_wallet)[0] == 2          # the active plans, the plan's orders
        assert count(trader.manage_all)[0] == 0
        assert count(lambda: trader.mark_futures(new_bar=True))[0] == 0
        plan = trader.active_plans()[0]
        stop = next(r for r in trader.plan_orders(plan.plan_id) if r.order.tag == "stop" and r.state == OrderState.OPEN)
        trader.broker.cancel(stop)                        # the store is written: read again
        n, orders = count(lambda: trader.plan_orders(plan.plan_id))
        assert n == 1 and next(r for r in orders if r.client_order_id == stop.client_order_id).state == \
            OrderState.CANCELLED
        trader.manage_all()                               # a new stop placed
    assert [r.order.tag for r in trader.store.orders(plan.plan_id) if r.state == OrderState.OPEN].count("stop") == 1


def test_placing_an_order_does_not_read_it_back_before_recording_the_answer(exchange_server, tmp_path):
    """The create's answer is recorded without first reading the order back (the store holds it
    PENDING, journaled a moment before): 11 statements for a resting order, was 13; its state
    and fills as before."""
    from sqlalchemy import event

    server = exchange_server
    broker, store = _broker(server, tmp_path)
    price = float(server.state.price("BTCUSDT"))
    statements = []
    event.listen(store.engine, "before_cursor_execute", lambda conn, cursor, statement, *rest: statements.append(statement))
    limit = broker.place(Order("rest-1", "BTC/USDT", Side.LONG, OrderKind.LIMIT, 0.02,
                               broker.price("BTC/USDT", price * 0.8), 1))
    assert limit.state == OrderState.OPEN and limit.exchange_order_id
    assert len(statements) <= 11, statements
    statements.clear()
    filled = broker.place(Order("mkt-1", "BTC/USDT", Side.LONG, OrderKind.MARKET, 0.01, None, 1))
    assert filled.state == OrderState.FILLED and len(statements) <= 21, statements
    assert [f.fill.quantity for f in store.fills("mkt-1")] == [0.01]
    assert broker.place(Order("mkt-1", "BTC/USDT", Side.LONG, OrderKind.MARKET, 0.01, None, 1)) == filled   # once


def test_plans_on_two_symbols_share_one_funding_request(exchange_server, tmp_path):
    """Longs on BTC and ETH: each new bar asks for both symbols' funding with one request (was
    one per plan), and each plan is charged what the server charged its symbol."""
    from mlcoord.live.futures_marks import FUNDING

    server = exchange_server
    trader, seen, _ = _session(server, tmp_path, cycles=40, stop=0.2, tp=0.4, symbols=("BTC/USDT", "ETH/USDT"))
    plans = trader.store.active_plans()
    assert sorted(p.symbol for p in plans) == ["BTC/USDT", "ETH/USDT"]
    asked = [calls[("GET", "/fapi/v1/income")] for calls, active in seen if active == 2]
    assert len(asked) >= 30 and set(asked) == {1}, asked
    paid = trader.store.load_state(FUNDING)["paid"]
    for plan in plans:
        market = plan.symbol.replace("/", "")
        charged = -sum(float(r["income"]) for r in server.state.futures.income
                       if r["incomeType"] == "FUNDING_FEE" and r["symbol"] == market)
        assert charged != 0 and abs(paid[plan.plan_id] - charged) < 1e-9, (plan.symbol, paid, charged)
        assert abs(trader.engine.ledger.positions[plan.symbol].funding - charged) < 1e-9
