"""OHLCV candles: loading, validation, resampling and look-ahead-safe timeframe alignment.

Every price series enters the engine through :func:`candles_from_frame`, so bad data fails loudly
here (naming file, timestamp and column) instead of silently skewing a backtest or a live order.
"""

from __future__ import annotations

import gzip
import json
import re
import sys
import zlib
from pathlib import Path
from typing import Sequence

import attrs
import numpy as np
import pandas as pd

COLUMNS = ("open", "high", "low", "close", "volume")
PRICES = COLUMNS[:4]
TIMEFRAMES = ("1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w")
_UNIT_NS = {"m": 60 * 10**9, "h": 3600 * 10**9, "d": 86400 * 10**9, "w": 7 * 86400 * 10**9}
_TIME_ALIASES = ("time", "timestamp", "datetime", "date", "open_time", "unix", "ts")
_ALIASES = {"vol": "volume", **{a: "time" for a in _TIME_ALIASES}}
_MAX_SHOWN = 5
_WEEK_ORIGIN_NS = 4 * 86400 * 10**9  # 1970-01-05 was a Monday: weekly buckets open on Mondays.


from mlcoord.errors import DataError  # noqa: E402  (CandleError is a DataError)
from mlcoord.frozen_frame import ReadOnlyFrame  # noqa: E402
from mlcoord.prefix_cache import PrefixCache  # noqa: E402

class CandleError(DataError):
    """Bad candle data. Message names the file/symbol, the row timestamp (or row number) and the column."""


def timeframe_to_ns(tf: str) -> int:
    """Length of one bar in nanoseconds; only the exchange-standard timeframes are accepted."""
    if tf not in TIMEFRAMES:
        raise CandleError(f"unknown timeframe {tf!r}; expected one of {', '.join(TIMEFRAMES)}")
    return int(tf[:-1]) * _UNIT_NS[tf[-1]]


_NS_TO_TF = {timeframe_to_ns(tf): tf for tf in TIMEFRAMES}


def infer_timeframe(index: pd.DatetimeIndex) -> str:
    """Most common step between consecutive timestamps (robust to gaps), as a timeframe string."""
    steps = np.diff(np.asarray(index.as_unit("ns").asi8))
    if steps.size == 0:
        raise CandleError("cannot infer the timeframe from fewer than 2 bars; name it (a file named like "
                          "BTC_USDT-1h.csv, or timeframe= in Python)")
    values, counts = np.unique(steps, return_counts=True)
    step = int(values[np.argmax(counts)])
    if step not in _NS_TO_TF:
        raise CandleError(f"most common bar step {pd.Timedelta(step)} is not a known timeframe "
                          f"({', '.join(TIMEFRAMES)}); name it if the data has one (a file named like "
                          "BTC_USDT-1h.csv, or timeframe= in Python)")
    return _NS_TO_TF[step]


def union_times(times: Sequence[np.ndarray]) -> np.ndarray:
    """The distinct times of ``times``, sorted: what ``np.unique(np.concatenate(times))`` gives,
    by a sort. numpy 2's ``unique`` hashes first and costs ~25x a sort on 50,000 bar times
    (6 ms of a 0.9 s backtest)."""
    joined = np.sort(np.concatenate(times)) if len(times) else np.zeros(0, np.int64)
    if len(joined) > 1:
        joined = joined[np.concatenate(([True], joined[1:] != joined[:-1]))]
    return joined


@attrs.frozen
class Gap:
    """Missing bars between two present ones (reported, not an error: exchanges have outages)."""

    start: pd.Timestamp  # last bar before the gap
    end: pd.Timestamp  # first bar after
    missing: int  # number of absent bars


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


