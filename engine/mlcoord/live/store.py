"""The persistence store: orders, fills, positions, plans, decisions and plugin state.

Every write is a database transaction that is committed (and on SQLite fsynced, see
:mod:`mlcoord.live.database`) before the method returns: once a call returns, the write survives
``kill -9`` and a restart. Every write is idempotent on a natural key, so a retry after a crash or
a timeout never duplicates anything:

* orders by client order id (:func:`mlcoord.live.ids.client_order_id`), a later report merging
  into the stored one without ever moving it backwards (a stale "open" after "filled" is ignored);
* fills by exchange trade id, else (client order id, sequence); recording a fill also updates its
  order's filled quantity and the position, in the same transaction, so the three never disagree;
* plans by plan id, decisions by (symbol, bar time), plugin state by component name;
* a paper session's summary by session id, its closed trades and fills by (session id, sequence).

``with store.transaction():`` groups several writes into one commit (nested: a savepoint).
The one exception to "committed before the method returns": inside ``store.deferring()`` (the
live trader's manage) the broker's merge of an exchange's answer commits with the next write,
the next exchange request or the scope's end (:class:`~mlcoord.live.database.WriteScope`); an
order's journal is still committed before it is sent.
"""

from __future__ import annotations

import errno
import os
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence, Union

import attrs
import structlog
from sqlalchemy import Connection, Engine, bindparam, case, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from mlcoord.errors import StoreFailure
from mlcoord.model import Decision, Fill, Side, Trade
from mlcoord.live import rows
from mlcoord.live.database import StoreError, StoreLock, WriteScope, create_engine_for, database_url, lock_store
from mlcoord.live.migrations import LATEST, current_version, upgrade
from mlcoord.live.positions import CLOSED_TOLERANCE, apply_fill
from mlcoord.live.records import (
    LIVE_STATES,
    STOP_TAGS,
    FillRecord,
    OrderRecord,
    OrderState,
    PlanRecord,
    PlanStatus,
    PositionRecord,
)
from mlcoord.live.schema import (
    component_state,
    decisions,
    fills,
    orders,
    paper_fills,
    paper_sessions,
    paper_trades,
    plans,
    positions,
)

log = structlog.get_logger("mlcoord.store")

_FILLED_TOLERANCE = 1e-9   # filled >= quantity * (1 - this) counts as fully filled


class OrderConflict(StoreError, ValueError):
    """A write that contradicts what is stored under the same key (a bug, never a retry)."""


class UnknownOrder(StoreError, LookupError):
    """A fill for an order the store has never seen: upsert the order first."""


def _close(engine: Engine, lock: Optional[StoreLock]) -> None:
    engine.dispose()
    if lock is not None:
        lock.release()


def _cannot_open(url: URL, exc: DBAPIError) -> str:
    """One line naming the store and what its driver said (a SQLite file that is not one says so)."""
    reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
    if url.get_backend_name() == "sqlite":
        where = url.database
        if "not a database" in reason or "malformed" in reason:
            return f"store {where} is not a SQLite database (or is damaged): {reason}; move it aside or fix [live] store"
        return f"store {where} cannot be opened: {reason}"
    return f"store {url.render_as_string(hide_password=True)} cannot be opened: {reason}"


def _os_reason(exc: BaseException) -> str:
    """What the OS or the database said, in one line (``No space left on device (ENOSPC)``)."""
    if isinstance(exc, DBAPIError):
        orig = exc.orig if exc.orig is not None else exc
        if isinstance(orig, OSError):
            return _os_reason(orig)
        return (str(orig).strip().splitlines() or [type(orig).__name__])[0]
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"{exc.strerror or os.strerror(exc.errno)} ({errno.errorcode.get(exc.errno, exc.errno)})"
    return f"{type(exc).__name__}: {exc}"


