"""The ``protections`` guard. Times are int nanoseconds since the epoch (UTC)."""

from __future__ import annotations

import collections
import datetime as dt
from typing import Optional

import attrs

from mlcoord.api import Decision, GuardAction, Side, Trade, fraction, integer, number

HOUR_NS = 3_600_000_000_000
DAY_NS = 24 * HOUR_NS


_non_negative_int = integer(0, why=" (0 turns the rule off)")
_hours = number(0.0, why=" (hours)")
_loss_limit = fraction(hi_open=True, why=" (0 turns the rule off)")


def when(ns: int) -> str:
    """A lock's expiry for humans: ``2024-01-01 06:00 UTC``."""
    return dt.datetime.fromtimestamp(ns / 1e9, tz=dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


@attrs.frozen
class ProtectionsOptions:
    """Options of the ``protections`` guard, from ``[plugins.protections]``. 0 turns a rule off.

    * ``max_open_trades`` (3): no entry while ``portfolio.committed_trades()`` (open positions
      and plans with working entries, hedge legs aside) is at the cap.
    * ``cooldown_after_stop_hours`` (6): a trade whose ``exit_reason`` starts with ``stop`` locks
      its pair for this long from the trade's ``closed_at``.
    * ``pair_lock_losses`` (2), ``pair_lock_window_hours`` (24), ``pair_lock_hours`` (24): that
      many losing trades (pnl < 0) on a pair closed within the window lock the pair for
      ``pair_lock_hours`` from the last loss. Losses that caused a lock are consumed: they do
      not lock the pair again once it expires.
    * ``daily_loss_limit`` (0.03): equity below ``day_start_equity * (1 - limit)`` stops new
      entries until the next UTC midnight, even if equity recovers meanwhile.
    * ``close_all_on_daily_loss`` (false): also ask the engine to close everything, once, when
      the daily loss limit is hit.
    """

    max_open_trades: int = attrs.field(default=3, validator=_non_negative_int)
    cooldown_after_stop_hours: float = attrs.field(default=6.0, validator=_hours)
    pair_lock_losses: int = attrs.field(default=2, validator=_non_negative_int)
    pair_lock_window_hours: float = attrs.field(default=24.0, validator=_hours)
    pair_lock_hours: float = attrs.field(default=24.0, validator=_hours)
    daily_loss_limit: float = attrs.field(default=0.03, validator=_loss_limit)
    close_all_on_daily_loss: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))


