"""The conformance kit: every built-in plugin passes it, and it catches real contract breaches.

The second half registers deliberately broken fake plugins (a source that looks ahead, one that
mutates its input, one that is random, one with confidence 1.5, ...) and asserts that exactly the
check meant to catch each breach fails, while an unrelated check still passes.
"""

from __future__ import annotations

import random

import attrs
import numpy as np
import pytest

import mlcoord
from mlcoord import EntryLeg, EntryPlan, ExitLevels, Side, Sizing, Vote
from mlcoord.components import SignalSeries
from mlcoord.registry import discover_entry_points
from mlcoord.testing import (
    CHECKS, ConformanceError, FakePortfolio, conformance_data, parametrize_with_checks, plugin_checks,
)
from mlcoord.testing.core import ROLE_CHECKS
from mlcoord.testing.fixtures import fingerprint

from fake_plugins import Components

BUILTINS = {name: ep.load() for name, ep in discover_entry_points().items() if ep.dist.name == "mlcoord"}


def test_every_builtin_plugin_and_role_is_checked():
    assert set(BUILTINS) == {"technical", "dca", "exits", "risk", "hedging", "protections", "bayes", "mtf",
                             "rl_selector", "lstm", "attention", "gbm"}
    checked = {c.id for name, plugin in BUILTINS.items() for c in plugin_checks(plugin, name=name)}
    components = mlcoord.registry.load_plugins({}, entry_points={
        n: ep for n, ep in discover_entry_points().items() if n in BUILTINS}).components
    for spec in components.values():         # every unconditional check of each of its roles
        for role in spec.roles:
            for check, _, applies in ROLE_CHECKS.get(role, ()):
                assert applies is not None or f"{spec.name}-{check}" in checked, (spec.name, check)
    assert {"lstm-no_lookahead", "lstm-state_roundtrip", "exits-no_lookahead", "technical-no_mutation",
            "bayes-state_roundtrip", "hedging-output", "risk-deterministic", "dca-output", "hedging-multi_symbol",
            "hedging-state_roundtrip", "protections-multi_symbol", "protections-state_roundtrip"} <= checked
    declared = {spec.name for spec in components.values() if spec.examples}
    assert declared == set(BUILTINS)          # every built-in declares option sets besides its defaults
    for name in declared:                    # each declared option set runs the checks again
        assert f"{name}-options_examples" in checked and any(i.startswith(f"{name}-") and "[example1]" in i
                                                              for i in checked), name
    assert {role for role in CHECKS if role != "plugin"} == {r for s in components.values() for r in s.roles}


@parametrize_with_checks(BUILTINS)
def test_builtin_plugin_conforms(check):
    check()


def test_pytest_plugin_fixtures(mlcoord_market_data, mlcoord_portfolio, mlcoord_position):
    assert len(mlcoord_market_data) == 3000 and mlcoord_market_data.symbol == "BTC/USDT"
    assert set(mlcoord_market_data.timeframes) == {"4h", "1d"}
    assert not mlcoord_market_data.candles.close.flags.writeable
    assert mlcoord_portfolio.drawdown == 0.0 and mlcoord_portfolio.open_positions() == 0
    assert mlcoord_position.side is Side.LONG
    assert mlcoord_position.entry_price == mlcoord_market_data.candles.close[-1]


# -- deliberately broken plugins ---------------------------------------------------------------------
@attrs.frozen
class FakeOptions:
    threshold: float = 0.02


class FakePlugin(Components):
    """A plugin registering one component ``name`` for ``role`` (``factory(options)`` builds it)."""

    MLCOORD_HOOKS_VERSION = 2

    def __init__(self, role: str, factory, name: str = "fake"):
        super().__init__(**{role: {name: factory}})

    def _register(self, register, *roles):
        for role in roles:
            for name, factory in self.by_role.get(role, {}).items():
                register(name, factory, options=FakeOptions)


