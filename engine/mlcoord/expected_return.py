"""The cost-aware entry: trade only when the expected net return is positive.

``min_confidence`` asks "is the signal likely right?"; it ignores how far the stop and the take
profit are and what a round trip costs, so a likely but small win can still lose money on average.
For a plan with average entry price ``P`` (every leg filled, the DCA ladder's fraction-weighted
price, as the risk manager assumes), stop ``S``, take profit ``T`` and side ``s`` (+1 / -1):

* ``reward = s * (T - P) / P`` and ``risk = s * (P - S) / P``;
* ``costs`` = entry + exit costs, fractions of the notional: each leg's fee and slippage
  weighted by its fraction (a market leg pays the taker fee plus slippage, a limit leg the maker
  fee), plus the exit's taker fee and slippage (a stop's; a take profit pays no slippage, so this
  overstates its cost by the slippage);
* ``E = p * reward - (1 - p) * risk - costs`` with ``p`` the calibrated confidence.

``p`` is the calibrated probability of the learning event (see :mod:`mlcoord.learning`), standing
in for the probability that the take profit is reached before the stop, which no component
learns yet; the figure is therefore an approximation, and it is shown in every decision that
reaches a plan with levels. A plan without a take profit has no reward: no figure, no gate.
"""

from __future__ import annotations

from typing import Optional

from mlcoord.model import EntryPlan, ExitLevels, ExpectedReturn


def round_trip_costs(plan: EntryPlan, fee_taker: float, fee_maker: float, slippage: float) -> float:
    """Entry and exit costs as a fraction of the notional (see the module's docstring)."""
    entry = sum(leg.fraction * (fee_taker + slippage if leg.market else fee_maker) for leg in plan.legs)
    return entry + fee_taker + slippage


def expected_return(plan: EntryPlan, levels: ExitLevels, probability: float, *, fee_taker: float,
                    fee_maker: float, slippage: float, minimum: float) -> Optional[ExpectedReturn]:
    """The figure for ``plan`` under ``levels`` at ``probability`` (None without a take profit)."""
    if levels.take_profit is None:
        return None
    s = int(plan.side)
    price = plan.average_price
    reward = s * (levels.take_profit - price) / price
    risk = s * (price - levels.stop) / price
    costs = round_trip_costs(plan, fee_taker, fee_maker, slippage)
    value = probability * reward - (1.0 - probability) * risk - costs
    return ExpectedReturn(value, probability, reward, risk, costs, minimum)
