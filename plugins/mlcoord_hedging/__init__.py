"""Hedging guard: portfolio-level protection that never looks at a signal.

It watches three things about the portfolio only — drawdown from the equity peak, the realised
volatility of the market the portfolio holds against that market's normal (median) volatility,
and how tightly the exposed symbols move together — and asks the engine to hedge a fraction of
the net exposure while any of them is alarming, releasing the hedge with hysteresis once none
is. Its API takes a portfolio and nothing else, so the ML coordinator cannot influence it (the
product's "hedging is independent of signals" rule). It is a portfolio watcher only: it never vetoes
entries (that is the ``protections`` entry guard's job).
"""

from mlcoord.api import hookimpl

from mlcoord_hedging.guard import HedgingGuard, HedgingOptions

MLCOORD_HOOKS_VERSION = 2

__all__ = ["HedgingGuard", "HedgingOptions"]


@hookimpl
def register_portfolio_watchers(register):
    register("hedging", HedgingGuard, options=HedgingOptions,
             description="hedge net exposure on drawdown, volatility spikes in held symbols or correlated exposure",
             examples=({"use_volatility": False, "use_correlation": False, "drawdown_trigger": 0.02,
                        "drawdown_release": 0.01}, {"vol_window": 12, "vol_baseline": 120, "corr_window": 24}))
