"""Risk manager: sizes every entry so that a full-fill stop-out costs at most a fixed slice of equity.

The sizer has the final say on every entry. It assumes the worst case the plan allows: EVERY DCA
leg fills and the stop is then hit, market legs and the stop exit pay slippage, and every fill pays
the taker fee. The quantity is ``risk_per_trade * equity / loss_per_unit`` and then only ever
*reduced* by the caps (position size, total exposure) or by fractional Kelly. Anything that cannot
be sized safely (bad stop, too much leverage, non-positive equity, dust) is vetoed with a reason
that lists the numbers. Gaps through the stop beyond the slippage allowance cannot be bounded by
any sizer; choose ``slippage`` in the engine config accordingly.
"""

from mlcoord.api import hookimpl

from mlcoord_risk.kelly import KellyEstimate, kelly_estimate
from mlcoord_risk.manager import RiskManager, RiskOptions, full_fill_loss_per_unit

MLCOORD_HOOKS_VERSION = 1

__all__ = ["RiskManager", "RiskOptions", "KellyEstimate", "kelly_estimate", "full_fill_loss_per_unit"]


@hookimpl
def register_sizers(register):
    register("risk", RiskManager, options=RiskOptions,
             description="risk-per-trade sizing bounded for a full DCA fill + stop, with caps and optional Kelly",
             examples=({"use_kelly": True, "kelly_min_trades": 5}, {"risk_per_trade": 0.02, "max_leverage": 1.0}))
