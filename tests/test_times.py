"""mlcoord.times writes every time as pandas writes it (the result file, journals and logs kept
their texts when the engine stopped asking pandas for them)."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from mlcoord.times import day_ns, iso, iso_times, next_day, strftime, text

LOW, HIGH = pd.Timestamp.min.value + 2 * 86_400 * 10**9, pd.Timestamp.max.value - 2 * 86_400 * 10**9
# whole seconds (bar times), whole microseconds, and any nanosecond, across pandas' whole range
NS = st.one_of(st.integers(LOW // 10**9, HIGH // 10**9).map(lambda s: s * 10**9),
               st.integers(LOW // 1000, HIGH // 1000).map(lambda u: u * 1000),
               st.integers(LOW, HIGH))
CASES = settings(max_examples=400, deadline=None, derandomize=True, database=None)


@CASES
@given(ns=NS)
def test_texts_equal_pandas(ns):
    stamp = pd.Timestamp(ns, tz="UTC")
    assert iso(ns) == stamp.isoformat()
    assert text(ns) == str(stamp)
    assert strftime(ns, "%Y-%m-%d %H:%M") == stamp.strftime("%Y-%m-%d %H:%M")
    assert next_day(ns) == (stamp.normalize() + pd.Timedelta(days=1)).strftime("%Y%m%d")


@pytest.mark.parametrize("ns", [0, -1, 1, 999, 1000, 10**9 - 1, -(10**9), 1_533_459_600 * 10**9])
def test_texts_at_the_edges_of_a_second_and_of_the_epoch(ns):
    assert (iso(ns), text(ns)) == (pd.Timestamp(ns, tz="UTC").isoformat(), str(pd.Timestamp(ns, tz="UTC")))


def test_iso_times_of_whole_seconds_and_of_finer_times():
    whole = [0, 1_533_459_600 * 10**9, 1_533_463_200 * 10**9]
    assert iso_times(whole) == [pd.Timestamp(t, tz="UTC").isoformat() for t in whole]
    finer = whole + [5]
    assert iso_times(finer) == [pd.Timestamp(t, tz="UTC").isoformat() for t in finer]
    assert iso_times([]) == []


@pytest.mark.parametrize("day", ["20210101", "19700101", "16770922", "22620411", "20240229"])
def test_day_ns_is_the_utc_midnight(day):
    assert day_ns(day) == pd.Timestamp(day, tz="UTC").value


@pytest.mark.parametrize("day", ["20210230", "20211301", "99991231", "00010101", "22620412"])
def test_day_ns_refuses_a_day_that_is_not_one_or_out_of_range(day):
    with pytest.raises(ValueError):
        day_ns(day)
    assert day_ns("") is None and day_ns(None) is None
