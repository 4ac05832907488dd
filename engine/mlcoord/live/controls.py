"""Controls from outside the trading thread (the API), applied by the loop as intents.

The API's thread never calls the trader: it puts a :class:`Control` on a :class:`ControlChannel`
(thread-safe) and the paper or live session applies what is queued at the start of its next cycle,
in the trading thread, as the loop's own intents (a forced exit is a
:class:`~mlcoord.model.ClosePosition` with reason ``api:force_exit``, so the trade's exit reason
says who closed it). After each cycle the session publishes a snapshot (plain data, replaced
whole, so a reader in another thread never sees half of one) and the cycle's events; that is
everything the API reads of a running bot. Nothing here imports the server or its framework.
"""

from __future__ import annotations

import collections
import queue
import time
from typing import Any, Callable, Optional

import attrs
import structlog

from mlcoord.ml_health import MlHealth
from mlcoord.model import CancelEntries, ClosePosition, Side
from mlcoord.protocols import ExposesLocks, Reconfigurable, ReleasesLocks
from mlcoord.simulated import SimulatedVenue

log = structlog.get_logger("mlcoord.live.controls")

#: the exit reason of a position closed through the API
FORCE_EXIT_REASON = "api:force_exit"
#: what a control may ask for
CONTROL_KINDS = ("force_exit", "pause", "resume", "stop", "start", "kill_on", "kill_off", "cancel_entries",
                 "lock_add", "lock_remove", "reload", "force_enter")
#: the websocket event of an order journaled in each state (live)
ORDER_EVENTS = {"pending": "order_placed", "open": "order_accepted", "partially_filled": "order_partially_filled",
                "filled": "order_filled", "cancelled": "order_cancelled", "expired": "order_cancelled",
                "rejected": "order_rejected"}
#: decisions the API can show (older ones are in the store's journal on live)
RECENT_DECISIONS = 1000
#: equity points kept for the API (one per cycle that stepped a new bar): ~2 years of 1h bars
EQUITY_POINTS = 20_000


@attrs.frozen
class Control:
    """One request of a user: ``kind`` (:data:`CONTROL_KINDS`), on ``symbol`` (None: every
    symbol, where that applies), ``fraction`` of a position (force exit), ``until`` (a lock's end,
    wall-clock seconds; None: until removed). ``audit_id`` is its audit row (its result goes there)."""

    kind: str = attrs.field(validator=attrs.validators.in_(CONTROL_KINDS))
    symbol: Optional[str] = None
    fraction: float = 1.0
    until: Optional[float] = None
    user: str = ""
    audit_id: int = 0
    #: ``reload``: (the new settings, names of the components whose options change); ``force_enter``:
    #: the side (1 long, -1 short)
    payload: Any = attrs.field(default=None, eq=False, repr=False)


Sink = Callable[[dict[str, Any]], None]


