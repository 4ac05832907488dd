"""Options of ``[plugins.exits]``: every distance is in ATR (the context's Wilder ATR, 14 bars)."""

from __future__ import annotations

import attrs

_v = attrs.validators
_positive = [_v.instance_of((int, float)), _v.gt(0)]
_non_negative = [_v.instance_of((int, float)), _v.ge(0)]
_count = [_v.instance_of(int), _v.ge(1)]
_flag = _v.instance_of(bool)


def _field(default, validator):
    return attrs.field(default=default, validator=validator)


@attrs.frozen
class ExitOptions:
    """How stops and targets are placed and moved.

    Initial levels (``initial``):

    * ``atr_stop_multiplier = 2.0``: without usable support, the stop is this many ATR beyond
      the worst leg of the plan (the leg nearest the stop);
    * ``support_buffer_atr = 0.5``: a stop on a confirmed support (resistance for shorts) sits
      this far beyond the level, outside the stop-hunting wicks;
    * ``min_stop_atr = 1.0`` / ``max_stop_atr = 4.0``: the stop's distance from the worst leg is
      clamped to this range, and only supports within ``max_stop_atr`` of the worst leg count;
    * ``pivot_left = 5`` / ``pivot_right = 5``: pivot definition (``features.confirmed_pivots``);
      a pivot is usable only ``pivot_right`` bars after it, once confirmed;
    * ``pivot_lookback_bars = 500``: pivots confirmed longer ago than this are ignored (stale);
    * ``min_reward_risk = 1.5``: the take profit sits at the nearest confirmed resistance beyond
      the average entry (support for shorts) when that gives at least this reward / risk, else at
      ``average + min_reward_risk * risk``;
    * ``partial_take_profit = False``, ``partial_at_r = 1.0``, ``partial_fraction = 0.5``: when
      enabled, close ``partial_fraction`` of the position at ``average + partial_at_r * risk``
      (only if that is before the take profit).

    Per-bar updates (``update``):

    * ``trailing_stop = True``; ``trail_activation_atr = 1.0``: the trail starts once the best
      price since entry is this many ATR beyond the entry price;
    * ``trail_atr_multiplier = 2.5``: the trail sits this many ATR, times a factor, behind the
      best price. The factor is ``sqrt(realised_vol / its median over vol_median_window)``
      (wider in unusually volatile markets), times ``adverse_momentum_factor`` when momentum
      turns against the position, clamped to ``[trail_factor_min, trail_factor_max]``;
    * ``vol_median_window = 168`` bars (a week of hours), ``adverse_momentum_factor = 0.8``,
      ``trail_factor_min = 0.6``, ``trail_factor_max = 1.5``;
    * ``dynamic_take_profit = True``: when the close is within ``tp_proximity_atr = 1.0`` ATR of
      the target, trend strength (ADX / 100) exceeds ``tp_trend_min = 0.25`` and momentum points
      the position's way, the target moves ``tp_extension_atr = 1.0`` ATR further out.
    """

    atr_stop_multiplier: float = _field(2.0, _positive)
    support_buffer_atr: float = _field(0.5, _non_negative)
    min_stop_atr: float = _field(1.0, _positive)
    max_stop_atr: float = _field(4.0, _positive)
    pivot_left: int = _field(5, _count)
    pivot_right: int = _field(5, _count)
    pivot_lookback_bars: int = _field(500, _count)
    min_reward_risk: float = _field(1.5, _positive)
    partial_take_profit: bool = _field(False, _flag)
    partial_at_r: float = _field(1.0, _positive)
    partial_fraction: float = _field(0.5, [_v.instance_of((int, float)), _v.gt(0), _v.lt(1)])
    trailing_stop: bool = _field(True, _flag)
    trail_activation_atr: float = _field(1.0, _non_negative)
    trail_atr_multiplier: float = _field(2.5, _positive)
    vol_median_window: int = _field(168, [*_count, _v.ge(2)])
    adverse_momentum_factor: float = _field(0.8, _positive)
    trail_factor_min: float = _field(0.6, _positive)
    trail_factor_max: float = _field(1.5, _positive)
    dynamic_take_profit: bool = _field(True, _flag)
    tp_proximity_atr: float = _field(1.0, _non_negative)
    tp_trend_min: float = _field(0.25, [_v.instance_of((int, float)), _v.ge(0), _v.le(1)])
    tp_extension_atr: float = _field(1.0, _positive)

    def __attrs_post_init__(self):
        if self.min_stop_atr > self.max_stop_atr:
            raise ValueError(f"min_stop_atr ({self.min_stop_atr}) must not exceed max_stop_atr ({self.max_stop_atr})")
        if not self.trail_factor_min <= 1.0 <= self.trail_factor_max:
            raise ValueError(f"trail_factor_min ({self.trail_factor_min}) <= 1 <= trail_factor_max "
                             f"({self.trail_factor_max}) must hold")