class Momentum:
    """A causal, valid source: BUY (SELL) when the 24-bar return is above (below) +-threshold."""

    def __init__(self, options=FakeOptions()):
        self.options = options

    def momentum(self, close: np.ndarray) -> np.ndarray:
        past = np.concatenate([np.full(min(24, len(close)), np.nan), close[:-24]])[:len(close)]
        return close / past - 1.0

    def prepare(self, data):
        roc = np.nan_to_num(self.momentum(np.asarray(data.candles.close, float)))
        action = np.where(roc > self.options.threshold, 1, np.where(roc < -self.options.threshold, -1, 0))
        confidence = np.where(action != 0, np.clip(0.5 + np.abs(roc), 0, 1), 0.0)
        return SignalSeries(action.astype(np.int8), confidence, lambda i: (f"24-bar return {roc[i]:+.3f}",))


class LooksAhead(Momentum):
    """Uses the next bar's close: ``close.shift(-1)``."""

    def momentum(self, close):
        return np.append(close[1:], np.nan) / close - 1.0


class PeeksAtAPeer(Momentum):
    """Reads the kit's peer (``data.inputs.peers``) one bar ahead, by index: a cross-asset leak."""

    def prepare(self, data):
        peer = next(iter(data.inputs.peers.values())).close
        ahead = peer[np.minimum(np.arange(len(data)) + 1, len(peer) - 1)] / peer[:len(data)] - 1.0
        action = np.where(ahead > 0.002, 1, np.where(ahead < -0.002, -1, 0)).astype(np.int8)
        return SignalSeries(action, np.where(action != 0, 0.7, 0.0), lambda i: (f"peer next {ahead[i]:+.4f}",))


class MutatesInput(Momentum):
    """'Cleans' the candles in place."""

    def prepare(self, data):
        close = data.candles.close
        close.flags.writeable = True
        close[0] = close[0] * 1.01
        return super().prepare(data)


class Random(Momentum):
    """Adds unseeded noise to the confidence."""

    def prepare(self, data):
        s = super().prepare(data)
        noise = np.array([random.random() * 0.01 for _ in range(len(s))])
        return SignalSeries(s.action, np.clip(s.confidence + noise, 0, 1), s.explain)


class Overconfident(Momentum):
    def prepare(self, data):
        s = super().prepare(data)
        return SignalSeries(s.action, np.where(s.action != 0, 1.5, 0.0), s.explain)


class Unexplained(Momentum):
    def prepare(self, data):
        s = super().prepare(data)
        return SignalSeries(s.action, s.confidence, lambda i: ())


def checks_of(plugin, name="fake"):
    return {c.name: c for c in plugin_checks(plugin, name=name)}


@pytest.mark.parametrize("factory, failing, message, passing", [
    (LooksAhead, "no_lookahead", "uses later bars", "deterministic"),
    (PeeksAtAPeer, "no_lookahead", "uses later bars", "deterministic"),     # head(k) cuts data.inputs too
    (MutatesInput, "no_mutation", "changed its input data in place: candles.close", "no_lookahead"),
    (Random, "deterministic", "two fresh instances disagree", "output"),
    (Overconfident, "output", "confidence 1.5 at bar", "registers"),
    (Unexplained, "output", "needs at least one non-empty reason", "options_roundtrip"),
], ids=["looks_ahead", "peeks_at_a_peer", "mutates_input", "random", "confidence_1.5", "no_reasons"])
def test_kit_catches_a_broken_signal_source(factory, failing, message, passing):
    checks = checks_of(FakePlugin("signal_sources", factory))
    with pytest.raises(ConformanceError, match=message):
        checks[failing]()
    checks[passing]()


def test_a_valid_fake_source_passes_every_check():
    for check in plugin_checks(FakePlugin("signal_sources", Momentum), name="fake"):
        if check.name != "unique_names":
            check()


def test_the_kits_data_survives_a_mutating_plugin():
    data = conformance_data()
    clean = fingerprint(data)
    checks_of(FakePlugin("signal_sources", MutatesInput))["output"]()   # changes the shared data in place
    assert fingerprint(data) != clean
    assert fingerprint(conformance_data()) == clean                      # rebuilt for the next check


