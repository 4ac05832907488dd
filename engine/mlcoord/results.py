"""What a run of the trading loop produced, before statistics: the one result shape of backtests and
paper sessions (:mod:`mlcoord.backtest.stats` turns it into figures, the report draws it)."""

from __future__ import annotations

import attrs
import numpy as np

from mlcoord.costs import CostModel
from mlcoord.model import Decision, Fill, Trade


@attrs.frozen
class RawResult:
    """What the loop produced; :mod:`mlcoord.backtest.stats` turns it into figures."""

    times: np.ndarray
    equity: np.ndarray
    exposure: np.ndarray            # gross notional per timestamp
    trades: tuple[Trade, ...]
    fills: tuple[Fill, ...]
    decisions: tuple[Decision, ...]
    plans: tuple[dict, ...]         # per entered plan: band, legs planned, legs filled
    initial_equity: float
    cost_model: CostModel
    errors: dict
    level_paths: tuple[dict, ...] = ()   # per closed position: trade id and its (time, stop, tp) path
