"""Numbers a report draws, computed from a backtest result file alone (``BacktestResult.to_json``).

Everything here works offline from the JSON, so ``mlcoord report RESULT.json`` needs neither the
candles on disk nor the plugins. Large series are thinned for the browser, never for the figures
a reader might quote: drawdown keeps each bucket's extremes, markers keep exact times and prices.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd

from mlcoord.learning import expected_calibration_error, reliability

MAX_LINE_POINTS = 4000      # per line trace; min-max decimation keeps the envelope
MAX_CANDLES = 5000          # more bars than this are drawn as daily (then weekly) candles
ROLLING_OUTCOMES = 500      # window of the rolling accuracy
DEFAULT_HORIZON, DEFAULT_THRESHOLD = 24, 0.002


def to_ns(times: Sequence[str]) -> np.ndarray:
    """ISO-8601 times (as the result file writes them) -> int64 ns since the epoch (UTC)."""
    if len(times) == 0:
        return np.array([], dtype=np.int64)
    return pd.to_datetime(pd.Index(times), utc=True).as_unit("ns").asi8


def naive(iso: str) -> str:
    """A UTC ISO time from the file as plotly reads it (no offset): '2022-04-04 21:00:00'."""
    return iso[:19].replace("T", " ")


def to_datetime(ns: np.ndarray) -> np.ndarray:
    """ns -> naive UTC datetime64 (what plotly draws on a date axis)."""
    return np.asarray(ns, dtype=np.int64).astype("datetime64[ns]")


# -- equity ------------------------------------------------------------------------------------

def decimate(x: np.ndarray, y: np.ndarray, max_points: int = MAX_LINE_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_points`` points keeping each bucket's minimum and maximum, in time order, so
    peaks and troughs (the maximum drawdown) survive thinning."""
    n = len(y)
    if n <= max_points:
        return x, y
    buckets = max_points // 2
    edges = np.linspace(0, n, buckets + 1).astype(int)
    keep = []
    for a, b in zip(edges[:-1], edges[1:]):
        seg = y[a:b]
        lo, hi = a + int(np.argmin(seg)), a + int(np.argmax(seg))
        keep.extend(sorted({lo, hi}))
    keep[-1:] = sorted({keep[-1], n - 1})
    idx = np.asarray(keep)
    return x[idx], y[idx]