class Voter:
    """A causal ML voter; ``p_up`` may be pushed out of range, learning may skip ``state()``."""

    p_scale = 0.4

    def __init__(self, options=FakeOptions()):
        self.seen = 0

    def prepare(self, data):
        roc = np.nan_to_num(Momentum().momentum(np.asarray(data.candles.close, float)))
        owner = self

        class Prepared:
            def vote(self, i, signal=None):
                p_up = 0.5 + owner.p_scale * np.tanh(roc[i] * 20) + 0.001 * min(owner.seen, 10)
                return Vote("fake", 1 if p_up >= 0.5 else -1, max(p_up, 1 - p_up) if p_up <= 1 else 1.0,
                            reasons=(f"p_up {p_up:.2f}",), p_up=float(p_up), p_down=float(1 - min(p_up, 1)))
        return Prepared()

    def learn(self, outcome):
        self.seen += 1

    def state(self):
        return {}

    def load_state(self, state):
        pass


class WildVoter(Voter):
    p_scale = 0.9


class PeekingVoter(Voter):
    """Votes with the next bar's return."""

    def prepare(self, data):
        close = np.asarray(data.candles.close, float)
        nxt = np.append(close[1:] / close[:-1] - 1.0, 0.0)

        class Prepared:
            def vote(self, i, signal=None):
                p = float(0.5 + 0.4 * np.tanh(nxt[i] * 100))
                return Vote("fake", 1 if p >= 0.5 else -1, max(p, 1 - p), reasons=("peek",), p_up=p, p_down=1 - p)
        return Prepared()


class PeekingExits:
    """Widens the long stop by the change to the next bar's low."""

    def __init__(self, options=None):
        pass

    def prepare(self, data):
        low = np.asarray(data.candles.low, float)

        class Levels:
            def initial(self, i, side, plan):
                if side is Side.SHORT:
                    return ExitLevels(plan.worst_price * 1.01, reasons=("1% stop",))
                j = min(i + 1, len(low) - 1)
                return ExitLevels(plan.worst_price * 0.99 - abs(low[j] - low[i]), reasons=("next low",))

            def update(self, i, position, levels):
                return levels
        return Levels()


def test_kit_catches_look_ahead_in_ml_votes_and_exit_levels():
    checks = checks_of(FakePlugin("ml_components", PeekingVoter))
    checks["output"]()
    with pytest.raises(ConformanceError, match="votes differently from prepare\\(data\\)"):
        checks["no_lookahead"]()
    checks = checks_of(FakePlugin("exit_managers", PeekingExits))
    checks["output"]()
    with pytest.raises(ConformanceError, match="LONG opened at bar .*the levels use later bars"):
        checks["no_lookahead"]()


def test_kit_catches_ml_probabilities_out_of_range_and_state_that_misses_learning():
    checks = checks_of(FakePlugin("ml_components", WildVoter))
    with pytest.raises(ConformanceError, match=r"p_up must be a number in \[0, 1\], got 1\.\d+"):
        checks["output"]()
    checks = checks_of(FakePlugin("ml_components", Voter))
    checks["no_lookahead"]()
    with pytest.raises(ConformanceError, match="state\\(\\) misses"):
        checks["state_roundtrip"]()


class WrongSidePlanner:
    def __init__(self, options=None):
        pass

    def plan(self, signal, price, context):
        side = signal.action.side
        return EntryPlan(side, (EntryLeg(price, 0.5, market=True), EntryLeg(price * 1.01, 0.5)),
                         reasons=("ladder above",))


class StopOnWrongSide:
    def __init__(self, options=None):
        pass

    def prepare(self, data):
        class Levels:
            def initial(self, i, side, plan):
                return ExitLevels(plan.worst_price * 1.01, reasons=("1% stop",))

            def update(self, i, position, levels):
                return levels
        return Levels()


class NegativeSizer:
    def __init__(self, options=None):
        pass

    def size(self, request):
        return Sizing(quantity=-1.0, reasons=("oops",))


class SilentGuard:
    def __init__(self, options=None):
        pass

    def on_bar(self, portfolio):
        return []

    def allow_entry(self, symbol, side, portfolio):
        return "" if portfolio.drawdown > 0.1 else None


