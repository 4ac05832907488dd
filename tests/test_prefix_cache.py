"""Cached causal results: a live bar extends the last bar's inputs, and what the cache carries on
is exactly what a whole recomputation gives; a changed bar is never served from the cache."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlcoord import features as ft
from mlcoord.candles import load_candles, resample
from mlcoord.datasets import bundled_path
from mlcoord.prefix_cache import PrefixCache


@pytest.fixture(scope="module")
def btc():
    return load_candles(bundled_path("BTC/USDT"), symbol="BTC/USDT").slice(0, 3000, own=True)


INDICATORS = {
    "ema": lambda c: ft.ema(c.close, 20),
    "rsi": lambda c: ft.rsi(c.close, 14),
    "macd": lambda c: ft.macd(c.close),
    "atr": lambda c: ft.atr(c.high, c.low, c.close, 14),
    "adx": lambda c: ft.adx(c.high, c.low, c.close, 14),
    "sma": lambda c: ft.sma(c.close, 50),
    "bollinger": lambda c: ft.bollinger(c.close, 20, 2.0),
    "realised_volatility": lambda c: ft.realised_volatility(c.close, 24),
    "rolling_zscore": lambda c: ft.rolling_zscore(c.close, 30),
    "rolling_percentile_rank": lambda c: ft.rolling_percentile_rank(ft.realised_volatility(c.close, 24), 200),
    "rolling_median": lambda c: ft.rolling_median(c.volume, 48),
    "rolling_max": lambda c: ft.rolling_max(c.high, 20),
    "rolling_min": lambda c: ft.rolling_min(c.low, 20),
    "confirmed_pivots": lambda c: ft.confirmed_pivots(c.high, c.low, 5, 5),
    "volume_ratio": lambda c: ft.volume_ratio(c.volume, 20),
}


def _tuple(result):
    return result if isinstance(result, tuple) else (result,)


def test_every_cached_indicator_is_checked():
    assert set(INDICATORS) | {"true_range", "log_returns", "rate_of_change"} == set(ft.__all__)


@pytest.mark.parametrize("name", sorted(INDICATORS))
def test_bar_by_bar_results_equal_a_whole_recomputation(btc, name):
    fn = INDICATORS[name]
    ft.CACHE.clear()
    grown = []
    for end in list(range(2000, 2040)) + [2043, 2050]:      # one bar at a time, then a few at once
        grown.append((end, _tuple(fn(btc.slice(0, end)))))
    for end, got in grown:
        ft.CACHE.clear()
        want = _tuple(fn(btc.slice(0, end)))
        for g, w in zip(got, want, strict=True):
            assert np.array_equal(g, w, equal_nan=True), f"{name} differs at {end} bars"


def test_a_live_bar_extends_the_smoothing_instead_of_recomputing_it(btc, monkeypatch):
    calls = []
    whole = ft._seeded_ewm_of
    monkeypatch.setattr(ft, "_seeded_ewm_of", lambda x, n, a: calls.append(len(x)) or whole(x, n, a))
    ft.CACHE.clear()
    ft.ema(btc.close[:2000], 20)
    ft.ema(btc.close[:2001], 20)
    ft.ema(btc.close[:2003], 20)
    assert calls == [2000]
    out = ft.ema(btc.close[:2003], 20)
    out[:] = 0.0                                              # callers own what they get
    assert ft.ema(btc.close[:2003], 20)[-1] == pytest.approx(float(whole(btc.close[:2003], 20, 2 / 21)[-1]))


def test_a_changed_earlier_bar_is_computed_afresh(btc):
    ft.CACHE.clear()
    close = np.array(btc.close[:2000])
    ft.ema(close, 20)
    ft.rolling_median(close, 20)
    repaired = np.append(close, 1.0)
    repaired[1500] *= 1.01                                    # a repaired candle inside the window
    ft.CACHE.clear()
    want = (ft.ema(repaired, 20), ft.rolling_median(repaired, 20))
    ft.CACHE.clear()
    ft.ema(close, 20)
    ft.rolling_median(close, 20)
    got = (ft.ema(repaired, 20), ft.rolling_median(repaired, 20))
    for g, w in zip(got, want):
        assert np.array_equal(g, w, equal_nan=True)
    assert got[0][1500] != ft.ema(close, 20)[1500]


def test_rolling_statistics_agree_with_pandas(btc):
    """Computed window by window; pandas' running sums agree within rounding."""
    x = np.array(btc.close)
    roll = pd.Series(x).rolling(20, min_periods=20)
    np.testing.assert_allclose(ft.sma(x, 20), roll.mean().to_numpy(), rtol=1e-12, equal_nan=True)
    mid, upper, _ = ft.bollinger(x, 20, 1.0)
    np.testing.assert_allclose(upper - mid, roll.std(ddof=0).to_numpy(), rtol=1e-7, equal_nan=True)
    r = np.diff(np.log(x), prepend=np.nan)
    np.testing.assert_allclose(ft.realised_volatility(x, 24),
                               pd.Series(r).rolling(24, min_periods=24).std(ddof=1).to_numpy(),
                               rtol=1e-9, equal_nan=True)
    np.testing.assert_array_equal(ft.rolling_median(x, 20), roll.median().to_numpy())


