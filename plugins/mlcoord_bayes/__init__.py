"""Bayesian confidence calibration: raw ensemble confidence -> probability of the event.

The ensemble's raw confidence orders signals but is not a hit rate. This calibrator turns it
into the probability that the signal's event (see :mod:`mlcoord.learning`) happens, from a
stated prior updated by every outcome: Beta posteriors over ``bins`` equal raw-confidence bins,
each with the prior ``Beta(s * c, s * (1 - c))`` centred on its bin centre ``c`` (worth
``prior_strength`` = ``s`` outcomes), so with no data the calibrated value is the raw one.
The posterior means are made non-decreasing in raw (pool-adjacent-violators weighted by
posterior pseudo-counts) and interpolated linearly, so a higher raw confidence never gets a
lower probability; counts decay by ``decay`` per outcome so the calibration follows regime
changes. Details in :class:`mlcoord_bayes.posterior.BinPosteriors`.

Where the brief was silent: interpolation knots sit at each bin's posterior mean *raw* value
rather than its centre, because real raw confidences cluster inside bins; the output is
clipped to [``min_probability``, ``max_probability``] because a finite history never proves
certainty. ``per_direction`` (default off) keeps separate BUY and SELL tables; it then needs
the direction in ``learn(raw, hit, direction=+1/-1)`` (the engine's ``Outcome.direction``),
each table forgets only over its own outcomes, and a HOLD signal (no event) gets the clipped
raw value back. Pooled is the default: half the data per table doubles the noise, and a
directional bias is better fixed in the signal than hidden in the calibrator.

**What it is fitted to** (``target``). ``"event"`` (the default): the learning event, from every
BUY/SELL decision's outcome. ``"trade_label"``: where trades happen, the decision's trade label in
its direction (``Outcome.trade(direction).win``: would a direct entry with the exits' initial
levels have closed positive net of costs?), so the calibrated value is P(the trade wins), the
probability the cost-aware entry's expected return asks for; an outcome without a label is not
learnt. The engine hands the whole outcome to ``learn_outcome``. With a trade-label target the
identity prior is far off (raw 0.5 .. 0.7 against a base rate near 0.40), so ``prior_rate``
centres every bin's prior on one rate instead: 0.40 is the trade label's base rate on the
technical signal bars of the five roshan7869 1h series' development parts (9,842 bars, 0.398;
``benchmarks/derive_technical_confidence.py``). Measured in ``benchmarks/calibration_trade_label.py``.
"""

from __future__ import annotations

from typing import Any, Optional

import attrs
from attrs import validators as v

from mlcoord.api import hookimpl, integer, number
from mlcoord.api import Signal
from mlcoord_bayes.posterior import BinPosteriors, pool_adjacent_violators

MLCOORD_HOOKS_VERSION = 1
STATE_VERSION = 1
TARGETS = ("event", "trade_label")

__all__ = ["BayesOptions", "BayesCalibrator", "BinPosteriors", "pool_adjacent_violators"]




def _decay(instance, attribute, value):
    if not 0.0 < value <= 1.0:
        raise ValueError(f"decay must be in (0, 1] (1 = never forget), got {value!r}")


def _probability_bounds(instance, attribute, value):
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must be in [0, 1], got {value!r}")
    if attribute.name == "max_probability" and not value > instance.min_probability:
        raise ValueError(f"max_probability ({value}) must be > min_probability ({instance.min_probability})")


@attrs.frozen
class BayesOptions:
    """Options of the ``bayes`` calibrator (``[plugins.bayes]``).

    bins=10: equal-width raw-confidence bins over [0, 1] (2 .. 1000), each its own Beta posterior.
    prior_strength=10.0: how many outcomes the prior "calibrated = raw" is worth per bin (> 0).
    decay=0.999: counts are multiplied by this at every outcome, a memory of ~1 / (1 - decay)
    outcomes (about 1000); 1.0 never forgets.
    per_direction=False: separate BUY and SELL posteriors (needs the direction in ``learn``).
    min_probability=0.01, max_probability=0.99: the calibrated value is clipped to this range.
    target="event": what the calibrated value is the probability of: the learning event, or
    "trade_label" (the decision's trade label in its direction; see the module docstring).
    prior_rate=None: every bin's prior centred on its bin centre (calibrated = raw before any
    outcome); a rate in (0, 1) centres every bin's prior on it (0.40 suits ``target = "trade_label"``).
    """

    bins: int = attrs.field(default=10, validator=[integer(), v.ge(2), v.le(1000)])
    prior_strength: float = attrs.field(default=10.0, validator=[number(), v.gt(0)])
    decay: float = attrs.field(default=0.999, validator=[number(), _decay])
    per_direction: bool = attrs.field(default=False, validator=v.instance_of(bool))
    min_probability: float = attrs.field(default=0.01, validator=[number(), _probability_bounds])
    max_probability: float = attrs.field(default=0.99, validator=[number(), _probability_bounds])
    target: str = attrs.field(default="event", validator=v.in_(TARGETS))
    prior_rate: Optional[float] = attrs.field(default=None, validator=v.optional([number(0, 1, lo_open=True,
                                                                                         hi_open=True)]))


def _raw(raw: float) -> float:
    raw = float(raw)
    if not 0.0 <= raw <= 1.0:     # also rejects NaN
        raise ValueError(f"raw confidence must be in [0, 1], got {raw!r}")
    return raw


