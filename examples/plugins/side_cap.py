"""A per-side cap: an entry guard written against mlcoord.api only.

Refuses an entry when ``max_per_side`` positions (hedge legs excluded) and working entries of
other symbols on that side are already committed: correlated crypto signals arrive together, so
the cap counts plans approved earlier in the same bar too (the portfolio's pending entries).
"""

import attrs

from mlcoord.api import PortfolioView, Side, hookimpl, integer

MLCOORD_HOOKS_VERSION = 2


@attrs.frozen
class SideCapOptions:
    max_per_side: int = attrs.field(default=2, validator=integer(1))


class SideCap:
    def __init__(self, options: SideCapOptions):
        self.options = options

    def allow_entry(self, symbol: str, side: Side, portfolio: PortfolioView):
        held = {p.symbol for p in portfolio.positions if p.side == side and not p.hedge}
        pending = {e.symbol for e in portfolio.pending_entries if e.side == side}
        committed = (held | pending) - {symbol}
        if len(committed) >= self.options.max_per_side:
            return f"{len(committed)} {side.name} positions or plans already (cap {self.options.max_per_side})"
        return None


@hookimpl
def register_entry_guards(register):
    register("side_cap", SideCap, options=SideCapOptions, description="at most N symbols per side",
             examples=({"max_per_side": 1},))
