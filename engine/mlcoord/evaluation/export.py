"""Every scored prediction as one Parquet file, so any figure can be recomputed elsewhere.

One row per (prediction, component): ``time`` (the decision bar, UTC), ``symbol``, ``window``,
``population`` (``signal_bars``: the technical signal's bars, in its direction - or the final
direction for the ``ensemble (final, ...)`` rows; ``every_bar``: every bar, up / long),
``label`` (what ``outcome`` is: ``event`` or ``trade``, the trade label), ``component``,
``probability`` (of that outcome), ``outcome`` (1 it happened, 0 not), ``side`` (+1 / -1: the
direction judged) and ``climatology_causal`` (the causal climatology's forecast in that
direction: the reference of ``skill_vs_causal``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

COLUMNS = ("time", "symbol", "window", "population", "label", "component", "probability", "outcome", "side",
           "climatology_causal")


def records_frame(records: dict[str, dict[str, dict[str, list]]], label: str = "event") -> pd.DataFrame:
    """``records[population][component]`` (columns as lists), all scored on ``label``, as one frame."""
    frames = []
    for population, by_component in records.items():
        for component, cols in by_component.items():
            n = len(cols["time"])
            frames.append(pd.DataFrame({
                "time": pd.to_datetime(np.asarray(cols["time"], dtype=np.int64), utc=True),
                "symbol": cols["symbol"], "window": np.asarray(cols["window"], dtype=np.int32),
                "population": [population] * n, "label": [label] * n, "component": [component] * n,
                "probability": np.asarray(cols["p"], dtype=float), "outcome": np.asarray(cols["y"], dtype=np.int8),
                "side": np.asarray(cols["side"], dtype=np.int8),
                "climatology_causal": np.asarray(cols["pc"], dtype=float)}))
    if not frames:
        return pd.DataFrame({c: [] for c in COLUMNS})
    return pd.concat(frames, ignore_index=True)[list(COLUMNS)]


def write_decisions(records: dict, path: Path, label: str = "event") -> int:
    frame = records_frame(records, label)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(Path(path), index=False)
    return len(frame)
