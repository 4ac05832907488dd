"""The exit manager's partial take profit in the live loop, against the loopback Binance and Bybit:
on futures an exchange take-profit order for ``partial_fraction`` of the position (Binance
TAKE_PROFIT_MARKET, Bybit a conditional market order), on spot sold by the bot when a closed bar
reaches it; taken once per plan, the rest keeps a stop sized to it."""

from __future__ import annotations

import pytest

from exchange_sim import venue_client, venue_server  # noqa: F401 (fixture)
from mlcoord.live.plan_orders import PARTIAL_TP, STOP
from mlcoord.live.records import OrderState
from mlcoord.live.retry import ManualClock
from mlcoord.live.runner import load_live_settings
from mlcoord.live.session import run_live
from mlcoord.registry import load_plugins
from live_helpers import BarClock, live_config
from test_live_spot import assert_no_missing, spot_config, spot_stops_cover_holdings
from test_live_trader import stops_cover_positions

PARTIAL = ("[plugins.protections]\ncooldown_after_stop_hours = 0\npair_lock_losses = 0\n"
           "[plugins.exits]\npartial_take_profit = true\npartial_at_r = 0.5\npartial_fraction = 0.4\n")


def _partials(trader):
    """(plan, its partial-take-profit orders, its stop orders), for plans with a filled partial."""
    out = []
    for plan in trader.store.plans():
        orders = trader.store.orders(plan.plan_id)
        partial = [r for r in orders if r.order.tag == PARTIAL_TP]
        if any(r.filled_quantity > 0 for r in partial):
            out.append((plan, partial, [r for r in orders if r.order.tag == STOP]))
    return out


#: Bybit futures only: its take profit is a conditional order of its own; a spot partial is a market
#: sell by the bot, which the Bybit spot session (test_live_spot) runs already
CASES = [("binance", "futures"), ("binance", "spot"), ("bybit", "futures"), ("okx", "futures")]


@pytest.mark.parametrize(("venue_server", "market"), CASES, indirect=["venue_server"], ids=["-".join(c) for c in CASES])
def test_partial_take_profit_is_taken_once_and_the_rest_stays_protected(venue_server, tmp_path, market):
    server = venue_server
    client = venue_client(server, market)
    if market == "futures":
        config = live_config(tmp_path, extra=PARTIAL)
        uncovered = lambda: stops_cover_positions(server.state.futures)            # noqa: E731
    else:
        config = spot_config(tmp_path, extra=PARTIAL)
        uncovered = lambda: spot_stops_cover_holdings(server)                       # noqa: E731
    settings, options = load_live_settings(config)
    trader = run_live(settings, options, client, load_plugins(), clock=BarClock(server),
                      health_clock=ManualClock(), cycles=300, on_cycle=lambda t: assert_no_missing(uncovered()))
    taken = _partials(trader)
    assert taken, "no partial take profit filled in 300 bars"
    resized = []                     # plans whose last stop covers only what the partial left
    for plan, partial, stops in taken:
        filled = [r for r in partial if r.filled_quantity > 0]
        assert len(filled) == 1                                              # once per plan
        r = filled[0]
        assert r.order.kind.value == ("stop" if market == "futures" else "market")
        entered = sum(o.filled_quantity for o in trader.store.orders(plan.plan_id)
                      if not o.order.reduce_only and not o.order.hedge)
        # the fraction of what was held when it was placed (at most all the ladder; step rounding)
        assert 0 < r.filled_quantity <= 0.4 * entered * 1.01 + 1e-3
        assert r.order.quantity == r.filled_quantity or r.state == OrderState.PARTIALLY_FILLED
        level = plan.levels.partial_take_profit
        assert plan.side * (r.average_price - level) >= -0.01 * level           # at (or beyond) its level
        placed = [s for s in stops if s.state != OrderState.REJECTED]
        if placed and placed[-1].order.quantity <= entered - r.filled_quantity + 1e-9:
            resized.append(plan.plan_id)
    # a plan that ended in the partial's own bar keeps its full stop; the others protect the rest
    assert resized, "no stop was re-sized after a partial take profit"
    ids = [o.client_id for o in (server.state.futures.orders.values() if market == "futures"
                                 else server.state.spot.orders.values())]
    assert len(ids) == len(set(ids))
    print(f"{server.dialect.name} {market}: partial take profits {len(taken)} of {len(trader.store.plans())} plans, "
          f"stop re-sized after {len(resized)}")

