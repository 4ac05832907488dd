"""Candles from a DataFrame of any common shape, and from files read into one: every check, every
repair, and errors that name the file, the rows and the column.

:func:`mlcoord.candles.load_candles` reads the common file layouts straight into arrays
(:mod:`mlcoord.candle_tables`); bars that need a repair or an error, and every other layout, come
here. Importing this module imports pandas.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from mlcoord.candle_tables import csv_layout
from mlcoord.candles import (
    _MAX_SHOWN, _TIME_ALIASES, COLUMNS, PRICES, REPAIR_MAX_DROP, CandleError, Candles, _find_gaps, _norm,
    epoch_unit, infer_timeframe, timeframe_to_ns,
)


def _fail(source: str, what: str, column: str, times, values=None) -> None:
    """Raise a CandleError listing the first few offending rows and how many there are in total."""
    times, values = list(times), None if values is None else np.asarray(values).tolist()
    shown = [str(t) if values is None else f"{t} ({column}={values[i]!r})" for i, t in enumerate(times[:_MAX_SHOWN])]
    more = f" and {len(times) - _MAX_SHOWN} more" if len(times) > _MAX_SHOWN else ""
    raise CandleError(f"{source}: {len(times)} row(s) with {what} in column '{column}' at: {', '.join(shown)}{more}")



def _unnamed_times(df: pd.DataFrame) -> bool:
    """The first column is an exported time index: no name (``to_csv``) or pandas' ``index``
    (``reset_index().to_feather()``), and not a row counter (0, 1, 2, ...)."""
    name, first = str(df.columns[0]), df.iloc[:, 0]
    if not (name.strip() in ("", "index", "level_0") or re.fullmatch(r"Unnamed: 0(_level_0)?", name)):
        return False
    counter = pd.api.types.is_integer_dtype(first) and np.array_equal(first.to_numpy(), np.arange(len(first)))
    return not counter


_TIME_OF_DAY = re.compile(r"^\s*\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?\s*$")
_DATE_ONLY = re.compile(r"^\s*(\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{4})\s*$")


def _all_match(column: pd.Series, pattern: re.Pattern) -> bool:
    if not (pd.api.types.is_object_dtype(column) or pd.api.types.is_string_dtype(column)):
        return False
    values = column.dropna()
    return len(values) > 0 and len(values) == len(column) and all(
        isinstance(v, str) and pattern.match(v) for v in values)


def _date_text(column: pd.Series) -> pd.Series | None:
    """A column of dates only (text, or datetimes at midnight) as ``YYYY-MM-DD``-style text, else None."""
    if _all_match(column, _DATE_ONLY):
        return column.str.strip()
    if pd.api.types.is_datetime64_any_dtype(column) and column.notna().all() and len(column):
        days = column.dt.normalize()
        if (days == column).all():
            return column.dt.strftime("%Y-%m-%d")
    return None


def _joined_date_and_time(df: pd.DataFrame, source: str) -> pd.DataFrame:
    """A file with the date in one column and the time of day in another (``date,time,open,...``)
    read as one time column; otherwise every bar of a day would share the day's timestamp (a 1h
    file once became 17 bars labelled 1d under ``--repair``). A time-of-day column with no date
    column beside it is refused."""
    times = [c for c in df.columns if _norm(c) == "time"]
    clock = [c for c in times if _all_match(df[c], _TIME_OF_DAY)]
    if not clock:
        return df
    dates = [(c, text) for c in times if c not in clock and (text := _date_text(df[c])) is not None]
    if len(clock) > 1 or not dates:
        others = [str(c) for c in times if c not in clock]
        raise CandleError(f"{source}: column {str(clock[0])!r} holds times of day (e.g. {df[clock[0]].iloc[0]!r}) "
                          f"without a date column beside it (found {others or 'none'} holding only dates); "
                          "give a full timestamp, or a date column and a time column")
    date, text = dates[0]
    joined = text + " " + df[clock[0]].str.strip()
    rest = df.drop(columns=[date, clock[0]])
    return pd.concat([pd.Series(joined, name="time", index=df.index), rest], axis=1)


def _find_columns(df: pd.DataFrame, source: str) -> tuple[dict[str, str], str | None]:
    """Map our column names to the source's (case-insensitive, aliases); the time column may be absent."""
    found: dict[str, str] = {}
    for col in df.columns:
        key = _norm(col)
        if key in COLUMNS and key in found:
            raise CandleError(f"{source}: columns {found[key]!r} and {col!r} both look like '{key}'")
        if key in COLUMNS or (key == "time" and "time" not in found):
            found.setdefault(key, col)
    missing = [c for c in COLUMNS if c not in found]
    if missing:
        raise CandleError(f"{source}: missing column(s) {missing}; found columns {[str(c) for c in df.columns]}")
    return found, found.get("time")


