"""Candles made from checked bars (slices, joins, resamples) build their frame only when asked:
the same frame the eager path gives."""

from __future__ import annotations

import pandas as pd
import pytest

from mlcoord.candles import Candles, resample


@pytest.mark.parametrize("start,stop,own", [(0, 10, False), (5, None, True), (-3, None, False), (4, 4, False)])
def test_a_slice_frame_is_the_rows_of_the_frame(btc_candles, start, stop, own):
    part = btc_candles.slice(start, stop, own=own)
    pd.testing.assert_frame_equal(part.frame, btc_candles.frame.iloc[start:stop])
    assert len(part) == len(btc_candles.frame.iloc[start:stop])


def test_a_joined_frame_is_the_concatenated_frames(btc_candles):
    joined = btc_candles.slice(0, 50).followed_by(btc_candles.slice(40, 60))
    pd.testing.assert_frame_equal(joined.frame, btc_candles.frame.iloc[:60])
    again = Candles(joined.symbol, joined.timeframe, joined.frame)      # and the eager constructor takes it
    assert (again.close == joined.close).all() and (again.time == joined.time).all()


def test_a_resampled_frame_is_what_the_constructor_checks(btc_candles):
    higher = resample(btc_candles.slice(0, 500), "4h")
    checked = Candles(higher.symbol, "4h", higher.frame, higher.gaps)
    for name in ("time", "open", "high", "low", "close", "volume"):
        assert (getattr(checked, name) == getattr(higher, name)).all()
        assert not getattr(higher, name).flags.writeable
