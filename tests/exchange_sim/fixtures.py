"""pytest fixtures: import them into a test module (``from exchange_sim import exchange_server``)
or list ``"exchange_sim.fixtures"`` in the top-level conftest's ``pytest_plugins``."""

from __future__ import annotations

import pytest

from .server import ExchangeServer


@pytest.fixture
def exchange_server():
    """A fresh exchange (10,000 USDT spot, 10,000 USDT futures wallet, clock at bar 1000 of the
    bundled BTC/ETH data), stopped after the test, which fails if the simulator itself raised."""
    with ExchangeServer() as server:
        yield server
    assert not server.errors, "exchange simulator bug:\n" + "\n".join(server.errors)


@pytest.fixture
def bybit_server():
    """A fresh Bybit v5 emulator (the same accounts and candles, Bybit's markets, fees and rules)."""
    from .bybit import BYBIT_LINEAR_MARKETS, BYBIT_SPOT_MARKETS, bybit_options

    with ExchangeServer(dialect="bybit", spot_markets=BYBIT_SPOT_MARKETS, futures_markets=BYBIT_LINEAR_MARKETS,
                        options=bybit_options()) as server:
        yield server
    assert not server.errors, "exchange simulator bug:\n" + "\n".join(server.errors)
