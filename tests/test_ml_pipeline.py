"""ML components inside the pipeline: graceful degradation, outcome feedback, persistence."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mlcoord import hookimpl
from mlcoord.backtest.run import run_backtest
from mlcoord.config import Settings, structure
from mlcoord.model import Action, Vote
from mlcoord.registry import discover_entry_points, load_plugins
from pipelines import enabled_extras

BUILTINS = ("technical", "dca", "exits", "risk", "hedging", "protections", "bayes")


class Voter:
    def __init__(self, behaviour, log):
        self.behaviour, self.log = behaviour, log

    def vote(self, i, signal):
        b = self.behaviour
        if b == "raise":
            raise RuntimeError("model exploded")
        if b == "nan":
            return Vote("x", Action.BUY, 0.6, p_up=float("nan"), p_down=0.2)
        if b == "nonsense":
            return "BUY!"
        return Vote("x", Action.BUY, 0.9, p_up=0.9, p_down=0.05, reasons=("always bullish",))


class FakeML:
    """An ML component with a chosen behaviour that records what it learns."""

    def __init__(self, behaviour):
        self.behaviour = behaviour
        self.outcomes = []
        self.saved = {"seen": 0}

    def prepare(self, data):
        self.n = len(data)
        return Voter(self.behaviour, self.outcomes)

    def learn(self, outcome):
        self.outcomes.append(outcome)

    def state(self):
        return {"seen": self.saved["seen"] + len(self.outcomes)}

    def load_state(self, state):
        self.saved = dict(state)


class FakePlugin:
    def __init__(self, **components):
        self.components = components

    @hookimpl
    def register_ml_components(self, register):
        for name, obj in self.components.items():
            register(name, lambda _o, obj=obj: obj)


def plugins_with(**components):
    eps = {n: ep for n, ep in discover_entry_points().items() if n in BUILTINS}
    return load_plugins({}, entry_points=eps, extra_plugins={"fakeml": FakePlugin(**components)})


def run(candles, plugins, **config):
    """A backtest with the test's fake components enabled ([engine] enable)."""
    return run_backtest(enabled_extras(structure(config, Settings), plugins), plugins=plugins, candles=[candles])


@pytest.mark.parametrize("behaviour", ["raise", "nan", "nonsense"])
def test_a_failing_ml_component_is_left_out_and_the_technical_signal_stands(short_candles, behaviour):
    broken = FakeML(behaviour)
    result = run(short_candles, plugins_with(broken=broken))
    assert result.raw.errors.get("broken.vote", 0) > 0
    decisions = [d for d in result.raw.decisions if d.technical.action != Action.HOLD]
    assert decisions
    for d in decisions:                       # nothing from the broken component got in
        assert [v.component for v in d.votes] == ["technical"]
        assert d.signal.action == d.technical.action


def test_one_failing_component_does_not_take_the_others_down(short_candles):
    result = run(short_candles, plugins_with(broken=FakeML("raise"), good=FakeML("good")))
    voted = {v.component for d in result.raw.decisions for v in d.votes}
    assert voted == {"technical", "good"}


def test_outcomes_arrive_only_after_the_horizon_closed(short_candles):
    good = FakeML("good")
    result = run(short_candles, plugins_with(good=good), learning={"horizon": 12})
    assert good.outcomes, "no outcome was ever fed back"
    index = {int(t): i for i, t in enumerate(short_candles.time)}
    close = short_candles.close
    decided = {d.time for d in result.raw.decisions}
    for o in good.outcomes:
        assert o.time in decided
        i = index[o.time]
        assert i + 12 < len(close)
        assert o.forward_return == pytest.approx(close[i + 12] / close[i] - 1.0)
    # nothing is scored whose horizon runs past the data
    last = max(index[o.time] for o in good.outcomes)
    assert last + 12 <= len(close) - 1


def test_learning_state_persists_between_runs(short_candles, tmp_path):
    """The second run trades later bars: a state is never restored onto bars it learnt from
    (see tests/test_learning_state.py)."""
    state = tmp_path / "state.json"
    first = FakeML("good")
    half = len(short_candles) // 2
    run(short_candles.slice(0, half), plugins_with(good=first), learning={"state_file": str(state)})
    saved = json.loads(state.read_text())
    assert saved["components"]["good"]["seen"] == len(first.outcomes) > 0
    assert "ensemble" in saved and "bayes" in saved["components"]
    second = FakeML("good")
    run(short_candles.slice(half, len(short_candles)), plugins_with(good=second),
        learning={"state_file": str(state)})
    assert second.saved["seen"] == len(first.outcomes)          # restored at start
    again = json.loads(state.read_text())
    assert again["ensemble"]["updates"] > saved["ensemble"]["updates"]


def test_same_ml_run_twice_gives_identical_decisions(short_candles):
    a = run(short_candles, plugins_with(good=FakeML("good")))
    b = run(short_candles, plugins_with(good=FakeML("good")))
    assert a.raw.decisions == b.raw.decisions
    assert np.array_equal(a.raw.equity, b.raw.equity)


class CountingML(FakeML):
    """A FakeML that counts its prepares (and may fail them)."""

    def __init__(self, behaviour, fail_prepare=False):
        super().__init__(behaviour)
        self.prepared, self.fail_prepare = 0, fail_prepare

    def prepare(self, data):
        self.prepared += 1
        if self.fail_prepare:
            raise RuntimeError("weights file is gone")
        return super().prepare(data)


@pytest.mark.parametrize("fail_prepare", [False, True])
def test_a_live_bar_without_a_signal_prepares_no_ml_component(short_candles, fail_prepare):
    """A live prepare asks only about its newest bars: without a signal there, the ML components
    are prepared only if a vote is asked for, and vote (or fail, and abstain) as if eager."""
    from mlcoord.components import build_market_data
    from mlcoord.pipeline import build_pipeline

    ml = CountingML("ok", fail_prepare)
    settings = structure({"engine": {"min_confidence": 0.0, "enable": ["fakeml"]}}, Settings)
    pipeline = build_pipeline(settings, plugins_with(x=ml))
    data = build_market_data(short_candles, settings.data.higher_timeframes)
    eager = pipeline.prepare(data)
    assert ml.prepared == 1
    quiet = np.flatnonzero(eager.action == 0)
    loud = np.flatnonzero(eager.action != 0)
    k = int(quiet[-1])
    head = build_market_data(short_candles.slice(0, k + 1), settings.data.higher_timeframes)
    live = pipeline.prepare(head, since=k)
    assert ml.prepared == 1 and len(live.voters) == 1        # deferred: not prepared yet
    signal = pipeline.technical_signal(eager, int(loud[0]))
    votes = pipeline.votes(live, int(loud[0]), signal)          # a vote asked for after all
    assert ml.prepared == 2
    if fail_prepare:
        assert votes == [] and pipeline.errors.counts["x.prepare"] == 2
    else:
        assert votes == pipeline.votes(eager, int(loud[0]), signal) and votes[0].confidence == 0.9
