"""Calibration fitted to where trades happen (issue 16): ``learn_outcome`` and bayes' trade-label target."""

from __future__ import annotations

import pytest

from mlcoord import hookimpl
from mlcoord.backtest.run import run_backtest
from mlcoord.config import Settings, structure
from mlcoord.learning import Outcome, TradeLabel
from mlcoord.registry import discover_entry_points, load_plugins
from mlcoord_bayes import BayesCalibrator, BayesOptions
from pipelines import enabled_extras
from test_ml_pipeline import BUILTINS, FakeML


def _outcome(direction=1, hit=True, long_wins=False, short_wins=True, raw=0.65):
    label = lambda side, win: TradeLabel(side, win, 0.01 if win else -0.01, "time", 24, 1.0, None)  # noqa: E731
    return Outcome("S", 0, 0, direction, 0.01 if hit else -0.01, hit, raw, raw, (), label(1, long_wins),
                   label(-1, short_wins))


def test_trade_label_target_learns_the_trade_not_the_event():
    """The event happened, but the long trade lost net of costs: the trade-label calibrator learns
    a loss, the event calibrator a hit."""
    event, trade = BayesCalibrator(), BayesCalibrator(BayesOptions(target="trade_label"))
    for _ in range(200):
        event.learn_outcome(_outcome())
        trade.learn_outcome(_outcome())
    assert event.calibrate(0.65) > 0.8 and trade.calibrate(0.65) < 0.2
    short = BayesCalibrator(BayesOptions(target="trade_label"))
    for _ in range(200):
        short.learn_outcome(_outcome(direction=-1))          # a SELL reads the short side's label
    assert short.calibrate(0.65) > 0.8


def test_an_outcome_without_a_trade_label_is_not_learnt():
    cal = BayesCalibrator(BayesOptions(target="trade_label"))
    cal.learn_outcome(Outcome("S", 0, 0, 1, 0.01, True, 0.6, 0.6))
    assert cal.outcomes == 0 and cal.calibrate(0.6) == pytest.approx(0.6)


def test_prior_rate_centres_every_bin_and_data_still_moves_it():
    cal = BayesCalibrator(BayesOptions(target="trade_label", prior_rate=0.4))
    assert [round(cal.calibrate(r), 6) for r in (0.05, 0.5, 0.95)] == [0.4, 0.4, 0.4]
    for _ in range(50):
        cal.learn_outcome(_outcome(raw=0.85, long_wins=True))
    assert cal.calibrate(0.85) > 0.6 and cal.calibrate(0.2) == pytest.approx(0.4)
    again = BayesCalibrator(BayesOptions(target="trade_label", prior_rate=0.4))
    again.load_state(cal.state())
    assert again.calibrate(0.85) == cal.calibrate(0.85)
    with pytest.raises(ValueError, match="prior_rate"):
        BayesOptions(prior_rate=1.0)
    with pytest.raises(ValueError, match="target"):
        BayesOptions(target="pnl")


class Recorder:
    """A calibrator with the optional ``learn_outcome``: the engine must call it, not ``learn``."""

    def __init__(self):
        self.outcomes, self.learnt = [], 0

    def calibrate(self, raw, signal):
        return raw

    def learn(self, raw, hit, direction):
        self.learnt += 1

    def learn_outcome(self, outcome):
        self.outcomes.append(outcome)


class CalibratorPlugin:
    def __init__(self, good, recorder):
        self.good, self.recorder = good, recorder

    @hookimpl
    def register_ml_components(self, register):
        register("good", lambda _o: self.good)

    @hookimpl
    def register_calibrators(self, register):
        register("recorder", lambda _o: self.recorder)


def test_the_engine_hands_a_calibrator_with_learn_outcome_the_whole_outcome(short_candles):
    recorder = Recorder()
    eps = {n: ep for n, ep in discover_entry_points().items() if n in BUILTINS}
    plugins = load_plugins({}, entry_points=eps, extra_plugins={"calplug": CalibratorPlugin(FakeML("good"), recorder)})
    settings = enabled_extras(structure({"pipeline": {"calibrator": "recorder"}}, Settings), plugins)
    result = run_backtest(settings, plugins=plugins, candles=[short_candles])
    assert recorder.outcomes and recorder.learnt == 0
    decided = {d.time: d for d in result.raw.decisions}
    for o in recorder.outcomes:
        d = decided[o.time]
        assert o.direction == int(d.signal.action) != 0 and o.raw_confidence == d.raw_confidence
    assert any(o.trade_up is not None and o.trade_down is not None for o in recorder.outcomes)