class Store:
    """Durable, idempotent state of a paper or live trading run. Build with :meth:`open`.

    A store that fails while in use (a write or commit refused: disk full, a file removed or made
    read-only, a database gone) raises :class:`~mlcoord.errors.StoreFailure`, one line naming the
    store and the OS or database error. Every order is journaled (committed) before it is sent,
    so an order whose journal failed never went out; the bot stops there (the CLI prints the line),
    and a restart once the store is fixed recognises every journaled order by its client id."""

    def __init__(self, engine: Engine, clock: Callable[[], int] = time.time_ns, lock: Optional[StoreLock] = None):
        self.engine = engine
        self.clock = clock
        self.lock = lock         # held while the store is open (exclusive), released by close()
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        self._scope = WriteScope(engine)
        self._sql = _Prepared(self._insert)
        self.writes = 0          # write blocks begun or ended: what was read before may have changed
        #: ORDER BY on text gives Python's string order (SQLite's BINARY collation; PostgreSQL's
        #: depends on the database's locale)
        self.text_sorts_as_python = engine.dialect.name == "sqlite"
        #: called with each order written new or changed (the writer's thread, after the write):
        #: a running bot's API turns them into order events
        self.order_listeners: list[Callable[[OrderRecord], None]] = []

    @classmethod
    def open(cls, url: Union[str, os.PathLike, URL], *, clock: Callable[[], int] = time.time_ns,
             exclusive: bool = False) -> "Store":
        """Open (and create or upgrade) the database at ``url``: a path or ``sqlite:///path.db``
        (the default backend), or ``postgresql+psycopg://user:password@host:port/dbname``.

        ``exclusive`` (a trading bot): take the store's lock first and hold it until :meth:`close`
        (:func:`~mlcoord.live.database.lock_store`), so a second bot on the same store stops
        before it reads or writes anything. Readers open without it. A store that cannot be
        opened (missing folder, read-only, not a database, server down) raises a StoreError
        naming it."""
        parsed = url if isinstance(url, URL) else database_url(url)
        engine = create_engine_for(parsed)
        lock = None
        try:
            lock = lock_store(parsed) if exclusive else None
            applied = upgrade(engine, clock=clock)
        except DBAPIError as exc:
            _close(engine, lock)
            raise StoreError(_cannot_open(parsed, exc)) from None
        except BaseException:
            _close(engine, lock)
            raise
        log.info("store_opened", url=engine.url.render_as_string(hide_password=True), schema=LATEST,
                 migrated=applied, exclusive=exclusive)
        return cls(engine, clock, lock)

    def close(self) -> None:
        try:
            with self._guarded("commit"):
                self._scope.flush()
            self.engine.dispose()
        finally:
            if self.lock is not None:
                self.lock.release()

    @property
    def where(self) -> str:
        """The store as one absolute name, for logs and error messages: a SQLite file's resolved
        path, else the database URL without its password."""
        from pathlib import Path

        url = self.engine.url
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            return str(Path(url.database).expanduser().resolve())
        return url.render_as_string(hide_password=True)

    def never_used(self) -> bool:
        """Whether the store has never held a plan or an order (two one-row reads, whatever its size)."""
        with self.engine.connect() as conn:
            return all(conn.execute(select(key).limit(1)).first() is None
                       for key in (plans.c.plan_id, orders.c.client_order_id))

    @contextmanager
    def _guarded(self, what: str) -> Iterator[None]:
        """The database's or the OS's error in ``what`` as a :class:`StoreFailure` naming the store."""
        try:
            yield
        except (DBAPIError, OSError) as exc:
            raise self._failure(exc, what) from exc

    def _failure(self, exc: BaseException, what: str) -> StoreFailure:
        return StoreFailure(f"store {self.where}: {what} failed: {_os_reason(exc)}. No order is sent unless "
                            "journaled there first, so the bot stops; the stops already placed stay on the "
                            "exchange. Fix the store (free disk space, restore the file or the database) and "
                            "restart: the journaled orders are recognised by their client ids, none is sent twice")

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def schema_version(self) -> int:
        with self._read() as conn:
            return current_version(conn)

    # -- transactions -------------------------------------------------------------------------

    @contextmanager
    def transaction(self, *, deferrable: bool = False) -> Iterator["Store"]:
        """Group writes: all of them are committed together when the block ends, or none if it
        raises. Nested blocks are savepoints. The transaction belongs to the calling thread.
        ``deferrable``: inside :meth:`deferring`, committed with the next write instead."""
        self.writes += 1
        try:
            with self._own_errors(self._scope.write(deferrable=deferrable)):
                yield self
        finally:
            self.writes += 1       # committed or rolled back: reads made inside may be gone

    @contextmanager
    def deferring(self) -> Iterator[None]:
        """A scope in which ``transaction(deferrable=True)`` blocks commit with the next write, at
        :meth:`flush` or when the scope ends (:class:`~mlcoord.live.database.WriteScope`)."""
        with self._own_errors(self._scope.deferring()):
            yield

    @contextmanager
    def _own_errors(self, scope) -> Iterator[None]:
        """Inside ``scope`` (a write block, a deferring scope): a failure of its commit or rollback
        is the store's (:class:`StoreFailure`); what the caller's block raises passes as it is."""
        raised: Optional[BaseException] = None
        try:
            with scope:
                try:
                    yield
                except BaseException as exc:
                    raised = exc
                    raise
        except (DBAPIError, OSError) as exc:
            if exc is raised:
                raise
            raise self._failure(exc, "commit") from exc

    def flush(self) -> None:
        """Commit what a deferrable block left open (before an exchange request)."""
        with self._guarded("commit"):
            self._scope.flush()

    @contextmanager
    def _write(self, deferrable: bool = False) -> Iterator[Connection]:
        """The current transaction (inside a savepoint, so a failed call undoes only itself), or a
        new one committed when the block ends (with what a deferrable block left open)."""
        self.writes += 1
        try:
            with self._guarded("write"), self._scope.write(deferrable=deferrable) as conn:
                yield conn
        finally:
            self.writes += 1

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        conn = self._scope.conn
        with self._guarded("read"):
            if conn is not None:
                yield conn
                return
            with self.engine.connect() as conn:
                yield conn

    # -- orders -------------------------------------------------------------------------------

    def journal_order(self, record: OrderRecord) -> Optional[OrderRecord]:
        """Write a new order (before it is sent); returns None once it is written, or the order
        stored under its client id, left as it is. One INSERT for a new order (no read first);
        an order already stored costs the INSERT attempt and a read, in one transaction."""
        with self._write() as conn:
            if conn.execute(self._sql.new_order, rows.order_values(record)).first() is None:
                return rows.order_record(conn.execute(_ORDER_LOCKED, {"cid": record.client_order_id}).mappings().one())
        self._order_changed(record)
        return None

    def _order_changed(self, record: OrderRecord) -> None:
        for listener in self.order_listeners:
            listener(record)

    def merge_order(self, stored: OrderRecord, report: OrderRecord) -> OrderRecord:
        """:meth:`upsert_order` of ``report`` into ``stored``, the order as this transaction read it
        (``order(..., for_update=True)`` inside ``with store.transaction():``): one UPDATE if the
        report changes anything, no INSERT attempt and no second read of a row known to exist."""
        conn = self._scope.conn
        if conn is None:
            raise StoreError("merge_order needs the transaction that read the stored order")
        merged = _merge_order(stored, report)
        if merged != stored:
            self.writes += 1
            with self._guarded("write"):
                conn.execute(_UPDATE_ORDER, _keyed(rows.order_values(merged)))
            self._order_changed(merged)
        return merged

    def upsert_order(self, record: OrderRecord) -> OrderRecord:
        """Insert the order, or merge this report into the stored one; returns what is stored.

        Writing the same client order id again never adds a row. The merge never moves an order
        backwards: its state only advances (a terminal state is final, except that the exchange
        may still report FILLED after the bot thought it cancelled), the filled quantity never
        shrinks, and price / quantity may change only while the order is live (an amendment).
        Identity fields (symbol, side, kind, tag, reduce-only, hedge, creation time, plan,
        exchange id once known) must match: a mismatch raises :class:`OrderConflict`.
        """
        with self._write() as conn:
            if conn.execute(self._sql.new_order, rows.order_values(record)).first() is not None:
                merged = stored = None
            else:
                row = conn.execute(_ORDER_LOCKED, {"cid": record.client_order_id}).mappings().one()
                stored = rows.order_record(row)
                merged = _merge_order(stored, record)
                if merged != stored:
                    conn.execute(_UPDATE_ORDER, _keyed(rows.order_values(merged)))
        if merged is None:
            self._order_changed(record)
            return record
        if merged != stored:
            self._order_changed(merged)
        return merged

    def order(self, client_order_id: str, *, for_update: bool = False) -> Optional[OrderRecord]:
        """The stored order; ``for_update``: locked until the current transaction ends (PostgreSQL;
        a SQLite write transaction holds the whole database)."""
        with self._read() as conn:
            row = conn.execute(_ORDER_LOCKED if for_update else _ORDER, {"cid": client_order_id}).mappings().first()
        return None if row is None else rows.order_record(row)

    def filled_nets(self) -> dict[str, float]:
        """Each plan's filled quantity, entries less reduce-only orders (one grouped read)."""
        signed = case((orders.c.reduce_only.is_(True), -orders.c.filled_quantity), else_=orders.c.filled_quantity)
        with self._guarded("read"), self.engine.connect() as conn:
            rows_ = conn.execute(select(orders.c.plan_id, func.sum(signed)).where(orders.c.plan_id.is_not(None))
                                 .group_by(orders.c.plan_id)).all()
        return {plan_id: float(net or 0.0) for plan_id, net in rows_}

    def orders(self, plan_id: Optional[str] = None) -> list[OrderRecord]:
        """Every stored order (or a plan's), oldest first."""
        with self._read() as conn:
            if plan_id is not None:
                found = conn.execute(_PLAN_ORDERS, {"plan_id": plan_id}).mappings().all()
            else:
                found = conn.execute(select(orders).order_by(orders.c.created_at, orders.c.client_order_id)
                                     ).mappings().all()
        return [rows.order_record(r) for r in found]

    def open_orders(self, symbol: Optional[str] = None) -> list[OrderRecord]:
        """Orders not yet in a terminal state, oldest first. PENDING ones were journaled but maybe
        never reached the exchange: reconciliation asks the exchange about each by client id."""
        query = select(orders).where(orders.c.state.in_([s.value for s in LIVE_STATES]))
        if symbol is not None:
            query = query.where(orders.c.symbol == symbol)
        with self._read() as conn:
            found = conn.execute(query.order_by(orders.c.created_at, orders.c.client_order_id)).mappings().all()
        return [rows.order_record(r) for r in found]

    # -- fills and positions ------------------------------------------------------------------

    def record_fill(self, record: FillRecord) -> bool:
        """Record a fill once; returns False (and changes nothing) if its key is already stored.

        In the same transaction, the order's filled quantity and average price become those of
        its fills (or stay at what the exchange reported, if higher), it becomes FILLED or
        PARTIALLY_FILLED, and the position of (symbol, side, hedge) absorbs the fill.
        """
        fill = record.fill
        now = self.clock()
        with self._write() as conn:
            row = conn.execute(_ORDER_LOCKED, {"cid": fill.order_id}).mappings().first()
            if row is None:
                raise UnknownOrder(f"fill {record.key!r} belongs to order {fill.order_id!r}, which is not in "
                                   "the store: upsert the order before its fills")
            order = rows.order_record(row)
            _check_fill_matches(record, order)
            values = rows.fill_values(record, now)
            if conn.execute(self._sql.new_fill, values).first() is None:
                _check_same_fill(conn, record)
                return False
            self._refresh_order(conn, order, now)
            self._apply_to_position(conn, record, order.plan_id, now)
        return True

    def _refresh_order(self, conn: Connection, order: OrderRecord, now: int) -> None:
        quantity, notional = conn.execute(_FILLED, {"cid": order.client_order_id}).one()
        filled, average = order.filled_quantity, order.average_price
        if quantity >= filled:
            filled, average = quantity, notional / quantity
        state = order.state
        if filled >= order.order.quantity * (1 - _FILLED_TOLERANCE):
            state = OrderState.FILLED
        elif filled > 0 and state in (OrderState.PENDING, OrderState.OPEN):
            state = OrderState.PARTIALLY_FILLED
        conn.execute(_UPDATE_ORDER, {"key": order.client_order_id, "filled_quantity": filled,
                                     "average_price": average, "state": state.value,
                                     "updated_at": max(now, order.updated_at)})

    def _apply_to_position(self, conn: Connection, record: FillRecord, plan_id: Optional[str], now: int) -> None:
        fill = record.fill
        key = {"k_symbol": fill.symbol, "k_side": int(fill.side), "k_hedge": bool(fill.hedge)}
        row = conn.execute(_POSITION_LOCKED, key).mappings().first()
        before = None if row is None else rows.position_record(row)
        after, unapplied = apply_fill(before, fill, plan_id, now)
        if unapplied > 0:
            log.warning("fill_exceeds_position", fill=record.key, symbol=fill.symbol, side=fill.side.name,
                        hedge=fill.hedge, unapplied=unapplied,
                        position=0.0 if before is None else before.quantity)
        if after is None:
            if before is not None:
                conn.execute(_DELETE_POSITION, key)
        elif before is None:
            conn.execute(_INSERT_POSITION, rows.position_values(after))
        else:
            conn.execute(_UPDATE_POSITION, {**key, **rows.position_values(after)})

    def fills(self, client_order_id: Optional[str] = None) -> list[FillRecord]:
        with self._read() as conn:
            if client_order_id is not None:
                found = conn.execute(_ORDER_FILLS, {"cid": client_order_id}).mappings().all()
            else:
                found = conn.execute(select(fills).order_by(*_FILL_ORDER)).mappings().all()
        return [rows.fill_record(r) for r in found]

    def positions(self) -> list[PositionRecord]:
        """Open positions, by symbol, side and hedge flag."""
        with self._read() as conn:
            found = conn.execute(select(positions).where(positions.c.quantity > 0)
                                 .order_by(positions.c.symbol, positions.c.side, positions.c.hedge)).mappings().all()
        return [rows.position_record(r) for r in found]

    def mark_position(self, symbol: str, side: Side, *, hedge: bool = False,
                      liquidation_price: Optional[float] = None, funding: float = 0.0) -> bool:
        """Set the exchange's liquidation price (when given) and add a funding payment (paid > 0)
        to an open position. Returns False if there is no such position."""
        key = _position_key(symbol, side, hedge)
        values = {"funding": positions.c.funding + funding, "updated_at": self.clock()}
        if liquidation_price is not None:
            values["liquidation_price"] = liquidation_price
        with self._write() as conn:
            return bool(conn.execute(update(positions).where(*key).values(**values)).rowcount)

    # -- plans --------------------------------------------------------------------------------

    def save_plan(self, plan: PlanRecord, *, deferrable: bool = False) -> None:
        """Store the plan, replacing the stored one with the same id (a moved stop, a new status).
        ``deferrable``: inside :meth:`deferring`, committed with the next write (a new plan with
        its first order's journal: together, before that order is sent)."""
        with self._write(deferrable=deferrable) as conn:
            conn.execute(self._sql.save_plan, rows.plan_values(plan))

    def plan(self, plan_id: str) -> Optional[PlanRecord]:
        with self._read() as conn:
            body = conn.execute(_PLAN, {"plan_id": plan_id}).scalar()
        return None if body is None else rows.plan_record(body)

    def plans(self) -> list[PlanRecord]:
        """Every stored plan, whatever its status, in decision order."""
        with self._read() as conn:
            bodies = conn.execute(select(plans.c.body).order_by(plans.c.decision_time, plans.c.plan_id)).scalars().all()
        return [rows.plan_record(b) for b in bodies]

    def active_plans(self) -> list[PlanRecord]:
        with self._read() as conn:
            bodies = conn.execute(select(plans.c.body).where(plans.c.status == PlanStatus.ACTIVE.value)
                                  .order_by(plans.c.decision_time, plans.c.plan_id)).scalars().all()
        return [rows.plan_record(b) for b in bodies]

    def plans_without_stop(self) -> list[PlanRecord]:
        """Active plans with an open position (entry fills minus exit fills of the plan's orders,
        hedge leg excluded) and no live stop order on the exchange: each needs one before any new
        entry. Plans whose stop the bot monitors (``stop_on_exchange=False``) are protected by
        the stored plan itself. Only OPEN / PARTIALLY_FILLED stop orders count: resolve PENDING
        ones with the exchange first (one may never have been sent)."""
        signed = case((fills.c.reduce_only.is_(True), -fills.c.quantity), else_=fills.c.quantity)
        entered = case((fills.c.reduce_only.is_(True), 0.0), else_=fills.c.quantity)
        held = (select(orders.c.plan_id, func.sum(signed).label("net"), func.sum(entered).label("entered"))
                .join(fills, fills.c.client_order_id == orders.c.client_order_id)
                .where(orders.c.plan_id.is_not(None), fills.c.hedge.is_(False))
                .group_by(orders.c.plan_id).subquery())
        protected = select(orders.c.plan_id).where(
            orders.c.plan_id.is_not(None), orders.c.tag.in_(STOP_TAGS),
            orders.c.state.in_([OrderState.OPEN.value, OrderState.PARTIALLY_FILLED.value]))
        query = (select(plans.c.body, held.c.net, held.c.entered)
                 .join(held, held.c.plan_id == plans.c.plan_id)
                 .where(plans.c.status == PlanStatus.ACTIVE.value, plans.c.stop_on_exchange.is_(True),
                        plans.c.plan_id.not_in(protected))
                 .order_by(plans.c.decision_time, plans.c.plan_id))
        with self._read() as conn:
            found = conn.execute(query).all()
        return [rows.plan_record(body) for body, net, total in found if net > CLOSED_TOLERANCE * total]

    # -- plugin state and decisions -----------------------------------------------------------

    def save_state(self, component: str, state: Mapping[str, Any]) -> None:
        """Store a component's learning state (JSON-able; numpy values become lists and numbers)."""
        if not isinstance(state, Mapping):
            raise TypeError(f"state of {component!r} must be a mapping, got {type(state).__name__}")
        values = {"component": component, "body": rows.dumps(dict(state)), "updated_at": self.clock()}
        with self._write() as conn:
            conn.execute(self._insert(component_state).values(**values).on_conflict_do_update(
                index_elements=["component"], set_={"body": values["body"], "updated_at": values["updated_at"]}))

    def load_state(self, component: str) -> Optional[dict[str, Any]]:
        """The state last saved for ``component``, or None."""
        with self._read() as conn:
            body = conn.execute(select(component_state.c.body)
                                .where(component_state.c.component == component)).scalar()
        return None if body is None else rows.loads(body)

    def load_raw_state(self, component: str) -> Optional[str]:
        """The saved text of ``component``'s state as stored, parsed or not (to set aside a row
        that is not JSON)."""
        with self._read() as conn:
            return conn.execute(select(component_state.c.body)
                                .where(component_state.c.component == component)).scalar()

    def record_decision(self, decision: Union[Mapping[str, Any], Decision]) -> bool:
        """Store one journal entry (``mlcoord.journal.decision_to_dict`` output, or a Decision).
        Keyed by (symbol, time): replaying a bar after a restart stores it once; returns False then."""
        if isinstance(decision, Decision):
            from mlcoord.journal import decision_to_dict   # imports pandas: only when needed
            d = decision_to_dict(decision)
        else:
            d = dict(decision)
        try:
            symbol, bar_time = str(d["symbol"]), str(d["time"])
        except KeyError as exc:
            raise ValueError(f"a decision needs 'symbol' and 'time', missing {exc}") from None
        values = {"symbol": symbol, "time": bar_time, "outcome": str(d.get("outcome", "")),
                  "body": rows.dumps(d), "recorded_at": self.clock()}
        with self._write() as conn:
            return _inserted(conn, self._insert(decisions).values(**values), "symbol", "time")

    def decision(self, symbol: str, bar_time_ns: int) -> Optional[dict[str, Any]]:
        """The stored decision of ``symbol`` at the bar ``bar_time_ns`` (None if none was stored)."""
        from mlcoord.times import iso

        with self._read() as conn:
            body = conn.execute(select(decisions.c.body).where(
                decisions.c.symbol == symbol, decisions.c.time == iso(int(bar_time_ns)))).scalar()
        return None if body is None else rows.loads(body)

    def decisions(self, symbol: Optional[str] = None) -> list[dict[str, Any]]:
        """Stored decisions in the order they were recorded."""
        query = select(decisions.c.body)
        if symbol is not None:
            query = query.where(decisions.c.symbol == symbol)
        with self._read() as conn:
            bodies = conn.execute(query.order_by(decisions.c.id)).scalars().all()
        return [rows.loads(b) for b in bodies]


    # -- paper sessions (simulated fills; the live account's tables are never touched) -------------

    def save_paper_run(self, session_id: str, summary: Mapping[str, Any], trades: Sequence[Trade] = (),
                       fills: Sequence[Fill] = ()) -> None:
        """One commit: the session's ``summary`` (``status``, ``bars``, ``trades``, ``pnl``,
        ``equity``, ``started_at`` and anything JSON-able) replaces the stored one; ``trades`` and
        ``fills`` are the session's whole lists so far: the ones not stored yet (by position in
        the list) are added, so saving after every cycle and once more at the end stores each once."""
        now = self.clock()
        values = {"session_id": session_id, "started_at": int(summary.get("started_at", now)), "updated_at": now,
                  "status": str(summary.get("status", "")), "bars": int(summary.get("bars", 0)),
                  "trades": int(summary.get("trades", len(trades))), "pnl": float(summary.get("pnl", 0.0)),
                  "equity": float(summary.get("equity", 0.0)), "body": rows.dumps(dict(summary))}
        with self._write() as conn:
            conn.execute(self._insert(paper_sessions).values(**values).on_conflict_do_update(
                index_elements=["session_id"], set_={k: v for k, v in values.items() if k != "session_id"}))
            n = self._paper_stored(conn, paper_trades, session_id)
            self._add_paper(conn, paper_trades, session_id, n, [_paper_trade_row(t) for t in trades[n:]])
            n = self._paper_stored(conn, paper_fills, session_id)
            self._add_paper(conn, paper_fills, session_id, n, [_paper_fill_row(f) for f in fills[n:]])

    def _add_paper(self, conn: Connection, table, session_id: str, first: int, new: list[dict[str, Any]]) -> None:
        if new:
            conn.execute(self._insert(table).on_conflict_do_nothing(index_elements=["session_id", "sequence"]),
                         [dict(r, session_id=session_id, sequence=first + k) for k, r in enumerate(new)])

    @staticmethod
    def _paper_stored(conn: Connection, table, session_id: str) -> int:
        """How many rows of ``table`` the session has stored (the next row's sequence): the
        largest sequence + 1, one lookup in the (session_id, sequence) key, where a count would
        read every row the session stored, every cycle (sequences are 0, 1, 2, ... by
        construction: :meth:`_add_paper`)."""
        return int(conn.execute(select(func.coalesce(func.max(table.c.sequence) + 1, 0))
                                .where(table.c.session_id == session_id)).scalar() or 0)

    def paper_sessions(self) -> list[dict[str, Any]]:
        """Every paper session's summary, oldest first (``session_id`` and ``updated_at`` added)."""
        with self._read() as conn:
            found = conn.execute(select(paper_sessions.c.session_id, paper_sessions.c.updated_at,
                                        paper_sessions.c.body)
                                 .order_by(paper_sessions.c.started_at, paper_sessions.c.session_id)).all()
        return [dict(rows.loads(body), session_id=sid, updated_at=at) for sid, at, body in found]

    def paper_trades(self, session_id: str) -> list[Trade]:
        """The session's closed trades, in the order they closed."""
        with self._read() as conn:
            bodies = conn.execute(select(paper_trades.c.body).where(paper_trades.c.session_id == session_id)
                                  .order_by(paper_trades.c.sequence)).scalars().all()
        return [Trade(**{**row, "side": Side(row["side"])}) for row in map(rows.loads, bodies)]

    def paper_fills(self, session_id: str) -> list[Fill]:
        """The session's (simulated) fills, in order."""
        with self._read() as conn:
            found = conn.execute(select(paper_fills).where(paper_fills.c.session_id == session_id)
                                 .order_by(paper_fills.c.sequence)).mappings().all()
        return [Fill(order_id=r["order_id"], symbol=r["symbol"], side=Side(r["side"]), time=r["time"],
                     price=r["price"], quantity=r["quantity"], fee=r["fee"], reduce_only=bool(r["reduce_only"]),
                     tag=r["tag"], hedge=bool(r["hedge"])) for r in found]


