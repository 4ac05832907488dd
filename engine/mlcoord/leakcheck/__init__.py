"""Checks of a user's configured pipeline on the user's data: look-ahead and warm-up dependence.

The conformance kit (:mod:`mlcoord.testing`) checks one plugin on the kit's data; a pipeline
assembled from several plugins, with the user's options and candles, was never checked, and a
leaky signal source turned a losing backtest into a winning one without a word. Two checks, as
freqtrade's ``lookahead-analysis`` and ``recursive-analysis``:

* :func:`check_lookahead` (``mlcoord check lookahead``): the pipeline's outputs before a cut must
  not change when the bars after it are removed (exact equality).
* :func:`check_recursive` (``mlcoord check recursive``): how much the signal sources' values in a
  fixed window depend on how much history precedes it.

Nothing here imports :mod:`mlcoord.live`.
"""

from __future__ import annotations

from mlcoord.leakcheck.lookahead import MIN_SAMPLES, check_lookahead
from mlcoord.leakcheck.recursive import DEFAULT_TOLERANCE, DEFAULT_WARMUPS, DEFAULT_WINDOW, check_recursive
from mlcoord.leakcheck.report import SCHEMA_VERSION, LookaheadReport, RecursiveReport

__all__ = [
    "DEFAULT_TOLERANCE", "DEFAULT_WARMUPS", "DEFAULT_WINDOW", "MIN_SAMPLES", "SCHEMA_VERSION",
    "LookaheadReport", "RecursiveReport", "check_lookahead", "check_recursive",
]
