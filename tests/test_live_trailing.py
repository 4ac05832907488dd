"""Exchange-side trailing stops (``[live] trailing = "exchange"``) against the loopback Binance (real
ccxt, no sleeping): the simulator's ``TRAILING_STOP_MARKET`` triggers exactly when the replayed
candles come back by the callback rate from the best price since activation; the live loop keeps,
for every open position, its fixed ``STOP_MARKET`` at the plan's initial stop next to a trailing
order at the exit manager's trailing distance, and positions exit through it."""

from __future__ import annotations

from collections import Counter
from decimal import ROUND_HALF_UP, Decimal

import ccxt
import pytest

from exchange_sim import ExchangeServer, bybit_server, exchange_server, futures_client, spot_client  # noqa: F401
from exchange_sim.markets import bundled_series
from mlcoord.errors import ConfigError, MlcoordError
from mlcoord.live.broker import Broker
from mlcoord.live.records import OrderRecord, OrderState, PlanStatus
from mlcoord.live.retry import ManualClock
from mlcoord.live.runner import load_live_settings
from mlcoord.live.session import run_live
from mlcoord.live.store import Store
from mlcoord.model import Order, OrderKind, Side
from mlcoord.registry import load_plugins
from test_live_hedge import client_ids_unique
from live_helpers import BarClock, live_config
from test_live_trader import stops_cover_positions

BTC, BTC_PERP, TICK = "BTC/USDT", "BTC/USDT:USDT", Decimal("0.1")


def _d(x) -> Decimal:
    return Decimal(repr(float(x)))


def expected_trigger(series, first: int, placed_at: Decimal, rate_percent: str, activation=None, sell=True):
    """Reference walk of a trailing stop over the replayed bars from index ``first``: each bar open
    -> adverse extreme -> favourable extreme -> close (a SELL, closing a long: low then high); active
    from ``placed_at`` (or once ``activation`` is reached); the level is best x (1 -/+ rate) on the
    tick. Returns (bar index, fill price) of the trigger."""
    rate = Decimal(rate_percent) / 100
    sign = 1 if sell else -1                      # +1: the best price is the highest
    best = None if activation is not None else placed_at
    for i in range(first, len(series.time)):
        o, h, lo, c = (_d(x[i]) for x in (series.open, series.high, series.low, series.close))
        for k, price in enumerate((o, lo, h, c) if sell else (o, h, lo, c)):
            if best is None:
                if sign * (price - activation) < 0:
                    continue
                best = activation if k else price
            level = (best * (1 - sign * rate) / TICK).quantize(Decimal(1), ROUND_HALF_UP) * TICK
            if sign * (price - level) <= 0:
                return i, (price if k == 0 else level)
            best = max(best, price) if sell else min(best, price)
    raise AssertionError("the trailing stop never triggers on the bundled data")


@pytest.mark.parametrize("side,start,rate,activation_offset", [
    ("LONG", 1020, "1.0", None), ("LONG", 1020, "2.3", None), ("LONG", 1010, "1.0", "1.005"),
    ("SHORT", 1020, "1.5", None), ("SHORT", 1020, "1.0", "0.995")])