def _paper_trade_row(t: Trade) -> dict[str, Any]:
    body = attrs.asdict(t)
    body["side"] = int(t.side)
    return {"trade_id": str(t.id)[:64], "symbol": t.symbol, "side": int(t.side), "opened_at": int(t.opened_at),
            "closed_at": int(t.closed_at), "entry_price": float(t.entry_price), "exit_price": float(t.exit_price),
            "quantity": float(t.quantity), "pnl": float(t.pnl), "fees": float(t.fees), "funding": float(t.funding),
            "exit_reason": str(t.exit_reason), "hedge": bool(t.hedge), "body": rows.dumps(body)}


def _paper_fill_row(f: Fill) -> dict[str, Any]:
    return {"order_id": str(f.order_id)[:64], "symbol": f.symbol, "side": int(f.side), "time": int(f.time),
            "price": float(f.price), "quantity": float(f.quantity), "fee": float(f.fee),
            "reduce_only": bool(f.reduce_only), "tag": str(f.tag)[:64], "hedge": bool(f.hedge)}


# The order and fill path's statements, built once: SQLAlchemy then reuses their compiled form and
# cache key, where building one (``.values(**row)``) cost more than running it on SQLite.
# Parameters are passed at execution: an UPDATE sets the columns it is given.
_ORDER = select(orders).where(orders.c.client_order_id == bindparam("cid"))
_ORDER_LOCKED = _ORDER.with_for_update()
_UPDATE_ORDER = update(orders).where(orders.c.client_order_id == bindparam("key"))
_PLAN_ORDERS = select(orders).where(orders.c.plan_id == bindparam("plan_id")).order_by(
    orders.c.created_at, orders.c.client_order_id)
