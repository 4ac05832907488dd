"""OHLCV candles: loading, validation, resampling and look-ahead-safe timeframe alignment.

Every price series enters the engine through this module, so bad data fails loudly here (naming
file, timestamp and column) instead of silently skewing a backtest or a live order. Bars that pass
every check as arrays (a clean file, a live poll's rows) become candles directly; anything else is
read by :mod:`mlcoord.candle_frames` (pandas), which repairs or names what is wrong, and both
ways give the same candles for the same bars (``tests/test_candle_tables.py``).
"""

from __future__ import annotations

import gzip
import re
import sys
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import attrs
import numpy as np

if TYPE_CHECKING:
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
from mlcoord.prefix_cache import PrefixCache  # noqa: E402

class CandleError(DataError):
    """Bad candle data. Message names the file/symbol, the row timestamp (or row number) and the column."""


def timeframe_to_ns(tf: str) -> int:
    """Length of one bar in nanoseconds; only the exchange-standard timeframes are accepted."""
    if tf not in TIMEFRAMES:
        raise CandleError(f"unknown timeframe {tf!r}; expected one of {', '.join(TIMEFRAMES)}")
    return int(tf[:-1]) * _UNIT_NS[tf[-1]]


_NS_TO_TF = {timeframe_to_ns(tf): tf for tf in TIMEFRAMES}


def infer_timeframe(index: pd.DatetimeIndex | np.ndarray) -> str:
    """Most common step between consecutive timestamps (robust to gaps), as a timeframe string.
    ``index``: the times, as a DatetimeIndex or as int64 ns."""
    step = common_step(index if isinstance(index, np.ndarray) else np.asarray(index.as_unit("ns").asi8))
    if step is None:
        raise CandleError("cannot infer the timeframe from fewer than 2 bars; name it (a file named like "
                          "BTC_USDT-1h.csv, or timeframe= in Python)")
    if step not in _NS_TO_TF:
        import pandas as pd

        raise CandleError(f"most common bar step {pd.Timedelta(step)} is not a known timeframe "
                          f"({', '.join(TIMEFRAMES)}); name it if the data has one (a file named like "
                          "BTC_USDT-1h.csv, or timeframe= in Python)")
    return _NS_TO_TF[step]


#: nanoseconds per unit of an epoch number
EPOCH_NS = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}


def epoch_unit(magnitude: float) -> str:
    """The unit of epoch numbers as large as ``magnitude``: seconds below 1e11 (until year 5138),
    milliseconds below 1e14, microseconds below 1e17, else nanoseconds."""
    return "s" if magnitude < 1e11 else "ms" if magnitude < 1e14 else "us" if magnitude < 1e17 else "ns"


def common_step(time_ns: np.ndarray) -> int | None:
    """The most common step (ns) between consecutive times (the smallest of equally common ones);
    None for fewer than two times."""
    steps = np.diff(time_ns)
    if steps.size == 0:
        return None
    values, counts = np.unique(steps, return_counts=True)
    return int(values[np.argmax(counts)])


def union_times(times: Sequence[np.ndarray]) -> np.ndarray:
    """The distinct times of ``times``, sorted: what ``np.unique(np.concatenate(times))`` gives,
    by a sort. numpy 2's ``unique`` hashes first and costs ~25x a sort on 50,000 bar times
    (6 ms of a 0.9 s backtest)."""
    joined = np.sort(np.concatenate(times)) if len(times) else np.zeros(0, np.int64)
    if len(joined) > 1:
        joined = joined[np.concatenate(([True], joined[1:] != joined[:-1]))]
    return joined


def _ns_of(t: int | pd.Timestamp) -> int:
    """A bar time as int ns: an int as it is, a timestamp by its UTC nanoseconds."""
    return int(t) if isinstance(t, (int, np.integer)) else int(t.value)


@attrs.frozen
class Gap:
    """Missing bars between two present ones (reported, not an error: exchanges have outages).
    Times are ns (timestamps given are read as theirs); ``start`` and ``end`` are timestamps."""

    start_ns: int = attrs.field(converter=_ns_of)  # last bar before the gap
    end_ns: int = attrs.field(converter=_ns_of)  # first bar after
    missing: int  # number of absent bars

    @property
    def start(self) -> pd.Timestamp:
        import pandas as pd

        return pd.Timestamp(self.start_ns, tz="UTC")

    @property
    def end(self) -> pd.Timestamp:
        import pandas as pd

        return pd.Timestamp(self.end_ns, tz="UTC")


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
        import pandas as pd

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
            import pandas as pd

            from mlcoord.frozen_frame import ReadOnlyFrame

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
            gaps = tuple(g for g in self.gaps if g.start_ns >= lo and g.end_ns <= hi)
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

    def between(self, start: pd.Timestamp | int | None, end: pd.Timestamp | int | None) -> Candles:
        """Bars with open time in ``[start, end)``; ``None`` leaves that side open, naive times are
        UTC, an int is ns."""
        lo = 0 if start is None else int(np.searchsorted(self.time, _utc_ns(start), "left"))
        hi = len(self) if end is None else int(np.searchsorted(self.time, _utc_ns(end), "left"))
        return self.slice(lo, max(lo, hi))


def _unpickled(symbol: str, timeframe: str, time: np.ndarray, columns: Sequence[np.ndarray], gaps: tuple[Gap, ...],
               repairs: tuple[str, ...]) -> Candles:
    return Candles._checked(symbol, timeframe, _readonly(time), [_readonly(a) for a in columns], gaps, repairs)


