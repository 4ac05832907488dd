"""Technical-analysis signal source: RSI, MACD, EMA trend, Bollinger, ATR and volume, scored.

The baseline signal the ML components then enhance. Every indicator gives a signed,
strength-graded score; their sum (scaled by volume) picks the direction, and a bar becomes
BUY/SELL only when that net score reaches ``entry_score`` *and* ``min_agreeing`` indicators
give a real reading in that direction, so one indicator alone never trades. Confidence grows
with the net score and the agreement, shrinks with the score against the direction and in
volatility spikes, and feeds the DCA bands (< 0.65, 0.65-0.75, >= 0.75). The defaults were
re-derived on the development part only (BTC/USDT 1h 2020-09-20 -> 2024-03-21 09:00, before
``evaluate``'s default holdout; ``benchmarks/derive_constants.py``): BUY/SELL on 4.48% of bars,
56.7% / 19.9% / 23.4% of them in those bands (ETH, SOL, XRP development parts: 4.1-4.6% of
bars, bands within 2.5 points). Confidence orders signal *strength*; it is not a calibrated hit
probability (on BTC/USDT 1h 2020-2025 every band's 24-bar hit rate is near 50%), which is what
a calibrator plugin is for. The model and its calibration are in :mod:`mlcoord_technical.scoring`.

Where the brief was silent: HOLD bars (warm-up included) have confidence 0, the confidence of
a signal that does not exist; entries are blocked when ATR is below ``atr_min_ratio`` times its
own ``atr_baseline``-bar average (a dead market's moves do not pay for fees); confidence never
exceeds 0.95 (a technical read alone is never certain).
"""

from __future__ import annotations

import attrs
import numpy as np
from attrs import validators as v

from mlcoord.api import Regime, hookimpl
from mlcoord.api import MarketData, SignalSeries
from mlcoord_technical import reasons, scoring

MLCOORD_HOOKS_VERSION = 1

_period = [v.instance_of(int), v.ge(1)]
_positive = [v.instance_of((int, float)), v.gt(0)]


def _less_than(other: str):
    def check(instance, attribute, value):
        if not value < getattr(instance, other):
            raise ValueError(f"{attribute.name} ({value}) must be < {other} ({getattr(instance, other)})")
    return check


@attrs.frozen
class TechnicalOptions:
    """Options of the ``technical`` signal source (``[plugins.technical]``).

    rsi_period=14, rsi_oversold=30, rsi_overbought=70: Wilder RSI and its thresholds; each
    point beyond a threshold adds strength, 10 points beyond scores double.
    macd_fast=12, macd_slow=26, macd_signal=9: MACD; a cross scores 1, the histogram slope up to 0.5.
    ema_fast=20, ema_slow=50, ema_trend=200: trend from close > fast > slow > trend alignment.
    bb_period=20, bb_std=2.0: Bollinger bands; a close outside a band scores 1 to 1.5 (%b).
    atr_period=14, atr_baseline=100: ATR compared with its own average over ``atr_baseline`` bars.
    atr_min_ratio=0.5: below this ratio the market is too quiet to trade (no entries).
    atr_max_ratio=2.0: above it volatility is spiking and confidence is damped.
    volume_period=20: volume average; volume multiplies the net score by 0.75 .. 1.5.
    min_agreeing=2: indicators (RSI, MACD, trend, Bollinger) scoring >= 0.5 in the net
    direction needed for BUY/SELL (3 is very selective: ~0.3% of BTC 1h bars).
    entry_score=2.25: net score needed for BUY/SELL: the score that puts BUY/SELL on 4.5% of the
    bars of the development part of BTC/USDT 1h is 2.247 (``benchmarks/derive_constants.py``).
    use_market_context=True: also damp confidence in the HIGH_VOLATILITY regime of ``data.context``.
    confidence="strength": the seed's strength score (0.5 .. 0.95 from the net score, agreement and
    opposition; it ranks the trade label no better than a coin); "trade_label": the fitted
    probability that a trade in the signal's direction wins (:mod:`mlcoord_technical.confidence`:
    it ranks better, but stays below 0.5, so under ``min_confidence = 0.55`` a technical-only
    pipeline enters nothing; hence not the default yet).
    """

    rsi_period: int = attrs.field(default=14, validator=_period)
    rsi_oversold: float = attrs.field(default=30.0, validator=[*_positive, _less_than("rsi_overbought")])
    rsi_overbought: float = attrs.field(default=70.0, validator=[v.instance_of((int, float)), v.lt(100)])
    macd_fast: int = attrs.field(default=12, validator=[*_period, _less_than("macd_slow")])
    macd_slow: int = attrs.field(default=26, validator=_period)
    macd_signal: int = attrs.field(default=9, validator=_period)
    ema_fast: int = attrs.field(default=20, validator=[*_period, _less_than("ema_slow")])
    ema_slow: int = attrs.field(default=50, validator=[*_period, _less_than("ema_trend")])
    ema_trend: int = attrs.field(default=200, validator=_period)
    bb_period: int = attrs.field(default=20, validator=[v.instance_of(int), v.ge(2)])
    bb_std: float = attrs.field(default=2.0, validator=_positive)
    atr_period: int = attrs.field(default=14, validator=_period)
    atr_baseline: int = attrs.field(default=100, validator=_period)
    atr_min_ratio: float = attrs.field(default=0.5, validator=[v.instance_of((int, float)), v.ge(0),
                                                                _less_than("atr_max_ratio")])
    atr_max_ratio: float = attrs.field(default=2.0, validator=_positive)
    volume_period: int = attrs.field(default=20, validator=_period)
    min_agreeing: int = attrs.field(default=2, validator=[v.instance_of(int), v.ge(1), v.le(5)])
    entry_score: float = attrs.field(default=2.25, validator=_positive)
    use_market_context: bool = attrs.field(default=True, validator=v.instance_of(bool))
    confidence: str = attrs.field(default="strength", validator=v.in_(scoring.CONFIDENCES))


class Technical:
    """The signal source: ``prepare(data)`` scores every bar at once (causal, vectorised)."""

    def __init__(self, options: TechnicalOptions = TechnicalOptions()):
        self.options = options

    def prepare(self, data: MarketData) -> SignalSeries:
        c = data.candles
        high_vol = None
        if self.options.use_market_context:
            high_vol = np.asarray(data.context.regime) == Regime.HIGH_VOLATILITY
        s = scoring.score(c.close, c.high, c.low, c.volume, self.options, high_vol)
        options = self.options

        def explain(i: int) -> list[str]:
            return reasons.explain(s, i, options, bool(high_vol[i]) if high_vol is not None else False)

        return SignalSeries(s.action, s.confidence, explain)

    def features(self, data: MarketData) -> dict[str, np.ndarray]:
        """The indicator series behind the signals (``mlcoord check recursive`` shows how much
        each depends on the warm-up: the EMA(200) needs the longest)."""
        c = data.candles
        s = scoring.score(c.close, c.high, c.low, c.volume, self.options, None)
        return {name: np.asarray(getattr(s, name), dtype=float)
                for name in ("rsi", "macd", "macd_signal", "ema_fast", "ema_slow", "ema_trend", "percent_b",
                             "atr_ratio", "volume_ratio", "net")}


@hookimpl
def register_signal_sources(register):
    register("technical", Technical, options=TechnicalOptions,
             description="RSI, MACD, EMA trend, Bollinger, ATR and volume scored into BUY/SELL/HOLD",
             examples=({"entry_score": 1.5, "min_agreeing": 1}, {"ema_trend": 100, "use_market_context": False}))
