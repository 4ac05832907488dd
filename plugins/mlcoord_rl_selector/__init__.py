"""RL strategy selector (``rl_selector``): a contextual bandit picks which strategy to trust.

Different markets reward different strategies: trends pay trend following, ranges pay mean
reversion, expansions pay breakouts. Three real, causal strategy votes
(:mod:`mlcoord_rl_selector.arms`) are the arms; the context of a decision is the one-hot
market regime (``data.context.regime``), the realised-volatility percentile (centred), the
trend strength (ADX / 100) and a constant 1.0. A discounted disjoint LinUCB
(:mod:`mlcoord_rl_selector.linucb`) picks, among the arms that have a view at that bar, the
one with the highest upper confidence bound, and the vote is that arm's direction.

**Reward** (from ``learn(outcome)``, once the horizon closed), ``reward = "trade_label"`` (the
default): the chosen arm's trade, the engine's trade label in the arm's direction
(``Outcome.trade(d)``: a direct entry with the configured exit manager's initial stop and take
profit, net of fees and slippage), as ``r = clip(net_return / reward_scale)``, so ``r > 0``
exactly when that trade closed positive; an outcome without a label there (the exit manager gave
no levels) falls back to the move reward. ``reward = "move"`` (the seed's): the forward return in
the arm's direction minus the cost threshold, ``r = clip((d * forward_return - threshold) /
reward_scale)``, so ``r > 0`` exactly when the event of ``data.event`` happened in the arm's
direction. Both clip to [-1, 1]. ``Outcome.forward_return`` is read as the raw
``close[t+H] / close[t] - 1`` (as :func:`mlcoord.learning.forward_return` gives it).

**Probability**: with ``m`` the chosen arm's estimated mean reward in this context (the UCB
bonus left out: exploration is not evidence) and ``s`` the discounted std of its past rewards,
P(r > 0) = ``Phi(m / s)`` (with the trade-label reward: P(the arm's trade wins); with the move
reward: P(event in the arm's direction)) and P(the same against it) =
``Phi((-2 * threshold / reward_scale - m) / s)`` (a normal approximation), both kept within
[1 - ``max_confidence``, ``max_confidence``].

Where the brief was silent: only arms with a view (direction != 0) compete, since an arm
without one has nothing to trust (and learning zero rewards for its quiet bars would bury a
rarely-firing arm such as breakout); when no arm has a view the component abstains. Choices
are remembered per (symbol, bar time), which stays valid across the rolling windows of a live
run, and dropped when their outcome arrives. Closed trades are not used: their PnL depends on
exits, DCA and sizing, not on the arm, while the trade label prices the arm's call with the
exits' barriers and the costs alone. Measured on the development part
(``benchmarks/bandit_hit_rate.py``): see the README.
"""

from __future__ import annotations

import math
from typing import Optional

import attrs
import numpy as np
from attrs import validators as v

from mlcoord.api import Action, Regime, Vote, hookimpl
from mlcoord.api import features as ft
from mlcoord.api import MarketData
from mlcoord_rl_selector.arms import ARMS, arm_directions
from mlcoord_rl_selector.linucb import DiscountedLinUCB

MLCOORD_HOOKS_VERSION = 1

_period = [v.instance_of(int), v.ge(1)]
_number = v.instance_of((int, float))
REWARDS = ("trade_label", "move")
CONTEXT = tuple(f"regime_{r.name.lower()}" for r in Regime) + ("vol_pct", "trend_strength", "bias")