def _utc_ns(ts) -> int:
    """A time as UTC ns: an int is ns already; anything else as ``pd.Timestamp`` reads it."""
    if isinstance(ts, (int, np.integer)) and not isinstance(ts, bool):
        return int(ts)
    import pandas as pd

    ts = pd.Timestamp(ts)
    return (ts.tz_localize("UTC") if ts.tz is None else ts.tz_convert("UTC")).as_unit("ns").value


def _norm(name) -> str:
    key = str(name).strip().lower().replace(" ", "_")
    return _ALIASES.get(key, key)


def _find_gaps(time_ns: np.ndarray, tf_ns: int) -> tuple[Gap, ...]:
    steps = np.diff(time_ns)
    at = np.flatnonzero(steps > tf_ns)
    return tuple(Gap(int(time_ns[i]), int(time_ns[i + 1]), int(steps[i] // tf_ns) - 1) for i in at)


#: the largest share of a file's rows ``repair`` drops by default (``[data] repair_max_drop``)
REPAIR_MAX_DROP = 0.01


#: the last open time in ms whose ns value fits an int64 (pandas' own bound is 2262-04-11)
_MAX_MS = (2**63 - 1) // 10**6


def _clean_bars(time_ns: np.ndarray, columns: Sequence[np.ndarray], timeframe: str | None) -> bool:
    """Whether :func:`candles_from_frame` accepts these bars (int64 ns times, the float64
    :data:`COLUMNS`) as they are: every one of its checks (numbers, prices, volume, high/low, time
    order and steps), on the arrays."""
    t = time_ns
    if not (t.ndim == 1 and len(t) and len(columns) == 5 and timeframe in TIMEFRAMES):
        return False
    if not all(a.shape == t.shape and a.dtype == np.float64 and np.isfinite(a).all() for a in columns):
        return False
    o, h, l, c, vol = columns
    if not ((o > 0).all() and (h > 0).all() and (l > 0).all() and (c > 0).all() and (vol >= 0).all()):
        return False
    if not ((h >= np.maximum.reduce([o, c, l])).all() and (l <= np.minimum.reduce([o, c, h])).all()):
        return False
    steps, tf_ns = np.diff(t), timeframe_to_ns(timeframe)
    return bool((steps >= tf_ns).all() and (steps % tf_ns == 0).all())


def candles_from_rows(time_ms, values, *, symbol: str, timeframe: str, source: str = "<rows>") -> Candles:
    """Candles from exchange rows: int64 open times in ms and an ``(n, 5)`` float64 OHLCV array.

    The same bars are accepted as :func:`candles_from_frame` accepts from their frame, and the
    same are refused with its errors: rows that pass every check on the arrays become candles
    directly (a live poll's few rows: microseconds, not a DataFrame's milliseconds); any other
    rows go through :func:`candles_from_frame`, which names what is wrong."""
    t, v = np.asarray(time_ms, np.int64), np.asarray(values, np.float64)
    if t.ndim == 1 and len(t) and v.shape == (len(t), 5) and 0 <= t.min() and t.max() <= _MAX_MS:
        time, columns = t * 1_000_000, [v[:, k].copy() for k in range(5)]
        if _clean_bars(time, columns, timeframe):
            return _clean_candles(symbol, timeframe, time, columns)
    return candles_from_frame(rows_frame(t, v), symbol=symbol, timeframe=timeframe, source=source)


def _clean_candles(symbol: str, timeframe: str, time_ns: np.ndarray, columns: Sequence[np.ndarray]) -> Candles:
    """Candles of bars :func:`_clean_bars` accepted (arrays of their own)."""
    return Candles._checked(symbol, timeframe, _readonly(time_ns), [_readonly(a) for a in columns],
                            _find_gaps(time_ns, timeframe_to_ns(timeframe)))


def candles_from_frame(df: pd.DataFrame, *, symbol: str, timeframe: str | None = None, source: str = "<frame>",
                       repair: bool = False, repair_max_drop: float = REPAIR_MAX_DROP) -> Candles:
    """Normalise and validate any common OHLCV frame shape into :class:`Candles`: see
    :func:`mlcoord.candle_frames.candles_from_frame` (imported when a frame comes: pandas)."""
    from mlcoord import candle_frames

    return candle_frames.candles_from_frame(df, symbol=symbol, timeframe=timeframe, source=source, repair=repair,
                                            repair_max_drop=repair_max_drop)


def rows_frame(time_ms, values) -> pd.DataFrame:
    """Exchange rows as the frame :func:`candles_from_frame` reads: see
    :func:`mlcoord.candle_frames.rows_frame`."""
    from mlcoord import candle_frames

    return candle_frames.rows_frame(time_ms, values)


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
    symbol, timeframe = symbol or guessed_symbol, timeframe or guessed_tf
    from mlcoord.candle_tables import read_bars

    bars = read_bars(path)          # the common layouts, straight into arrays (None: any other)
    if bars is not None:
        time_ns, columns = bars
        found = timeframe or _NS_TO_TF.get(common_step(time_ns) or 0)
        if _clean_bars(time_ns, columns, found):
            return _clean_candles(symbol, found or "", time_ns, columns)
    from mlcoord.candle_frames import candles_from_frame, read_frame

    try:                            # anything else, or bars to refuse or repair: a DataFrame names what
        df = read_frame(path)
    except CandleError:
        raise
    except Exception as exc:
        error = _unreadable(path, kind, exc)
        if error is None:
            raise
        raise error from None
    return candles_from_frame(df, symbol=symbol, timeframe=timeframe, source=str(path), repair=repair,
                              repair_max_drop=repair_max_drop)


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
