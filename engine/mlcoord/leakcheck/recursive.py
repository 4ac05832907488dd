"""``mlcoord check recursive``: how much do the signals depend on how much history precedes them?

A recursive indicator (an EMA, Wilder's RSI, an ATR) never forgets its start: EMA(200) computed
from 100 bars of history is not the EMA(200) computed from 10,000. A backtest starts from all the
history it has, a live bot from its warm-up window, so the two disagree until the start has faded
out. This check (freqtrade's recursive-analysis) runs the pipeline's signal sources on the same
evaluation window (the last ``window`` bars) preceded by different warm-ups (100, 200, 500, 1000
bars by default) and by every bar before it (the reference), and reports per source and series
(action, confidence, every feature a source exposes) the largest relative difference from the
reference over the window: ``|x - ref| / max(|x|, |ref|)`` (0 when both are 0; a NaN against a
number counts as a mismatch). A series beyond ``tolerance`` at any tested warm-up is flagged.

A source may expose its indicator values for this check with an optional method
``features(data) -> Mapping[str, array]`` (one float per bar each, computed as in ``prepare``).
"""

from __future__ import annotations

import math
import time as _time
from typing import Any, Mapping, Sequence

import numpy as np

from mlcoord.bounds import checked_series
from mlcoord.candles import Candles
from mlcoord.errors import ConfigError
from mlcoord.leakcheck.report import (
    SCHEMA_VERSION, RecursiveDifference, RecursiveReport, RecursiveWindow, SeriesRecursive, WarmupResult,
)
from mlcoord.leakcheck.runs import check_settings, market_data, when
from mlcoord.leakcheck.values import Raised, same_arrays
from mlcoord.pipeline import combine_sources, resolve_components
from mlcoord.registry import PluginSet

DEFAULT_WARMUPS = (100, 200, 500, 1000)
DEFAULT_WINDOW = 500
DEFAULT_TOLERANCE = 1e-3
#: the optional method of a signal source that exposes its indicator series to this check
FEATURES_METHOD = "features"
COMBINED = "signals (combined)"


def _series(settings, plugins: PluginSet, candles: Candles) -> tuple[dict[tuple[str, str], np.ndarray],
                                                                    dict[str, str]]:
    """Every source's series (and exposed features) on ``candles``, from freshly built components:
    (source, series) -> float values; source -> why it failed."""
    data = market_data(settings, candles)
    n = len(data)
    out: dict[tuple[str, str], np.ndarray] = {}
    failed: dict[str, str] = {}
    prepared = []
    sources = resolve_components(settings, plugins).signal_sources
    for b in sources:
        try:
            series = checked_series(b.obj.prepare(data), n)
        except Exception as exc:
            failed[b.name] = f"prepare {Raised.of(exc)}"
            continue
        prepared.append((b.name, series))
        out[(b.name, "action")] = np.asarray(series.action, dtype=np.float64)
        out[(b.name, "confidence")] = np.asarray(series.confidence, dtype=np.float64)
        expose = getattr(b.obj, FEATURES_METHOD, None)
        if callable(expose):
            try:
                out.update({(b.name, f"feature {k}"): v for k, v in _features(expose(data), n).items()})
            except Exception as exc:
                failed[b.name] = f"{FEATURES_METHOD}() {Raised.of(exc)}"
    if len(sources) > 1:
        action, confidence = combine_sources(prepared, n)
        out[(COMBINED, "action")] = action.astype(np.float64)
        out[(COMBINED, "confidence")] = np.asarray(confidence, dtype=np.float64)
    return out, failed


def _features(found: Any, n: int) -> dict[str, np.ndarray]:
    if not isinstance(found, Mapping):
        raise TypeError(f"returned {type(found).__name__}, expected a mapping of name -> one value per bar")
    out = {}
    for name, values in found.items():
        array = np.asarray(values, dtype=np.float64)
        if array.shape != (n,):
            raise ValueError(f"feature {name!r} has shape {array.shape}, expected ({n},)")
        out[str(name)] = array
    return out


