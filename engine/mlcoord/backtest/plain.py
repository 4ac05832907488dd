"""Plain JSON values of a result: rounded floats, exactly as ``round(x, digits)`` gives them,
but without a Python call per value (a 50,000-bar result has 50,000 equity values). Times are
:mod:`mlcoord.times`'s."""

from __future__ import annotations

import numpy as np


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
