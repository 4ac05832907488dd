"""Weekly-block bootstrap: how much a figure would move on another draw of market weeks.

Bars of one week are strongly dependent (overlapping 24-bar outcomes, one regime), and the
symbols move together, so resampling single predictions would give intervals far too narrow.
Instead calendar weeks (UTC, Monday 00:00) are resampled with replacement, every symbol's rows
of a drawn week together. One draw of weeks serves every row and every trading arm, so the
difference of two figures on the same draws is a paired interval.

Every figure is a ratio of per-week sums, so a resample costs a small matrix product instead of
a pass over the rows: ``counts (B x weeks) @ per-week sums``. AUC uses the per-week-pair matrix
of concordant (positive, negative) pairs, exact for integer week weights. The bins of the
equal-mass ECE are fixed at the full sample's quantiles (a resample does not move them).
ECE is biased upward on a resample (duplicated weeks add noise to every bin), so its percentile
interval can sit above the point estimate; its upper end is the useful figure.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from mlcoord.evaluation.metrics import EPS, bin_index, equal_mass_edges, pointwise_log_loss

WEEK_NS = 7 * 24 * 3600 * 10**9
MONDAY_OFFSET_NS = 3 * 24 * 3600 * 10**9     # 1970-01-01 was a Thursday: weeks start on Mondays
LEVEL = 0.95


def week_of(times_ns) -> np.ndarray:
    return (np.asarray(times_ns, dtype=np.int64) + MONDAY_OFFSET_NS) // WEEK_NS


class WeeklyBootstrap:
    """``resamples`` draws of the weeks present in ``times_ns``, seeded."""

    def __init__(self, times_ns, resamples: int = 1000, seed: int = 0):
        if resamples < 1:
            raise ValueError(f"bootstrap resamples must be >= 1, got {resamples!r}")
        self.weeks = np.unique(week_of(times_ns))
        self.resamples = resamples
        rng = np.random.default_rng(seed)
        w = len(self.weeks)
        self.counts = (rng.multinomial(w, np.full(w, 1.0 / w), size=resamples).astype(float)
                       if w else np.zeros((resamples, 0)))

    def index(self, times_ns) -> np.ndarray:
        weeks = week_of(times_ns)
        k = np.searchsorted(self.weeks, weeks)
        if len(weeks) and (k.max() >= len(self.weeks) or not np.array_equal(self.weeks[k], weeks)):
            raise ValueError("a row falls in a week the bootstrap was not built on")
        return k

    def _sum(self, k: np.ndarray, values: np.ndarray) -> np.ndarray:
        """(B,) resampled sums of ``values`` (rows in weeks ``k``)."""
        return self.counts @ np.bincount(k, weights=values, minlength=len(self.weeks))

    # -- scores --------------------------------------------------------------------------------
    def scores(self, times_ns, y, p, p_causal: Optional[np.ndarray] = None) -> dict[str, np.ndarray]:
        """(B,) samples of AUC, log-loss, skill against both climatologies, Brier, both ECEs."""
        y, p = np.asarray(y, float), np.asarray(p, float)
        k = self.index(times_ns)
        n = self._sum(k, np.ones(len(y)))
        with np.errstate(divide="ignore", invalid="ignore"):
            ll = self._sum(k, pointwise_log_loss(y, p)) / n
            rate = self._sum(k, y) / n
            base = np.clip(rate, EPS, 1 - EPS)
            skill = 1 - ll / -(base * np.log(base) + (1 - base) * np.log(1 - base))
            # a draw with one class only has no uncertainty to be skilful against: no skill figure
            skill[(rate <= 0) | (rate >= 1)] = np.nan
            out = {"log_loss": ll, "brier": self._sum(k, (p - y) ** 2) / n, "skill_vs_in_sample": skill}
            if p_causal is not None:
                out["skill_vs_causal"] = 1 - ll / (self._sum(k, pointwise_log_loss(y, p_causal)) / n)
            out["ece"] = self._ece(k, y, p, np.clip(np.digitize(p, np.linspace(0, 1, 11)[1:-1]), 0, 9), 10, n)
            out["ece_mass15"] = self._ece(k, y, p, bin_index(p, equal_mass_edges(p, 15)), 15, n)
        out["auc"] = self._auc(k, y >= 0.5, p)
        return out

    def auc(self, times_ns, y, scores) -> np.ndarray:
        """(B,) samples of the AUC alone: ``scores`` may be any ranking score (a raw feature too),
        where :meth:`scores` would treat them as probabilities."""
        return self._auc(self.index(times_ns), np.asarray(y, float) >= 0.5, np.asarray(scores, float))

    def _ece(self, k, y, p, which, bins, n) -> np.ndarray:
        cell = k * bins + which
        size = len(self.weeks) * bins
        sp = np.bincount(cell, weights=p, minlength=size).reshape(-1, bins)
        sy = np.bincount(cell, weights=y, minlength=size).reshape(-1, bins)
        return np.abs(self.counts @ sp - self.counts @ sy).sum(axis=1) / n

    def _auc(self, k, pos, p) -> np.ndarray:
        w = len(self.weeks)
        pair = np.zeros((w, w))     # [week of positive, week of negative]: concordant pairs
        kp, pp = k[pos], p[pos]
        for b in np.unique(k[~pos]):
            neg = np.sort(p[~pos & (k == b)])
            lo, hi = np.searchsorted(neg, pp, "left"), np.searchsorted(neg, pp, "right")
            pair[:, b] = np.bincount(kp, weights=lo + 0.5 * (hi - lo), minlength=w)
        n_pos = self.counts @ np.bincount(kp, minlength=w)
        n_neg = self.counts @ np.bincount(k[~pos], minlength=w)
        with np.errstate(divide="ignore", invalid="ignore"):
            return ((self.counts @ pair) * self.counts).sum(axis=1) / (n_pos * n_neg)

    # -- trades --------------------------------------------------------------------------------
    def mean(self, times_ns, values) -> np.ndarray:
        """(B,) samples of the mean of ``values`` (e.g. net return per trade)."""
        values = np.asarray(values, float)
        k = self.index(times_ns)
        with np.errstate(divide="ignore", invalid="ignore"):
            return self._sum(k, values) / self._sum(k, np.ones(len(values)))

    def total(self, times_ns, values) -> np.ndarray:
        """(B,) samples of the sum of ``values`` (e.g. net PnL of all trades)."""
        values = np.asarray(values, float)
        return self._sum(self.index(times_ns), values)


def interval(samples: np.ndarray, level: float = LEVEL) -> list[Optional[float]]:
    """Percentile interval ``[lo, hi]``; ``[None, None]`` when no sample is finite."""
    s = np.asarray(samples, float)
    s = s[np.isfinite(s)]
    if not len(s):
        return [None, None]
    a = (1 - level) / 2 * 100
    lo, hi = np.percentile(s, [a, 100 - a])
    return [round(float(lo), 6), round(float(hi), 6)]


def intervals(samples: dict[str, np.ndarray]) -> dict[str, list[Optional[float]]]:
    return {name: interval(s) for name, s in samples.items()}
