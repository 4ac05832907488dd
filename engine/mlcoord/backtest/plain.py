"""Plain JSON values of a result: ISO times and rounded floats, exactly as ``pd.Timestamp(t,
tz="UTC").isoformat()`` and ``round(x, digits)`` give them, but without a pandas object or a
Python call per value (a 50,000-bar result has ~70,000 times and 50,000 equity values)."""

from __future__ import annotations

import datetime as _dt

import numpy as np
import pandas as pd

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
_SECOND = 1_000_000_000


def iso(ns: int) -> str:
    """``pd.Timestamp(ns, tz="UTC").isoformat()``; whole seconds (every bar time) without pandas."""
    ns = int(ns)
    if ns % _SECOND:
        return pd.Timestamp(ns, tz="UTC").isoformat()
    return (_EPOCH + _dt.timedelta(seconds=ns // _SECOND)).isoformat()


def iso_times(times) -> list[str]:
    """:func:`iso` of every time (ns), vectorised: whole-second times (all candle and equity
    times) in one numpy call, anything finer one by one."""
    ns = np.asarray(times, dtype=np.int64)
    if len(ns) and not (ns % _SECOND).any():
        text = np.datetime_as_string(ns.astype("datetime64[ns]"), unit="s")
        return [t + "+00:00" for t in text.tolist()]
    return [iso(t) for t in ns.tolist()]


def rounded(values, digits: int) -> list[float]:
    """``[round(float(v), digits) for v in values]``, vectorised. Correct rounding of ``v`` is
    ``rint(v * 10**digits) / 10**digits`` (an exact integer over an exact power of ten, divided
    once) unless the product's own rounding could move it across a half: values that close to a
    tie, too large for exact integers, or not finite are rounded by Python one by one."""
    v = np.asarray(values, dtype=np.float64)
    scale = 10.0 ** digits
    y = v * scale
    d = np.rint(y)
    out = d / scale
    with np.errstate(invalid="ignore"):
        # |y - floor(y) - 0.5| small relative to y's own rounding error: a possible tie
        safe = (np.abs(np.abs(y - np.floor(y)) - 0.5) > np.abs(y) * 1e-15 + 1e-300) & (np.abs(y) < 2.0 ** 52)
    result = out.tolist()
    if not safe.all():
        for k in np.flatnonzero(~safe).tolist():
            result[k] = round(float(v[k]), digits)
    return result
