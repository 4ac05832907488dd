"""An exit manager with a time stop: a one-file plugin written against mlcoord.api only.

Stop ``stop_atr`` ATRs from the worst entry, take profit at ``reward_risk`` times that distance
from the average entry, and a close at market after ``max_bars`` bars in the trade (the exit
reason appears as ``time_stop:time_stop`` in breakdowns and reports).
"""

import attrs

from mlcoord.api import EntryPlan, ExitLevels, MarketData, PositionExit, Side, hookimpl, integer, number

MLCOORD_HOOKS_VERSION = 2


@attrs.frozen
class TimeStopOptions:
    stop_atr: float = attrs.field(default=2.0, validator=number(0.0, 50.0, lo_open=True))
    reward_risk: float = attrs.field(default=2.0, validator=number(0.0, 50.0, lo_open=True))
    max_bars: int = attrs.field(default=48, validator=integer(1))


class Levels:
    def __init__(self, data: MarketData, options: TimeStopOptions):
        self.atr, self.close, self.options = data.context.atr, data.candles.close, options

    def initial(self, i: int, side: Side, plan: EntryPlan) -> ExitLevels:
        o = self.options
        atr = float(self.atr[i]) if self.atr[i] > 0 else 0.01 * float(self.close[i])
        sign = int(side)
        stop = plan.worst_price - sign * o.stop_atr * atr
        target = plan.average_price + sign * o.reward_risk * abs(plan.average_price - stop)
        return ExitLevels(stop=stop, take_profit=target, reasons=(f"stop {o.stop_atr:g} ATR, target {o.reward_risk:g}R",))

    def update(self, i, position, levels):
        if i - position.opened_index >= self.options.max_bars:
            return PositionExit("time_stop")
        return levels


class TimeStop:
    def __init__(self, options: TimeStopOptions):
        self.options = options

    def prepare(self, data: MarketData) -> Levels:
        return Levels(data, self.options)


@hookimpl
def register_exit_managers(register):
    register("time_stop", TimeStop, options=TimeStopOptions, description="ATR stop, R:R target, time stop",
             examples=({"max_bars": 6},))