class Protections:
    """Portfolio guard (see the package docstring)."""

    def __init__(self, options: Optional[ProtectionsOptions] = None):
        self.options = options or ProtectionsOptions()
        self._locks: dict[str, tuple[int, str]] = {}               # pair -> (until ns, why)
        self._losses: dict[str, collections.deque[int]] = {}       # pair -> closed_at of recent losses
        self._daily_until = 0
        self._daily_why = ""

    # -- learning -------------------------------------------------------------------------------
    def on_trade_closed(self, trade: Trade, decision: Optional[Decision] = None) -> None:
        """Record a closed trade: stop cooldown and loss streak locks start at ``closed_at``."""
        if trade.hedge:
            return
        o, pair, t = self.options, trade.symbol, int(trade.closed_at)
        # "catch_up:stop_loss": a stop a live bot's replayed bars crossed, closed late (still a stop)
        if o.cooldown_after_stop_hours > 0 and trade.exit_reason.rpartition(":")[2].startswith("stop"):
            self._lock(pair, t + round(o.cooldown_after_stop_hours * HOUR_NS),
                       f"cooldown_after_stop: {pair} stopped out ({trade.exit_reason}) at {when(t)}")
        if o.pair_lock_losses > 0 and trade.pnl < 0:
            losses = self._losses.setdefault(pair, collections.deque())
            losses.append(t)
            horizon = t - round(o.pair_lock_window_hours * HOUR_NS)
            while losses and losses[0] <= horizon:
                losses.popleft()
            if len(losses) >= o.pair_lock_losses:
                self._lock(pair, t + round(o.pair_lock_hours * HOUR_NS),
                           f"pair_lock: {len(losses)} losses on {pair} within {o.pair_lock_window_hours:g}h")
                losses.clear()

    def _lock(self, pair: str, until: int, why: str) -> None:
        current = self._locks.get(pair)
        if current is None or until > current[0]:   # the longest lock wins
            self._locks[pair] = (until, why)

    # -- the API (ExposesLocks, ReleasesLocks) ---------------------------------------------------
    def locks(self) -> dict[str, tuple[int, str]]:
        """Pair locks not yet known to have lapsed (a lapsed one is dropped at the pair's next entry
        check), and the armed daily loss limit as ``*``."""
        out = dict(self._locks)
        if self._daily_until:
            out["*"] = (self._daily_until, self._daily_why)
        return out

    def unlock(self, pair: str) -> bool:
        """Lift a pair's lock early (an operator's call). The daily loss limit (``*``) stays: it
        would arm again at once while equity is below the floor."""
        return self._locks.pop(pair, None) is not None

    def reconfigure(self, options: ProtectionsOptions) -> None:
        """New options from a config reload: locks, recent losses and an armed daily limit stay
        (a shorter cooldown applies to the next lock, not to one already set)."""
        if not isinstance(options, ProtectionsOptions):
            raise TypeError(f"protections options must be ProtectionsOptions, not {type(options).__name__}")
        self.options = options

    # -- restart ---------------------------------------------------------------------------------
    def state(self) -> dict:
        """Locks, recent losses and the armed daily limit: a restart must not lift a cooldown."""
        return {"version": 1, "locks": {p: [u, why] for p, (u, why) in self._locks.items()},
                "losses": {p: list(d) for p, d in self._losses.items()},
                "daily_until": self._daily_until, "daily_why": self._daily_why}

    def load_state(self, state: dict) -> None:
        if state.get("version") != 1:
            raise ValueError(f"protections state version {state.get('version')!r} is not 1")
        self._locks = {str(p): (int(u), str(why)) for p, (u, why) in state["locks"].items()}
        self._losses = {str(p): collections.deque(int(t) for t in d) for p, d in state["losses"].items()}
        self._daily_until, self._daily_why = int(state["daily_until"]), str(state["daily_why"])

    # -- PortfolioGuard -------------------------------------------------------------------------
    def on_bar(self, portfolio) -> list[GuardAction]:
        """Arms the daily loss limit as soon as it is breached (so a later recovery the same day
        does not re-open entries). Returns ``close_all`` once only if so configured."""
        if portfolio.equity >= portfolio.day_start_equity:   # no loss today: nothing to arm
            return []
        if self._check_daily(portfolio) and self.options.close_all_on_daily_loss:
            return [GuardAction("close_all", self._daily_why)]
        return []

    def can_skip_flat_bars(self, portfolio) -> bool:
        """Flat bars keep the equity and the day's start equity (a new day starts from that same
        equity): ``on_bar`` answers as it did on this bar, unless the limit would arm now."""
        return self._breach(portfolio) is None

    def skip_flat_bars(self, portfolio, times, closes) -> None:
        """Nothing to record: the daily limit is armed already or stays unbreached."""

    def allow_entry(self, symbol: str, side: Side, portfolio) -> Optional[str]:
        o, now = self.options, int(portfolio.time)
        self._check_daily(portfolio)
        if now < self._daily_until:
            return self._daily_why
        if o.max_open_trades > 0:
            n = portfolio.committed_trades()
            if n >= o.max_open_trades:
                return (f"max_open_trades {o.max_open_trades} reached ({n} open or entering): "
                        "until a position closes or a plan expires")
        lock = self._locks.get(symbol)
        if lock is not None:
            until, why = lock
            if now < until:
                return f"{why}: locked until {when(until)}"
            del self._locks[symbol]
        return None

    def _breach(self, portfolio) -> Optional[tuple[int, float, float, float]]:
        """(now, day start, floor, equity) when the daily limit is breached now and was not
        already armed for today; None otherwise."""
        limit = self.options.daily_loss_limit
        now = int(portfolio.time)
        if limit <= 0 or now < self._daily_until:
            return None
        start = float(portfolio.day_start_equity)
        floor = start * (1.0 - limit)
        equity = float(portfolio.equity)
        if not (start > 0 and equity < floor):
            return None
        return now, start, floor, equity

    def _check_daily(self, portfolio) -> bool:
        """True when the daily limit is breached now and was not already armed for today (it is
        armed now)."""
        breach = self._breach(portfolio)
        if breach is None:
            return False
        now, start, floor, equity = breach
        limit = self.options.daily_loss_limit
        self._daily_until = (now // DAY_NS + 1) * DAY_NS
        self._daily_why = (f"daily_loss_limit {limit:.1%}: equity {equity:.2f} < {floor:.2f} "
                           f"(day start {start:.2f}): no entries until {when(self._daily_until)}")
        return True
