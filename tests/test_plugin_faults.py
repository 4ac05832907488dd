"""Issue 15's probe: plugin fault modes, each kind of plugin x each way of getting it wrong.

The pipeline is made of small fakes only (a signal every 12 bars, a voter that agrees, an identity
calibrator, a two-leg planner, a 1 %-risk sizer, 2 % stops and 3 % targets with a trailing stop,
an entry guard that allows, a watcher that stays quiet) on 400 bars, so a run takes a few
milliseconds. One component at a time is swapped for a faulty twin, and the run is compared with
the run the engine's rule says it must equal: the same pipeline with that component replaced by
its *fallback* (a source or vote left out is a silent source or an abstaining voter, a calibrator
left out is the identity, a planner left out a direct entry, a sizer or entry guard left out
refuses the entry, an exit update left out keeps the levels, a watcher left out is quiet).

Each case ends one of these ways (``OUTCOMES``), and the probe checks it: no traceback escapes,
the run equals its fallback run (or, for a sizer's huge quantity, stays within what the account
can carry), and every refusal is logged under the faulty component's name and no other.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from typing import Any, Callable

import attrs
import numpy as np
import pytest
import structlog

import fake_plugins
from fake_plugins import Gate
from mlcoord import budget as budget_module
from mlcoord.backtest.run import run_backtest
from mlcoord.components import SignalSeries
from mlcoord.config import Settings, structure
from mlcoord.errors import PluginError
from mlcoord.model import Action, EntryLeg, EntryPlan, ExitLevels, GuardAction, Sizing, Vote
from mlcoord.registry import load_plugins

BARS = 400
#: what the engine does with a fault; "own effect": the answer is a plugin's right (a vote of None
#: abstains, a stop moved beyond the market closes the position), nothing is refused
OUTCOMES = ("left out", "cut down", "own effect", "run stops naming the plugin")


# -- the healthy pipeline ---------------------------------------------------------------------------
class Pulse:
    """BUY at bars 6, 30, 54..., SELL at 18, 42, 66... (confidence 0.8)."""

    def __init__(self, options=None):
        pass

    def prepare(self, data):
        n = len(data)
        i = np.arange(n)
        action = np.where(i % 24 == 6, 1, np.where(i % 24 == 18, -1, 0)).astype(np.int8)
        return SignalSeries(action, np.where(action != 0, 0.8, 0.0), lambda k: ["pulse"])


class Silent(Pulse):
    def prepare(self, data):
        n = len(data)
        return SignalSeries(np.zeros(n, np.int8), np.zeros(n), lambda k: [])


class Agrees:
    def vote(self, i, signal):
        up = signal.action == Action.BUY
        return Vote("m", signal.action, 0.7, reasons=("agrees",), p_up=0.7 if up else 0.3, p_down=0.3 if up else 0.7)


class Abstains:
    def vote(self, i, signal):
        return None


class Voting:
    """An ML component; its voter is ``self.voter`` (a class)."""

    voter: Any = Agrees

    def __init__(self, options=None):
        pass

    def prepare(self, data):
        return self.voter()


class Identity:
    def __init__(self, options=None):
        pass

    def calibrate(self, raw, signal):
        return raw

    def learn(self, raw, hit, direction):
        pass


class TwoLegs:
    def __init__(self, options=None):
        pass

    def plan(self, signal, price, context):
        side = signal.action.side
        return EntryPlan(side, (EntryLeg(price, 0.5, market=True), EntryLeg(price * (1 - 0.01 * side), 0.5)),
                         expires_after_bars=6, planner="twolegs", reasons=("two legs",))


class Direct(TwoLegs):
    def plan(self, signal, price, context):
        return EntryPlan(signal.action.side, (EntryLeg(price, 1.0, market=True),), planner="direct")


class OnePercent:
    def __init__(self, options=None):
        pass

    def size(self, request):
        per_unit = abs(request.plan.average_price - request.stop)
        qty = min(0.01 * request.equity / per_unit, 0.5 * request.equity / request.plan.average_price)
        return Sizing(quantity=qty, risk=qty * per_unit, reasons=("1% risk",))


class Refuses(OnePercent):
    def size(self, request):
        return Sizing(veto="refused")


class Levels:
    """2 % stop beyond the worst leg, 3 % target beyond the average; trails 2 % behind the best."""

    def initial(self, i, side, plan):
        return ExitLevels(stop=plan.worst_price * (1 - 0.02 * side), take_profit=plan.average_price * (1 + 0.03 * side),
                          reasons=("2%/3%",))

    def update(self, i, position, levels):
        trail = position.best_price * (1 - 0.02 * position.side)
        if (trail - levels.stop) * position.side > 0:
            return attrs.evolve(levels, stop=trail)
        return levels


class StandsStill(Levels):
    def update(self, i, position, levels):
        return levels


class NeverEnters(Levels):
    def initial(self, i, side, plan):
        raise RuntimeError("no levels")


class Exits:
    levels: Any = Levels

    def __init__(self, options=None):
        pass

    def prepare(self, data):
        return self.levels()


class Allows:
    def __init__(self, options=None):
        pass

    def allow_entry(self, symbol, side, portfolio):
        return None


class Closed(Allows):
    def allow_entry(self, symbol, side, portfolio):
        return "closed"


class Quiet:
    def __init__(self, options=None):
        pass

    def on_bar(self, portfolio):
        return []


HEALTHY = {"x": Silent, "m": Voting, "c": Identity, "p": TwoLegs, "s": OnePercent, "e": Exits, "g": Allows,
           "w": Quiet}
ROLE_OF = {"x": "signal_sources", "m": "ml_components", "c": "calibrators", "p": "entry_planners", "s": "sizers",
           "e": "exit_managers", "g": "entry_guards", "w": "portfolio_watchers"}
KIND = {"x": "source", "m": "ML vote", "c": "calibrator", "p": "planner", "s": "sizer", "e": "exit manager",
        "g": "entry guard", "w": "watcher"}
CONFIG = {"pipeline": {"signal_sources": ["pulse", "x"], "ml_components": ["m"], "calibrator": "c",
                       "entry_planner": "p", "sizer": "s", "exit_manager": "e", "entry_guards": ["g"],
                       "portfolio_watchers": ["w"]},
          "data": {"higher_timeframes": []}}


def subclass(base, name: str, **methods):
    return type(name, (base,), methods)


def voting(voter):
    return subclass(Voting, "FaultyVoting", voter=voter)


def exits(levels):
    return subclass(Exits, "FaultyExits", levels=levels)


# -- faults ------------------------------------------------------------------------------------------------
def sneaky(value, **fields):
    """``value`` with ``fields`` set past the value class's validators."""
    for name, v in fields.items():
        object.__setattr__(value, name, v)
    return value