@attrs.frozen(eq=False)
class Candles:
    """A validated, immutable OHLCV series. Build it with :func:`load_candles` / :func:`candles_from_frame`.

    The constructor re-checks only the cheap structural invariants; the numpy views (``time`` as int64
    ns since epoch, ``open`` .. ``volume`` float64) are computed once and are read-only. Candles hold
    only these arrays: ``frame`` is built over them on first use (so the per-bar work of a live
    session never pays for a DataFrame) as a :class:`~mlcoord.frozen_frame.ReadOnlyFrame`, which
    refuses writes: every plugin and the engine share it.
    """

    symbol: str
    timeframe: str
    _frame: pd.DataFrame = attrs.field(alias="frame", repr=False)
    gaps: tuple[Gap, ...] = ()
    repairs: tuple[str, ...] = ()  # what repair=True changed, for the caller to log
    time: np.ndarray = attrs.field(init=False, repr=False)
    open: np.ndarray = attrs.field(init=False, repr=False)
    high: np.ndarray = attrs.field(init=False, repr=False)
    low: np.ndarray = attrs.field(init=False, repr=False)
    close: np.ndarray = attrs.field(init=False, repr=False)
    volume: np.ndarray = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        timeframe_to_ns(self.timeframe)
        f, idx = self._frame, self._frame.index
        if tuple(f.columns) != COLUMNS or any(f[c].dtype != np.float64 for c in COLUMNS):
            raise CandleError(f"{self.symbol}: frame must have float64 columns {COLUMNS}, got {dict(f.dtypes)}")
        if not (isinstance(idx, pd.DatetimeIndex) and str(idx.tz) == "UTC" and idx.name == "time"):
            raise CandleError(f"{self.symbol}: index must be a UTC DatetimeIndex named 'time'")
        if not (idx.is_monotonic_increasing and idx.is_unique):
            raise CandleError(f"{self.symbol}: index 'time' must be sorted and unique")
        object.__setattr__(self, "time", _readonly(idx.as_unit("ns").asi8.copy()))
        for c in COLUMNS:
            object.__setattr__(self, c, _readonly(f[c].to_numpy(dtype=np.float64, copy=True)))
        object.__setattr__(self, "_frame", None)    # the caller's frame stays the caller's: ours is built over the arrays

    @classmethod
    def _checked(cls, symbol: str, timeframe: str, time: np.ndarray, columns: Sequence[np.ndarray],
                 gaps: tuple[Gap, ...] = (), repairs: tuple[str, ...] = ()) -> Candles:
        """Candles of bars already checked, given as read-only arrays (``columns`` in
        :data:`COLUMNS` order): no second check, no DataFrame until ``frame`` is asked for."""
        made = object.__new__(cls)
        for name, value in (("symbol", symbol), ("timeframe", timeframe), ("_frame", None), ("gaps", gaps),
                            ("repairs", repairs), ("time", time), *zip(COLUMNS, columns)):
            object.__setattr__(made, name, value)
        return made

    @property
    def frame(self) -> pd.DataFrame:
        """The bars as a read-only DataFrame (float64 :data:`COLUMNS`, UTC index 'time') over the
        arrays: a write raises :class:`~mlcoord.frozen_frame.FrozenFrameError`; ``frame.copy()``
        is a DataFrame of one's own."""
        if self._frame is None:
            index = pd.DatetimeIndex(pd.to_datetime(self.time, utc=True), name="time").as_unit("ns")
            object.__setattr__(self, "_frame", ReadOnlyFrame({c: getattr(self, c) for c in COLUMNS},
                                                             index=index, copy=False))
        return self._frame

    def __reduce__(self):
        """Pickled (to an executor's worker process) as the arrays alone, read-only again on arrival
        (pickle does not keep numpy's flag) and without the frame, which is rebuilt on demand."""
        return _unpickled, (self.symbol, self.timeframe, self.time, self._columns(), self.gaps, self.repairs)

    def _columns(self) -> tuple[np.ndarray, ...]:
        return self.open, self.high, self.low, self.close, self.volume

    def __len__(self) -> int:
        return len(self.time)

    @property
    def timeframe_ns(self) -> int:
        return timeframe_to_ns(self.timeframe)

    def slice(self, start: int | None, stop: int | None, *, own: bool = False) -> Candles:
        """Bars ``[start:stop]`` by position (Python slice rules); ``slice(0, k + 1)`` is all bar k's close may see.

        Bars of checked candles need no second check: the arrays are read-only views of these
        (``own=True``: copies of their own, which nothing done to these can reach)."""
        part = slice(start, stop)
        time = self.time[part]
        gaps: tuple[Gap, ...] = ()
        if len(time) and self.gaps:
            lo, hi = int(time[0]), int(time[-1])
            gaps = tuple(g for g in self.gaps if g.start.value >= lo and g.end.value <= hi)
        columns = [a[part] for a in self._columns()]
        if own:
            time, columns = _readonly(time.copy()), [_readonly(a.copy()) for a in columns]
        return Candles._checked(self.symbol, self.timeframe, time, columns, gaps, self.repairs)

    def followed_by(self, newer: Candles) -> Candles:
        """These bars, then the bars of ``newer`` after the last of these (a live feed's new
        bars). Both are checked candles, so the join needs no second check."""
        if len(self) and len(newer):
            newer = newer.slice(int(np.searchsorted(newer.time, self.time[-1], side="right")), None)
        if not len(newer):
            return self
        if not len(self):
            return newer
        if newer.timeframe != self.timeframe:
            raise CandleError(f"{self.symbol}: new bars are {newer.timeframe}, the history is {self.timeframe}")
        return Candles._checked(self.symbol, self.timeframe, _readonly(np.concatenate((self.time, newer.time))),
                                [_readonly(np.concatenate(pair)) for pair in zip(self._columns(), newer._columns())],
                                self.gaps, self.repairs)

    def dropping(self, positions: Sequence[int]) -> Candles:
        """These bars less the ones at ``positions`` (bars a live session leaves out as
        implausible: :mod:`mlcoord.jumps`); the holes they leave are gaps."""
        keep = np.ones(len(self), dtype=bool)
        keep[np.asarray(positions, dtype=np.int64)] = False
        time = _readonly(self.time[keep])
        return Candles._checked(self.symbol, self.timeframe, time, [_readonly(a[keep]) for a in self._columns()],
                                _find_gaps(time, self.timeframe_ns), self.repairs)

    def as_symbol(self, symbol: str) -> Candles:
        """The same bars named ``symbol`` (an exchange's name for them -> the configured one), as
        ``Candles(symbol, timeframe, frame)`` makes them: gaps and repairs are not carried."""
        return Candles._checked(symbol, self.timeframe, self.time, self._columns())

    def between(self, start: pd.Timestamp | None, end: pd.Timestamp | None) -> Candles:
        """Bars with open time in ``[start, end)``; ``None`` leaves that side open, naive times are UTC."""
        lo = 0 if start is None else int(np.searchsorted(self.time, _utc_ns(start), "left"))
        hi = len(self) if end is None else int(np.searchsorted(self.time, _utc_ns(end), "left"))
        return self.slice(lo, max(lo, hi))