def _direction_key(direction: Any) -> Optional[str]:
    """'buy' / 'sell' from +1/-1, an Action or a Signal; None for HOLD / 0."""
    if isinstance(direction, Signal):
        direction = direction.action
    d = int(direction)
    if d not in (-1, 0, 1):
        raise ValueError(f"direction must be +1 (BUY), -1 (SELL) or 0, got {direction!r}")
    return {1: "buy", -1: "sell", 0: None}[d]


class BayesCalibrator:
    """The ``bayes`` calibrator: see the module docstring. Deterministic; state is JSON-able."""

    def __init__(self, options: BayesOptions = BayesOptions()):
        self.options = options
        keys = ("buy", "sell") if options.per_direction else ("all",)
        self.tables = {key: BinPosteriors(options.bins, options.prior_strength, options.decay, options.prior_rate)
                       for key in keys}
        self.outcomes = 0

    def _table(self, direction: Any, *, learning: bool) -> Optional[BinPosteriors]:
        if not self.options.per_direction:
            return self.tables["all"]
        if direction is None:
            if learning:
                raise ValueError("per_direction=True: learn() needs direction=+1 (BUY) or -1 (SELL)")
            return None
        key = _direction_key(direction)
        if key is None and learning:
            raise ValueError("per_direction=True: a HOLD outcome has no direction to learn")
        return self.tables[key] if key else None

    def _clip(self, p: float) -> float:
        return min(max(p, self.options.min_probability), self.options.max_probability)

    def calibrate(self, raw: float, signal: Optional[Signal] = None) -> float:
        """P(the signal's event | raw confidence), non-decreasing in ``raw``."""
        raw = _raw(raw)
        table = self._table(signal, learning=False)
        return self._clip(raw if table is None else table(raw))

    def learn(self, raw: float, hit: bool, direction: Any = None) -> None:
        """One outcome: the event predicted with raw confidence ``raw`` did (not) happen.

        ``direction`` (+1/-1, an Action or the Signal) is required only with ``per_direction``.
        """
        raw = _raw(raw)
        self._table(direction, learning=True).learn(raw, bool(hit))
        self.outcomes += 1

    def learn_outcome(self, outcome: Any) -> None:
        """A decision's outcome (the engine's call): its event, or with ``target = "trade_label"``
        its trade label in the decision's direction (no label: nothing learnt)."""
        if self.options.target == "trade_label":
            trade = outcome.trade(outcome.direction)
            if trade is None:
                return
            self.learn(outcome.raw_confidence, trade.win, outcome.direction)
        else:
            self.learn(outcome.raw_confidence, outcome.hit, outcome.direction)

    def describe(self, raw: float, signal: Optional[Signal] = None) -> str:
        """'raw 0.72 -> calibrated 0.70 (bin 0.70-0.80: 41.0 hits / 63.0, Beta(48.2, 24.8))'."""
        raw = _raw(raw)
        table = self._table(signal, learning=False)
        calibrated = self.calibrate(raw, signal)
        if table is None:
            return f"raw {raw:.2f} -> calibrated {calibrated:.2f} (no direction: raw kept)"
        k = table.bin_of(raw)
        a, b = table.beta(k)
        side = "" if not self.options.per_direction else f"{_direction_key(signal)} "
        return (f"raw {raw:.2f} -> calibrated {calibrated:.2f} ({side}bin {k / table.bins:.2f}-"
                f"{(k + 1) / table.bins:.2f}: {table.hits[k]:.1f} hits / {table.trials[k]:.1f}, "
                f"Beta({a:.1f}, {b:.1f}))")

    def curve(self, direction: Any = None) -> list[tuple[float, float]]:
        """(raw, calibrated) knots of the current curve, for reports."""
        table = self._table(direction if self.options.per_direction else None, learning=False)
        if table is None:
            raise ValueError("per_direction=True: curve() needs direction=+1 or -1")
        return [(x, self._clip(y)) for x, y in zip(*table.curve())]

    # -- persistence ----------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, "bins": self.options.bins,
                "per_direction": self.options.per_direction, "outcomes": self.outcomes,
                "tables": {key: table.state() for key, table in self.tables.items()}}

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore counts saved by :meth:`state`; refuses state of another shape.

        Prior strength and decay are not part of the state: they are the current options'.
        """
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise ValueError(f"bayes state: expected version {STATE_VERSION}, got "
                             f"{state.get('version') if isinstance(state, dict) else state!r}")
        for key in ("bins", "per_direction"):
            if state.get(key) != getattr(self.options, key):
                raise ValueError(f"bayes state: saved with {key}={state.get(key)!r}, "
                                 f"options say {key}={getattr(self.options, key)!r}")
        tables = state.get("tables")
        if not isinstance(tables, dict) or set(tables) != set(self.tables):
            raise ValueError(f"bayes state: expected tables {sorted(self.tables)}, got {tables!r}")
        outcomes = state.get("outcomes")
        if isinstance(outcomes, bool) or not isinstance(outcomes, int) or outcomes < 0:
            raise ValueError(f"bayes state: outcomes must be a non-negative integer, got {outcomes!r}")
        fresh = {key: BinPosteriors(self.options.bins, self.options.prior_strength, self.options.decay,
                                    self.options.prior_rate) for key in self.tables}
        for key, table in fresh.items():
            table.load_state(tables[key], where=f"bayes state.tables.{key}")
        self.tables, self.outcomes = fresh, outcomes


@hookimpl
def register_calibrators(register):
    register("bayes", BayesCalibrator, options=BayesOptions,
             description="Beta posteriors over raw-confidence bins, monotone, forgetting: raw -> calibrated",
             examples=({"per_direction": True, "bins": 5}, {"decay": 1.0, "prior_strength": 2.0}))