def test_simulator_trailing_stop_triggers_exactly_on_the_retracement(side, start, rate, activation_offset):
    sell = side == "LONG"                  # the trailing stop closes the position: a SELL for a long
    with ExchangeServer(start=start) as server:
        perp = futures_client(server)
        perp.load_markets()
        perp.set_position_mode(True)
        series = bundled_series(BTC)
        first = series.index_at(server.now_ms)
        perp.create_order(BTC_PERP, "market", "buy" if sell else "sell", 0.05, None, {"positionSide": side})
        now = _d(series.open[first])
        activation = None if activation_offset is None else \
            (now * Decimal(activation_offset) / TICK).quantize(Decimal(1)) * TICK
        params = {"positionSide": side, "trailingPercent": rate, "clientOrderId": "trail-1"}
        if activation is not None:
            params["trailingTriggerPrice"] = float(activation)
        trail = perp.create_order(BTC_PERP, "market", "sell" if sell else "buy", 0.05, None, params)
        listed = perp.fetch_open_orders(BTC_PERP, params={"trigger": True})
        assert [o["id"] for o in listed] == [trail["id"]]
        assert listed[0]["info"]["orderType"] == "TRAILING_STOP_MARKET" and listed[0]["info"]["callbackRate"] == rate
        k, price = expected_trigger(series, first, now, rate, activation, sell=sell)
        assert k >= first + 10, "the test needs a trigger some bars later"
        # it trailed: the level comes from a better price than the one it was placed at
        sign = 1 if sell else -1
        assert sign * (price - now * (1 - sign * Decimal(rate) / 100)) > 0
        if activation is not None:    # and the activation price held it back
            assert expected_trigger(series, first, now, rate, sell=sell)[0] < k
        for i in range(first, k):          # not before: open after every bar up to the one before
            server.advance(1)
            assert perp.fetch_order(trail["id"], BTC_PERP, {"trigger": True})["status"] == "open", i
        server.advance(1)
        done = perp.fetch_order(trail["id"], BTC_PERP, {"trigger": True})
        assert done["status"] == "closed" and done["filled"] == 0.05
        assert Decimal(str(done["average"])) == price
        assert perp.fetch_positions([BTC_PERP]) == []
        assert not server.errors
    print(f"{side} rate {rate}% activation {activation}: triggered {k - first} bars after placing, at {price}")


def test_simulator_trailing_stop_rate_limits_listing_and_cancel(exchange_server):
    perp = futures_client(exchange_server)
    perp.load_markets()
    perp.set_position_mode(True)
    perp.create_order(BTC_PERP, "market", "buy", 0.02, None, {"positionSide": "LONG"})
    for bad in ("0.05", "10.5"):
        with pytest.raises(ccxt.ExchangeError, match="-2007"):
            perp.create_order(BTC_PERP, "market", "sell", 0.02, None, {"positionSide": "LONG", "trailingPercent": bad})
    for ok in ("0.1", "10"):
        placed = perp.create_order(BTC_PERP, "market", "sell", 0.01, None,
                                   {"positionSide": "LONG", "trailingPercent": ok, "clientOrderId": f"t{ok}"})
        assert perp.fetch_order(placed["id"], BTC_PERP, {"trigger": True})["status"] == "open"
    assert len(perp.fetch_open_orders(BTC_PERP, params={"trigger": True})) == 2
    perp.cancel_order(None, BTC_PERP, {"trigger": True, "clientAlgoId": "t0.1"})
    assert [o["clientOrderId"] for o in perp.fetch_open_orders(BTC_PERP, params={"trigger": True})] == ["t10"]
    exchange_server.advance(5)
    gone = perp.fetch_order(None, BTC_PERP, {"trigger": True, "clientAlgoId": "t0.1"})
    assert gone["status"] == "canceled" and gone["filled"] == 0




def trailing_cover_positions(account):
    """Every non-zero position has one open closing-side TRAILING_STOP_MARKET for its size."""
    missing = []
    for (symbol, side), position in account.positions.items():
        if not position.amt:
            continue
        closing = "SELL" if side == "LONG" else "BUY"
        trails = [a for a in account.algos.values() if a.is_open and a.type == "TRAILING_STOP_MARKET"
                  and a.symbol == symbol and a.position_side == side and a.side == closing]
        if len(trails) != 1 or trails[0].qty != abs(position.amt):
            missing.append((symbol, side, position.amt, [(a.qty, a.status) for a in trails]))
    return missing


