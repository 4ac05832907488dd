"""The ``rl_selector`` contextual bandit: learns the profitable arm, re-adapts, real arms, persists."""

from __future__ import annotations

import json

import cattrs
import numpy as np
import pytest

from mlcoord.datasets import bundled_path
from mlcoord import Action, Regime
from mlcoord.candles import load_candles
from mlcoord.components import MLComponent, build_market_data
from mlcoord.learning import Outcome
from mlcoord_rl_selector import CONTEXT, RLSelector, RLSelectorOptions, RLVoter, register_ml_components
from mlcoord_rl_selector.arms import ARMS

BTC = bundled_path("BTC/USDT")
HOUR = 3_600_000_000_000
TREND, REVERSION, BREAKOUT = range(3)
DELAY = 24          # outcomes arrive one horizon after the decision, as in the engine


@pytest.fixture(scope="module")
def btc():
    return build_market_data(load_candles(BTC, symbol="BTC/USDT"), timeframes=("4h", "1d"))


def _context(regime: Regime, vol=0.0, trend=0.3):
    x = np.zeros(len(CONTEXT))
    x[int(regime)], x[len(Regime)], x[len(Regime) + 1], x[-1] = 1.0, vol, trend, 1.0
    return x


def _synthetic(component, regimes, good_arm, seed=0):
    """Every arm has a random +-1 view each bar; the forward return follows ``good_arm[i]``'s
    view by 1 % plus 1 % noise, so that arm earns ~+0.27 per reward and the others ~-0.07."""
    rng = np.random.default_rng(seed)
    n = len(regimes)
    directions = rng.choice(np.array([-1, 1], dtype=np.int8), size=(n, len(ARMS)))
    contexts = np.stack([_context(r) for r in regimes])
    forward = directions[np.arange(n), good_arm] * 0.01 + rng.normal(0, 0.01, n)
    time = np.arange(n, dtype=np.int64) * HOUR
    voter = RLVoter(component, "SYN/USDT", time, directions, contexts, np.full(n, 0.5), 0.002, DELAY * HOUR)
    return voter, forward


def _drive(component, voter, forward):
    """vote() at every bar, learn() each outcome DELAY bars later; returns the arm chosen per bar."""
    chosen = []
    for i in range(len(forward)):
        if i >= DELAY:
            j = i - DELAY
            component.learn(Outcome(voter.symbol, j, int(voter.time[j]), 1, float(forward[j]), False, 0.5, 0.5))
        vote = voter.vote(i, None)
        arm = voter.choose(i)[0]
        assert vote.action == Action(int(voter.directions[i, arm]))
        chosen.append(arm)
    return np.array(chosen)


def test_registers_as_ml_component():
    seen = {}
    register_ml_components(lambda name, factory, options=None, description="", **declared: seen.update({name: (factory, options)}))
    factory, options = seen["rl_selector"]
    assert isinstance(factory(options()), MLComponent)
    assert cattrs.structure({"alpha": 0.2}, RLSelectorOptions).alpha == 0.2
    with pytest.raises(ValueError):
        RLSelectorOptions(discount=1.5)


def test_learns_the_profitable_arm_and_re_adapts_after_a_hidden_regime_switch():
    # the context is identical in both phases: only the rewards tell the regimes apart
    n_a, n_b = 600, 600
    regimes = [Regime.RANGING] * (n_a + n_b)
    good = np.r_[np.full(n_a, TREND), np.full(n_b, REVERSION)]
    component = RLSelector()
    voter, forward = _synthetic(component, regimes, good)
    chosen = _drive(component, voter, forward)
    after_200_rewards = chosen[200 + DELAY:n_a]
    assert np.mean(after_200_rewards == TREND) >= 0.7
    within_300 = chosen[n_a:n_a + 300]
    assert np.mean(within_300 == REVERSION) >= 0.6
    assert np.mean(chosen[n_a + 300:] == REVERSION) >= 0.7


def test_uses_the_context_to_pick_a_different_arm_per_regime():
    rng = np.random.default_rng(4)
    regimes = rng.choice([Regime.TRENDING_UP, Regime.RANGING], size=1200)
    good = np.where(regimes == Regime.TRENDING_UP, TREND, REVERSION)
    component = RLSelector()
    voter, forward = _synthetic(component, list(regimes), good, seed=1)
    chosen = _drive(component, voter, forward)
    late = slice(600, None)
    assert np.mean(chosen[late] == good[late]) >= 0.7
    for regime, arm in ((Regime.TRENDING_UP, TREND), (Regime.RANGING, REVERSION)):
        mask = regimes[late] == regime
        assert np.mean(chosen[late][mask] == arm) >= 0.6


