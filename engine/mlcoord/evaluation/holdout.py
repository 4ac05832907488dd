"""The development / holdout split by time, and the log of every look at the holdout.

Tuning on the same bars one reports is how a backtest flatters itself. ``evaluate`` therefore
splits the common time axis at ``holdout_from`` (default: where the last 30 % of the bars
begin, never a hard-coded date): the ``development`` part (the default) reads no candle at or
after it, the ``holdout`` part scores test windows from it on (models still train on the bars
before). Every holdout run appends its commit, config hash and figures to the holdout log
(``benchmarks/holdout-log.csv`` in the repository), so each look at the holdout is on record.
A population scored on the trade label is logged as ``<population>@trade`` (``signal_bars@trade``),
the event's under its plain name, as before the label could be chosen.
"""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any, Optional, Sequence

import attrs
import numpy as np
import pandas as pd

from mlcoord.candles import Candles, union_times
from mlcoord.errors import ConfigError

PARTS = ("development", "holdout")
DEFAULT_HOLDOUT_SHARE = 0.30
LOG_COLUMNS = ("run_at", "commit", "config_hash", "holdout_from", "symbols", "windows", "population", "row",
               "metric", "value", "lo", "hi")
LOGGED_SCORES = ("n", "auc", "log_loss", "skill_vs_in_sample", "skill_vs_causal", "ece", "ece_mass15")
LOGGED_ARMS = ("trades", "total_return", "per_trade_return")


@attrs.frozen
class Split:
    holdout_from: int          # ns: first bar of the holdout part
    part: str                  # "development" or "holdout"
    chosen_by: str             # "--holdout-from" or "default: last 30 % of the bars"

    def describe(self) -> str:
        return (f"{self.part} part; holdout from {pd.Timestamp(self.holdout_from, tz='UTC').isoformat()} "
                f"({self.chosen_by})")


def make_split(candles: Sequence[Candles], holdout_from: Optional[str] = None, part: str = "development") -> Split:
    """The split of ``candles``' common time axis; clear errors for a bad date or part."""
    if part not in PARTS:
        raise ConfigError(f"part {part!r} is not one of {', '.join(PARTS)}")
    times = union_times([c.time for c in candles])
    if not len(times):
        raise ConfigError("no candles to split into development and holdout parts")
    if holdout_from is None:
        return Split(int(times[int(len(times) * (1 - DEFAULT_HOLDOUT_SHARE))]), part,
                     f"default: last {DEFAULT_HOLDOUT_SHARE:.0%} of the bars")
    try:
        ts = pd.Timestamp(holdout_from)
    except (ValueError, TypeError):
        raise ConfigError(f"holdout_from {holdout_from!r} is not a date (e.g. 2024-01-01)") from None
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    first, last = pd.Timestamp(int(times[0]), tz="UTC"), pd.Timestamp(int(times[-1]), tz="UTC")
    if not first < ts <= last:
        raise ConfigError(f"holdout_from {holdout_from!r} is outside the data ({first.date()} -> {last.date()})")
    return Split(int(ts.value), part, "--holdout-from")


def development_candles(candles: Sequence[Candles], split: Split) -> list[Candles]:
    """Every series cut before the holdout: the development part reads none of its bars."""
    return [c.slice(0, int(np.searchsorted(c.time, split.holdout_from))) for c in candles]


def config_hash(*parts: Any) -> str:
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def current_commit() -> str:
    """The repository's HEAD (``-dirty`` with uncommitted changes to tracked files), or ``unknown``."""
    root = Path(__file__).resolve().parents[3]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def log_rows(result: dict[str, Any], commit: str, run_at: str) -> list[dict[str, Any]]:
    """The holdout log's lines for one run: one per (row, figure), long format."""
    base = {"run_at": run_at, "commit": commit, "config_hash": result["config_hash"],
            "holdout_from": result["split"]["holdout_from"], "symbols": " ".join(result["symbols"]),
            "windows": len(result["windows"])}
    out = []
    for name, table in result["populations"].items():
        label = table.get("label", "event")          # files before evaluation schema 3 scored the event
        population = name if label == "event" else f"{name}@{label}"
        for row, s in table["scores"].items():
            for metric in LOGGED_SCORES:
                if metric in s:
                    ci = s.get("ci", {}).get(metric, [None, None])
                    out.append({**base, "population": population, "row": row, "metric": metric,
                                "value": s[metric], "lo": ci[0], "hi": ci[1]})
    for arm, a in result["trading_arms"]["arms"].items():
        for metric in LOGGED_ARMS:
            ci = a.get(f"{metric}_ci", [None, None])
            out.append({**base, "population": "trading", "row": arm, "metric": metric, "value": a[metric],
                        "lo": ci[0], "hi": ci[1]})
    return out


def append_log(path: Path, rows: list[dict[str, Any]]) -> None:
    """Append to the CSV log (header written when the file is new)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    with path.open("a", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=LOG_COLUMNS)
        if new:
            writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in LOG_COLUMNS})
