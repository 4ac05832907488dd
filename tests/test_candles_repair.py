"""``--repair`` never changes the timeframe and never drops a large share of a file (issue 15): a
1h file with separate date and time columns once became 17 bars labelled 1d, and repairs dropped
up to 98 % of rows as "duplicates", in 36 runs of a probe."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from mlcoord.candles import CandleError, candles_from_frame, load_candles
from mlcoord.cli import main
from mlcoord.datasets import bundled_path


@pytest.fixture(scope="module")
def hourly():
    return load_candles(bundled_path("BTC/USDT")).slice(0, 400)


def _date_and_time(c, date_format="%Y-%m-%d", time_format="%H:%M") -> pd.DataFrame:
    idx = pd.DatetimeIndex(c.time).tz_localize("UTC")
    return pd.DataFrame({"Date": idx.strftime(date_format), "Time": idx.strftime(time_format), "Open": c.open,
                         "High": c.high, "Low": c.low, "Close": c.close, "Volume": c.volume})


@pytest.mark.parametrize("repair", [False, True])
def test_separate_date_and_time_columns_are_one_timestamp(tmp_path, hourly, repair):
    path = tmp_path / "btc.csv"
    _date_and_time(hourly).to_csv(path, index=False)
    c = load_candles(path, symbol="BTC/USDT", repair=repair)
    assert (c.timeframe, len(c), c.repairs) == ("1h", 400, ())
    assert np.array_equal(c.time, hourly.time) and np.array_equal(c.close, hourly.close)


def test_a_date_column_of_datetimes_and_a_time_column_of_text(hourly):
    df = _date_and_time(hourly, time_format="%H:%M:%S")
    df["Date"] = pd.to_datetime(df["Date"])
    assert np.array_equal(candles_from_frame(df, symbol="BTC/USDT").time, hourly.time)


def test_a_time_of_day_without_a_date_is_refused_clearly(hourly):
    with pytest.raises(CandleError, match=r"column 'Time' holds times of day \(e\.g\. '00:00'\) without a date "
                                          r"column beside it"):
        candles_from_frame(_date_and_time(hourly).drop(columns=["Date"]), symbol="BTC/USDT")


def test_repair_refuses_to_drop_more_than_the_allowed_share_and_lists_the_rows(hourly):
    df = _date_and_time(hourly)
    df["Time"] = "00:00"                          # every hour of a day on the day's timestamp
    with pytest.raises(CandleError) as err:
        candles_from_frame(df, symbol="BTC/USDT", repair=True)
    message = str(err.value)
    assert "repair would drop 383 of 400 rows (95.8%), more than the 1.0% allowed" in message
    assert "383 with duplicate timestamps at 2020-09-20 00:00:00+00:00, 2020-09-21 00:00:00+00:00" in message
    assert "--repair-max-drop" in message


def test_repair_within_the_allowed_share_drops_and_says_so(hourly):
    df = hourly.frame.reset_index()
    df.loc[[10, 200], "close"] = np.nan            # 2 of 400 rows: 0.5 %
    c = candles_from_frame(df, symbol="BTC/USDT", repair=True)
    assert len(c) == 398 and c.repairs == ("dropped 2 rows with missing, non-finite or non-positive values",)
    with pytest.raises(CandleError, match=r"repair would drop 2 of 400 rows \(0\.5%\), more than the 0\.1% allowed"):
        candles_from_frame(df, symbol="BTC/USDT", repair=True, repair_max_drop=0.001)


def test_repair_never_changes_the_timeframe(hourly):
    """Every other hour bad: dropping them leaves 2h steps, yet the file is 1h (with gaps)."""
    df = hourly.frame.reset_index()
    df.loc[df.index % 2 == 1, "open"] = 0.0
    c = candles_from_frame(df, symbol="BTC/USDT", repair=True, repair_max_drop=0.5)
    assert c.timeframe == "1h" and len(c) == 200 and len(c.gaps) == 199


def test_the_backtest_command_refuses_a_large_repair_in_one_line(tmp_path, hourly):
    path = tmp_path / "btc.csv"
    df = _date_and_time(hourly)
    df["Time"] = "00:00"
    df.to_csv(path, index=False)
    out = CliRunner().invoke(main, ["backtest", "--data", str(path), "--repair", "--no-progress"])
    assert out.exit_code == 2, out.output
    lines = [line for line in out.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "repair would drop 383 of 400 rows" in lines[0]
    out = CliRunner().invoke(main, ["backtest", "--data", str(path), "--repair", "--repair-max-drop", "0.7",
                                    "--no-progress"])
    assert "repair_max_drop must be a number in [0, 0.5], got 0.7" in out.output and out.exit_code == 2