def _parse_times(raw: pd.Series | pd.Index, source: str, column: str) -> pd.DatetimeIndex:
    """Epoch numbers (unit by magnitude), datetimes or ISO strings -> UTC ns index; naive means UTC."""
    raw = pd.Series(raw).reset_index(drop=True)
    if pd.api.types.is_bool_dtype(raw):
        raise CandleError(f"{source}: time column '{column}' holds booleans")
    if pd.api.types.is_numeric_dtype(raw):
        mag = np.nanmax(np.abs(raw.to_numpy(dtype=float))) if raw.notna().any() else 0
        unit = epoch_unit(mag)
        parsed = pd.to_datetime(raw, unit=unit, utc=True, errors="coerce")
    elif isinstance(raw.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(raw):
        parsed = pd.to_datetime(raw, utc=True)
    else:
        parsed = pd.to_datetime(raw, utc=True, format="ISO8601", errors="coerce")
        if parsed.isna().all():  # CryptoDataDownload style "2019-10-17 09-AM"
            parsed = pd.to_datetime(raw, utc=True, format="%Y-%m-%d %I-%p", errors="coerce")
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if bad.size:
        i = int(bad[0])
        raise CandleError(f"{source}: {bad.size} unparseable timestamp(s) in column '{column}', "
                          f"first at data row {i} (0-based): {raw.iloc[i]!r}")
    return pd.DatetimeIndex(parsed, name="time").as_unit("ns")


def _numbers(column: pd.Series, source: str, name: str) -> np.ndarray:
    """A price or volume column as float64; text that is no number becomes NaN (reported by row).
    Cells that are neither numbers nor text (lists, tables) are an error naming the first."""
    try:
        return pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        odd = next((v for v in column if not isinstance(v, (int, float, str, type(None)))), None)
        raise CandleError(f"{source}: column '{name}' holds {type(odd).__name__} values such as "
                          f"{odd!r:.60}; expected numbers") from None



def candles_from_frame(df: pd.DataFrame, *, symbol: str, timeframe: str | None = None,
                       source: str = "<frame>", repair: bool = False,
                       repair_max_drop: float = REPAIR_MAX_DROP) -> Candles:
    """Normalise and validate any common OHLCV frame shape into :class:`Candles`.

    Accepts columns in any case (aliases: date/datetime/timestamp/time/open_time/"Open time"/unix, vol),
    the timestamp as a column or as the index, epoch s/ms/us/ns or ISO strings / datetimes (naive = UTC).
    Extra columns are dropped. Any problem raises :class:`CandleError` naming ``source``, column and rows.

    A file whose every timestamp is before the previous one (newest first) is read in time order,
    recorded in ``Candles.repairs`` like a repair. ``repair=True`` (opt-in, never silent) sorts by
    time, drops duplicate timestamps keeping the last occurrence, drops rows with NaN / non-finite /
    non-positive prices or NaN volume, and widens high/low to cover open/close; each repair is recorded in ``Candles.repairs``. Negative volume,
    bad timestamps and a step below the timeframe are never repaired. A repair never changes the
    timeframe (it is read from the data before any row is dropped) and refuses, listing the rows,
    to drop more than ``repair_max_drop`` of them (default 1 %): so many bad rows mean a file read
    wrongly, not a few bad ticks.
    """
    source = f"{source} [{symbol}]"
    if df is None or len(df) == 0:
        raise CandleError(f"{source}: no rows")
    df = _joined_date_and_time(df, source)
    cols, time_col = _find_columns(df, source)
    if time_col is None and not isinstance(df.index, pd.DatetimeIndex) and _unnamed_times(df):
        time_col = df.columns[0]        # pandas' to_csv writes the index as an unnamed first column
    if time_col is not None:
        index = _parse_times(df[time_col], source, str(time_col))
    elif isinstance(df.index, pd.DatetimeIndex) or _norm(df.index.name) == "time":
        index = _parse_times(df.index.to_series(), source, str(df.index.name or "index"))
    else:
        raise CandleError(f"{source}: no time column (looked for {_TIME_ALIASES}) and the index is not "
                          f"timestamps; found columns {[str(c) for c in df.columns]}")
    for c in COLUMNS:
        kind = df[cols[c]].dtype
        if not (pd.api.types.is_numeric_dtype(kind) or pd.api.types.is_object_dtype(kind)
                or pd.api.types.is_string_dtype(kind)) or pd.api.types.is_bool_dtype(kind):
            raise CandleError(f"{source}: column '{cols[c]}' holds {kind} values; expected numbers")
    frame = pd.DataFrame({c: _numbers(df[cols[c]], source, str(cols[c])) for c in COLUMNS}, index=index)
    repairs: list[str] = []
    if len(frame) > 1 and (np.diff(frame.index.asi8) < 0).all():
        # newest first (CryptoDataDownload's exports, many exchange dumps): a layout, not a defect,
        # so it is read in time order without ``repair``, and said
        frame = frame.iloc[::-1]
        repairs.append(f"read the {len(frame)} rows, newest first in the file, in time order")

    if repair:
        if not frame.index.is_monotonic_increasing:
            order = np.argsort(frame.index.asi8, kind="stable")
            repairs.append(f"sorted {int((order != np.arange(len(order))).sum())} out-of-order rows by time")
            frame = frame.iloc[order]
        if timeframe is None and len(unique := frame.index.unique()) > 1:
            try:                          # the data's own timeframe, before any row is dropped
                timeframe = infer_timeframe(unique)
            except CandleError as exc:
                raise CandleError(f"{source}: {exc}") from None
        dup = frame.index.duplicated(keep="last")
        p = frame[list(PRICES)].to_numpy()
        bad = (~(np.isfinite(p) & (p > 0)).all(axis=1) | frame["volume"].isna().to_numpy()) & ~dup
        _refuse_large_drop(source, frame.index, dup, bad, repair_max_drop)
        if dup.any():
            repairs.append(f"dropped {int(dup.sum())} duplicate-timestamp rows (kept the last occurrence)")
        if bad.any():
            repairs.append(f"dropped {int(bad.sum())} rows with missing, non-finite or non-positive values")
        frame = frame[~(dup | bad)]
        hi = frame[["open", "close", "low", "high"]].max(axis=1)
        lo = frame[["open", "close", "low", "high"]].min(axis=1)
        clipped = (hi != frame["high"]) | (lo != frame["low"])
        if clipped.any():
            repairs.append(f"widened high/low to cover open/close on {int(clipped.sum())} rows")
            frame = frame.assign(high=hi, low=lo)
        if frame.empty:
            raise CandleError(f"{source}: no rows left after repair ({'; '.join(repairs)})")

    t = frame.index
    for c in COLUMNS:
        v = frame[c]
        if v.isna().any():
            _fail(source, "a missing or non-numeric value", c, t[v.isna()])
    for c in PRICES:
        v = frame[c].to_numpy()
        bad = ~(np.isfinite(v) & (v > 0))
        if bad.any():
            _fail(source, "a non-finite or non-positive price", c, t[bad], v[bad])
    v = frame["volume"].to_numpy()
    if (bad := ~(np.isfinite(v) & (v >= 0))).any():
        _fail(source, "a negative or infinite volume", "volume", t[bad], v[bad])
    o, h, l, c = (frame[k].to_numpy() for k in PRICES)
    if (bad := h < np.maximum.reduce([o, c, l])).any():
        _fail(source, "high below open/close/low", "high", t[bad], h[bad])
    if (bad := l > np.minimum.reduce([o, c, h])).any():
        _fail(source, "low above open/close/high", "low", t[bad], l[bad])
    steps = np.diff(t.asi8)
    if (bad := steps < 0).any():
        _fail(source, "out-of-order timestamps (sort them with --repair, [data] repair = true or repair=True)",
              "time", t[1:][bad])
    if (bad := steps == 0).any():
        _fail(source, "duplicate timestamps (keep the last with --repair, [data] repair = true or repair=True)",
              "time", t[1:][bad])

    try:
        timeframe = timeframe or infer_timeframe(t)
        tf_ns = timeframe_to_ns(timeframe)
    except CandleError as exc:
        raise CandleError(f"{source}: {exc}") from None
    if (bad := steps < tf_ns).any():
        _fail(source, f"a step shorter than the timeframe {timeframe}", "time", t[1:][bad])
    if (bad := steps % tf_ns != 0).any():
        _fail(source, f"a step that is not a multiple of the timeframe {timeframe}", "time", t[1:][bad])
    return Candles(symbol, timeframe, frame, _find_gaps(t.asi8, tf_ns), tuple(repairs))


def _refuse_large_drop(source: str, times: pd.DatetimeIndex, dup: np.ndarray, bad: np.ndarray,
                       max_drop: float) -> None:
    """A CandleError listing what a repair would drop, when it is more than ``max_drop`` of the rows."""
    dropped = int(dup.sum() + bad.sum())
    if dropped <= max_drop * len(times):
        return
    parts = []
    for what, mask in (("duplicate timestamps", dup), ("missing, non-finite or non-positive values", bad)):
        if mask.any():
            at = times[mask].unique()
            more = f" and {len(at) - _MAX_SHOWN} more times" if len(at) > _MAX_SHOWN else ""
            parts.append(f"{int(mask.sum())} with {what} at {', '.join(str(t) for t in at[:_MAX_SHOWN])}{more}")
    raise CandleError(f"{source}: repair would drop {dropped} of {len(times)} rows ({dropped / len(times):.1%}), more "
                      f"than the {max_drop:.1%} allowed: {'; '.join(parts)}. So many usually means the file is read "
                      "wrongly (its time column?); fix the file, or allow more with --repair-max-drop / [data] "
                      "repair_max_drop")



def rows_frame(time_ms, values) -> pd.DataFrame:
    """Exchange rows (open times in ms, an ``(n, 5)`` OHLCV array) as the frame
    :func:`candles_from_frame` reads (the data store's layout)."""
    index = pd.DatetimeIndex(pd.to_datetime(np.asarray(time_ms, np.int64), unit="ms", utc=True),
                             name="time").as_unit("ns")
    return pd.DataFrame(np.asarray(values, np.float64), index=index, columns=list(COLUMNS))



def _read_csv(path: Path) -> pd.DataFrame:
    """A CSV file in the layout :func:`~mlcoord.candle_tables.csv_layout` finds. A file with no header
    line is read as Binance's kline layout: time, open, high, low, close, volume, then extras."""
    layout = csv_layout(path)
    if not layout.header:
        df = pd.read_csv(path, sep=layout.sep, skiprows=layout.skip, header=None, decimal=layout.decimal)
        return df.iloc[:, :6].set_axis(["time", *COLUMNS], axis=1)
    return pd.read_csv(path, sep=layout.sep, skiprows=layout.skip, decimal=layout.decimal)


def _json_frame(rows, path: Path) -> pd.DataFrame:
    """freqtrade's ``[[ms, open, high, low, close, volume], ...]`` as a frame; any other shape
    (an object, short rows, cells that are not numbers) is an error naming the first bad row."""
    expected = "expected freqtrade's rows [[ms, open, high, low, close, volume], ...]"
    if not isinstance(rows, list):
        raise CandleError(f"{path}: {expected}, got a JSON {type(rows).__name__} ({rows!r:.60})")
    for i, row in enumerate(rows):
        if not (isinstance(row, list) and len(row) == 6
                and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in row)):
            raise CandleError(f"{path}: {expected}; row {i} is {row!r:.80}")
    return pd.DataFrame(rows, columns=["time", *COLUMNS]) if rows else pd.DataFrame()


def read_frame(path: Path) -> pd.DataFrame:
    """The file as a DataFrame, by its extension (:func:`~mlcoord.candles.load_candles` checked it)."""
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(".json"):
        with (gzip.open(path, "rt", encoding="utf-8") if path.name.lower().endswith(".gz")
              else open(path, encoding="utf-8")) as fh:
            return _json_frame(json.load(fh), path)
    if name.endswith(".feather"):
        return pd.read_feather(path)
    if name.endswith(".parquet"):
        return pd.read_parquet(path)
    return _read_csv(path)