def boom(*args):
    raise RuntimeError("plugin bug")


GATE: Gate = Gate()


def slow(*args):
    return GATE.block()


def series(action=None, confidence=None, n=None):
    """A source answer: BUY at bar 10, with these arrays (default: valid)."""
    def prepare(self, data):
        k = len(data) if n is None else n
        a = np.zeros(k, np.int8)
        a[10] = 1
        c = np.where(a != 0, 0.8, 0.0)
        return SignalSeries(action(a) if action else a, confidence(c) if confidence else c, lambda i: ["x"])
    return prepare


def write_frame(self, data):
    data.candles.frame["close"] *= 16


def write_close(self, data):
    data.candles.close[:] = 1.0


def vote_with(**fields):
    return lambda self, i, signal: sneaky(Agrees().vote(i, signal), **fields)


def rewrite_signal(self, *args):
    signal = next(a for a in args if hasattr(a, "action"))
    signal.confidence = 1.0           # a frozen value: raises


def plan_with(**fields):
    def plan(self, signal, price, context):
        made = TwoLegs().plan(signal, price, context)
        return sneaky(made, **fields)
    return plan


def leg_with(**fields):
    def plan(self, signal, price, context):
        made = TwoLegs().plan(signal, price, context)
        return sneaky(made, legs=(sneaky(made.legs[0], **fields), made.legs[1]))
    return plan