@attrs.frozen
class RLSelectorOptions:
    """Options of ``rl_selector`` (``[plugins.rl_selector]``).

    alpha=0.5: exploration (width of the confidence bound, in reward units).
    ridge=1.0: ridge prior of each arm's regression.
    discount=0.995: per-update forgetting (memory of about 200 rewards), so it re-adapts.
    reward_scale=0.03: forward return that counts as a full reward of 1 (a typical 24h move).
    max_confidence=0.85: the probabilities stay within [0.15, 0.85].
    vol_rank_window=500: bars over which the realised-volatility percentile is ranked.
    ema_fast=20, ema_slow=50, adx_period=14, adx_min=20: the trend-following arm.
    bb_period=20, bb_std=2.0, bb_low=0.05, bb_high=0.95, rsi_period=14, rsi_low=30, rsi_high=70:
    the mean-reversion arm.
    breakout_bars=20, breakout_volume=1.2, breakout_hold=3: the breakout arm.
    max_pending=50000: choices remembered until their outcome arrives (oldest dropped beyond).
    reward="trade_label": what an arm is rewarded by: its trade label, or "move" (the seed's horizon
    move net of the cost threshold).
    """

    alpha: float = attrs.field(default=0.5, validator=[_number, v.ge(0)])
    ridge: float = attrs.field(default=1.0, validator=[_number, v.gt(0)])
    discount: float = attrs.field(default=0.995, validator=[_number, v.gt(0), v.le(1)])
    reward_scale: float = attrs.field(default=0.03, validator=[_number, v.gt(0)])
    max_confidence: float = attrs.field(default=0.85, validator=[_number, v.gt(0.5), v.lt(1)])
    vol_rank_window: int = attrs.field(default=500, validator=_period)
    ema_fast: int = attrs.field(default=20, validator=_period)
    ema_slow: int = attrs.field(default=50, validator=_period)
    adx_period: int = attrs.field(default=14, validator=_period)
    adx_min: float = attrs.field(default=20.0, validator=[_number, v.ge(0), v.le(100)])
    bb_period: int = attrs.field(default=20, validator=[v.instance_of(int), v.ge(2)])
    bb_std: float = attrs.field(default=2.0, validator=[_number, v.gt(0)])
    bb_low: float = attrs.field(default=0.05, validator=_number)
    bb_high: float = attrs.field(default=0.95, validator=_number)
    rsi_period: int = attrs.field(default=14, validator=_period)
    rsi_low: float = attrs.field(default=30.0, validator=[_number, v.ge(0), v.le(50)])
    rsi_high: float = attrs.field(default=70.0, validator=[_number, v.ge(50), v.le(100)])
    breakout_bars: int = attrs.field(default=20, validator=_period)
    breakout_volume: float = attrs.field(default=1.2, validator=[_number, v.ge(0)])
    breakout_hold: int = attrs.field(default=3, validator=_period)
    max_pending: int = attrs.field(default=50_000, validator=_period)
    reward: str = attrs.field(default="trade_label", validator=v.in_(REWARDS))