_FILL_ORDER = (fills.c.recorded_at, fills.c.time, fills.c.fill_key)
_ORDER_FILLS = select(fills).where(fills.c.client_order_id == bindparam("cid")).order_by(*_FILL_ORDER)
_PLAN = select(plans.c.body).where(plans.c.plan_id == bindparam("plan_id"))
_FILLED = select(func.sum(fills.c.quantity), func.sum(fills.c.quantity * fills.c.price)).where(
    fills.c.client_order_id == bindparam("cid"))
_POSITION_KEY = (positions.c.symbol == bindparam("k_symbol"), positions.c.side == bindparam("k_side"),
                 positions.c.hedge == bindparam("k_hedge"))
_POSITION_LOCKED = select(positions).where(*_POSITION_KEY).with_for_update()
_INSERT_POSITION = positions.insert()
_UPDATE_POSITION = update(positions).where(*_POSITION_KEY)
_DELETE_POSITION = delete(positions).where(*_POSITION_KEY)


class _Prepared:
    """The statements whose SQL depends on the backend (its INSERT ... ON CONFLICT)."""

    def __init__(self, insert):
        self.new_order = insert(orders).on_conflict_do_nothing(
            index_elements=["client_order_id"]).returning(orders.c.client_order_id)
        self.new_fill = insert(fills).on_conflict_do_nothing(index_elements=["fill_key"]).returning(fills.c.fill_key)
        plan = insert(plans)
        self.save_plan = plan.on_conflict_do_update(
            index_elements=["plan_id"], set_={c.name: plan.excluded[c.name] for c in plans.c if c.name != "plan_id"})


