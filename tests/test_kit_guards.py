"""The conformance kit's guard checks: the three-symbol walk (a guard must see every position, use
``GuardAction.symbol`` as the engine does and not crash with more than one symbol), the state round
trip through JSON, and guards that write into the portfolio they are shown.

Each planted guard breaks one rule and must fail the check meant for it; its good twin passes.
"""

from __future__ import annotations

import numpy as np
import pytest

from mlcoord import GuardAction
from mlcoord.testing import ConformanceError, plugin_checks
from mlcoord.testing.guards import RESTART_STEP

from fake_plugins import Components

HOUR_NS = 3_600_000_000_000


class GuardPlugin(Components):
    MLCOORD_HOOKS_VERSION = 2

    def __init__(self, factory, role: str = "portfolio_guards"):
        super().__init__(**{role: {"fake": factory}})


def checks(factory, role: str = "portfolio_guards"):
    return {c.id.removeprefix("fake-"): c for c in plugin_checks(GuardPlugin(factory, role), name="fake")}


# -- three symbols ------------------------------------------------------------------------------------
class PerSideCap:
    """At most two directional positions per side, over every symbol (hedge legs are not trades)."""

    asked: list = []         # (symbol, side, refused) of every call, for the test to look at

    def __init__(self, options=None):
        pass

    def allow_entry(self, symbol, side, portfolio):
        held = [p for p in portfolio.positions if not p.hedge and p.side == side]
        why = f"{len(held)} {side.name} positions open (cap 2)" if len(held) >= 2 else None
        type(self).asked.append((symbol, side.name, why is not None))
        return why


class FirstPositionCap(PerSideCap):
    """Looks at ``positions[0]`` only: right with one symbol, wrong with several."""

    def allow_entry(self, symbol, side, portfolio):
        first = portfolio.positions[0] if portfolio.positions else None
        return "one position per side" if first is not None and first.side == side else None


class OneSymbolWatcher:
    """Assumes the account holds one symbol."""

    def __init__(self, options=None):
        pass

    def on_bar(self, portfolio):
        (symbol,) = portfolio.symbols()
        return []


class DrawdownHedge:
    """Hedges half of every position in a 10% drawdown, releases it under 5% (symbol=None both ways);
    its state is whether the hedge is its own."""

    close_symbol = False
    hedge_symbol = None

    def __init__(self, options=None):
        self.on = False

    def on_bar(self, portfolio):
        if not self.on and portfolio.drawdown >= 0.10 and portfolio.open_positions():
            self.on = True
            symbol = self.hedge_symbol(portfolio) if self.hedge_symbol else None
            return [GuardAction("open_hedge", "drawdown 10 %", symbol=symbol, fraction=0.5)]
        if self.on and portfolio.drawdown < 0.05:
            self.on = False
            if self.close_symbol:
                return [GuardAction("close_hedge", "drawdown under 5 %", symbol=s) for s in portfolio.symbols()]
            return [GuardAction("close_hedge", "drawdown under 5 %")]
        return []

    def state(self):
        return {"on": self.on}

    def load_state(self, state):
        self.on = bool(state["on"])


class ClosesPerSymbol(DrawdownHedge):
    """Opens for every symbol (None), then closes symbol by symbol: the engine keeps its hedge on."""

    close_symbol = True


class HedgesTheBase(DrawdownHedge):
    """Names the hedge by the base currency ("BTC"), not by the portfolio's symbol ("BTC/USDT")."""

    @staticmethod
    def hedge_symbol(portfolio):
        return portfolio.symbols()[0].split("/")[0]


def test_a_per_side_cap_sees_every_position_of_three_symbols():
    PerSideCap.asked = []
    checks(PerSideCap, "entry_guards")["multi_symbol"]()
    asked = PerSideCap.asked
    symbols = {s for s, _, _ in asked}
    assert len(symbols) == 3 and {side for _, side, _ in asked} == {"LONG", "SHORT"}
    # two longs are held only while the third symbol's position is open: then, and only then, refused
    assert any(refused for _, side, refused in asked if side == "LONG")
    assert any(not refused for _, side, refused in asked if side == "LONG")
    assert not any(refused for _, side, refused in asked if side == "SHORT")   # the hedge leg is not a short


