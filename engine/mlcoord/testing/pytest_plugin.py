"""pytest plugin of the conformance kit (auto-loaded through the ``pytest11`` entry point).

Fixtures for plugin authors' own tests:

* ``mlcoord_market_data`` - the kit's MarketData: 3,000 real BTC/USDT 1h bars (2023-01-02 to
  2023-05-07) with 4h and 1d views; read-only arrays, shared by the session;
* ``mlcoord_portfolio`` - a fresh :class:`mlcoord.testing.FakePortfolio` (10,000 equity, flat): add
  positions and prices, hand a guard its ``.view()`` (the engine's read-only snapshot);
* ``mlcoord_position`` - a :class:`mlcoord.testing.FakePosition`: long 1 unit at the last close.

Imports are deferred to the fixtures so loading the plugin costs nothing in other test runs.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def mlcoord_market_data():
    from mlcoord.testing import conformance_data
    return conformance_data()


@pytest.fixture
def mlcoord_portfolio():
    from mlcoord.testing import FakePortfolio
    return FakePortfolio()


@pytest.fixture
def mlcoord_position(mlcoord_market_data):
    from mlcoord.model import Side
    from mlcoord.testing import FakePosition
    last = len(mlcoord_market_data) - 1
    price = float(mlcoord_market_data.candles.close[last])
    return FakePosition(Side.LONG, price, last, price, symbol=mlcoord_market_data.symbol)
