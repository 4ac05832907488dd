"""resample and higher_timeframe_index on a live window, bar after bar: the kept result of the
bars whose buckets closed is what a fresh computation gives, errors included."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlcoord.candles import (
    _RESAMPLED, COLUMNS, CandleError, Candles, candles_from_rows, higher_timeframe_index, resample,
)

HOUR = 3_600_000


def fresh(candles, tf):
    """resample with nothing kept: the full computation."""
    _RESAMPLED.clear()
    try:
        return resample(candles, tf)
    finally:
        _RESAMPLED.clear()


def same(a, b) -> bool:
    return a.timeframe == b.timeframe and a.gaps == b.gaps and all(
        np.array_equal(getattr(a, k), getattr(b, k)) for k in ("time", "open", "high", "low", "close", "volume"))


@pytest.mark.parametrize("tf", ["4h", "1d", "1w"])
@pytest.mark.parametrize("start", [0, 3, 17])
def test_a_growing_window_finds_what_a_fresh_resample_builds(btc_candles, tf, start):
    _RESAMPLED.clear()
    base = btc_candles.slice(1000 + start, 1000 + start + 400)
    for k in range(200, 400):
        window = base.slice(0, k)
        try:
            want = fresh(window, tf)
        except CandleError as exc:
            with pytest.raises(CandleError, match=str(exc)):
                resample(window, tf)
            continue
        resample(window, tf)                     # keeps it ...
        got = resample(base.slice(0, k), tf)     # ... for the same bars in another Candles
        assert same(got, want)
        index = higher_timeframe_index(window, got)
        want_index = np.searchsorted(got.time + got.timeframe_ns, window.time + window.timeframe_ns, "right") - 1
        assert index.tolist() == want_index.tolist()


def test_a_misaligned_bar_after_the_kept_ones_is_still_refused():
    """Bars [:8] close two 4h buckets and are kept; a ninth bar off the hour must still fail."""
    _RESAMPLED.clear()
    t = np.arange(0, 8 * HOUR, HOUR, dtype=np.int64)
    v = np.tile([10.0, 11.0, 9.0, 10.0, 1.0], (9, 1))
    good = candles_from_rows(t, v[:8], symbol="S", timeframe="1h")
    resample(good, "4h")
    index = pd.DatetimeIndex(pd.to_datetime(np.r_[t, 8 * HOUR + 60_000], unit="ms", utc=True), name="time")
    off = Candles("S", "1h", pd.DataFrame(v, index=index.as_unit("ns"), columns=list(COLUMNS)))
    with pytest.raises(CandleError, match="not aligned"):
        resample(off, "4h")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 5), min_size=0, max_size=40), st.lists(st.integers(1, 9), min_size=0, max_size=12),
       st.integers(0, 3))
def test_higher_timeframe_index_is_the_latest_closed_higher_bar(base_steps, higher_steps, offset):
    base_t = np.cumsum([0] + base_steps).astype(np.int64) * HOUR + offset * HOUR
    higher_t = np.cumsum([0] + higher_steps).astype(np.int64) * 4 * HOUR
    row = [10.0, 11.0, 9.0, 10.0, 1.0]
    base = candles_from_rows(base_t, np.tile(row, (len(base_t), 1)), symbol="S", timeframe="1h")
    higher = candles_from_rows(higher_t, np.tile(row, (len(higher_t), 1)), symbol="S", timeframe="4h")
    for b in (base, base.slice(0, 0)):
        for h in (higher, higher.slice(0, 0)):
            want = np.searchsorted(h.time + h.timeframe_ns, b.time + b.timeframe_ns, side="right") - 1
            got = higher_timeframe_index(b, h)
            assert got.dtype == want.dtype and got.tolist() == want.tolist()