def test_live_loop_trails_on_the_exchange(exchange_server, tmp_path):
    server = exchange_server
    account = server.state.futures
    settings, options = load_live_settings(live_config(tmp_path, extra='trailing = "exchange"'))
    assert options.trailing == "exchange"
    seen = Counter()

    def check(trader):
        assert not stops_cover_positions(account), f"bar {trader.last_time}: a position without its fixed stop"
        assert not trailing_cover_positions(account), trailing_cover_positions(account)
        for plan in trader.store.active_plans():
            assert plan.trailing is not None and plan.trailing.on_exchange
            decided = trader.store.plan(plan.plan_id)
            stops = [a for a in account.algos.values() if a.is_open and a.type == "STOP_MARKET"
                     and a.client_id in {r.client_order_id for r in trader.plan_orders(plan.plan_id)}]
            for a in stops:      # the fixed stop: at the plan's initial stop, however the manager trails
                assert a.stop_price == Decimal(str(trader.broker.price(plan.symbol, decided.levels.stop)))
            seen["positions"] += bool(stops)
            levels = trader.engine.loop.levels.get(plan.symbol)      # what the exit manager holds
            if plan.symbol in trader.portfolio.positions and levels is not None and levels.stop != decided.levels.stop:
                seen["manager_trailed"] += 1      # the exit manager moved its stop; the order stayed
        ok, twice = client_ids_unique(account)
        assert ok, twice

    trader = run_live(settings, options, futures_client(server), load_plugins(), clock=BarClock(server),
                      health_clock=ManualClock(), cycles=160, on_cycle=check)
    every = trader.store.orders()
    plans = trader.store.plans()
    trails = [r for r in every if r.order.tag == "trailing_stop"]
    assert seen["positions"] >= 20 and len(plans) >= 3 and seen["manager_trailed"] >= 1, seen
    assert all(r.order.kind == OrderKind.TRAILING_STOP and r.order.reduce_only for r in trails)
    for plan in plans:
        mine = [r for r in every if r.plan_id == plan.plan_id]
        stop_prices = {r.order.price for r in mine if r.order.tag == "stop"}
        assert len(stop_prices) <= 1, f"the fixed stop of {plan.plan_id} moved: {stop_prices}"
        assert not stop_prices or stop_prices == {trader.broker.price(plan.symbol, plan.levels.stop)}
        for r in mine:
            if r.order.tag == "trailing_stop":    # the exit manager's distance, in Binance's units
                assert r.order.callback_rate == plan.trailing.callback_rate
                percent = round(plan.trailing.callback_rate * 100, 6)
                assert 0.1 <= percent <= 10 and abs(percent * 10 - round(percent * 10)) < 1e-6
                on_server = next(a for a in account.algos.values() if a.client_id == r.client_order_id)
                assert on_server.callback_rate == Decimal(str(percent)).normalize() or \
                    float(on_server.callback_rate) == pytest.approx(percent)
    exits = [r for r in trails if r.filled_quantity > 0]
    assert exits, "no position ever exited through its trailing stop"
    for r in exits:
        assert trader.store.plan(r.plan_id).status == PlanStatus.CLOSED
    activated = [r for r in trails if r.order.price is not None]
    assert activated, "no trailing stop had an activation price"
    print(f"plans={len(plans)} trailing orders={len(trails)} exits through them={len(exits)}")


def test_trailing_option_is_validated(tmp_path):
    settings, options = load_live_settings(live_config(tmp_path))
    assert options.trailing == "bot"
    with pytest.raises(ConfigError, match=r'trailing must be "bot" .* or "exchange" .*got \'sometimes\''):
        load_live_settings(live_config(tmp_path, extra='trailing = "sometimes"'))
    with pytest.raises(ConfigError, match=r"\$\.live\.trailing"):
        load_live_settings(live_config(tmp_path, extra="trailing = 1"))


def test_trailing_stop_on_spot_is_not_yet_supported(exchange_server, tmp_path):
    store = Store.open(tmp_path / "spot.db")
    broker = Broker(spot_client(exchange_server), store, "spot")
    order = Order("mcTRAILSPOT", BTC, Side.LONG, OrderKind.TRAILING_STOP, 0.01, None, 0, reduce_only=True,
                  tag="trailing_stop", callback_rate=0.01)
    with pytest.raises(MlcoordError, match="not yet supported: exchange-side trailing stops on spot"):
        broker.place(order)
    assert store.order(order.id) is None            # refused before anything was journaled


