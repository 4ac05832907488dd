"""Multi-timeframe fusion (``mtf``): one vote from the 1h, 4h and 1d trend views, learnt online.

Traders trust a move more when the higher timeframes point the same way. This component scores
a causal trend/momentum view per timeframe (:mod:`mlcoord_mtf.views`; higher timeframes only
through the last bar complete at each base bar), and an online logistic regression
(:mod:`mlcoord_mtf.fusion`) turns the views, their agreement and their strength into the
probabilities of ``data.event`` up and down. The regression learns from every outcome the
engine hands to ``learn`` (only after the horizon closed), keeps adapting (constant learning
rate), and persists through ``state()`` / ``load_state()``. Before ``warmup_outcomes``
outcomes a stated prior close to 0.5 answers, and the reasons say so.

Where the brief was silent: the base timeframe is whatever ``data.candles`` is, and the higher
ones are the configured ``timeframes`` that ``data`` carries (the engine builds them from
``[data] higher_timeframes``); missing ones are skipped. With no known view yet (warm-up) the
component abstains. ``learn`` uses every outcome, also of bars it did not vote on, since each
is a labelled example of the same event. ``trained_until()`` is the last bar whose price
entered a label it learnt from, so a restored state is never scored in-sample.
"""

from __future__ import annotations

import math
from typing import Optional

import attrs
import numpy as np
from attrs import validators as v

from mlcoord.api import Action, Vote, hookimpl
from mlcoord.api import MarketData
from mlcoord_mtf.fusion import OnlineFusion, features
from mlcoord_mtf.views import aligned_scores

MLCOORD_HOOKS_VERSION = 1

_period = [v.instance_of(int), v.ge(1)]


@attrs.frozen
class MtfOptions:
    """Options of ``mtf`` (``[plugins.mtf]``).

    timeframes=("4h", "1d"): higher timeframes fused with the base one, when ``data`` has them.
    ema_period=20, slope_bars=3, atr_period=14, rsi_period=14: the per-timeframe view.
    learning_rate=0.02: constant SGD step of the online logistic regression (and its intercept);
    about the last few hundred outcomes dominate, so it follows regime changes.
    l2=0.001: ridge penalty, keeps weights small on noise.
    warmup_outcomes=50: outcomes before the model replaces the prior.
    prior_gain=0.1: the prior stays within 0.5 +- this.
    max_pending=50000: votes remembered until their outcome arrives (oldest dropped beyond).
    """

    timeframes: tuple[str, ...] = attrs.field(default=("4h", "1d"), converter=tuple,
                                              validator=v.deep_iterable(v.instance_of(str)))
    ema_period: int = attrs.field(default=20, validator=_period)
    slope_bars: int = attrs.field(default=3, validator=_period)
    atr_period: int = attrs.field(default=14, validator=_period)
    rsi_period: int = attrs.field(default=14, validator=_period)
    learning_rate: float = attrs.field(default=0.02, validator=[v.instance_of((int, float)), v.gt(0), v.le(1)])
    l2: float = attrs.field(default=0.001, validator=[v.instance_of((int, float)), v.ge(0)])
    warmup_outcomes: int = attrs.field(default=50, validator=[v.instance_of(int), v.ge(0)])
    prior_gain: float = attrs.field(default=0.1, validator=[v.instance_of((int, float)), v.ge(0), v.le(0.4)])
    max_pending: int = attrs.field(default=50_000, validator=_period)


