"""Every scored prediction as one Parquet file, so any figure can be recomputed elsewhere.

One row per (prediction, component): ``time`` (the decision bar, UTC), ``symbol``, ``window``,
``population`` (``signal_bars``: the technical signal's bars, in its direction - or the final
direction for the ``ensemble (final, ...)`` rows; ``every_bar``: every bar, event up),
``component``, ``probability`` (of the event), ``outcome`` (1 the event happened, 0 not),
``side`` (+1 / -1: the direction judged) and ``climatology_causal`` (the training part's
frequency of the event in that direction: the reference of ``skill_vs_causal``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

COLUMNS = ("time", "symbol", "window", "population", "component", "probability", "outcome", "side",
           "climatology_causal")


def records_frame(records: dict[str, dict[str, dict[str, list]]]) -> pd.DataFrame:
    """``records[population][component]`` (columns as lists) as one frame."""
    frames = []
    for population, by_component in records.items():
        for component, cols in by_component.items():
            n = len(cols["time"])
            frames.append(pd.DataFrame({
                "time": pd.to_datetime(np.asarray(cols["time"], dtype=np.int64), utc=True),
                "symbol": cols["symbol"], "window": np.asarray(cols["window"], dtype=np.int32),
                "population": [population] * n, "component": [component] * n,
                "probability": np.asarray(cols["p"], dtype=float), "outcome": np.asarray(cols["y"], dtype=np.int8),
                "side": np.asarray(cols["side"], dtype=np.int8),
                "climatology_causal": np.asarray(cols["pc"], dtype=float)}))
    if not frames:
        return pd.DataFrame({c: [] for c in COLUMNS})
    return pd.concat(frames, ignore_index=True)[list(COLUMNS)]


def write_decisions(records: dict, path: Path) -> int:
    frame = records_frame(records)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(Path(path), index=False)
    return len(frame)