def test_trailing_orders_round_trip_and_v3_databases_upgrade(tmp_path):
    from sqlalchemy import text

    from mlcoord.live.database import create_engine_for, database_url, write_transaction
    from mlcoord.live.migrations import LATEST, upgrade

    url = database_url(tmp_path / "old.db")
    engine = create_engine_for(url)
    assert upgrade(engine, target=3) == [1, 2, 3]
    with write_transaction(engine) as conn:          # a v3 bot's stop order
        conn.execute(text("INSERT INTO orders (client_order_id, symbol, side, kind, quantity, price, created_at,"
                          " reduce_only, tag, hedge, expires_at, state, filled_quantity, average_price,"
                          " exchange_order_id, updated_at, reason, plan_id) VALUES ('old-stop', 'BTC/USDT', 1,"
                          " 'stop', 1.0, 90.0, 1, true, 'stop', false, NULL, 'open', 0, NULL, NULL, 1, '', 'p1')"))
    engine.dispose()
    with Store.open(url) as store:
        assert store.schema_version() == LATEST >= 4        # upgraded to the latest (v4: callback_rate)
        old = store.order("old-stop")
        assert old.order.kind == OrderKind.STOP and old.order.callback_rate is None
        trail = Order("mcTRAIL", BTC, Side.LONG, OrderKind.TRAILING_STOP, 1.0, 105.0, 2, reduce_only=True,
                      tag="trailing_stop", callback_rate=0.012)
        store.upsert_order(OrderRecord(trail, "p1", OrderState.PENDING))
    with Store.open(url) as store:
        assert store.order("mcTRAIL").order == trail
    with pytest.raises(ValueError, match="callback_rate"):
        Order("x", BTC, Side.LONG, OrderKind.TRAILING_STOP, 1.0, None, 0)
    with pytest.raises(ValueError, match="callback_rate"):
        Order("x", BTC, Side.LONG, OrderKind.STOP, 1.0, 90.0, 0, callback_rate=0.01)


def test_restart_keeps_the_trailing_stop_it_placed(exchange_server, tmp_path):
    """Killed while holding a position: the restart finds the plan's trailing stop by its client id
    and keeps it (no second trailing order, none lost), next to the fixed stop."""
    server = exchange_server
    account = server.state.futures
    settings, options = load_live_settings(live_config(tmp_path, extra='trailing = "exchange"'))
    held = {}

    def stop_when_trailing(trader):
        working = [a.client_id for a in account.algos.values() if a.is_open and a.type == "TRAILING_STOP_MARKET"]
        if working and not held:
            held["trailing"] = working
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_live(settings, options, futures_client(server), load_plugins(), clock=BarClock(server),
                 health_clock=ManualClock(), cycles=100, on_cycle=stop_when_trailing)
    sent = {a.client_id for a in account.algos.values() if a.type == "TRAILING_STOP_MARKET"}
    after = {}

    def check(trader):
        after["working"] = [a.client_id for a in account.algos.values()
                            if a.is_open and a.type == "TRAILING_STOP_MARKET"]
        after["sent"] = {a.client_id for a in account.algos.values() if a.type == "TRAILING_STOP_MARKET"}
        after["uncovered"] = stops_cover_positions(account) + trailing_cover_positions(account)

    run_live(settings, options, futures_client(server), load_plugins(), clock=BarClock(server),
             health_clock=ManualClock(), cycles=1, store=Store.open(options.store), on_cycle=check)
    assert after == {"working": held["trailing"], "sent": sent, "uncovered": []}


