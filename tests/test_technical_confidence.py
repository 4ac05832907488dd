"""The technical confidence fitted to the trade label (issue 16): a probability that ranks trades.

The seed's strength confidence ranked the trade label no better than a coin (the mean-reversion
readings raised it while they lower a trade's odds). These tests pin the fitted mapping's formula
and direction, and guard the ranking on the bundled BTC/USDT development bars."""

from __future__ import annotations

import numpy as np
import pytest

from mlcoord.api import auc, build_market_data, bundled_path, load_candles
from mlcoord.config import BacktestConfig
from mlcoord.trade_label import history_trade_labels
from mlcoord_exits import ExitManager
from mlcoord_technical import Technical, TechnicalOptions, confidence, scoring

HOLDOUT = np.datetime64("2023-11-12T23:00", "ns").astype(np.int64)
FITTED = TechnicalOptions(confidence="trade_label")


@pytest.fixture(scope="module")
def dev():
    c = load_candles(bundled_path("BTC/USDT"), symbol="BTC/USDT", timeframe="1h")
    return build_market_data(c.slice(0, int(np.searchsorted(c.time, HOLDOUT))))


def test_confidence_is_the_fitted_logistic_of_the_aligned_readings(dev):
    s = Technical(FITTED).prepare(dev)
    c = dev.candles
    scores = scoring.score(c.close, c.high, c.low, c.volume, FITTED, None)
    sig = np.flatnonzero(s.action != 0)
    x = confidence.inputs(scores)[sig]
    assert x.shape == (len(sig), len(confidence.INPUTS))
    direction = s.action[sig]
    assert np.array_equal(x[:, 2], scores.s_trend[sig] * direction)        # aligned with the signal
    z = confidence.INTERCEPT + x @ confidence.COEFFICIENTS
    plain = Technical(TechnicalOptions(use_market_context=False, confidence="trade_label")).prepare(dev)
    assert np.allclose(plain.confidence[sig], 1 / (1 + np.exp(-z)), rtol=0, atol=1e-12)
    assert np.all(s.confidence[s.action == 0] == 0)
    # a probability near the trade label's base rate (0.40), never the strength score's 0.5 .. 0.95
    assert 0.30 < s.confidence[sig].min() and s.confidence[sig].max() < 0.5


def test_a_trend_reading_raises_and_a_mean_reversion_reading_lowers_it():
    """The fitted signs: trend and MACD in the signal's direction raise P(trade wins), RSI and
    Bollinger beyond their bands in the signal's direction lower it (what the seed got backwards)."""
    w = dict(zip(confidence.INPUTS, confidence.COEFFICIENTS))
    assert w["trend"] > 0 and w["macd"] > 0 and w["rsi"] < 0 and w["bollinger"] < 0


def test_fitted_confidence_ranks_the_trade_label_better_than_the_strength_score(dev):
    """Regression guard on the bundled BTC development bars (part of the fit's data, so the
    evidence is the derivation's out-of-fold figure, not this): the strength score ranks the
    trade label at about a coin's AUC, the fitted confidence above it."""
    c = dev.candles
    new = Technical(FITTED).prepare(dev)
    old = Technical().prepare(dev)
    assert np.array_equal(new.action, old.action)            # same signals, only the confidence differs
    bars = np.flatnonzero(new.action != 0)
    costs = BacktestConfig()
    labels = history_trade_labels(ExitManager().prepare(dev), c, 24, costs.fee_taker, costs.slippage, bars)
    y = np.where(new.action[bars] > 0, labels[1].win, labels[-1].win)
    ok = np.isfinite(y)
    a_new, a_old = auc(y[ok], new.confidence[bars][ok]), auc(y[ok], old.confidence[bars][ok])
    print(f"\nBTC dev signal bars {ok.sum()}: AUC fitted {a_new:.3f}, strength {a_old:.3f}")
    assert a_old < 0.52 < 0.53 < a_new


def test_unknown_confidence_kind_is_refused():
    with pytest.raises(ValueError, match="confidence"):
        TechnicalOptions(confidence="vibes")
