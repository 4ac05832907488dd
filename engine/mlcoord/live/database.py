"""Opening a database from a URL, with the durability settings the store relies on.

SQLite (the default) runs in WAL mode with ``synchronous=FULL``:

* WAL lets readers (a status command, a supervisor) read while the bot writes, and a commit is
  one sequential append to the log, not a rewrite of pages.
* ``synchronous=FULL`` fsyncs the log at every commit. WAL's usual ``NORMAL`` already survives a
  killed process, but may lose the last commits on a power cut or kernel panic. An order the
  store acknowledged and then forgot could be placed again after the restart (Binance only
  rejects a reused client id while the first order is still open), so the store pays one fsync
  per commit (~1-3 ms on an SSD) to make every acknowledged order and fill durable. The setting
  is per connection, so it covers decisions and plugin state too; they are a few writes per
  bar, where the cost does not matter. Group writes with ``Store.transaction()`` to pay it once.
* Transactions that write start with ``BEGIN IMMEDIATE``: the write lock is taken up front, so a
  transaction never fails half-way because another connection wrote first; reads use a plain
  ``BEGIN`` and never block the writer.

PostgreSQL (``postgresql+psycopg://user@host/db``) is durable at commit with its defaults
(``fsync=on``, ``synchronous_commit=on``).
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Union

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import StaticPool

from mlcoord.errors import MlcoordError

BUSY_TIMEOUT_MS = 30_000


class StoreError(MlcoordError):
    """The store cannot do what was asked; the message says why."""


def database_url(url: Union[str, os.PathLike]) -> URL:
    """``url`` as a SQLAlchemy URL; a plain path means a SQLite file; ``postgresql://`` uses psycopg 3."""
    text = os.fspath(url)
    if "://" not in text:
        return URL.create("sqlite", database=text)
    parsed = make_url(text)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def create_engine_for(url: Union[str, os.PathLike, URL]) -> Engine:
    """An engine for ``url`` (SQLite or PostgreSQL) with the settings described above."""
    parsed = url if isinstance(url, URL) else database_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database
        memory = database in (None, "", ":memory:")
        if database and not memory:
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        kwargs = {"poolclass": StaticPool} if memory else {}
        engine = create_engine(parsed, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000}, **kwargs)
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if backend == "postgresql":
        return create_engine(parsed, pool_pre_ping=True)
    raise StoreError(f"unsupported database {parsed.render_as_string(hide_password=True)!r}: "
                     "use sqlite:///path.db or postgresql+psycopg://user:password@host/dbname")


def _sqlite_connect(dbapi_connection, connection_record) -> None:
    # the driver's own implicit BEGIN would start transactions late (DML only) and skip DDL;
    # _sqlite_begin issues BEGIN itself
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = FULL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("mlcoord_write") else "BEGIN")


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that will write (on SQLite: ``BEGIN IMMEDIATE``); commits on success."""
    with engine.connect() as conn:
        conn.execution_options(mlcoord_write=True)
        with conn.begin():
            yield conn


class WriteScope:
    """The calling thread's write transaction, for :class:`mlcoord.live.store.Store`.

    A write block (:meth:`write`) opens a transaction committed when the block ends (nested
    blocks are savepoints). Inside :meth:`deferring`, a block opened with ``deferrable=True``
    (the broker's merge of an exchange's answer into an order already journaled) is left open
    instead: it is committed with the next write block (one commit, e.g. with the next order's
    journal), at :meth:`flush` (the broker flushes before every exchange request, so the store
    at each request is what it was without deferring) or when the scope ends. Every commit is
    still a ``synchronous=FULL`` commit; a kill -9 before one loses the answer, which leaves the
    order PENDING: the state a kill between the answer and its own commit always left, resolved
    by the order's client id. A write lock is held meanwhile only while the bot computes.
    """

    def __init__(self, engine: Engine):
        self.engine = engine
        self._local = threading.local()

    @property
    def conn(self) -> Optional[Connection]:
        """The open write transaction's connection (a block's, or a deferred one), if any."""
        return getattr(self._local, "conn", None)

    @contextmanager
    def write(self, *, deferrable: bool = False) -> Iterator[Connection]:
        local = self._local
        conn = self.conn
        if conn is not None and local.depth > 0:           # inside a block: a savepoint
            with conn.begin_nested():
                yield conn
            return
        joined = conn is not None                          # a deferred answer: this block commits it
        if conn is None:
            conn = self.engine.connect()
            conn.execution_options(mlcoord_write=True)
            local.tx, local.conn = conn.begin(), conn
        local.depth = 1
        try:
            if joined:
                with conn.begin_nested():                  # a failure undoes only this block
                    yield conn
            else:
                yield conn
        except BaseException:
            local.depth = 0
            if joined:
                self.flush()
            else:
                self._end(commit=False)
            raise
        local.depth = 0
        deferring: int = getattr(local, "defer", 0)
        if not (deferrable and deferring):
            self.flush()

    @contextmanager
    def deferring(self) -> Iterator[None]:
        """Deferrable blocks within commit with the next write, a :meth:`flush` or the scope's end."""
        local = self._local
        local.defer = getattr(local, "defer", 0) + 1
        try:
            yield
        finally:
            local.defer -= 1
            if local.defer == 0 and getattr(local, "depth", 0) == 0:
                self.flush()

    def flush(self) -> None:
        """Commit a deferred transaction (nothing if there is none, or a block is still open)."""
        if self.conn is not None and self._local.depth == 0:
            self._end(commit=True)

    def _end(self, commit: bool) -> None:
        local = self._local
        conn, tx = local.conn, local.tx
        local.conn = local.tx = None
        try:
            if commit:
                tx.commit()
            else:
                tx.rollback()
        finally:
            conn.close()
