"""Live sessions whose stop moves every bar, on the loopback exchange: what the stop-move tests and
``benchmarks/bench_stop_window.py`` share.

One planted BUY two bars into the session; the ``ratchet`` exit manager starts the stop 20 %
below the entry and raises it 0.2 % a bar (far below the price: it never triggers in these
bars), so each poll moves the stop once. Spot runs with or without the symbol's cancel-replace
(``cancel_replace``), futures in hedge mode. The exchange's :class:`~exchange_sim.coverage.StopCoverage`
says when the position had no resting stop.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import attrs

from exchange_sim import FUTURES_MARKETS, SPOT_MARKETS, ExchangeServer, venue_client, venue_exchange_server
from fake_plugins import Components
from live_helpers import BarClock, live_config, planted_pipeline, with_pipeline
from mlcoord.errors import StoreError
from mlcoord.live.retry import ManualClock
from mlcoord.model import ExitLevels

FIRST = 300                  # history_bars: the first live bar has this index
ENTRY = FIRST + 2            # the planted BUY
HOUR_MS = 3_600_000


class Ratchet:
    """Stop 20 % below the entry, raised 0.2 % every bar; take profit far above."""

    def prepare(self, data):
        return self

    def initial(self, i, side, plan):
        worst = plan.worst_price
        return ExitLevels(stop=worst * (1 - side * 0.2), take_profit=worst * (1 + side * 0.5))

    def update(self, i, position, levels):
        return attrs.evolve(levels, stop=levels.stop * 1.002)


def components(signals: Optional[dict] = None) -> Components:
    from test_live_spot import PlantedSource

    return Components(signal_sources={"planted": lambda o: PlantedSource(signals or {ENTRY: 1})},
                      exit_managers={"ratchet": lambda o: Ratchet()})


def server_for(market: str, cancel_replace: bool = True, venue: str = "binance", **options) -> ExchangeServer:
    """A loopback exchange; Binance's spot symbols allow cancel-replace or not (Bybit and OKX have none)."""
    if venue != "binance":
        return venue_exchange_server(venue, **options)
    spot = tuple(dataclasses.replace(m, cancel_replace_allowed=cancel_replace) for m in SPOT_MARKETS)
    return ExchangeServer(spot_markets=spot, futures_markets=FUTURES_MARKETS, **options)


def session_config(tmp_path, market: str, entry_planner: str = ""):
    """The session's config (``entry_planner`` "dca": a ladder of limit legs, filling on later bars)."""
    return with_pipeline(live_config(tmp_path, market=market, leverage=1 if market == "spot" else 3),
                         planted_pipeline("ratchet", entry_planner=entry_planner))


def plugins(signals: Optional[dict] = None):
    """The session's plugins: the built-ins its pipeline may use (the risk sizer; the exits plugin,
    essential; the DCA planner) and the planted ones (a bot process starts faster without the ML
    plugins)."""
    from mlcoord.registry import discover_entry_points, load_plugins

    used = {name: ep for name, ep in discover_entry_points().items() if name in ("risk", "exits", "dca")}
    return load_plugins(entry_points=used, extra_plugins={"stops": components(signals)})


def client_for(server: ExchangeServer, market: str, timeout_ms: int = 500):
    return venue_client(server, market, timeout_ms=timeout_ms)


def run_session(server: ExchangeServer, tmp_path, market: str, cycles: int, *,
                on_cycle: Optional[Callable] = None, health_clock=None, signals: Optional[dict] = None,
                entry_planner: str = ""):
    """``cycles`` polls of a live session on ``server``; returns the trader and its log events."""
    from structlog.testing import capture_logs

    from mlcoord.live.runner import load_live_settings
    from mlcoord.live.session import run_live

    from mlcoord.live.store import Store

    settings, options = load_live_settings(session_config(tmp_path, market, entry_planner))
    store = Store.open(options.store, exclusive=True)
    try:
        with capture_logs() as logs:
            trader = run_live(settings, options, client_for(server, market), plugins(signals),
                              clock=BarClock(server), health_clock=health_clock or ManualClock(), cycles=cycles,
                              on_cycle=on_cycle, store=store)
    except BaseException:
        try:
            store.close()               # as the bot's process ending would: the restart takes the lock
        except StoreError:
            pass                        # a store that failed: its lock is released all the same
        raise
    return trader, logs


def working_stops(server: ExchangeServer, market: str) -> list:
    """The stop orders resting on the exchange (spot STOP_LOSS_LIMIT sells, futures STOP_MARKET)."""
    if market == "spot":
        return [o for o in server.state.spot.orders.values() if o.is_open and o.type == "STOP_LOSS_LIMIT"]
    return [a for a in server.state.futures.algos.values() if a.is_open and a.type == "STOP_MARKET"]


def duplicate_client_ids(server: ExchangeServer) -> list[str]:
    """Client ids the exchange holds more than one order under (never expected)."""
    from collections import Counter

    ids = Counter(o.client_id for o in server.state.spot.orders.values())
    ids.update(o.client_id for o in server.state.futures.orders.values())
    ids.update(a.client_id for a in server.state.futures.algos.values())
    # a triggered futures stop's child order carries its algo order's client id: one order, two rows
    children = {o.client_id for o in server.state.futures.orders.values()
                if any(a.child_id == o.order_id for a in server.state.futures.algos.values())}
    return [c for c, n in ids.items() if n > 1 and not (n == 2 and c in children)]


def window_figures(server: ExchangeServer) -> dict:
    """The stop-less windows: gaps opened by a stop taken away, and by a fill not covered yet."""
    coverage = server.state.coverage
    return {kind: coverage.summary(HOUR_MS, kind) for kind in ("stop", "fill")}
