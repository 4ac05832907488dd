"""The evaluation's figures: skill against climatology, ECE on equal-mass bins, and the
weekly-block bootstrap (exact on the full sample, seeded, weeks resampled across symbols)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlcoord.evaluation.bootstrap import WEEK_NS, WeeklyBootstrap, interval, week_of
from mlcoord.evaluation.metrics import ece_equal_mass, score_row
from mlcoord.learning import auc, expected_calibration_error

HOUR = 3_600_000_000_000


def _sample(n=4000, seed=1):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, 120 * WEEK_NS, n))
    y = (rng.random(n) < 0.45).astype(float)
    p = np.round(np.clip(0.45 + 0.15 * (y - 0.45) + rng.normal(0, 0.1, n), 0.01, 0.99), 2)   # ties too
    return t, y, p


def test_skill_is_zero_for_the_in_sample_climatology_and_positive_for_an_informative_forecast():
    t, y, p = _sample()
    clim = score_row(y, np.full(len(y), y.mean()), np.full(len(y), 0.5))
    assert clim["skill_vs_in_sample"] == pytest.approx(0.0, abs=1e-12)
    assert clim["skill_vs_causal"] > 0                      # the base rate beats a stale 0.5 here
    good = score_row(y, p, np.full(len(y), 0.5))
    assert good["skill_vs_in_sample"] > 0.05 and good["auc"] > 0.7
    noisy = score_row(y, np.random.default_rng(3).random(len(y)), np.full(len(y), 0.5))
    assert noisy["skill_vs_in_sample"] < 0 and noisy["skill_vs_causal"] < 0


def test_equal_mass_ece_sees_miscalibration_that_ten_wide_bins_average_away():
    # every forecast in 0.40-0.50 (one wide bin); within it the low half is right, the high half wrong
    rng = np.random.default_rng(0)
    p = rng.uniform(0.40, 0.50, 20_000)
    truth = np.where(p < 0.45, p + 0.08, p - 0.08)            # errors cancel inside the 0.4-0.5 bin
    y = (rng.random(len(p)) < truth).astype(float)
    assert expected_calibration_error(y, p, 10) < 0.01
    assert ece_equal_mass(y, p, 15) > 0.06


def test_bootstrap_with_every_week_once_reproduces_the_full_sample_figures():
    t, y, p = _sample()
    pc = np.full(len(y), 0.44)
    boot = WeeklyBootstrap(t, resamples=5, seed=0)
    boot.counts[0] = 1.0                                     # draw 0: every week exactly once
    samples = boot.scores(t, y, p, pc)
    full = score_row(y, p, pc)
    for name, values in samples.items():
        assert values[0] == pytest.approx(full[name], abs=1e-9), name
    assert boot.mean(t, p)[0] == pytest.approx(p.mean())
    assert boot.total(t, p)[0] == pytest.approx(p.sum())


def test_bootstrap_is_seeded_and_resamples_whole_weeks_of_every_symbol_together():
    t, y, p = _sample()
    a, b, c = (WeeklyBootstrap(t, 200, seed) for seed in (7, 7, 8))
    assert np.array_equal(a.counts, b.counts) and not np.array_equal(a.counts, c.counts)
    assert (a.counts.sum(axis=1) == len(a.weeks)).all()      # as many weeks drawn as there are
    # two symbols' rows at the same hours get the same weight in every draw
    k = a.index(np.concatenate([t, t]))
    assert np.array_equal(a.counts[:, k[: len(t)]], a.counts[:, k[len(t):]])
    # a bar on Sunday 23:00 and the next Monday 00:00 are in different weeks
    monday = pd.Timestamp("2024-03-04", tz="UTC").value
    assert week_of([monday - HOUR])[0] + 1 == week_of([monday])[0] == week_of([monday + 6 * 24 * HOUR])[0]


def test_weekly_blocks_widen_the_interval_when_outcomes_move_together_within_a_week():
    rng = np.random.default_rng(2)
    weeks = 100
    t = np.repeat(np.arange(weeks) * WEEK_NS, 50) + np.tile(np.arange(50) * HOUR, weeks)
    week_rate = np.repeat(rng.uniform(0.2, 0.8, weeks), 50)  # a regime per week
    y = (rng.random(len(t)) < week_rate).astype(float)
    p = np.full(len(t), 0.5)
    blocks = interval(WeeklyBootstrap(t, 400, 0).scores(t, y, p)["skill_vs_in_sample"])
    hours = interval(WeeklyBootstrap(np.arange(len(t)) * WEEK_NS, 400, 0).scores(
        np.arange(len(t)) * WEEK_NS, y, p)["skill_vs_in_sample"])      # every row its own block
    assert blocks[1] - blocks[0] > 2 * (hours[1] - hours[0])


def test_bootstrap_auc_of_a_raw_score_is_the_auc_of_the_drawn_weeks_rows_repeated():
    t, y, p = _sample()
    raw = np.round(np.log(p / (1 - p)) * 3, 0)                # not a probability: negative, > 1, tied
    boot = WeeklyBootstrap(t, resamples=4, seed=5)
    boot.counts[0] = 1.0                                     # draw 0: every week exactly once
    draws = boot.auc(t, y, raw)
    assert draws[0] == pytest.approx(auc(y, raw), abs=1e-12)
    for b in (1, 2, 3):                                      # a draw: each row as often as its week
        times = boot.counts[b][boot.index(t)].astype(int)
        assert draws[b] == pytest.approx(auc(np.repeat(y, times), np.repeat(raw, times)), abs=1e-12)
    assert len(set(np.round(draws[1:], 12))) == 3            # the draws differ
    assert np.allclose(boot.auc(t, y, p), boot.scores(t, y, p)["auc"])


def test_bad_bootstrap_input_is_a_clear_error():
    with pytest.raises(ValueError, match="resamples must be >= 1, got 0"):
        WeeklyBootstrap([0], resamples=0)
    boot = WeeklyBootstrap([0], resamples=3)
    with pytest.raises(ValueError, match="week the bootstrap was not built on"):
        boot.index([10 * WEEK_NS])


def test_a_draw_with_one_class_only_gives_no_in_sample_skill():
    t = np.array([0, WEEK_NS])                      # two weeks: one outcome each
    boot = WeeklyBootstrap(t, resamples=3, seed=0)
    boot.counts[:] = [[2, 0], [0, 2], [1, 1]]
    skill = boot.scores(t, np.array([1.0, 0.0]), np.array([0.7, 0.4]))["skill_vs_in_sample"]
    assert np.isnan(skill[0]) and np.isnan(skill[1]) and np.isfinite(skill[2])
