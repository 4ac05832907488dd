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


def okx_exchange_server(**options) -> ExchangeServer:
    """An OKX v5 emulator (the same accounts and candles; OKX's markets, fees and rules), not started."""
    from .okx import OKX_SPOT_MARKETS, OKX_SWAP_MARKETS, okx_options

    return ExchangeServer(dialect="okx", spot_markets=OKX_SPOT_MARKETS, futures_markets=OKX_SWAP_MARKETS,
                          options=okx_options(), **options)


@pytest.fixture
def okx_server():
    """A fresh OKX v5 emulator, stopped after the test (which fails if the emulator raised)."""
    with okx_exchange_server() as server:
        yield server
    assert not server.errors, "exchange simulator bug:\n" + "\n".join(server.errors)


def venue_exchange_server(name: str, **options) -> ExchangeServer:
    """The emulator of exchange ``name`` (binance, bybit or okx), not started."""
    make = {"binance": ExchangeServer, "bybit": bybit_exchange_server, "okx": okx_exchange_server}
    if name not in make:
        raise ValueError(f"no emulator for exchange {name!r}; expected one of {', '.join(make)}")
    return make[name](**options)


@pytest.fixture(params=["binance", "bybit", "okx"])
def venue_server(request):
    """Each exchange in turn (``server.dialect.name`` says which): a suite parametrised over venues
    (``@pytest.mark.parametrize("venue_server", [..., "okx"], indirect=True)`` adds OKX)."""
    with venue_exchange_server(request.param) as server:
        yield server
    assert not server.errors, "exchange simulator bug:\n" + "\n".join(server.errors)