def test_the_kit_catches_a_guard_that_reads_only_the_first_position():
    found = checks(FirstPositionCap, "entry_guards")
    found["output"]()                                # one symbol: positions[0] is the only position
    with pytest.raises(ConformanceError, match=r"listed in another order .* gets another answer: allow_entry"):
        found["multi_symbol"]()


def test_the_kit_catches_a_watcher_that_crashes_with_more_than_one_symbol():
    found = checks(OneSymbolWatcher, "portfolio_watchers")
    found["output"]()
    with pytest.raises(ConformanceError, match=r"on_bar\(\) at step 0 of the three-symbol account raised ValueError: too many values to unpack"):
        found["multi_symbol"]()


def test_a_hedge_opened_and_closed_for_every_symbol_passes():
    found = checks(DrawdownHedge, "portfolio_watchers")
    for name in ("output", "deterministic", "multi_symbol", "state_roundtrip"):
        found[name]()


@pytest.mark.parametrize("factory, message", [
    (ClosesPerSymbol, r"close_hedge\(symbol='BTC/USDT'\) releases only a trigger opened for that symbol, so this "
                      r"hedge would stay on"),
    (HedgesTheBase, r"'BTC' is not a symbol of the portfolio \('BTC/USDT', 'ETH/USDT', 'SOL/USDT'\)"),
], ids=["closes_per_symbol", "base_currency"])
def test_the_kit_catches_a_guard_that_misreads_guard_action_symbol(factory, message):
    with pytest.raises(ConformanceError, match=message):
        checks(factory, "portfolio_watchers")["multi_symbol"]()


# -- state round trip -----------------------------------------------------------------------------------
class LossCooldown:
    """No entry on a symbol for 24h after a losing trade on it; the locks are its state."""

    def __init__(self, options=None):
        self.until: dict[str, int] = {}
        self.strikes = 0

    def on_trade_closed(self, trade, decision=None):
        if trade.pnl < 0:
            self.until[trade.symbol] = int(trade.closed_at) + 24 * HOUR_NS
            self.strikes += 1

    def allow_entry(self, symbol, side, portfolio):
        if portfolio.time < self.until.get(symbol, 0):
            return f"{symbol} cooling down after a loss"
        return None

    def state(self):
        return {"until": dict(self.until)}

    def load_state(self, state):
        self.until = {str(k): int(v) for k, v in state["until"].items()}


class ForgetsStrikes(LossCooldown):
    """Stops all entries after two losses, but does not save the count."""

    def allow_entry(self, symbol, side, portfolio):
        return "two losses: no more entries today" if self.strikes >= 2 else super().allow_entry(symbol, side, portfolio)


class TupleKeys(LossCooldown):
    def state(self):
        return {"until": {(s, "any"): t for s, t in self.until.items()}}


class NumpyTimes(LossCooldown):
    def state(self):
        return {"until": {s: np.int64(t) for s, t in self.until.items()}}


class IgnoresLoad(LossCooldown):
    def load_state(self, state):
        pass


class HedgeForgotten(DrawdownHedge):
    """Saves whether its hedge is on, restores nothing: after a restart it opens the hedge again."""

    def load_state(self, state):
        pass

    def state(self):
        return {"on": self.on} if self.on is not None else {}


def test_a_guard_whose_state_survives_json_and_a_restart_passes():
    found = checks(LossCooldown, "entry_guards")
    assert "state_roundtrip" in found
    found["state_roundtrip"]()