def equity_curve(result: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(time ns, equity, drawdown as a fraction of the running peak)."""
    t = to_ns(result["equity"]["time"])
    eq = np.asarray(result["equity"]["value"], dtype=float)
    return t, eq, drawdown(eq)


def drawdown(eq: np.ndarray) -> np.ndarray:
    """Each point's drawdown as a fraction of the running peak (0 where the peak is not positive)."""
    peak = np.maximum.accumulate(eq) if len(eq) else eq
    return np.where(peak > 0, 1.0 - eq / np.where(peak > 0, peak, 1.0), 0.0)


# -- candles and what happened on them ---------------------------------------------------------

def candle_frame(result: dict[str, Any], symbol: str) -> pd.DataFrame:
    c = result.get("candles", {}).get(symbol)
    if not c or not c["time"]:
        return pd.DataFrame(columns=["open", "high", "low", "close"])
    index = pd.DatetimeIndex(to_datetime(to_ns(c["time"])))
    return pd.DataFrame({k: np.asarray(c[k], dtype=float) for k in ("open", "high", "low", "close")}, index=index)


def downsample_candles(frame: pd.DataFrame, max_bars: int = MAX_CANDLES) -> tuple[pd.DataFrame, str]:
    """The bars as given, or daily (then weekly) OHLC when there are more than ``max_bars``."""
    if len(frame) <= max_bars:
        return frame, ""
    for rule, label in (("1D", "daily"), ("1W", "weekly"), ("MS", "monthly")):
        out = frame.resample(rule).agg({"open": "first", "high": "max", "low": "min", "close": "last"}).dropna()
        if len(out) <= max_bars:
            return out, label
    return out, label


def fill_markers(result: dict[str, Any], symbol: str) -> dict[str, list[dict]]:
    """Fills of ``symbol`` by kind: ``entry`` (first fill of a position), ``ladder`` (later entry
    fills of the same plan, e.g. DCA legs), ``exit`` (reducing fills), ``hedge`` (hedge legs, both ways)."""
    out: dict[str, list[dict]] = {"entry": [], "ladder": [], "exit": [], "hedge": []}
    seen: set[str] = set()
    for f in result.get("fills", []):
        if f["symbol"] != symbol:
            continue
        if f.get("hedge"):
            out["hedge"].append(f)
        elif f.get("reduce_only"):
            out["exit"].append(f)
        else:
            plan = f["order_id"].rsplit(":entry:", 1)[0]   # "SYM:decision time" of the plan
            out["ladder" if plan in seen else "entry"].append(f)
            seen.add(plan)
    return out


def level_paths(result: dict[str, Any], symbol: str) -> tuple[list, list, list]:
    """Step paths of the stop and take-profit of every position, as one x list with ``None``
    between positions: (x, stop, take_profit). Each path runs until the position closed."""
    closed = {t["id"]: t["closed_at"] for t in result.get("trades", [])}
    xs: list = []
    stops: list = []
    tps: list = []
    for p in result.get("levels", []):
        if p["symbol"] != symbol or not p["path"]:
            continue
        path = p["path"] + [[closed.get(p["trade"], p["path"][-1][0])] + p["path"][-1][1:]]
        xs += [naive(q[0]) for q in path] + [None]
        stops += [q[1] for q in path] + [None]
        tps += [q[2] for q in path] + [None]
    return xs, stops, tps


def hedge_intervals(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(opened, closed, symbol) of every hedge leg, for shading the timeline."""
    return [(t["opened_at"], t["closed_at"], t["symbol"]) for t in result.get("trades", []) if t.get("hedge")]


# -- ML: weights, outcomes, calibration ---------------------------------------------------------

def has_ml(result: dict[str, Any]) -> bool:
    return any(len(d.get("votes", ())) > 1 for d in result.get("decisions", []))


def vote_probability(vote: dict[str, Any], direction: int) -> float:
    """``mlcoord.model.Vote.probability`` on the vote as written to the file."""
    own = vote.get("p_up") if direction > 0 else vote.get("p_down")
    if own is not None:
        return float(own)
    action = {"BUY": 1, "SELL": -1}.get(vote["signal"], 0)
    if action == 0:
        return 0.5
    return float(vote["confidence"]) if action == direction else 1.0 - float(vote["confidence"])


def weights_over_time(result: dict[str, Any], key: str = "weight") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each contributor's ensemble figure ``key`` ("weight": share of absolute coefficients;
    "coefficient": the signed one) at every decision it voted in with that figure."""
    series: dict[str, tuple[list, list]] = defaultdict(lambda: ([], []))
    for d in result.get("decisions", []):
        if len(d.get("votes", ())) < 2:
            continue
        for v in d["votes"]:
            if v.get(key) is None:
                continue
            xs, ys = series[v["component"]]
            xs.append(d["time"])
            ys.append(v[key])
    return {k: (to_ns(x), np.asarray(y, float)) for k, (x, y) in sorted(series.items())}


def has_coefficients(result: dict[str, Any]) -> bool:
    """Votes carry signed coefficients (result files from issue 16 on; older ones only the weight)."""
    return any(v.get("coefficient") is not None for d in result.get("decisions", []) for v in d.get("votes", ()))


def outcomes(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Every decision whose horizon closed inside the data, with its forward return and the time
    its outcome became known; sorted by that time (the order learners saw them)."""
    learning = result.get("learning", {})
    horizon = int(learning.get("horizon", DEFAULT_HORIZON))
    frames = {}
    for sym, c in result.get("candles", {}).items():
        frames[sym] = (to_ns(c["time"]), np.asarray(c["close"], dtype=float))
    out = []
    decisions = result.get("decisions", [])
    times = to_ns([d["time"] for d in decisions])
    for d, t in zip(decisions, times.tolist()):
        if d["symbol"] not in frames:
            continue
        bar_times, close = frames[d["symbol"]]
        i = int(np.searchsorted(bar_times, t))
        if i >= len(bar_times) or bar_times[i] != t or i + horizon >= len(close):
            continue
        out.append({"decision": d, "time": t, "known_at": int(bar_times[i + horizon]),
                    "forward_return": close[i + horizon] / close[i] - 1.0})
    out.sort(key=lambda o: o["known_at"])
    return out


def running_accuracy(result: dict[str, Any], resolved: Optional[list] = None, window: int = ROLLING_OUTCOMES
                     ) -> dict[str, dict[str, np.ndarray]]:
    """Per contributor, after every outcome: cumulative accuracy (as the ensemble tracks it, both
    directions per outcome) and the accuracy over the last ``window`` scored predictions."""
    threshold = float(result.get("learning", {}).get("threshold", DEFAULT_THRESHOLD))
    resolved = outcomes(result) if resolved is None else resolved
    hits: dict[str, tuple[list, list]] = defaultdict(lambda: ([], []))
    for o in resolved:
        votes = o["decision"]["votes"]
        if len(votes) < 2:
            continue
        for direction in (1, -1):
            hit = direction * o["forward_return"] >= threshold
            for v in votes:
                ts, ok = hits[v["component"]]
                ts.append(o["known_at"])
                ok.append((vote_probability(v, direction) >= 0.5) == hit)
    out = {}
    for name, (ts, ok) in sorted(hits.items()):
        correct = np.asarray(ok, dtype=float)
        n = np.arange(1, len(correct) + 1)
        cum = np.cumsum(correct)
        before = np.concatenate([np.zeros(window), cum])[:len(cum)]   # cum[i - window], 0 early on
        rolling = (cum - before) / np.minimum(n, window)
        out[name] = {"time": np.asarray(ts, np.int64), "cumulative": cum / n, "rolling": rolling}
    return out


def calibration(result: dict[str, Any], resolved: Optional[list] = None, bins: int = 10) -> dict[str, Any]:
    """Traded-direction decisions (BUY/SELL after the coordinator): raw and calibrated confidence,
    whether the event happened, and the reliability table of each."""
    threshold = float(result.get("learning", {}).get("threshold", DEFAULT_THRESHOLD))
    resolved = outcomes(result) if resolved is None else resolved
    raw, cal, y = [], [], []
    for o in resolved:
        d = o["decision"]
        direction = {"BUY": 1, "SELL": -1}.get(d["signal"], 0)
        if not direction:
            continue
        raw.append(d["raw_confidence"])
        cal.append(d["confidence"])
        y.append(float(direction * o["forward_return"] >= threshold))
    return {"n": len(y), "raw": raw, "calibrated": cal, "observed": y,
            "reliability_raw": reliability(y, raw, bins), "reliability_calibrated": reliability(y, cal, bins),
            "ece_raw": expected_calibration_error(y, raw, bins) if y else None,
            "ece_calibrated": expected_calibration_error(y, cal, bins) if y else None}


def thin(n: int, max_points: int = MAX_LINE_POINTS) -> np.ndarray:
    """Evenly spaced indices (always keeping the last) for series where extremes do not matter."""
    if n <= max_points:
        return np.arange(n)
    return np.unique(np.concatenate([np.linspace(0, n - 1, max_points).astype(int), [n - 1]]))


__all__ = ["calibration", "candle_frame", "decimate", "downsample_candles", "equity_curve",
           "fill_markers", "has_ml", "hedge_intervals", "level_paths", "naive", "outcomes", "running_accuracy", "thin",
           "to_datetime", "to_ns", "vote_probability", "weights_over_time"]
