"""Gaps of the live order loop closed against the loopback Binance (real ccxt, injectable clock):
re-pricing of unfilled DCA limit legs (``[live] reprice_after_bars``) and scanner-driven symbols
(``[live] scan``)."""

from __future__ import annotations

from collections import Counter

import pytest

from exchange_sim import exchange_server, futures_client  # noqa: F401 (fixture)
from mlcoord.live.records import OrderState
from mlcoord.live.retry import ManualClock
from mlcoord.live.runner import load_live_settings
from mlcoord.live.session import run_live
from mlcoord.registry import load_plugins
from live_helpers import BarClock, live_config
from test_live_trader import stops_cover_positions



def test_unfilled_limit_legs_are_repriced_once(exchange_server, tmp_path):
    server = exchange_server
    settings, options = load_live_settings(live_config(tmp_path, extra="reprice_after_bars = 2"))
    assert options.reprice_after_bars == 2
    closes = {}

    def check(trader):
        assert not stops_cover_positions(server.state.futures)
        closes[trader.last_time] = float(trader.history["BTC/USDT"].close[-1])
        # at most one working order per (plan, leg) on the server, whatever the attempts
        working = Counter((r.plan_id, r.order.tag) for r in trader.store.orders()
                          if r.order.tag.startswith("entry") and not r.state.terminal)
        assert all(n == 1 for n in working.values()), working

    trader = run_live(settings, options, futures_client(server), load_plugins(), clock=BarClock(server),
                      health_clock=ManualClock(), cycles=150, on_cycle=check)
    every = trader.store.orders()
    entries = [r for r in every if r.order.tag.startswith("entry") and r.order.kind.value == "limit"]
    by_leg = {}
    for r in entries:
        by_leg.setdefault((r.plan_id, r.order.tag), []).append(r)
    repriced = {k: sorted(v, key=lambda r: r.order.created_at) for k, v in by_leg.items() if len(v) > 1}
    assert repriced, "no limit leg was ever re-priced"
    server_orders = {}
    for o in server.state.futures.orders.values():
        server_orders.setdefault(o.client_id, []).append(o)
    plans = {p.plan_id: p for p in trader.store.plans()}
    tf = 3600 * 10**9
    for (plan_id, tag), legs in repriced.items():
        plan = plans[plan_id]
        j = int(tag.split(":")[1].split("/")[0]) - 1
        leg = plan.entry.legs[j]
        ids = [trader.broker.client_id(plan.symbol, plan.decision_time, tag, a) for a in range(len(legs))]
        assert [r.client_order_id for r in legs] == ids              # attempt 0, 1, 2, ... in order
        for old, new in zip(legs, legs[1:]):
            assert old.state == OrderState.CANCELLED and old.filled_quantity == 0
            assert [o.status for o in server_orders[old.client_order_id]] == ["CANCELED"]
            assert new.order.created_at - old.order.created_at >= 2 * tf   # not before reprice_after_bars
            assert new.order.created_at < old.order.expires_at and new.order.expires_at == old.order.expires_at
            # the plan's offset from the decision close, applied to the close when re-priced
            want = closes[new.order.created_at] * leg.price / _close_at(trader, plan.decision_time)
            assert abs(new.order.price - want) <= 0.11, (new.order.price, want)
            assert new.order.quantity == old.order.quantity
        for r in legs:                                               # once on the server, same fills
            assert len(server_orders[r.client_order_id]) == 1
            assert abs(float(server_orders[r.client_order_id][0].executed) - r.filled_quantity) < 1e-9
    print(f"legs repriced={len(repriced)} attempts={sum(len(v) for v in repriced.values())} "
          f"limit orders={len(entries)}")


def _close_at(trader, t):
    import numpy as np

    h = trader.history["BTC/USDT"]
    return float(h.close[int(np.searchsorted(h.time, t))])



def test_reprice_is_off_by_default(exchange_server, tmp_path):
    settings, options = load_live_settings(live_config(tmp_path))
    assert options.reprice_after_bars == 0 and options.scan is False
    trader = run_live(settings, options, futures_client(exchange_server), load_plugins(),
                      clock=BarClock(exchange_server), health_clock=ManualClock(), cycles=60)
    legs = Counter((r.plan_id, r.order.tag) for r in trader.store.orders() if r.order.tag.startswith("entry"))
    assert legs and all(n == 1 for n in legs.values())