@pytest.mark.parametrize("factory, message", [
    (ForgetsStrikes, rf"restarted at step {RESTART_STEP} .* the restored guard answers allow_entry\(.*\) -> None, the "
                     r"original .*'two losses: no more entries today'; state\(\) misses part"),
    (TupleKeys, r"state\(\) at step 126 is not JSON-serialisable: state\(\)\['until'\] has the key "
                r"\('SOL/USDT', 'any'\) \(tuple\); JSON keys are strings"),
    (NumpyTimes, r"state\(\)\['until'\]\['SOL/USDT'\] is np.int64\(\d+\) \(int64\), which JSON cannot hold"),
    (IgnoresLoad, r"state\(\) after load_state\(saved\) differs from the saved state: "
                  r"state\(\)\['until'\]\['SOL/USDT'\] was \d+, is missing"),
], ids=["answer_not_saved", "tuple_keys", "numpy_int", "load_ignored"])
def test_the_kit_catches_guard_state_that_does_not_survive_a_restart(factory, message):
    found = checks(factory, "entry_guards")
    found["output"]()
    with pytest.raises(ConformanceError, match=message):
        found["state_roundtrip"]()


def test_the_kit_catches_a_watcher_that_does_not_restore_its_hedge():
    class Restores(HedgeForgotten):
        def load_state(self, state):
            self.on = bool(state.get("on", False))

    checks(Restores, "portfolio_watchers")["state_roundtrip"]()
    with pytest.raises(ConformanceError, match=r"differs from the saved state: state\(\)\['on'\] was True, is False"):
        checks(HedgeForgotten, "portfolio_watchers")["state_roundtrip"]()


def test_builtin_guards_are_restarted_with_something_to_remember():
    """The restart point is inside the drawdown, a pair lock and the daily loss limit: a state
    round trip there tests the state, not an empty dict."""
    from mlcoord.registry import discover_entry_points, load_plugins
    from mlcoord.testing import conformance_data
    from mlcoord.testing.core import build
    from mlcoord.testing.guards import _Walk

    installed = {n: ep for n, ep in discover_entry_points().items() if ep.dist.name == "mlcoord"}
    components = load_plugins({}, entry_points=installed).components
    states = {}
    for name in ("hedging", "protections"):
        walk, guard = _Walk.new(components[name], conformance_data(), multi=True), build(components[name])
        walk.run(guard, range(RESTART_STEP))
        states[name] = guard.state()
    assert states["hedging"]["active"] and states["hedging"]["opened"]
    assert states["protections"]["locks"] and states["protections"]["daily_until"]


# -- writes into the portfolio ----------------------------------------------------------------------------
class ZeroesAPosition:
    def __init__(self, options=None):
        pass

    def on_bar(self, portfolio):
        if portfolio.positions:
            portfolio.positions[0].quantity = 0
        return []


class RepricesAndAllows:
    def __init__(self, options=None):
        pass

    def allow_entry(self, symbol, side, portfolio):
        portfolio.prices["BTC/USDT"] = 1
        return None


class LiftsEquity:
    """How a guard once turned a -7.28 % backtest into +39.62 %."""

    def __init__(self, options=None):
        pass

    def on_bar(self, portfolio):
        if portfolio.drawdown > 0.05:
            portfolio.equity = portfolio.peak_equity
        return []


@pytest.mark.parametrize("factory, role, message", [
    (ZeroesAPosition, "portfolio_watchers",
     r"on_bar\(\) at step 0 wrote into something read-only: `portfolio.positions\[0\].quantity = 0` "
     r"\(test_kit_guards.py:\d+\) \(ReadOnlyViewError: PositionSnapshot.quantity is read-only"),
    (RepricesAndAllows, "entry_guards",
     r"allow_entry\('BTC/USDT', LONG\) at step 0 wrote into something read-only: "
     r"`portfolio.prices\[\"BTC/USDT\"\] = 1` .*does not support item assignment"),
    (LiftsEquity, "portfolio_watchers",
     r"on_bar\(\) at step \d+ wrote into something read-only: `portfolio.equity = portfolio.peak_equity` .*"
     r"PortfolioSnapshot.equity is read-only"),
], ids=["position_quantity", "prices", "equity"])
def test_the_kit_names_a_guards_write_into_the_portfolio(factory, role, message):
    with pytest.raises(ConformanceError, match=message):
        checks(factory, role)["output"]()