class MtfVoter:
    """Votes of one prepared series: plain float work on the precomputed view scores."""

    def __init__(self, owner: "MultiTimeframeFusion", symbol: str, time: np.ndarray, labels: list[str],
                 scores: np.ndarray, horizon_ns: int):
        self.owner, self.symbol, self.time = owner, symbol, time
        self.labels, self.scores, self.horizon_ns = labels, scores, horizon_ns

    def vote(self, i: int, signal=None) -> Optional[Vote]:
        s = self.scores[i]
        x_up, x_down = features(s, self.labels, 1), features(s, self.labels, -1)
        if not x_up:
            return None
        fusion = self.owner.fusion
        p_up, p_down = fusion.probability(x_up), fusion.probability(x_down)
        self.owner._remember((self.symbol, int(self.time[i])), (self.labels, s, self.horizon_ns))
        if p_up == p_down and signal is not None and int(signal.action) < 0:
            action = Action.SELL
        else:
            action = Action.BUY if p_up >= p_down else Action.SELL
        d = int(action)
        known = [(lab, float(x)) for lab, x in zip(self.labels, s) if math.isfinite(x)]
        agree = sum(1 for _, x in known if x * d > 0)
        views = ", ".join(f"{lab} {x:+.2f}" for lab, x in known)
        if fusion.warming_up:
            how = f"warm-up prior, {fusion.outcomes} of {fusion.warmup_outcomes} outcomes seen"
        else:
            how = f"online logistic, {fusion.outcomes} outcomes"
        reasons = (f"{views}: {agree} of {len(known)} agree ({action.name})",
                   f"P(up)={p_up:.2f}, P(down)={p_down:.2f} ({how})")
        return Vote("mtf", action, p_up if d > 0 else p_down, reasons=reasons, p_up=p_up, p_down=p_down)


class MultiTimeframeFusion:
    """The ``mtf`` ML component (see the module docstring)."""

    def __init__(self, options: MtfOptions = MtfOptions()):
        self.options = options
        self.fusion = OnlineFusion(options.learning_rate, options.l2, options.warmup_outcomes, options.prior_gain)
        self._pending: dict[tuple[str, int], tuple] = {}
        self._series: dict[str, MtfVoter] = {}
        self._learned_until: Optional[int] = None

    def prepare(self, data: MarketData) -> MtfVoter:
        labels, scores = aligned_scores(data, self.options.timeframes, self.options)
        horizon_ns = int(data.event.horizon) * int(data.candles.timeframe_ns)
        voter = MtfVoter(self, data.symbol, np.asarray(data.candles.time), labels, scores, horizon_ns)
        self._series[data.symbol] = voter
        return voter

    def _remember(self, key: tuple[str, int], entry: tuple) -> None:
        self._pending[key] = entry
        while len(self._pending) > self.options.max_pending:
            del self._pending[next(iter(self._pending))]

    def _lookup(self, symbol: str, time: int) -> Optional[tuple]:
        voter = self._series.get(symbol)
        if voter is None or not len(voter.time):
            return None
        j = int(np.searchsorted(voter.time, time))
        if j < len(voter.time) and int(voter.time[j]) == time:
            return voter.labels, voter.scores[j], voter.horizon_ns
        return None

    def learn(self, outcome) -> None:
        """Fit the model on a closed outcome (its horizon has passed), in the judged direction."""
        key = (outcome.symbol, int(outcome.time))
        entry = self._pending.pop(key, None) or self._lookup(*key)
        if entry is None or outcome.direction not in (1, -1):
            return
        labels, scores, horizon_ns = entry
        x = features(scores, labels, int(outcome.direction))
        if not x:
            return
        self.fusion.learn(x, bool(outcome.hit))
        until = int(outcome.time) + horizon_ns
        self._learned_until = until if self._learned_until is None else max(self._learned_until, until)

    def trained_until(self) -> Optional[int]:
        return self._learned_until

    def state(self) -> dict:
        return {**self.fusion.state(), "learned_until": self._learned_until}

    def load_state(self, state: dict) -> None:
        self.fusion.load_state(state)
        until = state.get("learned_until")
        self._learned_until = None if until is None else int(until)


@hookimpl
def register_ml_components(register):
    register("mtf", MultiTimeframeFusion, options=MtfOptions,
             description="1h/4h/1d trend views fused by an online logistic regression (River)",
             examples=({"timeframes": ["4h"], "warmup_outcomes": 0}, {"ema_period": 10, "learning_rate": 0.1}))