class ControlChannel:
    """The bridge between one running session and its API (see the module's docstring).

    ``events``: callables given every event (a dict with ``type``), in the trading thread; they
    must not block (the server's hub only hands the event to its own loop). ``results``: called
    with (control, result text) once a control is applied. ``clock``: wall-clock seconds (locks)."""

    def __init__(self, *, clock: Callable[[], float] = time.time):
        self._queue: "queue.SimpleQueue[Control]" = queue.SimpleQueue()
        self.clock = clock
        self.paused = False          # no new entries; exits still managed
        self.stopped = False         # no bar stepped at all (the exchange's stops stay on live)
        self.locks: dict[str, Optional[float]] = {}     # symbol -> until (None: until removed)
        self.snapshot: dict[str, Any] = {"running": False}
        self.events: list[Sink] = []
        self.results: list[Callable[[Control, str], None]] = []
        #: the audit log's result hook is in ``results`` (installed once, by the API or Telegram)
        self.audit_results = False
        self._seen = {"fills": 0, "trades": 0, "decisions": 0}
        #: closed trades as plain data (append-only: a reader in another thread copies a slice)
        self.trades: list[dict[str, Any]] = []
        #: the latest decisions as plain data
        self.decisions: "collections.deque[dict[str, Any]]" = collections.deque(maxlen=RECENT_DECISIONS)
        #: (bar time ns, equity) at the end of each cycle with a new bar (the dashboard's equity curve)
        self.equity: "collections.deque[tuple[int, float]]" = collections.deque(maxlen=EQUITY_POINTS)
        self._installed: Optional[int] = None
        #: realised outcomes of the session's decisions (the API's ML health), fed by the pipeline
        self.ml = MlHealth()
        self._ml_seen = -1
        #: the pipeline's components by role (names only), once installed
        self.components: dict[str, Any] = {}
        #: guards and exit manager that take new options in place (names; see ``Reconfigurable``)
        self.reconfigurable: frozenset[str] = frozenset()
        #: order events of the cycle (live: from the store's order journal), sent after it
        self._order_events: list[dict[str, Any]] = []
        #: a paper session's working entry orders at the last cycle's end: id -> event fields
        self._working: dict[str, dict[str, Any]] = {}
        self._refused_seen = 0
        self._drift_state: Optional[str] = None
        #: the session's traded symbols (:mod:`mlcoord.live.universe`), set by the session: a reload of
        #: ``[data] symbols`` or the scanner's settings goes there
        self.universe: Any = None

    # -- the API's side (any thread) -----------------------------------------------------------
    def submit(self, control: Control) -> None:
        self._queue.put(control)

    def pending(self) -> int:
        return self._queue.qsize()

    # -- the trading thread's side -------------------------------------------------------------
    def install(self, trader) -> None:
        """Hook the loop once: entries pass the channel's pause and locks (then whatever decided
        before), guard actions become events."""
        loop = trader.engine.loop
        if self._installed == id(loop):
            return
        self._installed = id(loop)
        before = loop.may_enter

        def may_enter(symbol: str) -> bool:
            if self.paused or self.stopped or self.locked(symbol):
                return False
            return before is None or before(symbol)

        loop.may_enter = may_enter
        journal, guard = loop.journal, loop.journal.guard

        def guard_seen(name, action, portfolio) -> None:
            guard(name, action, portfolio)
            self.emit({"type": "guard_action", "guard": name, "action": str(action.kind), "symbol": action.symbol,
                       "reason": action.reason})

        journal.guard = guard_seen
        loop.pipeline.outcome_listeners.append(self.ml.observe)
        self.components = loop.pipeline.components.describe()
        self.reconfigurable = frozenset(b.name for b in _reloadable(loop.pipeline.components)
                                        if isinstance(b.obj, Reconfigurable))

    def order_changed(self, record) -> None:
        """A store's order listener (live): the order written new or changed, as an event kept
        for the end of the cycle (the trading thread's; nothing goes to a socket from here)."""
        o = record.order
        self._order_events.append({
            "type": ORDER_EVENTS.get(record.state.value, "order_" + record.state.value), "order_id": o.id,
            "symbol": o.symbol, "side": int(o.side), "kind": str(o.kind.value), "tag": o.tag,
            "quantity": o.quantity, "price": o.price, "filled_quantity": record.filled_quantity,
            "average_price": record.average_price, "reduce_only": o.reduce_only, "hedge": o.hedge,
            "plan_id": record.plan_id, "reason": record.reason})

    def _simulated_orders(self, venue, fills) -> list[dict[str, Any]]:
        """A paper session's entry orders, from the simulated venue's working legs compared with
        the last cycle's: new ones placed, gone ones filled (a fill of theirs this cycle) or
        cancelled (cancelled, expired or replaced); refused ones rejected."""
        out: list[dict[str, Any]] = []
        filled = {f.order_id: f for f in fills if not f.reduce_only and not f.hedge}
        now = {oid: {"order_id": oid, "symbol": sym, "side": int(side), "kind": "market" if market else "limit",
                     "tag": tag, "quantity": qty, "price": None if market else price}
               for oid, sym, side, qty, price, market, tag in venue.working_orders()}
        before = self._working
        for oid, row in now.items():
            if oid not in before:
                out.append({"type": "order_placed", **row})
        for oid, row in before.items():
            if oid not in now:
                fill = filled.get(oid)
                out.append({"type": "order_filled", **row, "average_price": fill.price} if fill is not None
                           else {"type": "order_cancelled", **row})
        for oid, f in filled.items():          # placed and filled within the cycle (several bars stepped)
            if oid not in before and oid not in now:
                row = {"order_id": oid, "symbol": f.symbol, "side": int(f.side), "tag": f.tag,
                       "quantity": f.quantity}
                out += [{"type": "order_placed", **row}, {"type": "order_filled", **row, "average_price": f.price}]
        for symbol, oid, why in venue.refused[self._refused_seen:]:
            out.append({"type": "order_rejected", "order_id": oid, "symbol": symbol, "reason": why})
        self._refused_seen = len(venue.refused)
        self._working = now
        return out

    def locked(self, symbol: str) -> bool:
        if symbol not in self.locks:
            return False
        until = self.locks[symbol]
        if until is not None and until <= self.clock():
            del self.locks[symbol]
            return False
        return True

    def apply(self, trader, supervisor) -> list[tuple[Control, str]]:
        """Every queued control, in order, as intents on ``trader``'s loop (or a switch of the
        channel's own state); each result goes to :attr:`results` and out as a ``control`` event."""
        self.install(trader)
        done = []
        while True:
            try:
                control = self._queue.get_nowait()
            except queue.Empty:
                break
            try:
                result = self._apply(control, trader, supervisor)
            except Exception as exc:     # a refused control never stops trading
                result = f"failed: {type(exc).__name__}: {exc}"
            log.info("api_control_applied", kind=control.kind, symbol=control.symbol, user=control.user,
                     result=result)
            for hook in self.results:
                hook(control, result)
            self.emit({"type": "control", "kind": control.kind, "symbol": control.symbol, "user": control.user,
                       "result": result})
            done.append((control, result))
        return done

    def _apply(self, c: Control, trader, supervisor) -> str:
        kind = c.kind
        if kind in ("pause", "resume"):
            self.paused = kind == "pause"
            return "entries paused (exits still managed)" if self.paused else "entries resumed"
        if kind in ("stop", "start"):
            self.stopped = kind == "stop"
            return ("stopped: no new entry (a paper session steps no bar) until start" if self.stopped
                    else "started")
        if kind == "kill_on":
            path = supervisor.engage(f"api: {c.user}", wall_time=self.clock())
            return f"kill switch on ({path})"
        if kind == "kill_off":
            return "kill switch off" if supervisor.release() else "kill switch was not on"
        if kind == "lock_add":
            assert c.symbol is not None
            self.locks[c.symbol] = c.until
            return f"{c.symbol} locked" + ("" if c.until is None else f" until {c.until:.0f}")
        if kind == "reload":
            return self._reconfigure(c.payload, trader)
        if kind == "force_enter":
            assert c.symbol is not None
            return self._force_enter(c.symbol, Side(c.payload), trader, supervisor)
        if kind == "lock_remove":
            assert c.symbol is not None
            return self._unlock(c.symbol, trader)
        loop = trader.engine.loop
        ledger, venue = loop.ledger, loop.venue
        symbols = [c.symbol] if c.symbol is not None else [s.symbol for s in loop.series]
        acted = []
        for sym in symbols:
            if kind == "force_exit" and sym in ledger.positions:
                loop.submit(ClosePosition(sym, FORCE_EXIT_REASON, c.fraction, cancel_entries=c.fraction >= 1.0))
                acted.append(f"close {c.fraction:g} of {sym}")
            elif venue.has_entries(sym) and (kind == "cancel_entries" or c.fraction >= 1.0):
                loop.submit(CancelEntries(sym, FORCE_EXIT_REASON if kind == "force_exit" else "api:cancel_entries"))
                acted.append(f"cancel entries of {sym}")
        if not acted:
            return f"nothing to do: no {'position' if kind == 'force_exit' else 'working entry'} on " \
                   f"{c.symbol or 'any symbol'}"
        return "intents submitted: " + "; ".join(acted)

    def _force_enter(self, symbol: str, side: Side, trader, supervisor) -> str:
        """A market entry through the loop (:meth:`~mlcoord.loop.TradingLoop.force_enter`), unless
        entries are blocked (kill switch, pause, stop, a lock: the loop's own entry gate)."""
        loop = trader.engine.loop
        if supervisor.killed():
            return "refused: the kill switch is on"
        if loop.may_enter is not None and not loop.may_enter(symbol):
            return f"refused: entries on {symbol} are blocked (paused, stopped or locked)"
        try:
            d = loop.force_enter(symbol, side)
        except ValueError as exc:
            return f"refused: {exc}"
        if d.outcome != "entered":
            return f"refused: {d.outcome}" + (f": {d.veto}" if d.veto else "")
        assert d.sizing is not None and d.levels is not None
        return (f"entered: {symbol} {side.name.lower()} at market, quantity {d.sizing.quantity:g}, "
                f"stop {d.levels.stop:g}")

    def _reconfigure(self, payload, trader) -> str:
        """The reloaded settings applied: the traded symbols or the scanner's settings
        (:attr:`universe`), then new options for the named guards and exit manager (typed and
        checked by the config's own reader, as at start)."""
        settings, names, symbol_keys = payload
        said = []
        if symbol_keys:           # first: refused, it refuses the whole reload (nothing half applied)
            if self.universe is None:
                return "refused: this session cannot change its symbols in place (restart required)"
            said.append(self.universe.reload(settings, symbol_keys))
            if not said[-1].startswith("reloaded"):
                return said[-1]
        if names:
            said.append(self._reconfigure_components(settings, names, trader))
        return "; ".join(said)

    def _reconfigure_components(self, settings, names, trader) -> str:
        from mlcoord.config import plugin_options

        chosen: dict[str, Any] = {}
        for b in _reloadable(trader.engine.loop.pipeline.components):
            if b.name in names and b.name not in chosen:      # every option set read before any is applied
                chosen[b.name] = (b, plugin_options(settings, b.spec.name, b.spec.options))
        for b, options in chosen.values():
            b.obj.reconfigure(options)
        return "reloaded: options of " + ", ".join(chosen) if chosen else "nothing reloaded"

    def _unlock(self, symbol: str, trader) -> str:
        """The API's own lock on ``symbol``, and every guard's that lets it go
        (:class:`~mlcoord.protocols.ReleasesLocks`); a guard's lock it cannot lift is named."""
        lifted = ["api"] if self.locks.pop(symbol, "no") != "no" else []
        kept = []
        for b in trader.engine.loop.pipeline.components.guards:
            if not isinstance(b.obj, ExposesLocks) or symbol not in b.obj.locks():
                continue
            if isinstance(b.obj, ReleasesLocks) and b.obj.unlock(symbol):
                lifted.append(b.name)
            else:
                kept.append(b.name)
        if not lifted and not kept:
            return f"{symbol} was not locked"
        out = f"{symbol} unlocked ({', '.join(lifted)})" if lifted else f"{symbol} not unlocked"
        if kept:
            out += f"; still locked by {', '.join(kept)} (it cannot lift its locks early)"
        return out

    def _drift_changed(self, drift: dict[str, Any]) -> None:
        """A ``drift_alert`` event when the calibration drift rule starts or stops alerting (the
        websocket's and the notifications'; :mod:`mlcoord.ml_health` judges it)."""
        state = drift.get("state")
        if state != self._drift_state and "alert" in (state, self._drift_state):
            self.emit({"type": "drift_alert", **drift, "previous": self._drift_state})
        self._drift_state = state

    def emit(self, event: dict[str, Any]) -> None:
        for sink in self.events:
            try:
                sink(event)
            except Exception as exc:   # a broken listener never stops trading
                log.warning("api_event_dropped", cause=repr(exc))

    def cycle_done(self, trader, *, status: str, seconds: float, killed: bool, extra: Optional[dict] = None) -> None:
        """After a cycle: the cycle's new fills, trades and decisions as events, and a fresh
        snapshot (built here, in the trading thread, so readers never touch the trader)."""
        from mlcoord.journal import decision_to_dict

        engine = trader.engine
        ledger, loop = engine.ledger, engine.loop
        seen = self._seen
        for t in ledger.trades[seen["trades"]:]:
            row = trade_dict(t)
            self.trades.append(row)
            self.emit({"type": "trade_closed", **row})
        for d in loop.journal.decisions[seen["decisions"]:]:
            row = decision_to_dict(d)
            self.decisions.append(row)
            self.emit({"type": "decision", **row})
        orders, self._order_events = self._order_events, []
        if isinstance(loop.venue, SimulatedVenue):
            orders += self._simulated_orders(loop.venue, ledger.fills[seen["fills"]:])
        for event in orders:
            self.emit(event)
        if self.events:
            for f in ledger.fills[seen["fills"]:]:
                self.emit({"type": "fill", "symbol": f.symbol, "side": int(f.side), "price": f.price,
                           "quantity": f.quantity, "tag": f.tag, "time": f.time, "hedge": f.hedge})
            if status != "ok":
                self.emit({"type": "warning", "status": status})
        seen.update(fills=len(ledger.fills), trades=len(ledger.trades), decisions=len(loop.journal.decisions))
        if self._ml_seen != self.ml.observed or "ml" not in self.snapshot:    # rebuilt only on new outcomes
            self._ml_seen = self.ml.observed
            pipeline = loop.pipeline
            ml = self.ml.report(pipeline.ensemble_coefficients(), pipeline.ml_contributors(),
                                pipeline.calibration_reference)
            self._drift_changed(ml.get("drift") or {})
        else:
            ml = self.snapshot["ml"]
        self.snapshot = build_snapshot(trader, self, status=status, seconds=seconds, killed=killed,
                                       now=self.clock(), extra={"ml": ml, **(extra or {})})
        bar, equity = self.snapshot["last_bar_ns"], self.snapshot["equity"]
        if not self.equity or self.equity[-1][0] != bar:
            self.equity.append((bar, equity))
        self.emit({"type": "cycle", "status": status, "equity": equity, "time": bar,
                   "seconds": round(seconds, 6)})


