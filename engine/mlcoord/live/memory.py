"""What a live bot keeps in its store besides orders, fills and plans, so a restart picks up where
the process died:

* every decision of the journal (``decisions`` table, keyed by symbol and bar: a bar replayed
  after a restart is stored once), so "why did it trade?" has an answer after any crash; an
  entered decision is stored earlier, with its plan, before its first order is sent
  (:meth:`LiveTrader.open_plan`): a kill -9 in between leaves no plan without its decision;
* the plugins' learning state (:meth:`Pipeline.state`: ensemble weights, calibration, bandit
  arms), restored before the first decision;
* the portfolio guards' state (:meth:`Pipeline.guard_state`: cooldowns, pair locks, active hedge
  triggers), so a restart neither lifts a cooldown nor strands a hedge;
* the account's equity peak and day start, which the drawdown trigger and the daily-loss limit
  measure from: a restart in a drawdown must not reset the peak to today's equity.

Saved after every cycle that stepped a bar or fed a closed trade back (the only events that
change it), restored once at start.
"""

from __future__ import annotations

from typing import Any, Optional

import structlog

from mlcoord.costs import DAY_NS

log = structlog.get_logger("mlcoord.live.memory")

PIPELINE, GUARDS, ACCOUNT = "pipeline", "guards", "account"


class SessionMemory:
    """Saves and restores one trader's decisions, plugin state and account marks in ``store``."""

    def __init__(self, store) -> None:
        self.store = store
        self._recorded = 0          # journal decisions already written

    def restore(self, trader) -> dict[str, Any]:
        """Before the first cycle: learning and guard state into the pipeline, the account's peak
        and day start into the engine's portfolio (after the wallet was read). Returns what was
        found, for the start-up log."""
        found: dict[str, Any] = {}
        pipeline, portfolio = trader.pipeline, trader.engine.ledger
        learned = self._load(PIPELINE)
        if learned:
            pipeline.load_state(learned, on_error=lambda name, exc: self._set_aside(PIPELINE, learned, name, exc))
            found["learning_state"] = sorted(learned.get("components", {})) + (
                ["ensemble"] if "ensemble" in learned else [])
        guards = self._load(GUARDS)
        if guards:
            pipeline.load_guard_state(guards, on_error=lambda name, exc: self._set_aside(GUARDS, guards, name, exc))
            found["guard_state"] = sorted(guards.get("guards", {}))
        account = self._load(ACCOUNT)
        if account:
            try:
                peak = float(account["peak_equity"])
                day = int(account["day"]) if account.get("day") is not None else None
                day_start = float(account["day_start_equity"]) if day is not None else None
            except (KeyError, TypeError, ValueError) as exc:
                self._set_aside(ACCOUNT, account, None, exc)
                peak, day, day_start = 0.0, None, None
            if peak > portfolio.equity:
                portfolio.restore_peak(peak)
                found["peak_equity"] = peak
            if day is not None and day_start is not None and day == trader.last_time // DAY_NS:
                trader.engine.loop.continue_day(day, day_start)
                found["day_start_equity"] = portfolio.day_start_equity
        self._recorded = len(trader.engine.journal.decisions)
        return found

    def _load(self, key: str) -> Optional[dict[str, Any]]:
        """The saved row ``key``; a row that is not a JSON table is set aside (kept under another
        key, for a look) and the bot starts without it: lost learning is a warning, not an outage.
        A store that cannot be read at all still fails (:class:`~mlcoord.errors.StoreFailure`)."""
        try:
            value = self.store.load_state(key)
        except ValueError as exc:          # json.JSONDecodeError
            self._set_aside(key, self.store.load_raw_state(key), None, exc)
            return None
        if value is not None and not isinstance(value, dict):
            self._set_aside(key, value, None, TypeError(f"expected a table, got {type(value).__name__}"))
            return None
        return value

    def _set_aside(self, key: str, body: Any, component: Optional[str], exc: Exception) -> None:
        """Keep an unusable saved state under ``<key>.set_aside`` and say what starts fresh."""
        aside = f"{key}.set_aside"
        # ``body`` came out of the store's JSON (or is its raw text): it always saves as JSON again
        self.store.save_state(aside, {"body": body if isinstance(body, (dict, list, str)) else repr(body),
                                      "component": component, "error": f"{type(exc).__name__}: {exc}"})
        log.warning("saved_state_set_aside", state=key, component=component or "all",
                    error=f"{type(exc).__name__}: {exc}"[:300], kept_as=aside,
                    note=f"{component or key} starts without its saved state")

    def save(self, trader) -> int:
        """After a cycle: new decisions, then the state, in one transaction (one commit, one fsync,
        instead of one per decision and per state; a crash keeps all of it or none). Returns the
        decisions written."""
        decisions = trader.engine.journal.decisions
        new = decisions[self._recorded:]
        pipeline, portfolio = trader.pipeline, trader.engine.ledger
        with self.store.transaction():
            for decision in new:
                self.store.record_decision(decision)
            self.store.save_state(PIPELINE, pipeline.state())
            self.store.save_state(GUARDS, pipeline.guard_state())
            self.store.save_state(ACCOUNT, {"peak_equity": portfolio.peak_equity,
                                            "day_start_equity": portfolio.day_start_equity,
                                            "day": trader.engine.loop.current_day, "bar_time": trader.last_time})
        self._recorded = len(decisions)
        return len(new)

