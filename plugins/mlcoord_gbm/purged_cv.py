"""Purged, embargoed walk-forward folds (López de Prado, *Advances in Financial ML*, ch. 7).

A sample decided at bar ``t`` carries a label that resolves at bar ``r >= t``. A training sample
whose label interval ``[t, r]`` overlaps the validation fold's interval would leak the fold's
future into training: it is *purged*. Samples decided within ``embargo`` bars after the fold are
dropped as well (*embargo*): their trailing-window features still overlap the fold. Every sample is
before the training cut, so folds on both sides of a validation block look at nothing the model
at the cut could not have seen; they only choose the number of boosting rounds.
"""

from __future__ import annotations

import numpy as np


def purged_folds(decided: np.ndarray, resolved: np.ndarray, folds: int, embargo: int,
                 min_train: int = 1) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(train, validation)`` index arrays over samples sorted by ``decided`` (bar of each
    sample) with label resolution bars ``resolved``: ``folds`` equal chronological blocks validate
    in turn; each one's training set is every other sample whose label interval does not meet the
    fold's ``[first decided, last resolved]`` bars and that was not decided within ``embargo`` bars
    after it. A fold with fewer than ``min_train`` training samples is left out."""
    decided, resolved = np.asarray(decided, dtype=np.int64), np.asarray(resolved, dtype=np.int64)
    if folds < 1:
        raise ValueError(f"folds must be at least 1, got {folds!r}")
    if embargo < 0:
        raise ValueError(f"embargo must be >= 0 bars, got {embargo!r}")
    if len(decided) != len(resolved) or np.any(np.diff(decided) < 0) or np.any(resolved < decided):
        raise ValueError("decided must be sorted and resolved >= decided, sample by sample")
    out = []
    edges = np.linspace(0, len(decided), folds + 1).astype(np.int64)
    for a, b in zip(edges[:-1], edges[1:]):
        if b <= a:
            continue
        validation = np.arange(a, b)
        start, end = decided[a], resolved[a:b].max()
        overlaps = (resolved >= start) & (decided <= end)          # label interval meets the fold's
        embargoed = (decided > end) & (decided <= end + embargo)
        train = np.flatnonzero(~overlaps & ~embargoed)
        if len(train) >= min_train:
            out.append((train, validation))
    return out
