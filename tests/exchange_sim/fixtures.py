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


def bybit_exchange_server(**options) -> ExchangeServer:
    """A Bybit v5 emulator (the same accounts and candles; Bybit's markets, fees and rules), not started."""
    from .bybit import BYBIT_LINEAR_MARKETS, BYBIT_SPOT_MARKETS, bybit_options

    return ExchangeServer(dialect="bybit", spot_markets=BYBIT_SPOT_MARKETS, futures_markets=BYBIT_LINEAR_MARKETS,
                          options=bybit_options(), **options)


@pytest.fixture
def bybit_server():
    """A fresh Bybit v5 emulator, stopped after the test (which fails if the emulator raised)."""
    with bybit_exchange_server() as server:
        yield server
    assert not server.errors, "exchange simulator bug:\n" + "\n".join(server.errors)


@pytest.fixture(params=["binance", "bybit"])
def venue_server(request):
    """Each exchange in turn (``server.dialect.name`` says which): a suite parametrised over venues."""
    with (ExchangeServer() if request.param == "binance" else bybit_exchange_server()) as server:
        yield server
    assert not server.errors, "exchange simulator bug:\n" + "\n".join(server.errors)
