"""Candle files read straight into arrays (mlcoord.candle_tables) give what the DataFrame reader
gives: the same bars to the last bit, the same timeframe, gaps and repairs, or the same error.

The reference is the DataFrame path alone (``candles_from_frame(read_frame(path))``), which every
file took before; ``load_candles`` must agree with it on every file, clean or not."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from mlcoord import candle_frames
from mlcoord.candle_frames import candles_from_frame, read_frame
from mlcoord.candle_tables import read_bars
from mlcoord.candles import COLUMNS, CandleError, Candles, _guess_from_name, load_candles
from mlcoord.datasets import bundled_path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CASES = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
STEP = {"5m": 300, "1h": 3600, "4h": 14_400, "1d": 86_400}


def _reference(path: Path):
    """What the DataFrame reader makes of ``path``: candles, or the CandleError text."""
    symbol, timeframe = _guess_from_name(path)
    try:
        return candles_from_frame(read_frame(path), symbol=symbol, timeframe=timeframe, source=str(path))
    except CandleError as exc:
        return str(exc)


def _loaded(path: Path):
    try:
        return load_candles(path)
    except CandleError as exc:
        return str(exc)


def _same(a, b) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    assert isinstance(a, Candles) and isinstance(b, Candles)
    return ((a.symbol, a.timeframe, a.gaps, a.repairs) == (b.symbol, b.timeframe, b.gaps, b.repairs)
            and all(getattr(a, c).tobytes() == getattr(b, c).tobytes() for c in ("time", *COLUMNS)))


@st.composite
def candle_files(draw):
    """A candle table in one of many layouts, clean or with one defect, as (frame, how to write)."""
    tf = draw(st.sampled_from(sorted(STEP)))
    n = draw(st.integers(2, 40))
    start = draw(st.integers(1_500_000_000, 1_700_000_000)) // STEP[tf] * STEP[tf]
    steps = draw(st.lists(st.sampled_from([1, 1, 1, 1, 2, 3]), min_size=n - 1, max_size=n - 1))
    seconds = np.concatenate(([0], np.cumsum(steps))) * STEP[tf] + start
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    digits = draw(st.sampled_from([2, 6, 17]))
    close = np.round(100 * np.exp(np.cumsum(rng.normal(0, 0.01, n))), digits)
    open_ = np.round(close * (1 + rng.normal(0, 0.002, n)), digits)
    high = np.maximum(open_, close) + np.round(rng.uniform(0, 1, n), digits)
    low = np.minimum(open_, close) - np.round(rng.uniform(0, 1, n), digits)
    volume = np.round(rng.uniform(0, 1000, n), draw(st.sampled_from([0, 3])))
    values = {"open": open_, "high": high, "low": low, "close": close, "volume": volume}
    defect = draw(st.sampled_from(["none"] * 6 + ["nan", "negative", "duplicate", "reversed", "high_low",
                                                  "text", "shuffled"]))
    frame = pd.DataFrame({"time": seconds, **values})
    k = draw(st.integers(0, n - 1))
    if defect == "nan":
        frame.loc[k, draw(st.sampled_from(COLUMNS))] = np.nan
    elif defect == "negative":
        frame.loc[k, "low"] = -1.0
    elif defect == "duplicate":
        frame = pd.concat([frame, frame.iloc[[k]]]).sort_values("time", kind="stable").reset_index(drop=True)
    elif defect == "reversed":
        frame = frame.iloc[::-1].reset_index(drop=True)
    elif defect == "high_low":
        frame.loc[k, "high"] = frame.loc[k, "low"] - 1.0
    elif defect == "text":
        frame = frame.astype({"close": object})
        frame.loc[k, "close"] = "n/a"
    elif defect == "shuffled":
        frame = frame.sample(frac=1.0, random_state=1).reset_index(drop=True)
    times = draw(st.sampled_from(["iso", "iso_t_z", "naive", "offset", "epoch_s", "epoch_ms", "epoch_us",
                                  "date"] if tf == "1d" else
                                 ["iso", "iso_t_z", "naive", "offset", "epoch_s", "epoch_ms", "epoch_us"]))
    how = {"tf": tf, "times": times, "defect": defect, "container": draw(st.sampled_from(["csv", "csv.gz", "feather"])),
           "sep": draw(st.sampled_from([",", ",", ";", "\t", "|"])),
           "time_name": draw(st.sampled_from(["time", "date", "timestamp", "Open time", "datetime"])),
           "upper": draw(st.booleans()), "extra": draw(st.booleans()), "vol": draw(st.booleans()),
           "named": draw(st.booleans()), "order": draw(st.permutations(list(range(6))))}
    return frame, how


def _time_column(seconds: pd.Series, how: str):
    ts = pd.to_datetime(seconds, unit="s", utc=True)
    if how == "iso":
        return ts.dt.strftime("%Y-%m-%d %H:%M:%S+00:00")
    if how == "iso_t_z":
        return ts.dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    if how == "naive":
        return ts.dt.strftime("%Y-%m-%d %H:%M:%S")
    if how == "offset":
        return (ts + pd.Timedelta(hours=2)).dt.strftime("%Y-%m-%d %H:%M:%S+02:00")
    if how == "date":
        return ts.dt.strftime("%Y-%m-%d")
    scale = {"epoch_s": 1, "epoch_ms": 1000, "epoch_us": 10**6}[how]
    return seconds.astype("int64") * scale


def _write(frame: pd.DataFrame, how: dict, folder: Path) -> Path:
    out = pd.DataFrame({"time": _time_column(frame["time"], how["times"])})
    for c in COLUMNS:
        out[c] = frame[c]
    if how["extra"]:
        out["trades"] = np.arange(len(out))
    columns = list(out.columns[:6])
    out = out[[columns[k] for k in how["order"]] + list(out.columns[6:])]
    names = {"time": how["time_name"], "volume": "vol" if how["vol"] else "volume"}
    out = out.rename(columns=lambda c: names.get(c, c).upper() if how["upper"] else names.get(c, c))
    stem = f"PAIR_USDT-{how['tf']}" if how["named"] else "pair"
    if how["container"] == "feather":
        if how["times"] in ("iso", "iso_t_z", "offset", "naive", "date"):   # a real timestamp column
            key = [c for c in out.columns if c.lower() == how["time_name"].lower()][0]
            stamps = pd.to_datetime(frame["time"], unit="s", utc=True)
            out[key] = stamps.dt.tz_localize(None) if how["times"] == "naive" else stamps
        for c in out.columns:           # a column with text in it is a text column in Arrow
            if out[c].dtype == object:
                out[c] = out[c].astype(str)
        path = folder / f"{stem}.feather"
        out.reset_index(drop=True).to_feather(path)
        return path
    decimal = "," if how["sep"] == ";" else "."
    text = out.to_csv(index=False, sep=how["sep"], decimal=decimal)
    if how["container"] == "csv.gz":
        path = folder / f"{stem}.csv.gz"
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path = folder / f"{stem}.csv"
        path.write_text(text)
    return path


@CASES
@given(case=candle_files())
def test_any_file_loads_as_the_dataframe_reader_reads_it(case, tmp_path_factory):
    frame, how = case
    path = _write(frame, how, tmp_path_factory.mktemp("files"))
    reference = _reference(path)
    assert _same(_loaded(path), reference), how
    if how["defect"] == "none" and isinstance(reference, Candles):   # every layout drawn: read as arrays
        bars = read_bars(path)
        assert bars is not None, how
        time_ns, columns = bars
        assert time_ns.tobytes() == reference.time.tobytes(), how
        assert all(a.tobytes() == getattr(reference, c).tobytes() for a, c in zip(columns, COLUMNS)), how


def test_clean_files_are_read_without_a_dataframe(monkeypatch, tmp_path):
    """The bundled Feather file, a CSV and a gzip-compressed CSV of it become candles from their
    arrays (the DataFrame reader, made to fail, is never asked); a file to repair still asks it."""
    bundled = bundled_path("BTC/USDT")
    frame = load_candles(bundled).frame.iloc[:500].reset_index()
    frame.to_csv(tmp_path / "BTC_USDT-1h.csv", index=False)
    with gzip.open(tmp_path / "BTC_USDT-1h.csv.gz", "wt") as fh:
        frame.to_csv(fh, index=False)
    expected = {p: _reference(p) for p in (bundled, tmp_path / "BTC_USDT-1h.csv", tmp_path / "BTC_USDT-1h.csv.gz")}

    def no_frame(path):
        raise AssertionError(f"{path} was read as a DataFrame")

    monkeypatch.setattr(candle_frames, "read_frame", no_frame)
    for path, reference in expected.items():
        assert read_bars(path) is not None
        assert _same(load_candles(path), reference)
    frame.iloc[::-1].to_csv(tmp_path / "newest_first.csv", index=False)
    with pytest.raises(AssertionError, match="newest_first.csv was read as a DataFrame"):
        load_candles(tmp_path / "newest_first.csv")


def test_a_pandas_index_in_a_feather_file_leaves_it_to_pandas(tmp_path):
    frame = load_candles(bundled_path("BTC/USDT")).frame.iloc[:50].copy()
    frame.to_feather(tmp_path / "indexed.feather")                 # the time index stored as pandas' index
    assert read_bars(tmp_path / "indexed.feather") is None
    assert _same(load_candles(tmp_path / "indexed.feather", symbol="indexed"), _reference(tmp_path / "indexed.feather"))


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is not beside the checkout")
def test_real_files_load_as_the_dataframe_reader_reads_them():
    files = sorted(p for p in (*SHARED.rglob("*.csv*"), *SHARED.rglob("*.feather"))
                   if "funding" not in p.name and p.name != "MANIFEST.csv")
    assert len(files) >= 20
    for path in files:
        assert _same(_loaded(path), _reference(path)), path


LAYOUTS = {
    "dates only, daily": ("day.csv", "date,open,high,low,close,volume\n{rows}", "%Y-%m-%d", 86_400),
    "epoch seconds": ("s.csv", "unix,open,high,low,close,volume\n{rows}", "s", 3600),
    "epoch milliseconds": ("ms.csv", "timestamp,open,high,low,close,volume\n{rows}", "ms", 3600),
    "epoch microseconds": ("us.csv", "Open time,Open,High,Low,Close,Volume\n{rows}", "us", 3600),
    "offset +02:00": ("tz.csv", "time,open,high,low,close,vol\n{rows}", "%Y-%m-%dT%H:%M:%S+02:00", 3600),
    "semicolons, decimal commas": ("eu.csv", "time;open;high;low;close;volume\n{rows}", "%Y-%m-%d %H:%M:%S", 3600),
    "a banner line": ("banner.csv", "https://www.example.com\ndate,open,high,low,close,volume\n{rows}",
                      "%Y-%m-%d %H:%M:%S", 3600),
    "Binance klines, no header": ("klines.csv", "{rows}", "ms", 3600),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_each_common_layout_is_read_as_arrays_equal_to_the_dataframe_readers(layout, tmp_path):
    name, template, times, step = LAYOUTS[layout]
    rows = []
    for k in range(30):
        t = 1_700_006_400 + k * step + (step if k >= 20 else 0)            # one gap
        when = (str(t * {"s": 1, "ms": 1000, "us": 10**6}[times]) if times in ("s", "ms", "us")
                else (pd.Timestamp(t, unit="s", tz="UTC") + pd.Timedelta(hours=2 if "+02" in times else 0)
                      ).strftime(times))
        o, c = 100.0 + k * 0.37, 100.11 + k * 0.41
        fields = [when, o, max(o, c) + 0.5, min(o, c) - 0.25, c, 10.0 + k]
        if layout.startswith("semicolons"):
            rows.append(";".join([when, *(repr(f).replace(".", ",") for f in fields[1:])]))
        elif layout.startswith("Binance"):
            rows.append(",".join([when, *map(repr, fields[1:]), str(t * 1000 + 3_599_999), "1.0", "7", "0.5", "0.2", "0"]))
        else:
            rows.append(",".join([when, *map(repr, fields[1:])]))
    path = tmp_path / name
    path.write_text(template.format(rows="\n".join(rows)) + "\n")
    reference = _reference(path)
    assert isinstance(reference, Candles) and len(reference.gaps) == 1, reference
    bars = read_bars(path)
    assert bars is not None
    assert bars[0].tobytes() == reference.time.tobytes()
    assert all(a.tobytes() == getattr(reference, c).tobytes() for a, c in zip(bars[1], COLUMNS))
    assert _same(load_candles(path), reference)
