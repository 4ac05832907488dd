"""candles_from_rows (a live poll's rows checked on their arrays) accepts and refuses exactly what
candles_from_frame accepts and refuses from the same rows' frame, with the same errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import mlcoord.candles as candles_module
from mlcoord.candles import COLUMNS, candles_from_frame, candles_from_rows, rows_frame

HOUR = 3_600_000
BAD_NUMBERS = (float("nan"), float("inf"), float("-inf"), 0.0, -1.0, -0.0, 1e-300)


@st.composite
def rows(draw):
    """A few exchange rows: mostly good bars on a 1h grid, with every kind of fault now and then."""
    n = draw(st.integers(0, 6))
    if draw(st.integers(0, 9)) == 0:      # anything at all, negative and out of range included
        times = draw(st.lists(st.integers(-2**62, 2**62), min_size=n, max_size=n))
    else:
        # hour 2_562_047 is the last pandas can hold (2262-04-11)
        t = draw(st.sampled_from([0, 2_562_043]) | st.integers(0, 500_000)) * HOUR
        t += draw(st.sampled_from([0, 0, 0, 1, HOUR // 2]))
        times = []
        for _ in range(n):
            times.append(t)
            t += draw(st.sampled_from([HOUR] * 30 + [2 * HOUR, 3 * HOUR, 0, -HOUR, HOUR // 2, HOUR + 1]))
    values = []
    for _ in range(n):
        o, c = draw(st.floats(1.0, 100.0)), draw(st.floats(1.0, 100.0))
        h = max(o, c) + draw(st.sampled_from([0.0, 0.5, 3.0]))
        low = min(o, c) - draw(st.sampled_from([0.0, 0.25, 0.9]))
        row = [o, h, low, c, draw(st.sampled_from([0.0, 1.0, 250.5]))]
        fault = draw(st.integers(0, 100))
        if fault < 5:
            row[fault] = draw(st.sampled_from(BAD_NUMBERS))
        elif fault == 5:
            row[1], row[2] = row[2], row[1]              # high below low
        elif fault == 6:
            row[1] = min(o, c) - 0.1                     # high below open/close
        values.append(row)
    return np.asarray(times, np.int64), np.asarray(values, np.float64).reshape(n, 5)


def outcome(make):
    """What a call gives: the candles' every field and frame, or the error's type and message."""
    try:
        c = make()
    except Exception as exc:  # noqa: BLE001  (the error itself is what is compared)
        return ("error", type(exc).__name__, str(exc))
    return ("ok", c.symbol, c.timeframe, c.gaps, c.repairs, c.time.tolist(),
            [getattr(c, k).tolist() for k in COLUMNS], c.frame)


def same(a, b) -> bool:
    if a[0] != b[0] or a[0] == "error":
        return a == b
    pd.testing.assert_frame_equal(a[-1], b[-1])
    return a[:-1] == b[:-1]


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows(), st.sampled_from(["1h"] * 6 + ["30m", "2h", "1d", "2m"]))
def test_rows_are_accepted_and_refused_as_their_frame_is(data, timeframe):
    t, v = data
    fast = outcome(lambda: candles_from_rows(t, v, symbol="S/USDT", timeframe=timeframe, source="binance 1h"))
    full = outcome(lambda: candles_from_frame(rows_frame(t, v), symbol="S/USDT", timeframe=timeframe,
                                              source="binance 1h"))
    event(fast[0] if fast[0] == "ok" else fast[2].split(" at:")[0].split(": ", 1)[-1][:60])
    assert same(fast, full), (fast[:3], full[:3])


def test_good_rows_never_reach_pandas(monkeypatch):
    """The point of it: a poll's good rows are checked on the arrays, no DataFrame is built."""
    def refuse(*args, **kwargs):
        raise AssertionError("pandas path taken")

    monkeypatch.setattr(candles_module, "candles_from_frame", refuse)
    monkeypatch.setattr(candles_module, "rows_frame", refuse)
    t = np.array([0, HOUR, 3 * HOUR], np.int64) + 1_700_000_000 // 3600 * HOUR
    v = np.array([[10.0, 11.0, 9.0, 10.5, 5.0]] * 3)
    c = candles_from_rows(t, v, symbol="S/USDT", timeframe="1h")
    assert c.time.tolist() == (t * 1_000_000).tolist() and len(c.gaps) == 1 and c.gaps[0].missing == 1
    assert not c.close.flags.writeable and c.frame.index.name == "time"


@pytest.mark.parametrize("column,value,what", [
    (0, float("nan"), "a missing or non-numeric value in column 'open'"),
    (3, -2.0, "a non-finite or non-positive price in column 'close'"),
    (4, float("inf"), "a negative or infinite volume in column 'volume'"),
    (1, 8.0, "high below open/close/low in column 'high'"),
])
def test_a_bad_row_is_named_with_its_column_and_value(column, value, what):
    t = np.array([0, HOUR], np.int64)
    v = np.array([[10.0, 11.0, 9.0, 10.5, 5.0]] * 2)
    v[1, column] = value
    with pytest.raises(candles_module.CandleError, match="binance 1h \\[S/USDT\\]: 1 row\\(s\\) with") as err:
        candles_from_rows(t, v, symbol="S/USDT", timeframe="1h", source="binance 1h")
    assert what in str(err.value) and "1970-01-01 01:00:00+00:00" in str(err.value)