def test_trailing_rate_is_the_exit_managers_distance_in_exchange_units():
    from structlog.testing import capture_logs

    from mlcoord.live.trailing import exchange_trail
    from mlcoord.model import EntryLeg, EntryPlan, ExitLevels

    entry = EntryPlan(Side.LONG, (EntryLeg(100.0, 0.5, market=True), EntryLeg(98.0, 0.5)))   # average 99
    with capture_logs() as logs:
        plain = exchange_trail(BTC, ExitLevels(stop=90.0, trail_distance=1.98), entry)     # 2 % of 99
        activated = exchange_trail(BTC, ExitLevels(stop=90.0, trail_distance=1.26, trail_activation=105.0), entry)
        tight = exchange_trail(BTC, ExitLevels(stop=90.0, trail_distance=0.01), entry)
        wide = exchange_trail(BTC, ExitLevels(stop=90.0, trail_distance=30.0), entry)
        none = exchange_trail(BTC, ExitLevels(stop=90.0), entry)
    assert (plain.callback_rate, plain.activation_price) == (0.02, None)
    assert (activated.callback_rate, activated.activation_price) == (0.012, 105.0)   # 1.26 / 105 = 1.2 %
    assert tight.callback_rate == 0.001 and wide.callback_rate == 0.1                 # Binance's 0.1-10 %
    assert none is None
    clamped = [e for e in logs if e["event"] == "trailing_rate_clamped"]
    assert [(e["percent"], round(e["wanted_percent"], 4)) for e in clamped] == [(0.1, 0.0101), (10.0, 30.303)]
    assert [e["event"] for e in logs if e["event"] == "trailing_by_bot"] == ["trailing_by_bot"]


def test_exit_manager_exposes_its_trail_without_changing_its_levels():
    """The exits plugin sets ``trail_distance`` / ``trail_activation`` on its initial levels (the
    exchange's trail) and carries them through its updates; stop and target are untouched."""
    import attrs

    from mlcoord.candles import load_candles
    from mlcoord.components import build_market_data
    from mlcoord.datasets import bundled_path
    from mlcoord.model import EntryLeg, EntryPlan
    from mlcoord_exits import ExitManager, ExitOptions

    candles = load_candles(bundled_path(BTC), symbol=BTC).slice(0, 600)
    prepared = ExitManager().prepare(build_market_data(candles, ()))
    i = 500
    close = float(candles.close[i])
    entry = EntryPlan(Side.LONG, (EntryLeg(close, 1.0, market=True),))
    levels = prepared.initial(i, Side.LONG, entry)
    atr, _ = prepared.atr_at(i)
    o = ExitOptions()
    assert levels.trail_activation == pytest.approx(close + o.trail_activation_atr * atr)
    assert o.trail_factor_min * o.trail_atr_multiplier * atr <= levels.trail_distance \
        <= o.trail_factor_max * o.trail_atr_multiplier * atr
    off = ExitManager(ExitOptions(trailing_stop=False)).prepare(build_market_data(candles, ()))
    untrailed = off.initial(i, Side.LONG, entry)
    assert (untrailed.trail_distance, untrailed.trail_activation) == (None, None)
    assert attrs.evolve(levels, trail_distance=None, trail_activation=None) == untrailed

    class Held:       # a position far in profit: the trail moves the stop
        side, entry_price, best_price = Side.LONG, close, close * 1.2

    moved = prepared.update(i + 1, Held(), levels)
    assert moved.stop > levels.stop
    assert (moved.trail_distance, moved.trail_activation) == (levels.trail_distance, levels.trail_activation)


def test_exchange_trailing_on_bybit_is_refused_at_start(bybit_server, tmp_path):
    """Bybit has no trailing stop *order* (only a position-wide trailing distance): a session asking
    for exchange-side trailing stops there stops before touching the account, naming the fallback."""
    from exchange_sim import venue_client
    from mlcoord.live.broker import BrokerError

    settings, options = load_live_settings(live_config(tmp_path, extra='trailing = "exchange"'))
    with pytest.raises(BrokerError, match=r'bybit has no exchange-side trailing .*trailing = "bot"'):
        run_live(settings, options, venue_client(bybit_server, "futures"), load_plugins(), clock=BarClock(bybit_server),
                 health_clock=ManualClock(), cycles=1)
    assert bybit_server.calls[("POST", "/v5/order/create")] == 0
    assert bybit_server.calls[("POST", "/v5/position/switch-mode")] == 0