def test_probability_follows_the_chosen_arms_estimated_reward():
    component = RLSelector()
    voter, forward = _synthetic(component, [Regime.RANGING] * 800, np.full(800, TREND))
    _drive(component, voter, forward)
    vote = voter.vote(799, None)
    p_with = vote.p_up if vote.action == Action.BUY else vote.p_down
    assert vote.confidence == p_with > 0.6            # a consistently profitable arm: confident
    assert "chose trend_following" in vote.reasons[0] and "regime RANGING" in vote.reasons[0]
    noise = RLSelector()
    voter, forward = _synthetic(noise, [Regime.RANGING] * 800, np.full(800, TREND))
    _drive(noise, voter, np.random.default_rng(9).normal(0, 0.01, 800))
    assert max(voter.vote(i, None).confidence for i in range(700, 800)) < 0.6


def test_reward_is_positive_exactly_when_the_event_happened():
    component = RLSelector()
    for d, r in ((1, 0.0025), (1, 0.0015), (-1, -0.003), (-1, 0.01), (1, 0.5)):
        assert (component.reward(d, r, 0.002) > 0) == (d * r >= 0.002)
    assert component.reward(1, 0.5, 0.002) == 1.0


def test_abstains_when_no_arm_has_a_view():
    component = RLSelector()
    voter = RLVoter(component, "X", np.array([0], np.int64), np.zeros((1, 3), np.int8),
                    _context(Regime.RANGING)[None], np.array([0.5]), 0.002, DELAY * HOUR)
    assert voter.vote(0, None) is None and not component._pending


def test_arms_are_real_and_distinct_on_btc(btc):
    voter = RLSelector().prepare(btc)
    d = voter.directions
    fire = (d != 0).mean(axis=0)
    assert ((fire > 0.05) & (fire < 0.8)).all(), fire
    for a in range(3):
        assert (d[:, a] == 1).mean() > 0.02 and (d[:, a] == -1).mean() > 0.02
        for b in range(a + 1, 3):
            assert (d[:, a] != d[:, b]).mean() > 0.15, (ARMS[a], ARMS[b])
    both = (d[:, TREND] != 0) & (d[:, REVERSION] != 0)
    assert both.mean() > 0.05 and (d[both, TREND] != d[both, REVERSION]).mean() > 0.9  # fading vs riding


@pytest.mark.parametrize("k", [900, 2345])
def test_no_look_ahead_by_truncation(btc, k):
    data = btc.head(3000)
    full, head = RLSelector().prepare(data), RLSelector().prepare(data.head(k))
    np.testing.assert_array_equal(head.directions, full.directions[:k])
    np.testing.assert_array_equal(head.contexts, full.contexts[:k])


def _learn_on_btc(component, btc, stop=6000):
    voter = component.prepare(btc)
    close = btc.candles.close
    for i in range(600, stop, 3):
        if voter.vote(i, None) is not None and i + 24 < stop:
            component.learn(Outcome("BTC/USDT", i, int(voter.time[i]), 1, close[i + 24] / close[i] - 1, False, .5, .5))
    return voter


def test_state_persists_between_runs(btc):
    component = RLSelector()
    voter = _learn_on_btc(component, btc)
    state = json.loads(json.dumps(component.state()))
    assert state["pending"], "choices whose outcome is still due are part of the state"
    restored = RLSelector()
    restored.load_state(state)
    again = restored.prepare(btc)
    for i in range(6000, 9000, 13):
        assert again.choose(i) is None and voter.choose(i) is None or again.choose(i)[0] == voter.choose(i)[0]
        assert again.vote(i, None) == voter.vote(i, None)
    assert restored.trained_until() == component.trained_until() is not None
    with pytest.raises(ValueError):
        restored.load_state({**state, "arms": ["trend_following"]})


def test_deterministic(btc):
    a, b = RLSelector(), RLSelector()
    _learn_on_btc(a, btc, 4000), _learn_on_btc(b, btc, 4000)
    assert json.dumps(a.state(), sort_keys=True) == json.dumps(b.state(), sort_keys=True)