def _unpickled(symbol: str, timeframe: str, time: np.ndarray, columns: Sequence[np.ndarray], gaps: tuple[Gap, ...],
               repairs: tuple[str, ...]) -> Candles:
    return Candles._checked(symbol, timeframe, _readonly(time), [_readonly(a) for a in columns], gaps, repairs)


def _utc_ns(ts) -> int:
    ts = pd.Timestamp(ts)
    return (ts.tz_localize("UTC") if ts.tz is None else ts.tz_convert("UTC")).as_unit("ns").value


def _fail(source: str, what: str, column: str, times, values=None) -> None:
    """Raise a CandleError listing the first few offending rows and how many there are in total."""
    times, values = list(times), None if values is None else np.asarray(values).tolist()
    shown = [str(t) if values is None else f"{t} ({column}={values[i]!r})" for i, t in enumerate(times[:_MAX_SHOWN])]
    more = f" and {len(times) - _MAX_SHOWN} more" if len(times) > _MAX_SHOWN else ""
    raise CandleError(f"{source}: {len(times)} row(s) with {what} in column '{column}' at: {', '.join(shown)}{more}")


def _norm(name) -> str:
    key = str(name).strip().lower().replace(" ", "_")
    return _ALIASES.get(key, key)


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
        unit = "s" if mag < 1e11 else "ms" if mag < 1e14 else "us" if mag < 1e17 else "ns"
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


