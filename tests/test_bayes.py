"""The ``bayes`` calibrator: identity prior, real calibration on known probabilities, monotone,
forgetting, persistence, determinism, option validation and registration."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlcoord import Action, Signal
from mlcoord.components import Calibrator
from mlcoord.config import ConfigError, structure
from mlcoord.learning import expected_calibration_error
from mlcoord.registry import ComponentSpec, Register, check_protocol
from mlcoord_bayes import BayesCalibrator, BayesOptions, pool_adjacent_violators, register_calibrators

GRID = np.linspace(0.0, 1.0, 201)
BUY, SELL = Signal(Action.BUY, 0.7), Signal(Action.SELL, 0.7)


def quadratic(r):
    return 0.25 + 0.5 * r * r


def overconfident(r):
    return 0.5 + 0.3 * (r - 0.5)


def stream(cal, truth, n, rng, low=0.0, high=1.0, direction=None):
    raw = rng.uniform(low, high, n)
    hit = rng.random(n) < truth(raw)
    for r, h in zip(raw, hit):
        if direction is None:
            cal.learn(float(r), bool(h))
        else:
            cal.learn(float(r), bool(h), direction=direction)


def fresh_ece(cal, truth, rng, n=20_000, signal=None):
    raw = rng.random(n)
    hit = rng.random(n) < truth(raw)
    calibrated = [cal.calibrate(float(r), signal) for r in raw]
    return expected_calibration_error(hit, calibrated), expected_calibration_error(hit, raw)


def curve(cal, signal=None):
    return np.array([cal.calibrate(float(x), signal) for x in GRID])


# -- prior ----------------------------------------------------------------------------------------
def test_identity_before_any_outcome():
    cal = BayesCalibrator()
    assert np.max(np.abs(curve(cal) - GRID)) <= 0.02
    assert cal.calibrate(0.0) == 0.01 and cal.calibrate(1.0) == 0.99     # clipped, never certain
    assert cal.describe(0.72) == (
        "raw 0.72 -> calibrated 0.72 (bin 0.70-0.80: 0.0 hits / 0.0, Beta(7.5, 2.5))")


def test_prior_strength_sets_how_fast_data_moves_the_estimate():
    weak = BayesCalibrator(BayesOptions(prior_strength=1.0))
    strong = BayesCalibrator(BayesOptions(prior_strength=100.0))
    for cal in (weak, strong):
        for _ in range(20):
            cal.learn(0.75, False)           # 0.75 confidence, never hits
    assert weak.calibrate(0.75) < 0.15 < 0.5 < strong.calibrate(0.75) < 0.75


# -- calibration on a stream whose true probabilities are known ---------------------------------
@pytest.mark.parametrize("truth", [quadratic, overconfident])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_calibration_error_below_003_after_5000_outcomes(truth, seed):
    rng = np.random.default_rng(seed)
    cal = BayesCalibrator(BayesOptions(decay=1.0))       # a stationary stream: keep every outcome
    stream(cal, truth, 5000, rng)
    calibrated, raw = fresh_ece(cal, truth, rng)
    assert calibrated < 0.03, (calibrated, raw)
    assert raw > 0.10 and raw > 4 * calibrated
    # and the curve itself is close to the truth across the range
    inner = (GRID >= 0.05) & (GRID <= 0.95)
    assert np.mean(np.abs(curve(cal)[inner] - truth(GRID[inner]))) < 0.03


def test_default_options_calibrate_too():
    """With the default 1000-outcome memory the estimate is noisier but still calibrated."""
    eces = []
    for seed in range(5):
        rng = np.random.default_rng(100 + seed)
        cal = BayesCalibrator()
        stream(cal, quadratic, 5000, rng)
        eces.append(fresh_ece(cal, quadratic, rng)[0])
    assert np.mean(eces) < 0.03 and max(eces) < 0.045, eces


def test_clustered_raw_values_are_located_inside_their_bin():
    """Raw values all near 0.62 with true hit rate 0.45: the answer at 0.62 is 0.45, not a
    value interpolated from an assumed bin centre."""
    rng = np.random.default_rng(3)
    cal = BayesCalibrator(BayesOptions(decay=1.0))
    stream(cal, lambda r: np.full_like(r, 0.45), 4000, rng, low=0.61, high=0.63)
    assert cal.calibrate(0.62) == pytest.approx(0.45, abs=0.025)


# -- monotone -----------------------------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.floats(0.0, 1.0), st.booleans()), max_size=300),
       st.sampled_from([2, 3, 10, 37]), st.sampled_from([0.5, 10.0]), st.sampled_from([0.9, 1.0]))
def test_calibrated_is_non_decreasing_in_raw(outcomes, bins, prior_strength, decay):
    cal = BayesCalibrator(BayesOptions(bins=bins, prior_strength=prior_strength, decay=decay))
    for raw, hit in outcomes:
        cal.learn(raw, hit)
    values = curve(cal)
    assert np.all(np.diff(values) >= -1e-12)
    assert np.all((values >= 0.01) & (values <= 0.99))


def test_anti_calibrated_evidence_gives_a_flat_not_a_falling_curve():
    cal = BayesCalibrator(BayesOptions(decay=1.0))
    rng = np.random.default_rng(4)
    stream(cal, lambda r: 0.9 - 0.8 * r, 3000, rng)      # higher raw, fewer hits
    values = curve(cal)
    assert np.all(np.diff(values) >= -1e-12)
    assert values[-1] - values[0] < 0.1                   # pooled towards the base rate 0.5
    assert abs(values[100] - 0.5) < 0.05


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.floats(-5, 5), st.floats(0.1, 10)), min_size=1, max_size=30))
def test_pool_adjacent_violators(pairs):
    values, weights = [p[0] for p in pairs], [p[1] for p in pairs]
    fit = pool_adjacent_violators(values, weights)
    assert len(fit) == len(values)
    assert all(b >= a - 1e-9 for a, b in zip(fit, fit[1:]))
    assert np.dot(fit, weights) == pytest.approx(np.dot(values, weights), rel=1e-9, abs=1e-9)
    if all(b >= a for a, b in zip(values, values[1:])):
        assert fit == values


# -- forgetting ---------------------------------------------------------------------------------
def test_decay_re_adapts_after_a_planted_change():
    def after(r):
        return 0.3 + 0.4 * r                               # the ensemble became over-confident

    results = {}
    for decay in (0.999, 1.0):
        rng = np.random.default_rng(5)
        cal = BayesCalibrator(BayesOptions(decay=decay))
        stream(cal, lambda r: r, 4000, rng)                 # calibrated regime
        assert fresh_ece(cal, lambda r: r, np.random.default_rng(6))[0] < 0.03
        stream(cal, after, 3000, rng)                       # the change
        results[decay] = fresh_ece(cal, after, np.random.default_rng(7))[0]
    assert results[0.999] < 0.04, results
    assert results[1.0] > 0.07 and results[1.0] > 2 * results[0.999], results


def test_effective_memory_is_about_one_over_one_minus_decay():
    cal = BayesCalibrator(BayesOptions(decay=0.99))
    for _ in range(5000):
        cal.learn(0.55, True)
    trials = cal.tables["all"].trials[5]
    assert trials == pytest.approx(100.0, rel=1e-3)


# -- per direction --------------------------------------------------------------------------------
def test_per_direction_keeps_separate_posteriors():
    cal = BayesCalibrator(BayesOptions(per_direction=True, decay=1.0))
    rng = np.random.default_rng(8)
    stream(cal, lambda r: np.full_like(r, 0.7), 2000, rng, direction=+1)
    stream(cal, lambda r: np.full_like(r, 0.3), 2000, rng, direction=Action.SELL)
    assert cal.calibrate(0.5, BUY) == pytest.approx(0.7, abs=0.04)
    assert cal.calibrate(0.5, SELL) == pytest.approx(0.3, abs=0.04)
    assert cal.calibrate(0.5, Signal(Action.HOLD, 0.0)) == 0.5     # no event: raw kept
    assert cal.describe(0.5, BUY).startswith(f"raw 0.50 -> calibrated {cal.calibrate(0.5, BUY):.2f} (buy ")
    assert "buy bin 0.50-0.60" in cal.describe(0.5, BUY)
    with pytest.raises(ValueError, match="direction"):
        cal.learn(0.5, True)
    with pytest.raises(ValueError, match="HOLD"):
        cal.learn(0.5, True, direction=0)


def test_pooled_ignores_direction():
    a, b = BayesCalibrator(), BayesCalibrator()
    a.learn(0.8, False, direction=+1)
    b.learn(0.8, False, direction=-1)
    assert a.state() == b.state() and a.calibrate(0.8, BUY) == b.calibrate(0.8, SELL)


# -- describe, inputs ---------------------------------------------------------------------------
def test_describe_shows_raw_calibrated_bin_counts_and_posterior():
    cal = BayesCalibrator(BayesOptions(decay=1.0))
    for i in range(63):
        cal.learn(0.72, i < 41)
    text = cal.describe(0.72)
    assert re.fullmatch(r"raw 0\.72 -> calibrated 0\.\d\d \(bin 0\.70-0\.80: 41\.0 hits / 63\.0, "
                        r"Beta\(48\.5, 24\.5\)\)", text), text
    assert f"calibrated {cal.calibrate(0.72):.2f}" in text


@pytest.mark.parametrize("raw", [math.nan, -0.01, 1.01, math.inf])
def test_invalid_raw_is_refused(raw):
    cal = BayesCalibrator()
    with pytest.raises(ValueError, match="raw confidence"):
        cal.calibrate(raw, BUY)
    with pytest.raises(ValueError, match="raw confidence"):
        cal.learn(raw, True)
    assert cal.outcomes == 0


# -- persistence and determinism ---------------------------------------------------------------
@pytest.mark.parametrize("per_direction", [False, True])
def test_state_round_trip_is_identical(per_direction):
    options = BayesOptions(per_direction=per_direction)
    cal = BayesCalibrator(options)
    rng = np.random.default_rng(9)
    for r, h, d in zip(rng.random(1500), rng.random(1500) < 0.5, rng.choice([-1, 1], 1500)):
        cal.learn(float(r), bool(h), direction=int(d))
    saved = json.loads(json.dumps(cal.state()))
    restored = BayesCalibrator(options)
    restored.load_state(saved)
    assert restored.state() == cal.state()
    signals = (BUY, SELL)
    for s in signals:
        assert np.array_equal(curve(restored, s), curve(cal, s))
    for c in (cal, restored):                              # and they keep learning in lockstep
        c.learn(0.66, True, direction=1)
    assert restored.state() == cal.state()
    assert restored.describe(0.66, BUY) == cal.describe(0.66, BUY)


@pytest.mark.parametrize("change, message", [
    (lambda s: s.update(bins=12), "bins=12"),
    (lambda s: s.update(per_direction=True), "per_direction=True"),
    (lambda s: s.update(version=99), "version"),
    (lambda s: s["tables"]["all"].update(hits=[0.0] * 3), "tables.all.hits"),
    (lambda s: s["tables"]["all"].update(trials=[-1.0] * 10), "tables.all.trials"),
    (lambda s: s["tables"]["all"]["hits"].__setitem__(4, 1e9), "bin 4"),
    (lambda s: s.update(outcomes=-3), "outcomes"),
])
def test_incompatible_or_corrupt_state_is_refused(change, message):
    cal = BayesCalibrator()
    cal.learn(0.45, True)
    state = json.loads(json.dumps(cal.state()))
    change(state)
    target = BayesCalibrator()
    with pytest.raises(ValueError, match=re.escape(message)):
        target.load_state(state)
    assert target.state() == BayesCalibrator().state()     # nothing half-loaded


def test_deterministic():
    def run():
        cal = BayesCalibrator()
        rng = np.random.default_rng(10)
        stream(cal, quadratic, 3000, rng)
        return json.dumps(cal.state()), curve(cal).tobytes()

    assert run() == run()


# -- options and registration -------------------------------------------------------------------
def test_defaults_are_the_documented_ones():
    o = BayesOptions()
    assert (o.bins, o.prior_strength, o.decay, o.per_direction, o.min_probability, o.max_probability) == (
        10, 10.0, 0.999, False, 0.01, 0.99)


@pytest.mark.parametrize("kwargs, field", [
    ({"bins": 1}, "bins"), ({"bins": 2.5}, "bins"), ({"bins": True}, "bins"),
    ({"prior_strength": 0.0}, "prior_strength"), ({"prior_strength": math.nan}, "prior_strength"),
    ({"decay": 0.0}, "decay"), ({"decay": 1.0001}, "decay"),
    ({"per_direction": 1}, "per_direction"),
    ({"min_probability": -0.1}, "min_probability"), ({"max_probability": 1.5}, "max_probability"),
    ({"min_probability": 0.6, "max_probability": 0.4}, "max_probability"),
])
def test_invalid_options_name_the_field(kwargs, field):
    with pytest.raises((ValueError, TypeError), match=field):
        BayesOptions(**kwargs)


def test_config_errors_name_the_field_and_path():
    assert structure({"decay": 1, "bins": 20}, BayesOptions) == BayesOptions(decay=1.0, bins=20)
    with pytest.raises(ConfigError, match=r"decay.*\$\.plugins\.bayes"):
        structure({"decay": 2.0}, BayesOptions, path="$.plugins.bayes")
    with pytest.raises(ConfigError, match="bogus"):
        structure({"bogus": 1}, BayesOptions, path="$.plugins.bayes")


def test_registers_via_the_hook():
    calls = []

    def register(name, factory, options=None, description="", **declared):
        calls.append((name, factory, options, description))

    register_calibrators(register)
    [(name, factory, options, description)] = calls
    assert name == "bayes" and options is BayesOptions and description
    built = factory(options())
    assert isinstance(built, Calibrator)
    check_protocol(ComponentSpec(name, "calibrators", factory, options, "bayes"), built)
    assert 0.0 <= built.calibrate(0.7, BUY) <= 1.0

    registry = {}                                          # and through the engine's Register
    register_calibrators(Register(registry, "calibrators", "bayes"))
    assert registry["bayes"].factory is BayesCalibrator and registry["bayes"].owner == "bayes"
