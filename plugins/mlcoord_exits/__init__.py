"""Exit manager: where a position's stop and take profit go, and how they move afterwards.

The initial stop sits beyond the plan's worst leg, on the most relevant confirmed support
(resistance for shorts) when one is near, else a fixed number of ATR away, always between
``min_stop_atr`` and ``max_stop_atr`` ATR; the take profit is the next confirmed resistance if it
pays at least ``min_reward_risk``, else exactly that reward / risk. Once open, a trailing stop
that only tightens follows the best price by a volatility- and momentum-adjusted ATR distance,
and the target moves out while a strong trend pushes into it.

Exits read prices only (candles and the market context), never a signal or an ML vote: the
product requires exits to stay independent of ML once a position is open. Pivots count only once
confirmed, so no level comes from the future. See :class:`ExitOptions` for every default.

The initial levels also carry the trail as it would start (``ExitLevels.trail_distance``: the
trailing distance at entry; ``trail_activation``: the price beyond which it starts), for an
exchange that trails by itself (live ``[live] trailing = "exchange"``); the backtest ignores them.
"""

from mlcoord.api import hookimpl

from mlcoord_exits.manager import ExitManager, PreparedExits
from mlcoord_exits.options import ExitOptions

MLCOORD_HOOKS_VERSION = 1


@hookimpl
def register_exit_managers(register):
    register("exits", ExitManager, options=ExitOptions,
             description="ATR / confirmed-pivot stop and target, tightening trail, trend-extended target",
             examples=({"partial_take_profit": True, "trailing_stop": False}, {"atr_stop_multiplier": 3.0, "pivot_left": 3,
                                                                               "pivot_right": 3}))


__all__ = ["ExitManager", "ExitOptions", "PreparedExits", "register_exit_managers"]