def _compare(values: np.ndarray, reference: np.ndarray, tolerance: float, first_bar: int, candles: Candles,
             warmup: int) -> WarmupResult:
    x, r = values.astype(np.float64), reference.astype(np.float64)
    fx, fr = np.isfinite(x), np.isfinite(r)
    both = fx & fr
    mismatch = (fx ^ fr) | (~fx & ~fr & ~same_arrays(x, r))
    with np.errstate(invalid="ignore", over="ignore"):
        scale = np.maximum(np.abs(x), np.abs(r))
        rel = np.where(both & (scale > 0), np.abs(x - r) / np.where(scale > 0, scale, 1.0), 0.0)
    flagged = mismatch | (both & (rel > tolerance))
    first = None
    if flagged.any():
        j = int(np.argmax(flagged))
        first = RecursiveDifference(first_bar + j, when(candles, first_bar + j), _number(x[j]), _number(r[j]),
                                    _number(rel[j]) if both[j] else "inf")
    return WarmupResult(warmup, len(x), float(rel[both].max()) if both.any() else None, int(mismatch.sum()),
                        bool(flagged.any()), first)


def _number(x: float) -> Any:
    x = float(x)
    return x if math.isfinite(x) else ("NaN" if x != x else ("inf" if x > 0 else "-inf"))


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def check_options(warmups: Sequence[Any], window: Any, tolerance: Any) -> None:
    """Bad option values stop with their name and value (before any data is loaded)."""
    _check_int("window", window, 1)
    if not warmups:
        raise ConfigError("warmups must name at least one warm-up length, got none")
    for w in warmups:
        _check_int("warmup", w, 0)
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not (
            math.isfinite(tolerance) and tolerance >= 0):
        raise ConfigError(f"tolerance must be a finite number >= 0, got {tolerance!r}")


def check_recursive(settings, plugins: PluginSet, candles: Sequence[Candles], *,
                    warmups: Sequence[int] = DEFAULT_WARMUPS, window: int = DEFAULT_WINDOW,
                    tolerance: float = DEFAULT_TOLERANCE) -> RecursiveReport:
    """Run the signal sources on the last ``window`` bars of each series after each warm-up and
    after every earlier bar; compare (see the module docstring)."""
    check_options(warmups, window, tolerance)
    if not candles:
        raise ConfigError("no candles to check")
    started = _time.perf_counter()
    settings = check_settings(settings)
    windows, results, notes = [], [], []
    for c in candles:
        n = len(c)
        start = n - window
        tested = sorted({int(w) for w in warmups if w < start})
        if not tested:
            raise ConfigError(f"{c.symbol}: window {window} leaves {max(start, 0)} bars of history, no more than "
                              f"the shortest warm-up ({min(warmups)}); give more data or a shorter --window")
        skipped = sorted({int(w) for w in warmups} - set(tested))
        if skipped:
            notes.append(f"{c.symbol}: warm-up(s) {', '.join(map(str, skipped))} not tested: only {start} bars "
                         f"precede the evaluation window")
        reference, ref_failed = _series(settings, plugins, c)
        for name, why in ref_failed.items():
            notes.append(f"{c.symbol}: {name} fails with every bar of history ({why}); the backtest runs without it")
        runs = {w: _series(settings, plugins, c.slice(start - w, n, own=True)) for w in tested}
        for (component, series), ref in reference.items():
            per_warmup = []
            for w in tested:
                values, failed = runs[w]
                if component in failed or (component, series) not in values:
                    why = failed.get(component, f"no {series} with this warm-up")
                    per_warmup.append(WarmupResult(w, 0, None, 0, True, None, why))
                    continue
                per_warmup.append(_compare(values[(component, series)][-window:], ref[-window:], float(tolerance),
                                           start, c, w))
            results.append(SeriesRecursive(c.symbol, component, series, tuple(per_warmup)))
        windows.append(RecursiveWindow(c.symbol, n, window, when(c, start), when(c, n - 1), start, tuple(tested)))
    return RecursiveReport(SCHEMA_VERSION, candles[0].timeframe, float(tolerance), tuple(windows), tuple(results),
                           tuple(notes), round(_time.perf_counter() - started, 3))