def _normal_cdf(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def _vol_word(pct: float) -> str:
    if not math.isfinite(pct):
        return "unknown"
    return "high" if pct >= 2 / 3 else "low" if pct <= 1 / 3 else "normal"


class RLVoter:
    """Votes of one prepared series: ``directions`` (n, arms) and ``contexts`` (n, features)."""

    def __init__(self, owner: "RLSelector", symbol: str, time: np.ndarray, directions: np.ndarray,
                 contexts: np.ndarray, vol_pct: np.ndarray, threshold: float, horizon_ns: int):
        self.owner, self.symbol, self.time = owner, symbol, time
        self.directions, self.contexts, self.vol_pct = directions, contexts, vol_pct
        self.threshold, self.horizon_ns = threshold, horizon_ns

    def choose(self, i: int) -> Optional[tuple[int, np.ndarray, np.ndarray]]:
        """(chosen arm, mean rewards, UCBs) at bar ``i``, or None when no arm has a view."""
        active = self.directions[i] != 0
        if not active.any():
            return None
        mean, bonus = self.owner.bandit.scores(self.contexts[i])
        ucb = np.where(active, mean + bonus, -np.inf)
        return int(np.argmax(ucb)), mean, ucb

    def vote(self, i: int, signal=None) -> Optional[Vote]:
        picked = self.choose(i)
        if picked is None:
            return None
        arm, mean, ucb = picked
        d = int(self.directions[i, arm])
        x = self.contexts[i]
        self.owner._remember((self.symbol, int(self.time[i])), (arm, d, x, self.threshold, self.horizon_ns))
        o, bandit = self.owner.options, self.owner.bandit
        sd = bandit.reward_std(arm)
        lo, hi = 1.0 - o.max_confidence, o.max_confidence
        p_with = min(max(_normal_cdf(mean[arm] / sd), lo), hi)
        p_against = min(max(_normal_cdf((-2.0 * self.threshold / o.reward_scale - mean[arm]) / sd), lo), hi)
        p_up, p_down = (p_with, p_against) if d > 0 else (p_against, p_with)
        action = Action(d)
        regime = Regime(int(np.argmax(x[:len(Regime)]))).name
        others = ", ".join(f"{ARMS[k]} {ucb[k]:.3f}" if math.isfinite(ucb[k]) else f"{ARMS[k]} flat"
                           for k in range(len(ARMS)) if k != arm)
        reasons = (
            f"regime {regime}, vol {_vol_word(self.vol_pct[i])}: chose {ARMS[arm]} "
            f"(UCB {ucb[arm]:.3f} vs {others}); {ARMS[arm]} says {action.name}",
            f"P({action.name} {'trade wins' if o.reward == 'trade_label' else 'move'})={p_with:.2f} "
            f"from mean reward {mean[arm]:+.3f} "
            f"(sd {sd:.2f}, {int(bandit.rewards[arm])} rewards for this arm)",
        )
        return Vote("rl_selector", action, p_with, reasons=reasons, p_up=p_up, p_down=p_down)


class RLSelector:
    """The ``rl_selector`` ML component (see the module docstring)."""

    def __init__(self, options: RLSelectorOptions = RLSelectorOptions()):
        self.options = options
        self.bandit = DiscountedLinUCB(len(ARMS), len(CONTEXT), options.alpha, options.ridge, options.discount)
        self._pending: dict[tuple[str, int], tuple] = {}
        self._learned_until: Optional[int] = None

    def contexts(self, data: MarketData) -> tuple[np.ndarray, np.ndarray]:
        """The bandit's context of every bar (see :data:`CONTEXT`) and the volatility percentile."""
        ctx = data.context
        n = len(data)
        vol_pct = ft.rolling_percentile_rank(np.asarray(ctx.realised_vol, float), self.options.vol_rank_window) \
            if n else np.zeros(0)
        x = np.zeros((n, len(CONTEXT)))
        x[np.arange(n), np.asarray(ctx.regime, dtype=np.int64)] = 1.0
        x[:, len(Regime)] = np.nan_to_num(vol_pct - 0.5, nan=0.0)
        x[:, len(Regime) + 1] = np.nan_to_num(np.asarray(ctx.trend_strength, float), nan=0.0)
        x[:, len(Regime) + 2] = 1.0
        return x, vol_pct

    def prepare(self, data: MarketData) -> RLVoter:
        contexts, vol_pct = self.contexts(data)
        directions = arm_directions(data.candles, self.options) if len(data) else np.zeros((0, len(ARMS)), np.int8)
        return RLVoter(self, data.symbol, np.asarray(data.candles.time), directions, contexts, vol_pct,
                       float(data.event.threshold), int(data.event.horizon) * int(data.candles.timeframe_ns))

    def _remember(self, key: tuple[str, int], entry: tuple) -> None:
        self._pending[key] = entry
        while len(self._pending) > self.options.max_pending:
            del self._pending[next(iter(self._pending))]

    def reward(self, direction: int, forward_return: float, threshold: float) -> float:
        """The move reward (``reward = "move"``, and the fallback without a trade label)."""
        r = (direction * forward_return - threshold) / self.options.reward_scale
        return min(max(r, -1.0), 1.0)

    def outcome_reward(self, outcome, direction: int, threshold: float) -> Optional[float]:
        """The chosen arm's reward from ``outcome`` (None: nothing to learn from)."""
        if self.options.reward == "trade_label":
            trade = outcome.trade(direction) if hasattr(outcome, "trade") else None
            if trade is not None and math.isfinite(trade.net_return):
                return min(max(trade.net_return / self.options.reward_scale, -1.0), 1.0)
        if not math.isfinite(outcome.forward_return):
            return None
        return self.reward(direction, float(outcome.forward_return), threshold)

    def learn(self, outcome) -> None:
        """Reward the arm chosen at the outcome's bar (if this component chose one there)."""
        entry = self._pending.pop((outcome.symbol, int(outcome.time)), None)
        if entry is None:
            return
        arm, d, x, threshold, horizon_ns = entry
        r = self.outcome_reward(outcome, d, threshold)
        if r is None:
            return
        self.bandit.update(arm, x, r)
        until = int(outcome.time) + horizon_ns
        self._learned_until = until if self._learned_until is None else max(self._learned_until, until)

    def trained_until(self) -> Optional[int]:
        """The last bar whose price entered a reward learnt from (None before any)."""
        return self._learned_until

    def state(self) -> dict:
        pending = [[s, t, int(a), int(d), [float(z) for z in x], float(th), int(h)]
                   for (s, t), (a, d, x, th, h) in self._pending.items()]
        return {**self.bandit.state(), "arms": list(ARMS), "context": list(CONTEXT),
                "learned_until": self._learned_until, "pending": pending}

    def load_state(self, state: dict) -> None:
        if list(state.get("arms", [])) != list(ARMS) or list(state.get("context", [])) != list(CONTEXT):
            raise ValueError(f"rl_selector state has arms {state.get('arms')} and context {state.get('context')}, "
                             f"expected {list(ARMS)} and {list(CONTEXT)}")
        self.bandit.load_state(state)
        until = state.get("learned_until")
        self._learned_until = None if until is None else int(until)
        self._pending = {(s, int(t)): (int(a), int(d), np.asarray(x, float), float(th), int(h))
                         for s, t, a, d, x, th, h in state.get("pending", [])}


@hookimpl
def register_ml_components(register):
    register("rl_selector", RLSelector, options=RLSelectorOptions,
             description="contextual bandit (discounted LinUCB) choosing trend, mean-reversion or breakout",
             examples=({"alpha": 0.0, "discount": 1.0}, {"vol_rank_window": 100}))