def _find_gaps(time_ns: np.ndarray, tf_ns: int) -> tuple[Gap, ...]:
    steps = np.diff(time_ns)
    at = np.flatnonzero(steps > tf_ns)
    return tuple(Gap(pd.Timestamp(int(time_ns[i]), tz="UTC"), pd.Timestamp(int(time_ns[i + 1]), tz="UTC"),
                     int(steps[i] // tf_ns) - 1) for i in at)


#: the largest share of a file's rows ``repair`` drops by default (``[data] repair_max_drop``)
REPAIR_MAX_DROP = 0.01


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


#: the last open time in ms whose ns value fits an int64 (pandas' own bound is 2262-04-11)
_MAX_MS = (2**63 - 1) // 10**6


def rows_frame(time_ms, values) -> pd.DataFrame:
    """Exchange rows (open times in ms, an ``(n, 5)`` OHLCV array) as the frame
    :func:`candles_from_frame` reads (the data store's layout)."""
    index = pd.DatetimeIndex(pd.to_datetime(np.asarray(time_ms, np.int64), unit="ms", utc=True),
                             name="time").as_unit("ns")
    return pd.DataFrame(np.asarray(values, np.float64), index=index, columns=list(COLUMNS))


def _clean_rows(t: np.ndarray, v: np.ndarray, timeframe: str | None) -> bool:
    """Whether :func:`candles_from_frame` accepts these rows as they are: every one of its checks
    (numbers, prices, volume, high/low, time order and steps), on the arrays."""
    if not (t.ndim == 1 and len(t) and v.shape == (len(t), 5) and timeframe in TIMEFRAMES):
        return False
    if not (0 <= t.min() and t.max() <= _MAX_MS and np.isfinite(v).all()):
        return False
    o, h, l, c, vol = v.T
    if not ((v[:, :4] > 0).all() and (vol >= 0).all()):
        return False
    if not ((h >= np.maximum.reduce([o, c, l])).all() and (l <= np.minimum.reduce([o, c, h])).all()):
        return False
    steps, tf_ms = np.diff(t), timeframe_to_ns(timeframe) // 1_000_000  # every timeframe is whole ms
    return bool((steps >= tf_ms).all() and (steps % tf_ms == 0).all())


def candles_from_rows(time_ms, values, *, symbol: str, timeframe: str, source: str = "<rows>") -> Candles:
    """Candles from exchange rows: int64 open times in ms and an ``(n, 5)`` float64 OHLCV array.

    The same bars are accepted as :func:`candles_from_frame` accepts from their frame, and the
    same are refused with its errors: rows that pass every check on the arrays become candles
    directly (a live poll's few rows: microseconds, not a DataFrame's milliseconds); any other
    rows go through :func:`candles_from_frame`, which names what is wrong."""
    t, v = np.asarray(time_ms, np.int64), np.asarray(values, np.float64)
    if not _clean_rows(t, v, timeframe):
        return candles_from_frame(rows_frame(t, v), symbol=symbol, timeframe=timeframe, source=source)
    time = _readonly(t * 1_000_000)
    columns = [_readonly(v[:, k].copy()) for k in range(5)]
    return Candles._checked(symbol, timeframe, time, columns, _find_gaps(time, timeframe_to_ns(timeframe)))


_NAME_RE = re.compile(r"^(?P<symbol>[A-Za-z0-9]+(?:_[A-Za-z0-9]+){0,2})-(?P<tf>\d+[mhdwM])(?:-.*)?$")


def _guess_from_name(path: Path) -> tuple[str, str | None]:
    """freqtrade naming: 'BTC_USDT-1h' -> ('BTC/USDT', '1h'); 'XRP_USDT_USDT-1h-futures' -> 'XRP/USDT:USDT'."""
    stem = path.name
    for ext in (".gz", ".json", ".csv", ".feather", ".parquet"):
        stem = stem.removesuffix(ext)
    m = _NAME_RE.match(stem)
    if not m:
        return stem, None
    parts = m["symbol"].split("_")
    symbol = "/".join(parts[:2]) + (f":{parts[2]}" if len(parts) == 3 else "")
    return symbol, m["tf"]


_SEPARATORS = (",", ";", "\t", "|")
_NUMBER = re.compile(r"^[-+]?(\d+([.,]\d*)?|[.,]\d+)([eE][-+]?\d+)?$")


def _head_lines(path: Path, n: int = 3) -> list[str]:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8-sig", errors="replace") as fh:
        return [line.rstrip("\r\n") for _, line in zip(range(n), fh)]


def _read_csv(path: Path) -> pd.DataFrame:
    """CSV with ``,``, ``;``, tab or ``|`` between fields; the header is the first line of 5 or more
    fields (a banner line above it, as CryptoDataDownload writes, is skipped). ``;`` files with
    decimal commas (European exports) are read as such. A file with no header line whose fields are
    all numbers is read as Binance's kline layout: time, open, high, low, close, volume, then extras.
    A file no separator splits into 5 columns is refused with an error that says so, never read
    with a data row for column names."""
    lines = _head_lines(path)
    for skip, line in enumerate(lines[:2]):
        counts = {sep: line.count(sep) for sep in _SEPARATORS}
        sep = max(_SEPARATORS, key=lambda s: counts[s])
        if counts[sep] >= 4:
            break
    else:
        raise CandleError(f"{path}: cannot find the separator: no line among the first two splits into 5 "
                          f"or more columns at ',', ';', tab or '|' (first line: {lines[0] if lines else ''!r:.120}). "
                          "Expected a header such as time,open,high,low,close,volume")
    header = [f.strip().strip('"') for f in lines[skip].split(sep)]
    data = lines[skip + 1].split(sep) if len(lines) > skip + 1 else []
    decimal = "," if sep == ";" and any("," in f and _NUMBER.match(f.strip().strip('"')) for f in data) else "."
    if all(_NUMBER.match(f) for f in header if f):     # no header line: Binance kline dumps
        df = pd.read_csv(path, sep=sep, skiprows=skip, header=None, decimal=decimal)
        return df.iloc[:, :6].set_axis(["time", *COLUMNS], axis=1)
    if not any(_norm(f) in (*COLUMNS, "time") for f in header) and any(_NUMBER.match(f.strip()) for f in header):
        raise CandleError(f"{path}: no header line: line {skip + 1} is data ({lines[skip]!r:.80}), not column "
                          "names; add a header line such as time,open,high,low,close,volume (with the file's "
                          "separator)")
    return pd.read_csv(path, sep=sep, skiprows=skip, decimal=decimal)


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


def _unreadable(path: Path, kind: str, exc: BaseException) -> CandleError | None:
    """The one-line error for a file its reader could not parse (``None``: not a reading error)."""
    if isinstance(exc, RecursionError):
        return CandleError(f"{path}: cannot read {kind}: nested too deeply (expected rows of 6 numbers)")
    if isinstance(exc, (EOFError, zlib.error, gzip.BadGzipFile)):
        return CandleError(f"{path}: cannot read {kind}: truncated or corrupt gzip data ({exc})")
    if isinstance(exc, UnicodeDecodeError):
        return CandleError(f"{path}: cannot read {kind}: not UTF-8 text "
                           f"(byte {exc.object[exc.start]:#04x} at offset {exc.start})")
    arrow = sys.modules.get("pyarrow")
    readable: tuple[type[BaseException], ...] = (OSError, ValueError, TypeError, KeyError, IndexError)
    if arrow is not None:
        readable += (arrow.ArrowException,)
    if isinstance(exc, readable):
        detail = " ".join(str(exc).split())[:200] or type(exc).__name__
        return CandleError(f"{path}: cannot read {kind} (truncated or corrupt?): {detail}")
    return None


def load_candles(path, *, symbol: str | None = None, timeframe: str | None = None,
                 repair: bool = False, repair_max_drop: float = REPAIR_MAX_DROP) -> Candles:
    """Load CSV(.gz), Feather, Parquet or freqtrade JSON(.gz) ``[[ms, o, h, l, c, v], ...]`` as Candles.

    ``symbol`` defaults to the freqtrade-style filename ('BTC_USDT-1h.feather' -> 'BTC/USDT', else the
    file stem); ``timeframe`` to the filename's '-1h' suffix, else inferred from the data.
    See :func:`candles_from_frame` for validation and ``repair``.
    """
    path = Path(path)
    name = path.name.lower().removesuffix(".gz")
    guessed_symbol, guessed_tf = _guess_from_name(path)
    kinds = {".json": "freqtrade JSON", ".feather": "Feather", ".parquet": "Parquet", ".csv": "CSV"}
    kind = next((k for ext, k in kinds.items() if name.endswith(ext)), None)
    if kind is None:
        raise CandleError(f"{path}: unsupported file type (expected .csv, .feather, .parquet, .json, optionally .gz)")
    if path.name.lower().endswith(".gz"):
        kind = f"gzip-compressed {kind}"
    try:
        if name.endswith(".json"):
            with (gzip.open(path, "rt", encoding="utf-8") if path.name.lower().endswith(".gz")
                  else open(path, encoding="utf-8")) as fh:
                df = _json_frame(json.load(fh), path)
        elif name.endswith(".feather"):
            df = pd.read_feather(path)
        elif name.endswith(".parquet"):
            df = pd.read_parquet(path)
        else:
            df = _read_csv(path)
    except CandleError:
        raise
    except Exception as exc:
        error = _unreadable(path, kind, exc)
        if error is None:
            raise
        raise error from None
    return candles_from_frame(df, symbol=symbol or guessed_symbol, timeframe=timeframe or guessed_tf,
                              source=str(path), repair=repair, repair_max_drop=repair_max_drop)


#: recent higher-timeframe candles by the base bars they were built from (immutable: shared)
_RESAMPLED = PrefixCache(max_bytes=64 << 20)


def _bucket_origin(tf_ns: int) -> int:
    return _WEEK_ORIGIN_NS if tf_ns % _UNIT_NS["w"] == 0 else 0


def resample(candles: Candles, timeframe: str) -> Candles:
    """Aggregate into a higher, UTC-aligned timeframe (weeks open on Monday), only buckets that have closed.

    A bucket (labelled by its open time) is emitted once the data reaches its end, i.e. the last base
    bar's close time is at or after the bucket's close; the trailing partial bucket is dropped. So is a
    leading bucket whose first base bar predates the data (its open and volume would be wrong).
    Interior buckets with bars missing in an exchange outage are kept, built from the bars present,
    which is what the exchange's own higher-timeframe candles do.
    """
    base_ns, tf_ns = candles.timeframe_ns, timeframe_to_ns(timeframe)
    if tf_ns % base_ns:
        raise CandleError(f"{candles.symbol}: cannot resample {candles.timeframe} into {timeframe}: "
                          f"not a multiple")
    t, origin = candles.time, _bucket_origin(tf_ns)
    if not len(t):
        raise CandleError(f"{candles.symbol}: cannot resample an empty series")
    kind = (candles.symbol, candles.timeframe, timeframe, candles.repairs)
    # A live bar: the bars [:n] of the buckets closed by now, found from the last bar alone. Bars
    # kept with a result were checked when it was built; only the later ones need checking here.
    last = (int(t[-1]) - origin) // tf_ns * tf_ns + origin
    n = len(t) if last + tf_ns <= int(t[-1]) + base_ns else int(np.searchsorted(t, last))
    if n:
        inputs = tuple(a[:n] for a in (t, candles.open, candles.high, candles.low, candles.close, candles.volume))
        found = _RESAMPLED.find(kind, inputs, extensions=False)
        if found is not None and not ((t[n:] - origin) % base_ns).any():
            return found.result
    if ((t - origin) % base_ns).any():
        raise CandleError(f"{candles.symbol}: {candles.timeframe} bars are not aligned to UTC boundaries")
    bucket = (t - origin) // tf_ns * tf_ns + origin
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    ends = np.r_[starts[1:], len(t)] - 1
    keep = bucket[starts] + tf_ns <= t[-1] + base_ns  # trailing bucket not closed yet
    keep[0] &= t[0] == bucket[0]  # leading bucket whose first bars predate the data: wrong open
    starts, ends = starts[keep], ends[keep]
    if not len(starts):
        raise CandleError(f"{candles.symbol}: no complete {timeframe} bar in {len(t)} {candles.timeframe} bars")
    n = ends[-1] + 1  # kept buckets are contiguous; reduceat ignores anything before starts[0]
    # built from bars [:n] only: a live bar that closes no bucket finds the last bar's result
    inputs = tuple(a[:n] for a in (t, candles.open, candles.high, candles.low, candles.close, candles.volume))
    # aggregates of checked bars are checked bars: new arrays, no DataFrame until one is asked for
    columns = [candles.open[starts], np.maximum.reduceat(candles.high[:n], starts),
               np.minimum.reduceat(candles.low[:n], starts), candles.close[ends],
               np.add.reduceat(candles.volume[:n], starts)]
    time = bucket[starts]
    higher = Candles._checked(candles.symbol, timeframe, _readonly(time), [_readonly(a) for a in columns],
                              _find_gaps(time, tf_ns), candles.repairs)
    _RESAMPLED.keep(kind, inputs, higher, 6 * 8 * len(starts))
    return higher


def higher_timeframe_index(base: Candles, higher: Candles) -> np.ndarray:
    """For each base bar, position of the latest ``higher`` bar already closed when that base bar closes, else -1.

    Closed means ``higher_open + higher_tf <= base_open + base_tf``: a decision made at the close of
    base bar i may use ``higher`` rows ``[: idx[i] + 1]`` without look-ahead.
    """
    if base.symbol != higher.symbol:
        raise CandleError(f"higher_timeframe_index: symbols differ ({base.symbol!r} vs {higher.symbol!r})")
    higher_close = higher.time + higher.timeframe_ns
    return np.searchsorted(higher_close, base.time + base.timeframe_ns, side="right") - 1
