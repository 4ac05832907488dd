"""Fractional Kelly from the sizer's own trade history (returns per trade, net of fees)."""

from __future__ import annotations

import math
from typing import Iterable

import attrs


@attrs.frozen
class KellyEstimate:
    """``f_star = W - (1 - W) / R`` with W the win rate and R = average win / average loss."""

    trades: int
    win_rate: float
    payoff: float            # R; ``inf`` when there was no losing trade, 0 when no winner
    f_star: float            # -inf when there was no winning trade

    def describe(self) -> str:
        return f"W {self.win_rate:.1%} R {self.payoff:.2f} f* {self.f_star:+.4f} over {self.trades} trades"


def kelly_estimate(returns: Iterable[float]) -> KellyEstimate:
    """Kelly statistics of per-trade returns. A zero return counts as a non-win (and not as a loss
    in R), so break-even trades lower W: conservative."""
    rets = [float(r) for r in returns if math.isfinite(r)]
    n = len(rets)
    wins = [r for r in rets if r > 0]
    losses = [-r for r in rets if r < 0]
    w = len(wins) / n if n else 0.0
    if not wins:
        return KellyEstimate(n, w, 0.0, -math.inf)
    if not losses:
        return KellyEstimate(n, w, math.inf, w)
    payoff = (sum(wins) / len(wins)) / (sum(losses) / len(losses))
    return KellyEstimate(n, w, payoff, w - (1.0 - w) / payoff)
