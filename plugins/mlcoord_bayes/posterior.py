"""Beta posteriors over raw-confidence bins, smoothed into one monotone calibration curve.

Kept apart from the plugin glue so the statistics can be read (and tested) on their own.
Everything is plain Python float math on ``bins`` numbers: ``learn`` costs O(bins), and
``calibrate`` a bisection over a curve rebuilt only after new outcomes.
"""

from __future__ import annotations

import bisect
import math
from typing import Any


def pool_adjacent_violators(values: list[float], weights: list[float]) -> list[float]:
    """The weighted least-squares non-decreasing fit of ``values`` (isotonic regression)."""
    blocks: list[list[float]] = []          # [mean, weight, length]
    for value, weight in zip(values, weights):
        blocks.append([value, weight, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            m2, w2, n2 = blocks.pop()
            m1, w1, n1 = blocks[-1]
            w = w1 + w2
            blocks[-1] = [(m1 * w1 + m2 * w2) / w, w, n1 + n2]
    out: list[float] = []
    for mean, _, length in blocks:
        out.extend([mean] * int(length))
    return out


class BinPosteriors:
    """Exponentially forgetting Beta posteriors, one per equal-width bin of raw confidence.

    Bin ``k`` (centre ``c_k``) has the prior ``Beta(s * c_k, s * (1 - c_k))``: before any
    outcome it believes the raw confidence, worth ``s`` outcomes. Each outcome first multiplies
    every bin's counts by ``decay`` (so the table's memory is about ``1 / (1 - decay)``
    outcomes), then adds one trial (and one hit if it hit) to the raw value's bin, together with
    the raw value itself, so each bin knows where inside it its outcomes actually fell.

    The curve: knot ``k`` sits at the bin's posterior mean raw value (prior: the centre) with
    the bin's posterior mean hit rate; the knot values are made non-decreasing by pool-adjacent-
    violators weighted by each bin's posterior pseudo-count (``s`` + its decayed outcomes), and
    the curve interpolates linearly between knots (and extends the end segments' slopes
    beyond the first and last knots). With no data every knot is ``(c_k, c_k)``: the identity.
    """

    __slots__ = ("bins", "prior_strength", "decay", "prior_rate", "hits", "trials", "raw_sum", "_knots", "_values")

    def __init__(self, bins: int, prior_strength: float, decay: float, prior_rate: float | None = None):
        self.bins, self.prior_strength, self.decay = bins, float(prior_strength), float(decay)
        self.prior_rate = prior_rate      # None: each bin's prior is centred on its bin centre
        self.hits = [0.0] * bins
        self.trials = [0.0] * bins
        self.raw_sum = [0.0] * bins
        self._knots: list[float] | None = None
        self._values: list[float] = []

    # -- statistics ---------------------------------------------------------------------
    def centre(self, k: int) -> float:
        return (k + 0.5) / self.bins

    def prior_mean(self, k: int) -> float:
        """Bin ``k``'s prior hit rate: its centre (identity), or the fixed ``prior_rate``."""
        return self.centre(k) if self.prior_rate is None else self.prior_rate

    def bin_of(self, raw: float) -> int:
        return min(int(raw * self.bins), self.bins - 1)

    def beta(self, k: int) -> tuple[float, float]:
        """The posterior ``Beta(a, b)`` of bin ``k``."""
        s, c = self.prior_strength, self.prior_mean(k)
        return s * c + self.hits[k], s * (1.0 - c) + self.trials[k] - self.hits[k]

    def learn(self, raw: float, hit: bool) -> None:
        d = self.decay
        if d != 1.0:
            self.hits = [h * d for h in self.hits]
            self.trials = [n * d for n in self.trials]
            self.raw_sum = [r * d for r in self.raw_sum]
        k = self.bin_of(raw)
        self.trials[k] += 1.0
        self.raw_sum[k] += raw
        if hit:
            self.hits[k] += 1.0
        self._knots = None

    # -- curve --------------------------------------------------------------------------
    def curve(self) -> tuple[list[float], list[float]]:
        """Knot positions (strictly increasing) and monotone calibrated values at them."""
        if self._knots is None:
            s = self.prior_strength
            knots, means, weights = [], [], []
            for k in range(self.bins):
                c, n = self.centre(k), self.trials[k]
                weight = s + n
                knots.append((s * c + self.raw_sum[k]) / weight)
                means.append((s * self.prior_mean(k) + self.hits[k]) / weight)
                weights.append(weight)
            self._values = pool_adjacent_violators(means, weights)
            self._knots = knots
        return self._knots, self._values

    def __call__(self, raw: float) -> float:
        knots, values = self.curve()
        j = bisect.bisect_right(knots, raw)
        lo = min(max(j - 1, 0), len(knots) - 2)      # segment used (end segments extended)
        x0, x1, y0, y1 = knots[lo], knots[lo + 1], values[lo], values[lo + 1]
        return y0 + (y1 - y0) * (raw - x0) / (x1 - x0)

    # -- persistence --------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"hits": list(self.hits), "trials": list(self.trials), "raw_sum": list(self.raw_sum)}

    def load_state(self, state: dict[str, Any], where: str) -> None:
        arrays = {}
        for key in ("hits", "trials", "raw_sum"):
            values = state.get(key)
            if not isinstance(values, list) or len(values) != self.bins:
                raise ValueError(f"{where}.{key}: expected a list of {self.bins} numbers, got {values!r}")
            if not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
                       and x >= 0 for x in values):
                raise ValueError(f"{where}.{key}: expected finite non-negative numbers, got {values!r}")
            arrays[key] = [float(x) for x in values]
        for k in range(self.bins):
            n = arrays["trials"][k]
            if arrays["hits"][k] > n * (1 + 1e-9) or arrays["raw_sum"][k] > n * (1 + 1e-9):
                raise ValueError(f"{where}: bin {k} has hits or raw_sum above its trials ({n})")
        self.hits, self.trials, self.raw_sum = arrays["hits"], arrays["trials"], arrays["raw_sum"]
        self._knots = None