def sizing(**fields):
    return lambda self, request: sneaky(Sizing(quantity=0.01, reasons=("x",)), **fields)


def levels_with(**fields):
    return lambda self, i, position, levels: sneaky(ExitLevels(stop=levels.stop, take_profit=levels.take_profit),
                                                    **fields)


def initial_with(**fields):
    return lambda self, i, side, plan: sneaky(Levels().initial(i, side, plan), **fields)


def actions(*made):
    return lambda self, portfolio: list(made)


def action_with(**fields):
    return actions(sneaky(GuardAction("open_hedge", "hedge", None, 0.5), **fields))


def write_portfolio(self, *args):
    portfolio = args[-1]
    portfolio.equity = 1e9


def write_position(self, i, position, levels):
    position.quantity = 0.0


NAN, INF = float("nan"), float("inf")

#: (component, fault, the faulty class, fallback class, expected outcome)
CASES: list[tuple[str, str, Callable[[], type], Callable[[], type], str]] = [
    # signal sources (a second source, "x"; its fallback is silence)
    ("x", "raises", lambda: subclass(Silent, "F", prepare=boom), lambda: Silent, "left out"),
    ("x", "returns None", lambda: subclass(Silent, "F", prepare=lambda self, d: None), lambda: Silent, "left out"),
    ("x", "NaN", lambda: subclass(Silent, "F", prepare=series(confidence=lambda c: np.where(c > 0, NAN, c))),
     lambda: Silent, "left out"),
    ("x", "inf", lambda: subclass(Silent, "F", prepare=series(confidence=lambda c: np.where(c > 0, INF, c))), lambda: Silent,
     "left out"),
    ("x", "wrong type", lambda: subclass(Silent, "F", prepare=lambda self, d: [1] * len(d)), lambda: Silent,
     "left out"),
    ("x", "bool", lambda: subclass(Silent, "F", prepare=series(action=lambda a: a.astype(bool))), lambda: Silent,
     "left out"),
    ("x", "string", lambda: subclass(Silent, "F", prepare=series(confidence=lambda c: c.astype(str))),
     lambda: Silent, "left out"),
    ("x", "negative", lambda: subclass(Silent, "F", prepare=series(action=lambda a: -3 * a)), lambda: Silent,
     "left out"),
    ("x", "huge", lambda: subclass(Silent, "F", prepare=series(confidence=lambda c: c * 1e9)), lambda: Silent,
     "left out"),
    ("x", "wrong length", lambda: subclass(Silent, "F", prepare=series(n=BARS - 1)), lambda: Silent, "left out"),
    ("x", "writes its frame", lambda: subclass(Silent, "F", prepare=write_frame), lambda: Silent, "left out"),
    ("x", "writes its prices", lambda: subclass(Silent, "F", prepare=write_close), lambda: Silent, "left out"),
    # ML components ("m" votes; its fallback abstains)
    ("m", "raises", lambda: voting(subclass(Agrees, "F", vote=boom)), lambda: voting(Abstains), "left out"),
    ("m", "returns None", lambda: voting(Abstains), lambda: voting(Abstains), "own effect"),
    ("m", "NaN", lambda: voting(subclass(Agrees, "F", vote=vote_with(p_up=NAN))), lambda: voting(Abstains),
     "left out"),
    ("m", "inf", lambda: voting(subclass(Agrees, "F", vote=vote_with(confidence=INF))), lambda: voting(Abstains),
     "left out"),
    ("m", "wrong type", lambda: voting(subclass(Agrees, "F", vote=lambda self, i, s: "BUY")),
     lambda: voting(Abstains), "left out"),
    ("m", "bool", lambda: voting(subclass(Agrees, "F", vote=vote_with(p_down=True))), lambda: voting(Abstains),
     "left out"),
    ("m", "string", lambda: voting(subclass(Agrees, "F", vote=vote_with(confidence="0.7"))),
     lambda: voting(Abstains), "left out"),
    ("m", "negative", lambda: voting(subclass(Agrees, "F", vote=vote_with(p_up=-0.2))), lambda: voting(Abstains),
     "left out"),
    ("m", "huge", lambda: voting(subclass(Agrees, "F", vote=vote_with(confidence=7.0))), lambda: voting(Abstains),
     "left out"),
    ("m", "wrong side", lambda: voting(subclass(Agrees, "F", vote=vote_with(action=5))), lambda: voting(Abstains),
     "left out"),
    ("m", "mutates its input", lambda: voting(subclass(Agrees, "F", vote=rewrite_signal)), lambda: voting(Abstains),
     "left out"),
    ("m", "slow", lambda: voting(subclass(Agrees, "F", vote=slow)), lambda: voting(Abstains), "left out"),
    ("m", "prepare returns None", lambda: subclass(Voting, "F", prepare=lambda self, d: None),
     lambda: voting(Abstains), "left out"),
    # calibrators (fallback: the raw confidence)
    ("c", "raises", lambda: subclass(Identity, "F", calibrate=boom), lambda: Identity, "left out"),
    ("c", "returns None", lambda: subclass(Identity, "F", calibrate=lambda self, r, s: None), lambda: Identity,
     "left out"),
    ("c", "NaN", lambda: subclass(Identity, "F", calibrate=lambda self, r, s: NAN), lambda: Identity, "left out"),
    ("c", "inf", lambda: subclass(Identity, "F", calibrate=lambda self, r, s: INF), lambda: Identity, "left out"),
    ("c", "wrong type", lambda: subclass(Identity, "F", calibrate=lambda self, r, s: [r]), lambda: Identity,
     "left out"),
    ("c", "bool", lambda: subclass(Identity, "F", calibrate=lambda self, r, s: True), lambda: Identity, "left out"),
    ("c", "string", lambda: subclass(Identity, "F", calibrate=lambda self, r, s: "0.99"), lambda: Identity,
     "left out"),
    ("c", "negative", lambda: subclass(Identity, "F", calibrate=lambda self, r, s: -0.5), lambda: Identity,
     "left out"),
    ("c", "huge", lambda: subclass(Identity, "F", calibrate=lambda self, r, s: 5.0), lambda: Identity, "left out"),
    ("c", "mutates its input", lambda: subclass(Identity, "F", calibrate=rewrite_signal), lambda: Identity,
     "left out"),
    ("c", "slow", lambda: subclass(Identity, "F", calibrate=slow), lambda: Identity, "left out"),
    # entry planners (fallback: a direct entry)
    ("p", "raises", lambda: subclass(TwoLegs, "F", plan=boom), lambda: Direct, "left out"),
    ("p", "returns None", lambda: subclass(TwoLegs, "F", plan=lambda self, s, p, c: None), lambda: Direct,
     "left out"),
    ("p", "NaN", lambda: subclass(TwoLegs, "F", plan=leg_with(price=NAN)), lambda: Direct, "left out"),
    ("p", "inf", lambda: subclass(TwoLegs, "F", plan=leg_with(price=INF)), lambda: Direct, "left out"),
    ("p", "wrong type", lambda: subclass(TwoLegs, "F", plan=plan_with(legs=[0.5, 0.5])), lambda: Direct,
     "left out"),
    ("p", "bool", lambda: subclass(TwoLegs, "F", plan=leg_with(fraction=True)), lambda: Direct, "left out"),
    ("p", "string", lambda: subclass(TwoLegs, "F", plan=leg_with(price="100")), lambda: Direct, "left out"),
    ("p", "negative", lambda: subclass(TwoLegs, "F", plan=plan_with(expires_after_bars=-5)), lambda: Direct,
     "left out"),
    ("p", "huge", lambda: subclass(TwoLegs, "F", plan=leg_with(price=1e12)), lambda: Direct, "left out"),
    ("p", "wrong side", lambda: subclass(TwoLegs, "F", plan=lambda self, s, p, c: sneaky(
        TwoLegs().plan(s, p, c), side=s.action.side.opposite)), lambda: Direct, "left out"),
    ("p", "mutates its input", lambda: subclass(TwoLegs, "F", plan=rewrite_signal), lambda: Direct, "left out"),
    ("p", "slow", lambda: subclass(TwoLegs, "F", plan=slow), lambda: Direct, "left out"),
    # sizers (fallback: the entry is refused)
    ("s", "raises", lambda: subclass(OnePercent, "F", size=boom), lambda: Refuses, "left out"),
    ("s", "returns None", lambda: subclass(OnePercent, "F", size=lambda self, r: None), lambda: Refuses,
     "left out"),
    ("s", "NaN", lambda: subclass(OnePercent, "F", size=sizing(quantity=NAN)), lambda: Refuses, "left out"),
    ("s", "inf", lambda: subclass(OnePercent, "F", size=sizing(quantity=INF)), lambda: Refuses, "left out"),
    ("s", "wrong type", lambda: subclass(OnePercent, "F", size=lambda self, r: 0.01), lambda: Refuses, "left out"),
    ("s", "bool", lambda: subclass(OnePercent, "F", size=sizing(quantity=True)), lambda: Refuses, "left out"),
    ("s", "string", lambda: subclass(OnePercent, "F", size=sizing(quantity="0.01")), lambda: Refuses, "left out"),
    ("s", "negative", lambda: subclass(OnePercent, "F", size=sizing(quantity=-0.01)), lambda: Refuses, "left out"),
    ("s", "huge", lambda: subclass(OnePercent, "F", size=sizing(quantity=1e6)), lambda: OnePercent, "cut down"),
    ("s", "mutates its input", lambda: subclass(OnePercent, "F", size=lambda self, r: setattr(r, "equity", 1e9)),
     lambda: Refuses, "left out"),
    ("s", "slow", lambda: subclass(OnePercent, "F", size=slow), lambda: Refuses, "left out"),
    # exit managers: per-bar updates (fallback: the levels stay), initial levels (fallback: no entry)
    ("e", "raises", lambda: exits(subclass(Levels, "F", update=boom)), lambda: exits(StandsStill), "left out"),
    ("e", "returns None", lambda: exits(subclass(Levels, "F", update=lambda self, i, p, lv: None)),
     lambda: exits(StandsStill), "left out"),
    ("e", "NaN", lambda: exits(subclass(Levels, "F", update=levels_with(stop=NAN))), lambda: exits(StandsStill),
     "left out"),
    ("e", "inf", lambda: exits(subclass(Levels, "F", update=levels_with(take_profit=INF))),
     lambda: exits(StandsStill), "left out"),
    ("e", "wrong type", lambda: exits(subclass(Levels, "F", update=lambda self, i, p, lv: lv.stop)),
     lambda: exits(StandsStill), "left out"),
    ("e", "bool", lambda: exits(subclass(Levels, "F", update=levels_with(partial_fraction=True))),
     lambda: exits(StandsStill), "left out"),
    ("e", "string", lambda: exits(subclass(Levels, "F", update=levels_with(stop="1"))), lambda: exits(StandsStill),
     "left out"),
    ("e", "negative", lambda: exits(subclass(Levels, "F", update=levels_with(stop=-1.0))),
     lambda: exits(StandsStill), "left out"),
    ("e", "loosens the stop", lambda: exits(subclass(Levels, "F", update=lambda self, i, p, lv: attrs.evolve(
        lv, stop=lv.stop * (1 - 0.5 * p.side)))), lambda: exits(StandsStill), "own effect"),   # the contract: put back
    ("e", "huge", lambda: exits(subclass(Levels, "F", update=lambda self, i, p, lv: attrs.evolve(
        lv, stop=lv.stop * (1 + 0.5 * p.side)))), lambda: None, "own effect"),        # beyond the market: it closes
    ("e", "mutates its input", lambda: exits(subclass(Levels, "F", update=write_position)),
     lambda: exits(StandsStill), "left out"),
    ("e", "initial raises", lambda: exits(subclass(Levels, "F", initial=boom)), lambda: exits(NeverEnters),
     "left out"),
    ("e", "initial NaN", lambda: exits(subclass(Levels, "F", initial=initial_with(stop=NAN))),
     lambda: exits(NeverEnters), "left out"),
    ("e", "initial wrong side", lambda: exits(subclass(Levels, "F", initial=lambda self, i, side, plan: ExitLevels(
        stop=plan.worst_price * (1 + 0.02 * side)))), lambda: exits(NeverEnters), "left out"),
    ("e", "prepare raises", lambda: subclass(Exits, "F", prepare=boom), lambda: Exits, "run stops naming the plugin"),
    # entry guards (fallback: the entry is refused)
    ("g", "raises", lambda: subclass(Allows, "F", allow_entry=boom), lambda: Closed, "left out"),
    ("g", "returns None", lambda: Allows, lambda: Allows, "own effect"),
    ("g", "NaN", lambda: subclass(Allows, "F", allow_entry=lambda self, s, d, p: NAN), lambda: Closed, "left out"),
    ("g", "bool", lambda: subclass(Allows, "F", allow_entry=lambda self, s, d, p: False), lambda: Closed,
     "left out"),
    ("g", "wrong type", lambda: subclass(Allows, "F", allow_entry=lambda self, s, d, p: ["no"]), lambda: Closed,
     "left out"),
    ("g", "mutates its input", lambda: subclass(Allows, "F", allow_entry=write_portfolio), lambda: Closed,
     "left out"),
    ("g", "slow", lambda: subclass(Allows, "F", allow_entry=slow), lambda: Closed, "left out"),
    # portfolio watchers (fallback: quiet)
    ("w", "raises", lambda: subclass(Quiet, "F", on_bar=boom), lambda: Quiet, "left out"),
    ("w", "returns None", lambda: subclass(Quiet, "F", on_bar=lambda self, p: None), lambda: Quiet, "own effect"),
    ("w", "NaN", lambda: subclass(Quiet, "F", on_bar=action_with(fraction=NAN)), lambda: Quiet, "left out"),
    ("w", "wrong type", lambda: subclass(Quiet, "F", on_bar=lambda self, p: {"close": "all"}), lambda: Quiet,
     "left out"),
    ("w", "bool", lambda: subclass(Quiet, "F", on_bar=lambda self, p: True), lambda: Quiet, "left out"),
    ("w", "string", lambda: subclass(Quiet, "F", on_bar=lambda self, p: "close_all"), lambda: Quiet, "left out"),
    ("w", "negative", lambda: subclass(Quiet, "F", on_bar=action_with(fraction=-1.0)), lambda: Quiet, "left out"),
    ("w", "huge", lambda: subclass(Quiet, "F", on_bar=action_with(fraction=50.0)), lambda: Quiet, "left out"),
    ("w", "mutates its input", lambda: subclass(Quiet, "F", on_bar=write_portfolio), lambda: Quiet, "left out"),
    ("w", "slow", lambda: subclass(Quiet, "F", on_bar=slow), lambda: Quiet, "left out"),
]
IDS = [f"{KIND[c]}-{fault}" for c, fault, *_ in CASES]


