"""Shared fixtures for the engine tests: a short slice of the bundled BTC/USDT candles."""

from __future__ import annotations

import logging

import pytest
import structlog

from mlcoord.backtest.run import bundled_path
from mlcoord.candles import load_candles

BUILTINS = ("technical", "dca", "exits", "risk", "hedging", "protections")
SHORT_BARS = 2500  # ~3.5 months of 1h bars: enough for warm-up plus a few dozen trades


@pytest.fixture(scope="session")
def btc_candles():
    """The bundled BTC/USDT 1h candles (whole file)."""
    return load_candles(bundled_path("BTC/USDT"), symbol="BTC/USDT")


@pytest.fixture(scope="session")
def short_candles(btc_candles):
    """The last ``SHORT_BARS`` bars of the bundled data, for fast backtests."""
    return btc_candles.slice(len(btc_candles) - SHORT_BARS, len(btc_candles))


@pytest.fixture(autouse=True)
def _no_env_disable(monkeypatch):
    """A developer's MLCOORD_DISABLE must not leak into the tests."""
    monkeypatch.delenv("MLCOORD_DISABLE", raising=False)


@pytest.fixture(autouse=True)
def _reset_logging():
    """``logs.configure`` (the CLI calls it) binds structlog and the root logger to a stream (closed
    once a CliRunner call ends); undo both after each test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def builtin_plugins_only(monkeypatch):
    """Discover only the six built-in plugins: other ``mlcoord`` plugins installed in the same
    environment (e.g. the plugin template) would otherwise change the default pipeline under test."""
    from mlcoord import registry

    real = registry.discover_entry_points
    monkeypatch.setattr(registry, "discover_entry_points",
                        lambda: {name: ep for name, ep in real().items() if name in BUILTINS})
