"""Plugins see snapshots and read-only proxies, never the engine's own objects.

Before, a third-party guard that wrote into the portfolio it was handed turned a -7.28 % backtest
into +39.62 %, unnoticed by the engine and the conformance kit. Now every write raises a clear
error, the failing call is reported as the plugin's failure, and the account is untouched.
"""

from __future__ import annotations

import operator

import numpy as np
import pytest

from mlcoord import hookimpl
from mlcoord.backtest.run import run_backtest
from mlcoord.config import Settings, structure
from mlcoord.registry import load_plugins
from mlcoord.views import PortfolioSnapshot, PositionProxy, ReadOnlyViewError

pytestmark = pytest.mark.usefixtures("builtin_plugins_only")


class Vandal:
    """A guard that tries to write into everything it is handed, and records what each try raised."""

    def __init__(self):
        self.raised: dict[str, type] = {}

    def _try(self, what, write):
        try:
            write()
        except Exception as exc:        # noqa: BLE001 - the point is to see what was raised
            self.raised.setdefault(what, type(exc))
        else:
            self.raised.setdefault(what, type(None))

    def on_bar(self, portfolio):
        self._try("cash", lambda: setattr(portfolio, "cash", portfolio.cash + 1_000.0))
        self._try("equity", lambda: setattr(portfolio, "equity", 1e9))
        self._try("prices", lambda: operator.setitem(portfolio.prices, "BTC/USDT", 1.0))
        self._try("hedge_triggers", lambda: operator.setitem(portfolio.hedge_triggers, ("x", None), 1.0))
        if portfolio.positions:
            p = portfolio.positions[0]
            self._try("position.quantity", lambda: setattr(p, "quantity", 0.0))
            self._try("positions", lambda: portfolio.positions.append(p))
        return []

    def allow_entry(self, symbol, side, portfolio):
        self._try("allow_entry.cash", lambda: setattr(portfolio, "cash", 1e9))
        return None


class VandalPlugin:
    def __init__(self, vandal):
        self.vandal = vandal

    def _make(self, options):
        return self.vandal

    @hookimpl
    def register_entry_guards(self, register):
        register("vandal", self._make)

    @hookimpl
    def register_portfolio_watchers(self, register):
        register("vandal", self._make)


def run(candles, extra=None):
    vandal = ["vandal"] if extra else []
    settings = structure({"pipeline": {"entry_guards": ["protections"] + vandal,
                                       "portfolio_watchers": ["hedging", "protections"] + vandal},
                          "data": {"higher_timeframes": []}}, Settings)
    plugins = load_plugins({}, extra_plugins={"vandal": extra} if extra else {})
    return run_backtest(settings, plugins=plugins, candles=[candles])


def test_a_guard_writing_into_the_portfolio_is_refused_and_changes_nothing(short_candles):
    vandal = Vandal()
    clean, vandalised = run(short_candles), run(short_candles, VandalPlugin(vandal))
    assert vandal.raised["cash"] is ReadOnlyViewError
    assert vandal.raised["equity"] is ReadOnlyViewError
    assert vandal.raised["allow_entry.cash"] is ReadOnlyViewError
    assert issubclass(vandal.raised["prices"], TypeError)          # a read-only mapping
    assert issubclass(vandal.raised["hedge_triggers"], TypeError)
    assert vandal.raised["position.quantity"] is ReadOnlyViewError
    assert issubclass(vandal.raised["positions"], AttributeError)   # a tuple
    assert clean.raw.trades == vandalised.raw.trades
    assert np.array_equal(clean.raw.equity, vandalised.raw.equity)


def test_the_error_names_what_was_written():
    view = PortfolioSnapshot(equity=1.0, peak_equity=1.0, cash=1.0, day_start_equity=1.0, time=0)
    with pytest.raises(ReadOnlyViewError, match=r"PortfolioSnapshot\.cash is read-only"):
        view.cash = 2.0
    with pytest.raises(ReadOnlyViewError):
        del view.equity


class Scribbler:
    """A signal source and an exit manager that try to write into the market data and the position."""

    raised: dict = {}

    def prepare(self, data):
        from mlcoord.components import SignalSeries

        for what, write in (("close", lambda: data.candles.close.__setitem__(0, 1.0)),
                            ("context", lambda: data.context.atr.__setitem__(0, 1.0)),
                            ("timeframes", lambda: operator.setitem(data.timeframes, "4h", None)),
                            ("timeframe_index", lambda: data.timeframe_index["4h"].__setitem__(0, 5))):
            try:
                write()
            except (ValueError, TypeError) as exc:
                Scribbler.raised[what] = type(exc)
        n = len(data)
        return SignalSeries(np.zeros(n, np.int8), np.zeros(n), lambda i: [])


def test_market_data_arrays_and_mappings_refuse_writes(short_candles):
    from mlcoord.components import build_market_data

    data = build_market_data(short_candles, ["4h"])
    Scribbler().prepare(data)
    assert Scribbler.raised == {"close": ValueError, "context": ValueError, "timeframes": TypeError,
                                "timeframe_index": ValueError}


def test_exit_managers_get_a_read_only_position(short_candles):
    seen = []

    class Spy:
        @hookimpl
        def register_exit_managers(self, register):

            class Manager:
                def prepare(self, data):
                    return self

                def initial(self, i, side, plan):
                    from mlcoord.model import ExitLevels

                    worst = plan.worst_price
                    return ExitLevels(stop=worst * (1 - side * 0.02), take_profit=worst * (1 + side * 0.03))

                def update(self, i, position, levels):
                    seen.append(position)
                    with pytest.raises(ReadOnlyViewError):
                        position.quantity = 0.0
                    return levels

            register("spyexits", lambda o: Manager())

    settings = structure({"pipeline": {"exit_manager": "spyexits"}, "data": {"higher_timeframes": []}}, Settings)
    run_backtest(settings, plugins=load_plugins({}, extra_plugins={"spy": Spy()}), candles=[short_candles])
    assert seen and all(isinstance(p, PositionProxy) for p in seen)