@pytest.fixture(scope="module")
def candles(btc_candles):
    return btc_candles.slice(30_000, 30_000 + BARS)


def run(candles, component: str, cls: type, *, budget: bool = False):
    """The healthy pipeline with ``component`` built from ``cls``; (result, component_failed events)."""
    factories = {**HEALTHY, component: cls}
    by_role: dict[str, dict[str, Any]] = {"signal_sources": {"pulse": Pulse}}
    for name, factory in factories.items():
        by_role.setdefault(ROLE_OF[name], {})[name] = factory
    plugins = load_plugins({}, entry_points={}, extra_plugins={"probe": fake_plugins.AllRoles(**by_role)})
    engine = {"vote_timeout_ms": 50, "call_timeout_ms": 50} if budget else {}
    settings = structure({**CONFIG, "engine": engine}, Settings)
    with structlog.testing.capture_logs() as logs:
        result = run_backtest(settings, plugins=plugins, candles=[candles])
    return result, [e for e in logs if e["event"] == "component_failed"]


def summary(result) -> tuple:
    """What the run did: its trades and every decision's outcome, levels and size (not the texts
    that say which component answered)."""
    trades = [(t.opened_at, t.closed_at, int(t.side), t.exit_reason, t.entries_filled, round(t.pnl, 9))
              for t in result.raw.trades]
    decisions = [(d.time, d.outcome.split(":")[0], int(d.signal.action), round(d.confidence, 12),
                  d.levels and round(d.levels.stop, 9), d.sizing and round(d.sizing.quantity, 12))
                 for d in result.raw.decisions]
    return trades, decisions, round(float(result.raw.equity[-1]), 9)