def test_scanner_picks_symbols_and_dropped_ones_stay_managed(exchange_server, tmp_path, monkeypatch):
    """``scan = true``, top 1 by quote volume from the simulator's tickers. ETH's volume is boosted
    (ETH on top) until ETH holds a position, then BTC's: BTC becomes the pick, ETH keeps its stop
    and its bars until its plan closes, and gets no new plan."""
    server = exchange_server
    extra = "scan = true\n[live.scanner]\ntop_n = 1\nmin_quote_volume = 0\ntimeframes = [\"1h\"]\ncandles = 30"
    settings, options = load_live_settings(live_config(tmp_path, extra=extra))
    assert options.scan and options.scanner.top_n == 1
    boost = {"symbol": "ETHUSDT"}
    ticker = server.state.ticker

    def boosted(market_id):
        out = dict(ticker(market_id))
        if market_id == boost["symbol"]:
            out["quoteVolume"] = f"{float(out['quoteVolume']) * 1000:.8f}"
        return out

    monkeypatch.setattr(server.state, "ticker", boosted)
    seen = {}

    def check(trader):
        assert not stops_cover_positions(server.state.futures)
        plans = {p.symbol: p for p in trader.store.active_plans()}
        seen.setdefault("eth_held_bars", [])
        if "flip" not in seen:
            assert trader.entry_symbols == {"ETH/USDT"}
            if "ETH/USDT" in trader.portfolio.positions:
                boost["symbol"] = "BTCUSDT"
                seen["flip"] = trader.last_time
                seen["eth_plan"] = plans["ETH/USDT"].plan_id
        else:
            assert trader.entry_symbols == {"BTC/USDT"}
            if seen["eth_plan"] in {p.plan_id for p in plans.values()}:
                seen["eth_held_bars"].append(int(trader.history["ETH/USDT"].time[-1]))

    trader = run_live(settings, options, futures_client(server), load_plugins(), clock=BarClock(server),
                      health_clock=ManualClock(), cycles=180, on_cycle=check)
    assert "flip" in seen, "ETH never held a position"
    every = trader.store.plans()
    eth = [p for p in every if p.symbol == "ETH/USDT"]
    btc = [p for p in every if p.symbol == "BTC/USDT"]
    assert all(p.decision_time <= seen["flip"] for p in eth)          # no ETH entry after it dropped out
    assert btc and all(p.decision_time > seen["flip"] for p in btc)   # BTC only once picked
    assert len(seen["eth_held_bars"]) >= 1
    assert seen["eth_held_bars"] == sorted(seen["eth_held_bars"])
    assert seen["eth_held_bars"][-1] > seen["flip"]                   # its bars kept coming while held
    assert {p.plan_id: p.status.value for p in eth}[seen["eth_plan"]] != "active"   # and it was closed
    assert server.state.futures.leverage.get("BTCUSDT") == 3          # set when BTC joined mid-session
    print(f"flip at {seen['flip']}, ETH plans={len(eth)} BTC plans={len(btc)} "
          f"ETH managed after drop={len(seen['eth_held_bars'])} bars")


def test_reprice_resumes_after_a_crash_between_cancel_and_place(exchange_server, tmp_path, monkeypatch):
    """Killed after the old leg's cancel and before its replacement: the restart places the next
    attempt once (not twice, and not the old id again)."""
    from mlcoord.live.store import Store
    from mlcoord.live.trader import LiveTrader

    server = exchange_server
    settings, options = load_live_settings(live_config(tmp_path, extra="reprice_after_bars = 2"))
    place = LiveTrader._place
    crashed = {}

    def crashing(self, order, plan):
        first = self.broker.client_id(plan.symbol, plan.decision_time, order.tag, 0)
        if order.tag.startswith("entry") and order.id != first and not crashed:
            crashed.update(order=order.id, old=first, plan=plan.plan_id)
            raise KeyboardInterrupt
        return place(self, order, plan)

    monkeypatch.setattr(LiveTrader, "_place", crashing)
    with pytest.raises(KeyboardInterrupt):
        run_live(settings, options, futures_client(server), load_plugins(), clock=BarClock(server),
                 health_clock=ManualClock(), cycles=150)
    monkeypatch.setattr(LiveTrader, "_place", place)
    store = Store.open(options.store)
    assert store.order(crashed["order"]) is None and store.order(crashed["old"]).state == OrderState.CANCELLED
    trader = run_live(settings, options, futures_client(server), load_plugins(), clock=BarClock(server),
                      health_clock=ManualClock(), cycles=1, store=store)
    new = trader.store.order(crashed["order"])
    assert new is not None and new.plan_id == crashed["plan"]
    on_server = [o for o in server.state.futures.orders.values() if o.client_id == crashed["order"]]
    assert len(on_server) == 1
    assert [o.status for o in server.state.futures.orders.values() if o.client_id == crashed["old"]] == ["CANCELED"]