def _held_views_loop(fresh, close, high, low, hold):
    """The state machine as it was first written, bar by bar: the reference."""
    out = np.zeros(len(fresh), dtype=np.int8)
    state, since, level = 0, 0, np.nan
    for i in range(len(fresh)):
        if fresh[i]:
            state, since, level = int(fresh[i]), 0, high[i] if fresh[i] > 0 else low[i]
        elif state:
            since += 1
            back_inside = close[i] < level if state > 0 else close[i] > level
            if since >= hold or back_inside:
                state = 0
        out[i] = state
    return out


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("hold", [0, 1, 3, 12])
def test_breakout_views_vectorised_agree_with_the_bar_by_bar_state_machine(seed, hold):
    from mlcoord_rl_selector.arms import held_views

    rng = np.random.default_rng(seed)
    n = 400
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    high = close * (1 + rng.uniform(0.0, 0.02, n))
    low = close * (1 - rng.uniform(0.0, 0.02, n))
    high[: 5], low[: 5] = np.nan, np.nan                   # warm-up, as the previous-range arrays have
    fresh = rng.choice(np.array([-1, 0, 0, 0, 0, 0, 1], dtype=np.int8), n)
    fresh[:5] = 0
    got = held_views(fresh, close, high, low, hold)
    want = _held_views_loop(fresh, close, high, low, hold)
    assert np.array_equal(got, want)
    assert (want != 0).sum() > (fresh != 0).sum() or hold <= 1     # views are held past their bar


def test_breakout_arm_on_real_candles_matches_the_state_machine(btc):
    from mlcoord_rl_selector.arms import _previous_extreme, breakout
    from mlcoord import features as ft

    o, c = RLSelectorOptions(), btc.candles
    high = _previous_extreme(np.asarray(c.high, float), o.breakout_bars, np.max)
    low = _previous_extreme(np.asarray(c.low, float), o.breakout_bars, np.min)
    volume = ft.volume_ratio(c.volume, o.breakout_bars) >= o.breakout_volume
    fresh = np.where((c.close > high) & volume, 1, np.where((c.close < low) & volume, -1, 0))
    got = breakout(c, o)
    assert np.array_equal(got, _held_views_loop(fresh, c.close, high, low, o.breakout_hold))
    assert (got != 0).sum() > 100


def test_previous_range_excludes_the_current_bar(btc):
    from mlcoord_rl_selector.arms import _previous_extreme

    high = np.asarray(btc.candles.high[:500], float)
    got = _previous_extreme(high, 20, np.max)
    assert np.isnan(got[:20]).all()
    assert all(got[i] == high[i - 20:i].max() for i in range(20, 500))
    low = np.asarray(btc.candles.low[:500], float)
    assert all(_previous_extreme(low, 20, np.min)[i] == low[i - 20:i].min() for i in range(20, 500))


def _label(side: int, net: float):
    from mlcoord.learning import TradeLabel
    return TradeLabel(side, net > 0, net, "stop" if net <= 0 else "take_profit", 24, 100.0, 103.0)


def _learned_mean(component, outcome, arm_direction=1):
    """Vote once on a one-bar series whose only active arm is trend (``arm_direction``), learn
    ``outcome`` for it; the trend arm's estimated mean reward afterwards."""
    directions = np.array([[arm_direction, 0, 0]], dtype=np.int8)
    x = _context(Regime.RANGING)[None, :]
    voter = RLVoter(component, "SYN/USDT", np.array([0], dtype=np.int64), directions, x, np.full(1, 0.5), 0.002,
                    DELAY * HOUR)
    voter.vote(0, None)
    component.learn(outcome)
    return float(component.bandit.scores(x[0])[0][TREND])


def test_the_arm_is_rewarded_by_its_trade_label_not_the_move():
    """The move reached the event (+1 % > 0.2 %) but the arm's long trade was stopped out net of
    costs: the trade label's reward is negative, the seed's move reward positive (issue 16)."""
    outcome = Outcome("SYN/USDT", 0, 0, 1, 0.01, True, 0.5, 0.5, (), _label(1, -0.012), _label(-1, 0.004))
    assert _learned_mean(RLSelector(), outcome) < 0
    assert _learned_mean(RLSelector(RLSelectorOptions(reward="move")), outcome) > 0
    # a short arm reads the short side's label
    assert _learned_mean(RLSelector(), outcome, arm_direction=-1) > 0
    component = RLSelector()
    assert component.outcome_reward(outcome, 1, 0.002) == pytest.approx(-0.012 / 0.03)
    assert component.outcome_reward(outcome, -1, 0.002) == pytest.approx(0.004 / 0.03)


def test_without_a_trade_label_the_move_rewards_and_an_unknown_reward_is_refused():
    outcome = Outcome("SYN/USDT", 0, 0, 1, 0.01, True, 0.5, 0.5)
    component = RLSelector()
    assert component.outcome_reward(outcome, 1, 0.002) == component.reward(1, 0.01, 0.002)
    assert component.outcome_reward(Outcome("S", 0, 0, 1, float("nan"), False, .5, .5), 1, 0.002) is None
    with pytest.raises(ValueError, match="reward"):
        RLSelectorOptions(reward="pnl")