@pytest.fixture(autouse=True)
def fresh_gate(monkeypatch):
    global GATE
    GATE = Gate()
    monkeypatch.setattr(budget_module, "wait_for", GATE.wait)
    yield
    GATE.opened.set()


@pytest.mark.parametrize("component, fault, faulty, fallback, outcome", CASES, ids=IDS)
def test_a_fault_changes_nothing_but_what_the_engine_promises(candles, component, fault, faulty, fallback, outcome):
    if outcome == "run stops naming the plugin":
        with pytest.raises(PluginError, match=rf"^exit manager '{component}' failed to prepare BTC/USDT: "):
            run(candles, component, faulty())
        return
    result, failures = run(candles, component, faulty(), budget=fault == "slow")
    assert {e["component"] for e in failures} <= {component}           # nobody else is blamed
    if outcome == "own effect":
        assert not failures and math.isfinite(result.raw.equity[-1]) and result.stats["trades"] > 0
        if fallback() is not None:
            assert summary(result) == summary(run(candles, component, fallback())[0])
        return
    assert failures, "a refusal that is not logged"
    assert all(e["plugin"] == "probe" for e in failures)                # ... and its plugin
    assert set(result.raw.errors) == {f"{component}.{e['call']}" for e in failures}
    if fault == "slow":
        assert "ran over its 50 ms budget" in failures[0]["error"] and not GATE.opened.is_set()
    if outcome == "cut down":                   # at most the equity at leverage 1, never the 1e6 asked
        equity = dict(zip(result.raw.times.tolist(), result.raw.equity.tolist()))
        entered = [d for d in result.raw.decisions if d.outcome == "entered"]
        assert entered and all(d.sizing.quantity * d.plan.average_price <= equity[d.time] * (1 + 1e-9)
                               for d in entered)
        assert math.isfinite(result.raw.equity[-1]) and min(result.raw.equity) > 0
        return
    assert summary(result) == summary(run(candles, component, fallback())[0])


def test_the_healthy_probe_pipeline_uses_every_component(candles):
    """The comparisons above mean something: the healthy run trades, votes, calibrates, ladders,
    trails its stops, and a fallback run differs from it."""
    result, failures = run(candles, "x", Silent)
    assert not failures and result.stats["trades"] >= 5
    entered = [d for d in result.raw.decisions if d.outcome == "entered"]
    assert all([v.component for v in d.votes] == ["pulse+x", "m"] and len(d.plan.legs) == 2 for d in entered)
    assert {t.exit_reason for t in result.raw.trades} >= {"trailing_stop"}
    for component, fallback in (("m", voting(Abstains)), ("p", Direct), ("e", exits(StandsStill))):
        assert summary(run(candles, component, fallback)[0]) != summary(result), component


def test_the_probe_covers_every_kind_of_plugin_and_at_least_50_fault_modes():
    assert len(CASES) >= 50 and len(set(IDS)) == len(IDS)
    assert set(KIND.values()) == {KIND[c] for c, *_ in CASES}
    assert set(Counter(outcome for *_, outcome in CASES)) <= set(OUTCOMES)
