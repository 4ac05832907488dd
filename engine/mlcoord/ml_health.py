"""ML health of a running bot: each contributor's rolling accuracy and log-loss, and the live
reliability of the decisions' confidence against a reference (calibration drift).

Everything here is fed the :class:`~mlcoord.learning.Outcome` s the pipeline learns from (at the
horizon, never earlier), so the figures are those of realised outcomes only. The reference is a
:class:`ReliabilityCounts` saved with the learning state (``calibration_reference``): the outcomes
the pipeline learned from when that state was made (a backtest or an evaluation run). Drift rule
(:func:`drift`): with a reference and at least :data:`DRIFT_MIN_OUTCOMES` live outcomes in the
window, the state is ``alert`` when the live ECE exceeds the reference's by more than
:data:`DRIFT_ECE_THRESHOLD`; ``ok`` otherwise; ``insufficient data`` below that count and
``no reference`` without one.
"""

from __future__ import annotations

import collections
import math
from typing import Any, Mapping, Optional, Sequence

#: equal-width confidence bins of the reliability diagram
BINS = 10
#: outcomes kept per contributor (and for the decisions' reliability): the rolling window
WINDOW = 500
#: the drift rule: live ECE - reference ECE above this ...
DRIFT_ECE_THRESHOLD = 0.05
#: ... over at least this many live outcomes
DRIFT_MIN_OUTCOMES = 50
_EPS = 1e-6


class ReliabilityCounts:
    """A reliability diagram as sums per bin (count, sum of predicted, sum of hits): O(1) memory,
    saved and restored as plain data."""

    def __init__(self, bins: int = BINS):
        self.count = [0] * bins
        self.predicted = [0.0] * bins
        self.hits = [0.0] * bins

    @property
    def n(self) -> int:
        return sum(self.count)

    def add(self, p: float, hit: bool) -> None:
        bins = len(self.count)
        b = min(bins - 1, max(0, int(p * bins)))
        self.count[b] += 1
        self.predicted[b] += p
        self.hits[b] += 1.0 if hit else 0.0

    def rows(self) -> list[dict[str, Any]]:
        bins = len(self.count)
        return [{"bin": f"{b / bins:.1f}-{(b + 1) / bins:.1f}", "count": n,
                 "predicted": self.predicted[b] / n if n else None, "observed": self.hits[b] / n if n else None}
                for b, n in enumerate(self.count)]

    def ece(self) -> Optional[float]:
        """Expected calibration error: the count-weighted mean |predicted - observed| (None: empty)."""
        total = self.n
        if not total:
            return None
        return sum(abs(self.predicted[b] - self.hits[b]) for b in range(len(self.count))) / total

    def to_dict(self) -> dict[str, Any]:
        return {"count": list(self.count), "predicted": list(self.predicted), "hits": list(self.hits)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ReliabilityCounts":
        """The saved form back; a ValueError naming the field for a malformed one."""
        count = list(data.get("count", ()))
        out = cls(len(count) or BINS)
        for name in ("count", "predicted", "hits"):
            values = list(data.get(name, ()))
            if len(values) != len(count) or not count:
                raise ValueError(f"calibration_reference.{name}: expected {len(count) or BINS} bins, got {values!r}")
            if any(not isinstance(v, (int, float)) or v < 0 or not math.isfinite(v) for v in values):
                raise ValueError(f"calibration_reference.{name}: expected non-negative numbers, got {values!r}")
            setattr(out, name, [int(v) for v in values] if name == "count" else [float(v) for v in values])
        return out


def drift(live: ReliabilityCounts, reference: Optional[ReliabilityCounts]) -> dict[str, Any]:
    """The drift alert state of ``live`` against ``reference`` (the rule: see the module)."""
    ece_live = live.ece()
    ece_ref = None if reference is None else reference.ece()
    out: dict[str, Any] = {"ece_live": ece_live, "ece_reference": ece_ref, "outcomes": live.n,
                           "difference": None, "threshold": DRIFT_ECE_THRESHOLD, "min_outcomes": DRIFT_MIN_OUTCOMES}
    if ece_ref is None:
        out["state"] = "no reference"
    elif live.n < DRIFT_MIN_OUTCOMES or ece_live is None:
        out["state"] = "insufficient data"
    else:
        out["difference"] = ece_live - ece_ref
        out["state"] = "alert" if ece_live - ece_ref > DRIFT_ECE_THRESHOLD else "ok"
    return out


class MlHealth:
    """Rolling windows of realised outcomes: per contributor (its vote's probability of the judged
    event, and whether it happened) and for the decisions' final confidence."""

    def __init__(self, window: int = WINDOW):
        self.window = window
        self.votes: dict[str, collections.deque[tuple[float, bool]]] = {}
        self.decisions: collections.deque[tuple[float, bool]] = collections.deque(maxlen=window)
        self.observed = 0

    def observe(self, outcome) -> None:
        """One :class:`~mlcoord.learning.Outcome` (a decision judged in no direction is skipped)."""
        direction = int(outcome.direction)
        if direction == 0:
            return
        hit = bool(outcome.hit)
        for v in outcome.votes:
            window = self.votes.get(v.component)
            if window is None:
                window = self.votes[v.component] = collections.deque(maxlen=self.window)
            window.append((float(v.probability(direction)), hit))
        self.decisions.append((float(outcome.confidence), hit))
        self.observed += 1

    def report(self, coefficients: Mapping[str, float], components: Sequence[str],
               reference: Optional[ReliabilityCounts]) -> dict[str, Any]:
        """Plain data for the API: per contributor its coefficient, rolling accuracy and log-loss;
        the live reliability diagram, the reference's and the drift state."""
        names = sorted(set(components) | set(self.votes) | set(coefficients))
        rows = []
        for name in names:
            window = list(self.votes.get(name, ()))
            n = len(window)
            rows.append({"component": name, "coefficient": coefficients.get(name),
                         "outcomes": n,
                         "accuracy": sum((p >= 0.5) == hit for p, hit in window) / n if n else None,
                         "log_loss": -sum(math.log(min(max(p if hit else 1.0 - p, _EPS), 1.0))
                                          for p, hit in window) / n if n else None})
        live = ReliabilityCounts()
        for p, hit in self.decisions:
            live.add(p, hit)
        return {"window": self.window, "outcomes_seen": self.observed, "components": rows,
                "reliability": {"live": live.rows(),
                                "reference": "none" if reference is None else reference.rows()},
                "drift": drift(live, reference)}