def _keyed(values: dict[str, Any]) -> dict[str, Any]:
    """An order's row as the parameters of ``_UPDATE_ORDER`` (its key as ``key``, not a column to set)."""
    values = dict(values)
    values["key"] = values.pop("client_order_id")
    return values


def _inserted(conn: Connection, insert, *key: str) -> bool:
    """Run ``INSERT ... ON CONFLICT (key) DO NOTHING``; True if a row was added. (RETURNING, because
    psycopg reports no row count for it.)"""
    table = insert.table
    stmt = insert.on_conflict_do_nothing(index_elements=list(key)).returning(table.c[key[0]])
    return conn.execute(stmt).first() is not None


def _position_key(symbol: str, side: Side, hedge: bool):
    return (positions.c.symbol == symbol, positions.c.side == int(side), positions.c.hedge == bool(hedge))


_IDENTITY = ("symbol", "side", "kind", "reduce_only", "tag", "hedge", "created_at")


def _merge_order(stored: OrderRecord, report: OrderRecord) -> OrderRecord:
    old, new = stored.order, report.order
    for name in _IDENTITY:
        if getattr(old, name) != getattr(new, name):
            raise OrderConflict(f"order {old.id!r}: {name} is {getattr(old, name)!r} in the store, "
                                f"{getattr(new, name)!r} in the new write; a client id names one order only")
    for name in ("plan_id", "exchange_order_id"):
        a, b = getattr(stored, name), getattr(report, name)
        if a is not None and b is not None and a != b:
            raise OrderConflict(f"order {old.id!r}: {name} is {a!r} in the store, {b!r} in the new write")
    order = old
    if not stored.state.terminal:
        order = attrs.evolve(old, quantity=new.quantity, price=new.price, expires_at=new.expires_at)
    advances = (report.state.rank >= stored.state.rank) if not stored.state.terminal \
        else report.state is OrderState.FILLED
    filled, average = stored.filled_quantity, stored.average_price
    if report.filled_quantity > filled or (report.filled_quantity == filled and report.average_price is not None):
        filled, average = report.filled_quantity, report.average_price
    return OrderRecord(order=order, plan_id=stored.plan_id or report.plan_id,
                       state=report.state if advances else stored.state, filled_quantity=filled,
                       average_price=average, exchange_order_id=stored.exchange_order_id or report.exchange_order_id,
                       updated_at=max(stored.updated_at, report.updated_at), reason=report.reason or stored.reason)


def _check_fill_matches(record: FillRecord, order: OrderRecord) -> None:
    f, o = record.fill, order.order
    if (f.symbol, f.side, f.reduce_only, f.hedge) != (o.symbol, o.side, o.reduce_only, o.hedge):
        raise OrderConflict(f"fill {record.key!r} ({f.symbol} {f.side.name} reduce_only={f.reduce_only} "
                            f"hedge={f.hedge}) does not match its order {o.id!r} ({o.symbol} {o.side.name} "
                            f"reduce_only={o.reduce_only} hedge={o.hedge})")


def _check_same_fill(conn: Connection, record: FillRecord) -> None:
    stored = rows.fill_record(conn.execute(select(fills).where(fills.c.fill_key == record.key)).mappings().one())
    if stored != record:
        raise OrderConflict(f"fill key {record.key!r} is stored with different content: {stored!r} vs {record!r}")
