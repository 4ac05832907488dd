"""Exact comparison of what components return, and the same values as plain JSON data.

A leak can be one ulp small (an extra bar nudging a normalisation), so equality is exact: floats
bit for bit (only NaN equals NaN whatever its payload), no tolerance anywhere. A call that raised
is a value too (:class:`Raised`): a component that needs bars after the cut fails on the cut data.
"""

from __future__ import annotations

import enum
import math
from typing import Any, Optional

import attrs
import numpy as np


@attrs.frozen
class Raised:
    """A call that raised: equal to another when the exception type is the same (the message may
    name the data's length, which differs between runs legitimately)."""

    kind: str
    message: str = attrs.field(eq=False)

    @classmethod
    def of(cls, error: BaseException | str) -> "Raised":
        if isinstance(error, BaseException):
            return cls(type(error).__name__, str(error))
        return cls("error", str(error))

    def __str__(self) -> str:
        return f"raised {self.kind}: {self.message}"


#: a vote that was not given (the component abstained)
ABSTAINED = "abstained"


def same_float(a: float, b: float) -> bool:
    """Bitwise equality, NaN equal to NaN (0.0 and -0.0 differ)."""
    if a == b:
        return a != 0.0 or math.copysign(1.0, a) == math.copysign(1.0, b)
    return a != a and b != b


_FIELDS: dict[type, Optional[tuple[str, ...]]] = {}


def _fields(cls: type) -> Optional[tuple[str, ...]]:
    """The attrs fields of ``cls`` (None: not an attrs class), looked up once per class."""
    if cls not in _FIELDS:
        _FIELDS[cls] = tuple(f.name for f in attrs.fields(cls)) if attrs.has(cls) and cls is not Raised else None
    return _FIELDS[cls]


def _number(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, (bool, enum.Enum))


def same(a: Any, b: Any) -> bool:
    """Exact, recursive equality of component outputs (attrs values, tuples, numbers, text)."""
    ta = type(a)
    if ta is float and type(b) is float:
        return same_float(a, b)
    if ta is type(b):
        if ta is str or ta is int or a is None or ta is bool:
            return bool(a == b)
        if ta is tuple or ta is list:
            return len(a) == len(b) and all(map(same, a, b))
        names = _fields(ta)
        if names is not None:
            return all(same(getattr(a, n), getattr(b, n)) for n in names)
    if _number(a) and _number(b):
        return same_float(float(a), float(b))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.shape == b.shape \
            and bool(same_arrays(a.ravel(), b.ravel()).all())
    if ta is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


def same_arrays(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per element: equal bit for bit, or both NaN (floats); plain equality otherwise."""
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype.kind == "f" or b.dtype.kind == "f":
        fa, fb = a.astype(np.float64), b.astype(np.float64)
        return (fa.view(np.int64) == fb.view(np.int64)) | (np.isnan(fa) & np.isnan(fb))
    return np.asarray(a == b)


def first_difference(a: np.ndarray, b: np.ndarray) -> Optional[int]:
    """The first index where ``a`` and ``b`` (same length) differ, or None."""
    differs = ~same_arrays(a, b)
    return int(np.argmax(differs)) if differs.any() else None


def plain(value: Any) -> Any:
    """``value`` as JSON data: floats that JSON cannot hold as text ("NaN", "inf"), enums by
    name, attrs values as dicts, a raised call as its text."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        x = float(value)
        return x if math.isfinite(x) else ("NaN" if x != x else ("inf" if x > 0 else "-inf"))
    if isinstance(value, Raised):
        return str(value)
    if isinstance(value, np.ndarray):
        return [plain(x) for x in value.tolist()]
    if isinstance(value, (tuple, list)):
        return [plain(x) for x in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if attrs.has(type(value)):
        return {"type": type(value).__name__,
                **{f.name: plain(getattr(value, f.name)) for f in attrs.fields(type(value))}}
    return repr(value)


def text(value: Any, limit: int = 160) -> str:
    """A short readable form of a compared value, for the terminal."""
    out = plain(value)
    if isinstance(out, dict):
        kind = out.pop("type", "")
        inner = ", ".join(f"{k}={v!r}" for k, v in out.items() if v not in (None, (), []))
        out = f"{kind}({inner})"
    s = out if isinstance(out, str) else repr(out)
    return s if len(s) <= limit else s[: limit - 3] + "..."
