"""Tests of the causal indicator helpers (``mlcoord.features``) and the market context.

Causality is the property that matters most: an indicator that peeks at later bars makes
every backtest built on it a lie, so every function is checked with ``f(x[:k]) == f(x)[:k]``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mlcoord.datasets import bundled_path
from mlcoord import features as ft
from mlcoord.context import ContextOptions, market_context
from mlcoord.model import MarketContext, Regime

BTC_1H = bundled_path("BTC/USDT")


# --------------------------------------------------------------------------- price paths


@st.composite
def bars(draw, min_size=1, max_size=250):
    """Positive OHLCV path: open is the previous close, high/low wrap open and close."""
    size = draw(st.integers(min_size, max_size))
    step = arrays(np.float64, size, elements=st.floats(-0.05, 0.05))
    wick = arrays(np.float64, size, elements=st.floats(0.0, 0.03))
    close = 100.0 * np.exp(np.cumsum(draw(step)))
    open_ = np.concatenate(([100.0], close[:-1]))
    high = np.maximum(open_, close) * (1.0 + draw(wick))
    low = np.minimum(open_, close) * (1.0 - draw(wick))
    volume = draw(arrays(np.float64, size, elements=st.floats(0.0, 1e6)))
    return {"open": open_, "high": high, "low": low, "close": close, "volume": volume}


def _outputs(result) -> tuple[np.ndarray, ...]:
    return result if isinstance(result, tuple) else (result,)


def _assert_causal(fn, data, k):
    prefix = {name: values[:k] for name, values in data.items()}
    for full, part in zip(_outputs(fn(data)), _outputs(fn(prefix)), strict=True):
        assert part.dtype == np.float64 and part.shape == (k,)
        np.testing.assert_allclose(part, full[:k], rtol=1e-9, atol=1e-12, equal_nan=True)


INDICATORS = {
    "sma": lambda d: ft.sma(d["close"], 7),
    "ema": lambda d: ft.ema(d["close"], 7),
    "rsi": lambda d: ft.rsi(d["close"], 5),
    "macd": lambda d: ft.macd(d["close"], 3, 8, 4),
    "bollinger": lambda d: ft.bollinger(d["close"], 6, 2.0),
    "true_range": lambda d: ft.true_range(d["high"], d["low"], d["close"]),
    "atr": lambda d: ft.atr(d["high"], d["low"], d["close"], 5),
    "adx": lambda d: ft.adx(d["high"], d["low"], d["close"], 5),
    "log_returns": lambda d: ft.log_returns(d["close"]),
    "realised_volatility": lambda d: ft.realised_volatility(d["close"], 6),
    "rate_of_change": lambda d: ft.rate_of_change(d["close"], 4),
    "rolling_zscore": lambda d: ft.rolling_zscore(d["close"], 6),
    "rolling_percentile_rank": lambda d: ft.rolling_percentile_rank(d["close"], 8),
    "rolling_median": lambda d: ft.rolling_median(d["close"], 6),
    "rolling_max": lambda d: ft.rolling_max(d["high"], 5),
    "rolling_min": lambda d: ft.rolling_min(d["low"], 5),
    "confirmed_pivots": lambda d: ft.confirmed_pivots(d["high"], d["low"], 3, 2),
    "volume_ratio": lambda d: ft.volume_ratio(d["volume"], 5),
}


def test_every_public_indicator_is_checked_for_causality():
    assert set(INDICATORS) == set(ft.__all__)


@pytest.mark.parametrize("name", sorted(INDICATORS))
@settings(max_examples=30, deadline=None)
@given(data=bars(), cut=st.floats(0.0, 1.0))
def test_indicators_are_causal(name, data, cut):
    k = max(1, int(cut * len(data["close"])))
    _assert_causal(INDICATORS[name], data, k)


def _context_arrays(options):
    def fn(d):
        series = market_context(d["high"], d["low"], d["close"], options)
        return (series.atr, series.atr_pct, series.realised_vol, series.momentum,
                series.trend_strength, series.regime.astype(np.float64), series.close)
    return fn


@pytest.mark.parametrize("options", [ContextOptions(), ContextOptions(
    atr_period=5, vol_window=6, momentum_window=4, adx_period=5, vol_rank_window=30, trend_ema_period=10,
)], ids=["defaults", "short-windows"])
@settings(max_examples=40, deadline=None)
@given(data=bars(max_size=300), cut=st.floats(0.0, 1.0))
def test_market_context_is_causal(options, data, cut):
    k = max(1, int(cut * len(data["close"])))
    _assert_causal(_context_arrays(options), data, k)


@settings(max_examples=40, deadline=None)
@given(data=bars(min_size=40))
def test_bounded_indicators_stay_in_range(data):
    h, l, c = data["high"], data["low"], data["close"]
    for values in (ft.rsi(c, 5), *ft.adx(h, l, c, 5)):
        finite = values[~np.isnan(values)]
        assert ((finite >= 0) & (finite <= 100)).all()
    rank = ft.rolling_percentile_rank(c, 8)
    assert ((rank[7:] > 0) & (rank[7:] <= 1)).all()


# --------------------------------------------------------------------------- known values


def test_rsi_of_rising_series_is_100():
    values = ft.rsi(np.arange(1.0, 41.0), 14)
    assert np.isnan(values[:14]).all()
    np.testing.assert_array_equal(values[14:], 100.0)


def test_rsi_of_constant_then_falling_series_is_below_50():
    close = np.concatenate((np.full(20, 50.0), np.linspace(49.0, 30.0, 20)))
    values = ft.rsi(close, 14)
    np.testing.assert_array_equal(values[14:20], 50.0)   # no movement at all: neutral
    assert (values[20:] < 50).all()


def test_bollinger_mid_is_sma_and_bands_use_population_std():
    close = 100 + np.sin(np.arange(60) / 3.0) * 5
    mid, upper, lower = ft.bollinger(close, 20, 2.0)
    np.testing.assert_allclose(mid, ft.sma(close, 20), equal_nan=True)
    np.testing.assert_allclose(upper[-1] - mid[-1], 2.0 * np.std(close[-20:]), rtol=1e-9)
    np.testing.assert_allclose(mid - lower, upper - mid, equal_nan=True)


def test_atr_of_constant_range_bars_equals_the_range():
    close = np.full(50, 100.0)
    atr = ft.atr(close + 1.5, close - 1.5, close, 14)
    assert np.isnan(atr[:13]).all()
    np.testing.assert_allclose(atr[13:], 3.0)


def test_true_range_includes_gaps():
    tr = ft.true_range([11.0, 21.0], [9.0, 20.0], [10.0, 20.5])
    np.testing.assert_array_equal(tr, [2.0, 11.0])   # bar 1 gapped up from a close of 10


def test_ema_matches_hand_rolled_loop():
    rng = np.random.default_rng(7)
    x = 100 + np.cumsum(rng.normal(size=200))
    n, alpha = 10, 2 / 11
    expected = np.full(len(x), np.nan)
    expected[n - 1] = x[:n].mean()
    for i in range(n, len(x)):
        expected[i] = alpha * x[i] + (1 - alpha) * expected[i - 1]
    np.testing.assert_allclose(ft.ema(x, n), expected, rtol=1e-12, equal_nan=True)


def test_macd_hist_is_line_minus_signal():
    rng = np.random.default_rng(3)
    close = 100 + np.cumsum(rng.normal(size=300))
    line, signal, hist = ft.macd(close)
    np.testing.assert_allclose(hist, line - signal, equal_nan=True)
    assert np.isnan(line[:25]).all() and not np.isnan(line[25])
    assert np.isnan(signal[:33]).all() and not np.isnan(signal[33])


def test_adx_of_steady_uptrend_is_strong_and_positive():
    close = np.linspace(100.0, 200.0, 80)
    adx, plus_di, minus_di = ft.adx(close + 0.5, close - 0.5, close, 14)
    assert np.isnan(adx[:27]).all() and not np.isnan(adx[27])
    assert adx[-1] > 90 and plus_di[-1] > 0 and minus_di[-1] == 0


def test_simple_ratios():
    close = np.array([100.0, 110.0, 99.0, 99.0])
    np.testing.assert_allclose(ft.log_returns(close), [np.nan, np.log(1.1), np.log(0.9), 0.0], equal_nan=True)
    np.testing.assert_allclose(ft.rate_of_change(close, 2), [np.nan, np.nan, -0.01, -0.1], equal_nan=True)
    np.testing.assert_allclose(ft.volume_ratio([1.0, 3.0, 0.0, 0.0], 2), [np.nan, 1.5, 0.0, np.nan], equal_nan=True)
    np.testing.assert_allclose(ft.rolling_zscore([1.0, 3.0, 3.0, 3.0], 2), [np.nan, 1.0, 0.0, 0.0], equal_nan=True)


def test_percentile_rank_matches_brute_force():
    x = np.random.default_rng(1).integers(0, 5, size=100).astype(float)   # many ties
    n = 10
    expected = [np.nan] * (n - 1) + [np.mean(x[i - n + 1 : i + 1] <= x[i]) for i in range(n - 1, len(x))]
    np.testing.assert_allclose(ft.rolling_percentile_rank(x, n), expected, equal_nan=True)


def test_invalid_arguments_are_rejected():
    with pytest.raises(ValueError):
        ft.sma([1.0, 2.0], 0)
    with pytest.raises(ValueError):
        ft.atr([1.0, 2.0], [1.0], [1.0, 2.0])
    with pytest.raises(ValueError):
        ft.ema(np.ones((2, 2)), 2)


# --------------------------------------------------------------------------- pivots


def test_pivot_low_is_known_only_after_confirmation():
    low = np.array([10, 9, 8, 7, 6, 5, 6, 7, 8, 9, 10, 11, 12], dtype=float)   # pivot low at j=5
    high = low + 1.0
    left, right, j = 3, 3, 5
    support, _ = ft.confirmed_pivots(high, low, left, right)
    assert np.isnan(support[: j + right]).all()
    np.testing.assert_array_equal(support[j + right :], 5.0)
    # Cut the data just before confirmation: the pivot must not be visible yet.
    early, _ = ft.confirmed_pivots(high[: j + right], low[: j + right], left, right)
    assert np.isnan(early).all()


def test_pivot_high_and_latest_pivot_wins():
    high = np.array([1, 2, 3, 9, 3, 2, 1, 2, 3, 7, 3, 2, 1, 1], dtype=float)   # peaks at 3 and 9
    low = high - 0.5
    _, resistance = ft.confirmed_pivots(high, low, 2, 2)
    assert np.isnan(resistance[:5]).all()
    np.testing.assert_array_equal(resistance[5:11], 9.0)
    np.testing.assert_array_equal(resistance[11:], 7.0)   # most recent, not highest


def test_equal_lows_are_not_a_strict_pivot():
    low = np.array([5, 4, 3, 3, 4, 5, 6], dtype=float)
    support, _ = ft.confirmed_pivots(low + 1, low, 2, 2)
    assert np.isnan(support).all()


def test_pivots_equal_the_sliding_window_definition_with_ties_nans_and_extensions():
    """Each window's other bars are compared through whole-array minima (for speed): the pivots
    are those of the sliding-window definition, with ties (not strict), NaN (never a pivot nor
    beaten) and a computation that starts late (a kept prefix extended), bit for bit."""
    from numpy.lib.stride_tricks import sliding_window_view

    def reference(x, left, right, start, before):
        span = left + right + 1
        first = max(start - span + 1, 0)
        w = sliding_window_view(x[first:], span)
        others = np.minimum(w[:, :left].min(axis=1), w[:, left + 1:].min(axis=1))
        pivots = np.flatnonzero(w[:, left] < others) + first + left
        latest = np.full(len(x), -1)
        latest[pivots + right] = pivots
        latest = np.maximum.accumulate(latest)
        out = np.where(latest >= 0, x[latest], before)
        out[:start] = np.nan
        return out

    rng = np.random.default_rng(5)
    x = np.round(rng.normal(100, 3, 3000), 0)            # rounded: many equal neighbours
    x[rng.integers(0, len(x), 40)] = np.nan
    for left, right in ((1, 1), (2, 3), (5, 5), (3, 1)):
        for start, before in ((0, np.nan), (1200, 97.0), (2990, np.nan)):
            got = ft._confirmed_from(x, left, right, start, before)
            assert got.tobytes() == reference(x, left, right, start, before).tobytes()


# --------------------------------------------------------------------------- market context


def test_context_at_turns_warm_up_into_zero_and_ranging():
    close = np.linspace(100.0, 110.0, 30)
    series = market_context(close + 1, close - 1, close)
    assert len(series) == 30
    first = series.at(0)
    assert isinstance(first, MarketContext)
    assert first.regime is Regime.RANGING and first.atr == 0.0 and first.close == 100.0
    with pytest.raises(ValueError):
        series.atr[0] = 1.0   # shared with plugins: read-only


def test_context_options_are_validated():
    with pytest.raises((ValueError, TypeError)):
        ContextOptions(trend_threshold=1.5)
    with pytest.raises((ValueError, TypeError)):
        ContextOptions(vol_window=1)


@pytest.fixture(scope="module")
def btc():
    return pd.read_feather(BTC_1H)


def test_context_on_real_btc_data(btc, capsys):
    high, low, close = (btc[c].to_numpy() for c in ("high", "low", "close"))
    market_context(high, low, close)   # warm pandas/numpy code paths before timing
    start = time.perf_counter()
    series = market_context(high, low, close)
    elapsed_ms = (time.perf_counter() - start) * 1e3
    with capsys.disabled():
        print(f"\nmarket_context on {len(close)} bars: {elapsed_ms:.1f} ms")

    assert len(series) == len(close)
    assert set(np.unique(series.regime)) == {int(r) for r in Regime}
    strength = series.trend_strength[~np.isnan(series.trend_strength)]
    assert strength.size and ((strength >= 0) & (strength <= 1)).all()
    last = series.at(len(series) - 1)
    assert 0 <= last.trend_strength <= 1 and last.close == close[-1]