def test_a_constant_window_has_no_spread_and_its_own_mean():
    x = np.r_[np.linspace(1.0, 2.0, 30), np.full(25, 0.1)]
    mid, upper, lower = ft.bollinger(x, 20, 2.0)
    assert mid[-1] == 0.1 and upper[-1] == lower[-1] == 0.1
    assert ft.rolling_zscore(x, 20)[-1] == 0.0
    assert np.isnan(ft.sma(np.r_[1.0, np.nan, 2.0, 3.0], 2)[:3]).tolist() == [True, True, True]


def test_the_cache_keeps_within_its_byte_budget():
    cache = PrefixCache(max_bytes=3 * 2 * 8000, max_extension=2)
    arrays = [np.arange(1000, dtype=float) + k for k in range(5)]
    for k, a in enumerate(arrays):
        cache.keep("kind", (a,), a * 2, a.nbytes)
    assert cache.nbytes <= 3 * 2 * 8000
    assert cache.find("kind", (arrays[0],)) is None                 # the oldest went first
    found = cache.find("kind", (np.append(arrays[4], 7.0),))
    assert found.n == 1000 and found.result[3] == (4 + 3) * 2
    assert cache.find("kind", (np.append(arrays[4], [7.0, 8.0, 9.0]),)) is None   # past max_extension
    assert cache.find("kind", (np.append(arrays[4], 7.0),), extensions=False) is None
    assert cache.find("other", (arrays[4],)) is None


def test_higher_timeframe_candles_are_reused_until_a_bucket_closes(btc):
    from mlcoord import candles as candles_module

    sizes = [len(resample(btc.slice(0, k), "4h")) for k in range(2001, 2010)]
    closing = 2001 + sizes.index(sizes[0] + 1)                # the first bar that closes a bucket
    first = resample(btc.slice(0, closing - 1), "4h")
    assert resample(btc.slice(0, closing - 1).slice(0, None, own=True), "4h") is first
    newer = resample(btc.slice(0, closing), "4h")
    assert newer is not first and len(newer) == len(first) + 1
    candles_module._RESAMPLED.clear()
    fresh = resample(btc.slice(0, closing), "4h")
    assert fresh is not newer
    pd.testing.assert_frame_equal(newer.frame, fresh.frame)


def test_rolling_extremes_agree_with_pandas(btc):
    x = np.array(btc.high)
    x[100] = np.nan                                           # a hole: windows over it are NaN
    roll = pd.Series(x).rolling(20, min_periods=20)
    np.testing.assert_array_equal(ft.rolling_max(x, 20), roll.max().to_numpy())
    np.testing.assert_array_equal(ft.rolling_min(x, 20), roll.min().to_numpy())


def test_the_feature_matrix_of_a_live_bar_is_its_whole_recomputation(btc):
    from mlcoord.feature_matrix import feature_matrix

    def matrix(end):
        c = btc.slice(0, end)
        return feature_matrix(c.open, c.high, c.low, c.close, c.volume)

    ft.CACHE.clear()
    grown = [matrix(end) for end in (2000, 2001, 2002, 2005)]
    assert matrix(2005) is grown[-1] and not grown[-1].flags.writeable    # the two models share it
    for got, end in zip(grown, (2000, 2001, 2002, 2005)):
        ft.CACHE.clear()
        assert np.array_equal(got, matrix(end)) and got.dtype == np.float32


def test_a_growing_series_keeps_one_entry_and_distinct_series_their_own():
    cache = PrefixCache(max_bytes=1 << 30, per_series=3)
    x = np.arange(100, dtype=float)
    for n in range(10, 60):
        cache.keep("k", (x[:n],), x[:n] * 2, 8 * n)
    assert sum(len(b) for b in cache._entries.values()) == 1           # shorter versions dropped
    assert cache.find("k", (x[:62],)).n == 59
    for k in range(5):                                                  # same first bar, other paths
        y = x[:50].copy()
        y[10] = 1000.0 + k
        cache.keep("k", (y,), y, 400)
    assert sum(len(b) for b in cache._entries.values()) == 3           # per_series bound
    assert cache.nbytes == sum(e.size for b in cache._entries.values() for e in b)


def test_many_symbols_series_that_start_alike_all_extend(btc, monkeypatch):
    """Twelve symbols' derived series all start with the same NaNs; stepping them in turn, bar by
    bar, each still extends its own kept result (regression: they shared one bucket of eight,
    evicted each other in turn and were recomputed whole every bar)."""
    calls = []
    whole = ft._seeded_ewm_of
    monkeypatch.setattr(ft, "_seeded_ewm_of", lambda x, n, a: calls.append(len(x)) or whole(x, n, a))
    ft.CACHE.clear()
    closes = [np.array(btc.close) * (1 + k / 1000) for k in range(12)]
    for end in range(2500, 2506):
        for close in closes:
            ft.macd(close[:end])                       # the signal line smooths a NaN-led series
    assert len(calls) == 12 * 3                        # fast, slow and signal: once per symbol
