"""Protections: the entry locks users of other bots rely on, as an entry guard (and, to arm the
daily loss limit the moment it is breached and optionally close everything, a portfolio watcher:
one object in both roles).

Four rules, each off when set to 0: a cap on open trades, a cooldown on a pair after a stop-loss
exit, a pair lock after repeated losses on that pair, and a daily loss limit that stops new
entries until the next UTC day. Every refusal names the rule and when it expires. The guard only
refuses *entries*; it closes nothing unless ``close_all_on_daily_loss`` is set. Hedge trades are
ignored: closing a hedge at a loss says nothing about the pair's strategy.
"""

from mlcoord.api import hookimpl

from mlcoord_protections.rules import Protections, ProtectionsOptions

MLCOORD_HOOKS_VERSION = 2

__all__ = ["Protections", "ProtectionsOptions"]


DESCRIPTION = "max open trades, stop cooldown, pair lock after losses, daily loss limit"


#: option sets the conformance kit checks besides the defaults
EXAMPLES = ({"max_open_trades": 1, "close_all_on_daily_loss": True}, {"cooldown_after_stop_hours": 0.0,
                                                                      "pair_lock_losses": 0})


@hookimpl
def register_entry_guards(register):
    register("protections", Protections, options=ProtectionsOptions, description=DESCRIPTION, examples=EXAMPLES)


@hookimpl
def register_portfolio_watchers(register):
    register("protections", Protections, options=ProtectionsOptions, description=DESCRIPTION, examples=EXAMPLES)
