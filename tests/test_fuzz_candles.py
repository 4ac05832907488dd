"""Fuzzing the candle readers (issue 14): truncated and byte-flipped copies of small real files in
all five formats either load or raise one DataError naming the file; nothing else escapes."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from mlcoord.candles import load_candles
from mlcoord.datasets import bundled_path
from mlcoord.errors import DataError

FORMATS = ("csv", "csv.gz", "feather", "parquet", "json", "json.gz")
FUZZ = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _write(frame: pd.DataFrame, path: Path) -> Path:
    """``frame`` (a ``time`` column and OHLCV) in the format ``path``'s name says."""
    name = path.name
    if name.endswith(".csv"):
        frame.to_csv(path, index=False)
    elif name.endswith(".csv.gz"):
        with gzip.open(path, "wt") as fh:
            frame.to_csv(fh, index=False)
    elif name.endswith(".feather"):
        frame.to_feather(path)
    elif name.endswith(".parquet"):
        frame.to_parquet(path)
    else:
        rows = [[int(t.value // 10**6), *r] for t, r in
                zip(frame["time"], frame[["open", "high", "low", "close", "volume"]].to_numpy().tolist())]
        text = json.dumps(rows)
        if name.endswith(".gz"):
            with gzip.open(path, "wt") as fh:
                fh.write(text)
        else:
            path.write_text(text)
    return path


@pytest.fixture(scope="module")
def originals(tmp_path_factory) -> dict[str, bytes]:
    """The first 24 bundled BTC/USDT bars in each format, as bytes."""
    folder = tmp_path_factory.mktemp("originals")
    frame = load_candles(bundled_path("BTC/USDT")).frame.iloc[:24].reset_index()
    made = {fmt: _write(frame, folder / f"BTC_USDT-1h.{fmt}") for fmt in FORMATS}
    for path in made.values():
        assert len(load_candles(path)) == 24          # the originals are good files
    return {fmt: path.read_bytes() for fmt, path in made.items()}


def _loads_or_data_error(path: Path) -> None:
    """The invariant: candles, or a DataError that names the file in one line."""
    try:
        load_candles(path)
    except DataError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc), str(exc)


@FUZZ
@given(fmt=st.sampled_from(FORMATS), cut=st.floats(0.0, 1.0, exclude_max=True))
def test_truncated_files_load_or_raise_data_error(originals, tmp_path, fmt, cut):
    raw = originals[fmt]
    path = tmp_path / f"BTC_USDT-1h.{fmt}"
    path.write_bytes(raw[:int(len(raw) * cut)])
    _loads_or_data_error(path)


@FUZZ
@given(fmt=st.sampled_from(FORMATS),
       flips=st.lists(st.tuples(st.floats(0.0, 1.0, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=6))
def test_byte_flipped_files_load_or_raise_data_error(originals, tmp_path, fmt, flips):
    raw = bytearray(originals[fmt])
    for where, byte in flips:
        raw[int(len(raw) * where)] = byte
    path = tmp_path / f"BTC_USDT-1h.{fmt}"
    path.write_bytes(bytes(raw))
    _loads_or_data_error(path)


@settings(max_examples=30, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fmt=st.sampled_from(FORMATS), junk=st.binary(max_size=300))
def test_garbage_loads_or_raises_data_error(tmp_path, fmt, junk):
    path = tmp_path / f"BTC_USDT-1h.{fmt}"
    path.write_bytes(gzip.compress(junk) if fmt.endswith(".gz") and junk[:1] == b"\x00" else junk)
    _loads_or_data_error(path)


# -- the findings of issue 14, each with its message -----------------------------------------

def _error(path: Path) -> str:
    with pytest.raises(DataError) as info:
        load_candles(path)
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message
    return message


@pytest.mark.parametrize("fmt", ["csv.gz", "json.gz"])
def test_truncated_gzip_names_the_file(originals, tmp_path, fmt):
    path = tmp_path / f"BTC_USDT-1h.{fmt}"
    path.write_bytes(originals[fmt][:len(originals[fmt]) // 2])
    assert "truncated or corrupt gzip data" in _error(path)


def test_not_gzip_at_all(tmp_path):
    path = tmp_path / "BTC_USDT-1h.csv.gz"
    path.write_bytes(b"time,open,high,low,close,volume\n")
    assert "truncated or corrupt gzip data" in _error(path)


@pytest.mark.parametrize("fmt", ["feather", "parquet"])
def test_truncated_arrow_files_name_the_format(originals, tmp_path, fmt):
    path = tmp_path / f"BTC_USDT-1h.{fmt}"
    path.write_bytes(originals[fmt][:len(originals[fmt]) // 2])
    kind = {"feather": "Feather", "parquet": "Parquet"}[fmt]
    assert f"cannot read {kind} (truncated or corrupt?)" in _error(path)


@pytest.mark.parametrize("fmt", FORMATS)
def test_empty_file(tmp_path, fmt):
    path = tmp_path / f"BTC_USDT-1h.{fmt}"
    path.write_bytes(b"")
    _error(path)


def test_deeply_nested_json(tmp_path):
    path = tmp_path / "BTC_USDT-1h.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    message = _error(path)
    assert "nested too deeply" in message or "row 0 is" in message


@pytest.mark.parametrize("text, says", [
    ('{"time": 1}', "got a JSON dict"),
    ("[[1, 2, 3]]", "row 0 is [1, 2, 3]"),
    ('[[1600560000000, 1, 2, 1, 1, 1], [1600563600000, "x", 2, 1, 1, 1]]', "row 1 is"),
    ("[[1600560000000, 1, 2, 1, 1, [1]]]", "row 0 is"),
    ("[[1600560000000, true, 2, 1, 1, 1]]", "row 0 is"),
    ('"candles"', "got a JSON str"),
])
def test_json_of_the_wrong_shape(tmp_path, text, says):
    path = tmp_path / "BTC_USDT-1h.json"
    path.write_text(text)
    message = _error(path)
    assert "expected freqtrade's rows [[ms, open, high, low, close, volume], ...]" in message and says in message


def test_non_utf8_json(tmp_path):
    path = tmp_path / "BTC_USDT-1h.json"
    path.write_bytes(b'[[1600560000000, 1, 2, 1, 1, 1]]\xff')
    assert "not UTF-8 text (byte 0xff" in _error(path)


def test_semicolon_csv_without_header_says_so(tmp_path):
    path = tmp_path / "BTC_USDT-1h.csv"
    path.write_text("2020-01-01 00:00;1,5;1,6;1,4;1,5;100,25\n2020-01-01 01:00;1,5;1,6;1,4;1,5;100,25\n")
    message = _error(path)
    assert "no header line: line 1 is data ('2020-01-01 00:00;1,5" in message
    assert "found columns" not in message                  # a data row is never shown as column names


def test_binary_garbage_csv(tmp_path):
    path = tmp_path / "BTC_USDT-1h.csv"
    path.write_bytes(bytes(range(256)) * 4)
    _error(path)


@pytest.mark.parametrize("fmt", ["feather", "parquet"])
@pytest.mark.parametrize("column, values, says", [
    ("high", [True, False] * 12, "column 'high' holds bool values; expected numbers"),
    ("close", pd.date_range("2020", periods=24, freq="h"), "column 'close' holds datetime64"),
    ("open", ["abc"] * 24, "24 row(s) with a missing or non-numeric value in column 'open'"),
])
def test_wrong_column_types(tmp_path, fmt, column, values, says):
    frame = load_candles(bundled_path("BTC/USDT")).frame.iloc[:24].reset_index()
    frame[column] = values
    path = _write(frame, tmp_path / f"BTC_USDT-1h.{fmt}")
    assert says in _error(path)


def test_list_cells_are_named(tmp_path):
    frame = load_candles(bundled_path("BTC/USDT")).frame.iloc[:24].reset_index()
    frame["volume"] = [np.array([1.0, 2.0])] * 24
    path = _write(frame, tmp_path / "BTC_USDT-1h.parquet")
    assert "24 row(s) with a missing or non-numeric value in column 'volume'" in _error(path)


def test_one_bar_names_the_file(tmp_path):
    path = tmp_path / "one.csv"
    path.write_text("time,open,high,low,close,volume\n2020-01-01 00:00,1,2,1,1,1\n")
    assert "cannot infer the timeframe from fewer than 2 bars" in _error(path)