@pytest.mark.parametrize("role, factory, message", [
    ("entry_planners", WrongSidePlanner, "legs must be at or below the price"),
    ("exit_managers", StopOnWrongSide, "long stop .* is not below the worst entry"),
    ("sizers", NegativeSizer, "quantity -1.0"),
    ("portfolio_guards", SilentGuard, "expected None or the reason"),   # fake_plugins: both guard roles
], ids=["planner_wrong_side", "stop_wrong_side", "negative_size", "empty_veto_reason"])
def test_kit_catches_broken_trading_components(role, factory, message):
    with pytest.raises(ConformanceError, match=message):
        checks_of(FakePlugin(role, factory))["output"]()


# -- answers the engine refuses at run time (issue 15): the kit says so before a run does ----------------
def _sneaky(value, **fields):
    for name, v in fields.items():
        object.__setattr__(value, name, v)     # past the value class's own checks
    return value


class NanTrailingExits(StopOnWrongSide):
    def prepare(self, data):
        class Levels:
            def initial(self, i, side, plan):
                return ExitLevels(plan.worst_price * (1 - 0.02 * side), reasons=("2% stop",))

            def update(self, i, position, levels):
                return _sneaky(ExitLevels(levels.stop, reasons=("trail",)), stop=float("nan"))
        return Levels()


class BoolSizer(NegativeSizer):
    def size(self, request):
        return _sneaky(Sizing(quantity=1.0, reasons=("one",)), quantity=True)


class OffMarketPlanner(WrongSidePlanner):
    def plan(self, signal, price, context):
        side = signal.action.side
        return EntryPlan(side, (EntryLeg(price * (1 - 0.01 * side), 1.0, market=True),), reasons=("market, I hope",))


class NotAnActionVoter(Voter):
    def prepare(self, data):
        inner = super().prepare(data)

        class Prepared:
            def vote(self, i, signal=None):
                return _sneaky(inner.vote(i, signal), action=5)
        return Prepared()


class NanCloseAllGuard(SilentGuard):
    def on_bar(self, portfolio):
        return [_sneaky(mlcoord.GuardAction("close_all", "panic"), fraction=float("nan"))]


@pytest.mark.parametrize("role, factory, message", [
    ("exit_managers", NanTrailingExits, "update.* the engine refuses this answer at run time: stop nan is not a "
                                        "finite number"),
    ("sizers", BoolSizer, "the engine refuses this answer at run time: quantity True is a bool, not a number"),
    ("entry_planners", OffMarketPlanner, "the engine refuses this answer at run time: market leg 1 at .* is not at "
                                         "the market price"),
    ("ml_components", NotAnActionVoter, "the engine refuses this answer at run time: vote action 5 is not an Action"),
    ("portfolio_guards", NanCloseAllGuard, "the engine refuses this answer at run time: guard action fraction nan"),
], ids=["nan_stop_update", "bool_quantity", "market_leg_off_the_price", "vote_action_not_an_action",
        "nan_guard_fraction"])
def test_kit_fails_what_the_engine_would_refuse(role, factory, message):
    with pytest.raises(ConformanceError, match=message):
        checks_of(FakePlugin(role, factory))["output"]()


def test_kit_catches_plugin_level_mistakes():
    class Unversioned(FakePlugin):
        MLCOORD_HOOKS_VERSION = None

    with pytest.raises(ConformanceError, match="does not declare MLCOORD_HOOKS_VERSION"):
        checks_of(Unversioned("signal_sources", Momentum))["hooks_version"]()
    with pytest.raises(ConformanceError, match="registered twice"):
        checks_of(FakePlugin("signal_sources", Momentum, name="technical"))["unique_names"]()
    with pytest.raises(ConformanceError, match="registered no component"):
        checks_of(FakePlugin("calibrators", Momentum))["registers"]()


def test_checks_are_named_for_parametrize_ids():
    checks = plugin_checks(FakePlugin("signal_sources", Momentum), name="fake")
    ids = [c.id for c in checks]
    assert ids[:3] == ["fake-registers", "fake-hooks_version", "fake-unique_names"]
    assert "fake-no_lookahead" in ids and len(ids) == len(set(ids))
    spec_checks = plugin_checks(next(iter(mlcoord.registry.load_plugins(
        {}, entry_points={}, extra_plugins={"fake": FakePlugin("signal_sources", Momentum)}).components.values())))
    assert [c.id for c in spec_checks] == ids[3:]
    assert isinstance(FakePortfolio().symbols(), tuple)
