"""The causal market context: volatility, momentum, trend strength and regime of every bar.

It is computed once per symbol over the whole history with the vectorised helpers of
``mlcoord.features``. Every input is causal, so ``series.at(i)`` is exactly what a live bot
knew at the close of bar ``i``, and components receive a ready ``MarketContext`` instead of
each recomputing indicators.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import attrs
import numpy as np

from mlcoord import features as ft
from mlcoord.model import MarketContext, Regime

#: an attrs validator: (instance, attribute, value) -> None, raising on a bad value
Validator = Callable[[Any, "attrs.Attribute[Any]", Any], Any]
_positive_int: list[Validator] = [attrs.validators.instance_of(int), attrs.validators.ge(1)]
_fraction: list[Validator] = [attrs.validators.instance_of((int, float)), attrs.validators.ge(0),
                              attrs.validators.le(1)]


@attrs.frozen
class ContextOptions:
    """Windows and thresholds of the market context (periods are in bars).

    Defaults follow the usual conventions: Wilder's 14-bar ATR and ADX, a one-day window
    of hourly bars for realised volatility, ADX above 25 for a trend, and "high volatility"
    meaning the top decile of the last 500 bars' realised volatility.
    """

    atr_period: int = attrs.field(default=14, validator=_positive_int)
    vol_window: int = attrs.field(default=24, validator=[*_positive_int, attrs.validators.ge(2)])
    momentum_window: int = attrs.field(default=10, validator=_positive_int)
    adx_period: int = attrs.field(default=14, validator=_positive_int)
    trend_threshold: float = attrs.field(default=0.25, validator=_fraction)       # adx/100 above it = trending
    high_vol_percentile: float = attrs.field(default=0.90, validator=_fraction)   # vol rank at or above it ...
    vol_rank_window: int = attrs.field(default=500, validator=_positive_int)      # ... over this many bars = high vol
    trend_ema_period: int = attrs.field(default=50, validator=_positive_int)      # price vs this EMA gives the trend side


@attrs.frozen(eq=False)
class ContextSeries:
    """Market context of every bar of one symbol, as read-only arrays (NaN during warm-up).

    ``eq=False`` because element-wise ``==`` on arrays has no single truth value.
    """

    atr: np.ndarray            # price units
    atr_pct: np.ndarray        # atr / close
    realised_vol: np.ndarray   # std of log returns over ``vol_window``
    momentum: np.ndarray       # rate of change over ``momentum_window`` (fraction)
    trend_strength: np.ndarray  # adx / 100, in [0, 1]
    regime: np.ndarray         # int8 codes of ``Regime``
    close: np.ndarray
    options: "ContextOptions" = attrs.field(factory=lambda: ContextOptions(), kw_only=True)

    def __attrs_post_init__(self):
        lengths = {f.name: len(getattr(self, f.name)) for f in attrs.fields(type(self)) if f.name != "options"}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"context arrays must have the same length, got {lengths}")

    def __len__(self) -> int:
        return len(self.close)

    def at(self, i: int) -> MarketContext:
        """The ``MarketContext`` of bar ``i``; warm-up NaNs become 0.0 so consumers need no NaN checks."""
        return MarketContext(
            atr=_finite_or_zero(self.atr[i]),
            atr_pct=_finite_or_zero(self.atr_pct[i]),
            realised_vol=_finite_or_zero(self.realised_vol[i]),
            momentum=_finite_or_zero(self.momentum[i]),
            trend_strength=_finite_or_zero(self.trend_strength[i]),
            regime=Regime(int(self.regime[i])),
            close=float(self.close[i]),
        )


def _finite_or_zero(value) -> float:
    value = float(value)
    return value if math.isfinite(value) else 0.0


def market_context(high, low, close, options: ContextOptions = ContextOptions()) -> ContextSeries:
    """Compute the causal market context of every bar from its high, low and close.

    Regime, first match wins:

    * ``HIGH_VOLATILITY``: the percentile rank of realised volatility over the last
      ``vol_rank_window`` bars is ``>= high_vol_percentile``;
    * ``TRENDING_UP``: trend strength ``> trend_threshold``, +DI > -DI and close above its EMA;
    * ``TRENDING_DOWN``: the mirror image;
    * ``RANGING`` otherwise, including every bar whose inputs are still warming up (until the
      rank window is full, only the high-volatility test is skipped).
    """
    h, l = np.asarray(high, dtype=np.float64), np.asarray(low, dtype=np.float64)
    c = np.array(close, dtype=np.float64)      # own copy: it is frozen below
    o = options

    atr = ft.atr(h, l, c, o.atr_period)
    with np.errstate(divide="ignore", invalid="ignore"):
        atr_pct = atr / c
    realised_vol = ft.realised_volatility(c, o.vol_window)
    adx, plus_di, minus_di = ft.adx(h, l, c, o.adx_period)
    trend_strength = adx / 100.0
    trend_line = ft.ema(c, o.trend_ema_period)

    # NaN compares False, so warm-up bars fall through to RANGING.
    trending = trend_strength > o.trend_threshold
    regime = np.full(len(c), Regime.RANGING, dtype=np.int8)
    regime[trending & (plus_di > minus_di) & (c > trend_line)] = Regime.TRENDING_UP
    regime[trending & (minus_di > plus_di) & (c < trend_line)] = Regime.TRENDING_DOWN
    regime[ft.rolling_percentile_rank(realised_vol, o.vol_rank_window) >= o.high_vol_percentile] = (
        Regime.HIGH_VOLATILITY
    )

    series = ContextSeries(
        atr=atr,
        atr_pct=atr_pct,
        realised_vol=realised_vol,
        momentum=ft.rate_of_change(c, o.momentum_window),
        trend_strength=trend_strength,
        regime=regime,
        close=c,
        options=o,
    )
    for field in attrs.fields(ContextSeries):
        if field.name == "options":
            continue
        getattr(series, field.name).setflags(write=False)   # shared with every plugin
    return series
