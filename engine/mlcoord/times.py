"""UTC texts of nanosecond times, exactly as pandas writes them, without pandas.

Bar times are int64 nanoseconds everywhere in the engine; what people and files read is text. One
module writes it, for every caller (results, journals, logs, the summary), the same as
``pd.Timestamp(ns, tz="UTC")`` writes it, so a run that needs no DataFrame never imports pandas
(about a fifth of a technical backtest's process: ``benchmarks/count_instructions.py``).
"""

from __future__ import annotations

import datetime as _dt

import numpy as np

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
_SECOND = 1_000_000_000


def utc_datetime(ns: int) -> _dt.datetime:
    """The whole-microsecond part of ``ns`` as an aware UTC datetime."""
    return _EPOCH + _dt.timedelta(microseconds=int(ns) // 1000)


def _fraction(ns: int) -> str:
    """pandas' fraction of a second: nine digits if any nanosecond, six if any microsecond, none."""
    part = ns % _SECOND
    if not part:
        return ""
    return f".{part:09d}" if part % 1000 else f".{part // 1000:06d}"


def _written(ns: int, between: str) -> str:
    ns = int(ns)
    d = _EPOCH + _dt.timedelta(seconds=ns // _SECOND)
    return (f"{d.year:04d}-{d.month:02d}-{d.day:02d}{between}{d.hour:02d}:{d.minute:02d}:{d.second:02d}"
            f"{_fraction(ns)}+00:00")


def iso(ns: int) -> str:
    """``pd.Timestamp(ns, tz="UTC").isoformat()``: ``2024-03-30T20:00:00+00:00``."""
    return _written(ns, "T")


def text(ns: int) -> str:
    """``str(pd.Timestamp(ns, tz="UTC"))``: ``2024-03-30 20:00:00+00:00``."""
    return _written(ns, " ")


def iso_times(times) -> list[str]:
    """:func:`iso` of every time (ns), vectorised: whole-second times (all candle and equity
    times) in one numpy call, anything finer one by one."""
    ns = np.asarray(times, dtype=np.int64)
    if len(ns) and not (ns % _SECOND).any():
        words = np.datetime_as_string(ns.astype("datetime64[ns]"), unit="s")
        return [t + "+00:00" for t in words.tolist()]
    return [iso(t) for t in ns.tolist()]


def strftime(ns: int, fmt: str) -> str:
    """``pd.Timestamp(ns, tz="UTC").strftime(fmt)`` for formats without fractions of a second."""
    return utc_datetime(ns).strftime(fmt)


def next_day(ns: int) -> str:
    """The UTC day after the one holding ``ns``, as ``YYYYMMDD`` (a timerange's start)."""
    day = utc_datetime(ns).date() + _dt.timedelta(days=1)
    return day.strftime("%Y%m%d")


_NS_MIN, _NS_MAX = -(2**63), 2**63 - 1


def day_ns(yyyymmdd: str | None) -> int | None:
    """``YYYYMMDD`` as the ns of that day's UTC midnight (None for an empty text); ValueError for
    no such day or one int64 nanoseconds cannot hold (pandas' own range, 1677 to 2262)."""
    if not yyyymmdd:
        return None
    day = _dt.datetime.strptime(yyyymmdd, "%Y%m%d").replace(tzinfo=_dt.timezone.utc)
    ns = (day - _EPOCH) // _dt.timedelta(microseconds=1) * 1000
    if not _NS_MIN <= ns <= _NS_MAX:
        raise ValueError(f"{yyyymmdd} is outside the nanosecond time range")
    return ns