def _reloadable(components) -> list:
    """The components whose options a reload may change: guards and the exit manager."""
    return [*components.guards, components.exit_manager]


def trade_dict(t) -> dict[str, Any]:
    return {"id": t.id, "symbol": t.symbol, "side": int(t.side), "opened_at": t.opened_at, "closed_at": t.closed_at,
            "entry_price": t.entry_price, "exit_price": t.exit_price, "quantity": t.quantity, "pnl": t.pnl,
            "fees": t.fees, "funding": t.funding, "exit_reason": t.exit_reason, "entry_reason": t.entry_reason,
            "entries_planned": t.entries_planned, "entries_filled": t.entries_filled,
            "confidence": t.confidence, "hedge": t.hedge}


def guard_locks(guards, now_ns: int) -> dict[str, dict[str, dict[str, Any]]]:
    """Each guard's own locks still in force at ``now_ns`` (bar time), by guard name, for the guards
    implementing :class:`~mlcoord.protocols.ExposesLocks` (never by plugin name)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for b in guards:
        if isinstance(b.obj, ExposesLocks):
            found = {pair: {"until_ns": int(until), "why": str(why)}
                     for pair, (until, why) in b.obj.locks().items() if int(until) > now_ns}
            if found:
                out[b.name] = found
    return out


def build_snapshot(trader, channel: ControlChannel, *, status: str, seconds: float, killed: bool, now: float,
                   extra: dict) -> dict[str, Any]:
    """What the API shows of a running session, as plain data."""
    engine = trader.engine
    ledger, loop = engine.ledger, engine.loop
    positions = []
    for book, hedge in ((ledger.positions, False), (ledger.hedges, True)):
        for sym, p in book.items():
            price = ledger.prices.get(sym, p.entry_price)
            levels = None if hedge else loop.levels.get(sym)
            positions.append({
                "symbol": sym, "side": int(p.side), "hedge": hedge, "quantity": p.quantity,
                "entry_price": p.entry_price, "price": price, "plan_id": p.plan_id,
                "unrealised_pnl": (price - p.entry_price) * p.quantity * int(p.side),
                "entries_filled": p.entries_filled, "entries_planned": p.entries_planned,
                "stop": None if levels is None else levels.stop,
                "take_profit": None if levels is None else levels.take_profit,
                "opened_at": p.opened_at})
    entries = [{"symbol": s, "side": side, "quantity": q, "price": price}
               for s, side, q, price in loop.venue.working_entries()]
    errors = dict(getattr(loop.pipeline.errors, "counts", {}) or {})
    return {"running": True, "status": status, "paused": channel.paused, "stopped": channel.stopped,
            "kill_switch": killed, "last_cycle_wall": now, "last_cycle_seconds": seconds,
            "last_bar_ns": int(trader.last_time), "equity": float(ledger.equity), "cash": float(ledger.cash),
            "exposure": float(ledger.gross_exposure()), "positions": positions, "working_entries": entries,
            "trades": len(ledger.trades), "symbols": list(trader.order),
            "locks": {s: u for s, u in channel.locks.items()},
            "guard_locks": guard_locks(loop.pipeline.components.guards, int(trader.last_time)),
            "component_failures": {str(k): int(v) for k, v in errors.items()}, **extra}
