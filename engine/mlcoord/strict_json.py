"""Result files as strict JSON: what a strict parser (``JSON.parse``, jq, Go, Rust) reads.

Python's ``json`` writes ``NaN`` and ``Infinity`` tokens for floats that are not finite; JSON has
no such tokens. Every result file (``backtest --json``, ``evaluate --json``, ``sweep --json``)
writes them as ``null``, which means **undefined**: a number with nothing to compute it from, such
as a ratio with a zero denominator (a Sharpe ratio or profit factor of a run with no trades or
one trade, a return over a zero drawdown) or a score with no scored bar.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np


def finite(value: Any) -> Any:
    """``value`` with every float that is not finite (NaN, +-inf; numpy's too) replaced by None,
    through dicts, lists and tuples."""
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if isinstance(value, np.ndarray):
        return finite(value.tolist())
    return value


def dumps(value: Any, **options: Any) -> str:
    """``value`` as strict JSON text (not-finite numbers as null, other objects by ``str``)."""
    return json.dumps(finite(value), allow_nan=False, default=str, **options)
