"""What the conformance kit hands a plugin is as read-only as what the engine hands it, and a plugin
that writes into it fails, the failure naming the line that wrote.

The kit's fixtures are the engine's views (``mlcoord.views``: ``PortfolioSnapshot``,
``PositionSnapshot``, ``PendingEntry``) and its market data keeps read-only arrays even in the
private copies the no-mutation checks make.
"""

from __future__ import annotations

import attrs
import numpy as np
import pytest

from mlcoord import ExitLevels, Side, Sizing, Vote
from mlcoord.components import SignalSeries
from mlcoord.registry import ComponentSpec
from mlcoord.testing import ConformanceError, FakePortfolio, FakePosition, conformance_data, plugin_checks
from mlcoord.testing.fixtures import PendingEntry, expect_read_only, private_copy
from mlcoord.views import ReadOnlyViewError

from fake_plugins import Components

SPEC = ComponentSpec("probe", "portfolio_watchers", object, None, "kit")


def checks(role: str, factory):
    class Plugin(Components):
        MLCOORD_HOOKS_VERSION = 2

    return {c.id.removeprefix("fake-"): c for c in plugin_checks(Plugin(**{role: {"fake": factory}}), name="fake")}


def busy_portfolio() -> FakePortfolio:
    """Two symbols, both sides, a hedge leg, a working entry and a hedge trigger."""
    return FakePortfolio(
        positions=[FakePosition(Side.LONG, 100.0, 0, 101.0, symbol="A/USDT", quantity=2.0),
                   FakePosition(Side.SHORT, 50.0, 0, 49.0, symbol="B/USDT", quantity=3.0),
                   FakePosition(Side.SHORT, 100.0, 1, 100.0, symbol="A/USDT", quantity=1.0, hedge=True)],
        pending_entries=[PendingEntry("C/USDT", Side.LONG, 1.0, 10.0)],
        prices={"A/USDT": 102.0, "B/USDT": 48.0, "C/USDT": 10.5},
        hedge_triggers={("other", "A/USDT"): 0.5})


# -- the kit's fixtures --------------------------------------------------------------------------------
def test_the_kits_portfolio_view_is_the_engines_snapshot_and_refuses_every_write():
    view = busy_portfolio().view()
    assert type(view).__name__ == "PortfolioSnapshot" and type(view.positions[0]).__name__ == "PositionSnapshot"
    assert view.open_positions() == 2 and view.committed_trades() == 3 and view.hedged("A/USDT")
    assert view.exposure("A/USDT") == pytest.approx(102.0) and view.symbols() == ("A/USDT", "B/USDT", "C/USDT")
    with pytest.raises(ReadOnlyViewError, match="quantity is read-only"):
        view.positions[0].quantity = 0
    with pytest.raises(TypeError):
        view.prices["A/USDT"] = 1                              # type: ignore[index]
    with pytest.raises(TypeError):
        view.hedge_triggers[("other", None)] = 1.0             # type: ignore[index]
    with pytest.raises(TypeError):
        view.positions[0] = None                               # type: ignore[index]
    with pytest.raises(ReadOnlyViewError):
        view.pending_entries[0].price = 1.0
    expect_read_only(SPEC, view, "the portfolio")
    expect_read_only(SPEC, FakePosition(Side.LONG, 1.0, 0, 1.0).view(ExitLevels(0.9, reasons=("x",))), "the position")


def test_the_kits_market_data_and_its_private_copies_refuse_array_writes():
    data = conformance_data()
    for handed in (data, private_copy(data), data.head(500)):
        expect_read_only(SPEC, handed, "the market data")
        with pytest.raises(ValueError, match="read-only"):
            handed.candles.close[5] = 0
        with pytest.raises(ValueError, match="read-only"):
            handed.context.atr[5] = 0
        with pytest.raises(TypeError):
            handed.timeframes["4h"] = None                     # type: ignore[index]
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            handed.candles.close = np.zeros(3)                 # type: ignore[misc]


def test_the_read_only_probe_itself_finds_writeable_parts():
    """The probe the kit runs on what it hands plugins must be able to fail."""
    @attrs.define
    class Leaky:
        closes: np.ndarray = attrs.field(factory=lambda: np.ones(3))
        legs: list = attrs.field(factory=lambda: [1, 2])
        prices: dict = attrs.field(factory=lambda: {"A/USDT": 1.0})

    with pytest.raises(ConformanceError) as caught:
        expect_read_only(SPEC, Leaky(), "a leaky view")
    text = str(caught.value)
    for leak in (".closes = ...", ".closes[0] = ... (a writeable array)", ".legs is a list", ".prices['A/USDT'] = ..."):
        assert leak in text
    assert "a fault of the kit or of the data given to it, not of the plugin" in text


# -- plugins that write ---------------------------------------------------------------------------------
class CleansCandles:
    """'Repairs' a bar of the candles it is handed."""

    def __init__(self, options=None):
        pass

    def prepare(self, data):
        data.candles.close[5] = 0
        n = len(data)
        return SignalSeries(np.zeros(n, np.int8), np.zeros(n), lambda i: ())


class LogVolumeInPlace:
    """An ML voter that takes the log of the volume in place."""

    def __init__(self, options=None):
        pass

    def prepare(self, data):
        np.log1p(data.candles.volume, out=data.candles.volume)

        class Prepared:
            def vote(self, i, signal=None):
                return Vote("fake", 1, 0.6, reasons=("up",), p_up=0.6, p_down=0.4)
        return Prepared()


class MovesBestPrice:
    """An exit manager that updates the position's best price itself."""

    def __init__(self, options=None):
        pass

    def prepare(self, data):
        class Levels:
            def initial(self, i, side, plan):
                factor = 0.98 if side is Side.LONG else 1.02
                return ExitLevels(plan.worst_price * factor, reasons=("2% stop",))

            def update(self, i, position, levels):
                position.best_price = position.entry_price
                return levels
        return Levels()


class ShrinksEquity:
    """A sizer that halves the equity in the request before sizing."""

    def __init__(self, options=None):
        pass

    def size(self, request):
        request.equity = request.equity / 2
        return Sizing(quantity=0.0, veto="never", reasons=())


@pytest.mark.parametrize("role, factory, check, message", [
    ("signal_sources", CleansCandles, "output",
     r"prepare\(\) on 3000 bars wrote into something read-only: `data.candles.close\[5\] = 0` \(test_kit_views.py:\d+\) "
     r"\(ValueError: assignment destination is read-only\)"),
    ("signal_sources", CleansCandles, "no_mutation", r"`data.candles.close\[5\] = 0`"),     # on the private copy
    ("ml_components", LogVolumeInPlace, "no_mutation",
     r"wrote into something read-only: `np.log1p\(data.candles.volume, out=data.candles.volume\)`"),
    ("exit_managers", MovesBestPrice, "output",
     r"update\(\d+\) of a LONG opened at 0 wrote into something read-only: `position.best_price = position.entry_price` "
     r".*PositionSnapshot.best_price is read-only"),
    ("sizers", ShrinksEquity, "output",
     r"size\(LONG, equity 10000.0\) wrote into something read-only: `request.equity = request.equity / 2` "
     r"\(test_kit_views.py:\d+\) \(FrozenInstanceError"),
], ids=["source_output", "source_private_copy", "voter_numpy_out", "exits_position", "sizer_request"])
def test_the_kit_names_a_plugins_write_into_what_it_was_handed(role, factory, check, message):
    with pytest.raises(ConformanceError, match=message):
        checks(role, factory)[check]()
