"""A Donchian-channel breakout signal source: a one-file plugin written against mlcoord.api only.

BUY when the close breaks above the highest high of the previous ``period`` bars, SELL when it
breaks below the lowest low; confidence grows with how far the close broke out, in ATRs.
Run: mlcoord backtest --plugins-dir examples/plugins --enable donchian
"""

import attrs
import numpy as np

from mlcoord.api import MarketData, SignalSeries, features, hookimpl, integer, number

MLCOORD_HOOKS_VERSION = 2


@attrs.frozen
class DonchianOptions:
    period: int = attrs.field(default=20, validator=integer(2))
    base_confidence: float = attrs.field(default=0.6, validator=number(0.0, 1.0))


class Donchian:
    def __init__(self, options: DonchianOptions):
        self.options = options

    def prepare(self, data: MarketData) -> SignalSeries:
        c, o = data.candles, self.options
        # the channel of the *previous* bars: bar i's own high never counts against itself
        upper = np.concatenate([[np.nan], features.rolling_max(c.high, o.period)[:-1]])
        lower = np.concatenate([[np.nan], features.rolling_min(c.low, o.period)[:-1]])
        atr = data.context.atr
        action = np.zeros(len(c), np.int8)
        action[c.close > upper] = 1
        action[c.close < lower] = -1
        depth = np.where(action > 0, c.close - upper, lower - c.close)
        strength = np.nan_to_num(depth / np.where(atr > 0, atr, np.nan), nan=0.0)
        confidence = np.where(action != 0, np.clip(o.base_confidence + 0.1 * strength, 0.0, 1.0), 0.0)

        def explain(i: int) -> tuple[str, ...]:
            side = "above the" if action[i] > 0 else "below the"
            edge = upper[i] if action[i] > 0 else lower[i]
            return (f"close {c.close[i]:.2f} broke {side} {o.period}-bar channel at {edge:.2f}",)

        return SignalSeries(action, confidence, explain)


@hookimpl
def register_signal_sources(register):
    register("donchian", Donchian, options=DonchianOptions, description="Donchian channel breakouts",
             display_name="Donchian Breakout", examples=({"period": 55},))
