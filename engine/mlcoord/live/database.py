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

import hashlib
import json
import os
import socket
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Union

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import StaticPool

from mlcoord.errors import StoreError, StoreLocked

__all__ = ["StoreError", "StoreLocked", "BUSY_TIMEOUT_MS", "database_url", "create_engine_for", "write_transaction",
           "WriteScope", "StoreLock", "lock_store"]

BUSY_TIMEOUT_MS = 30_000


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
            prepare_sqlite_file(Path(database).expanduser())
        kwargs = {"poolclass": StaticPool} if memory else {}
        engine = create_engine(parsed, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000}, **kwargs)
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if backend == "postgresql":
        return create_engine(parsed, pool_pre_ping=True)
    raise StoreError(f"unsupported database {parsed.render_as_string(hide_password=True)!r}: "
                     "use sqlite:///path.db or postgresql+psycopg://user:password@host/dbname")


def prepare_sqlite_file(path: Path) -> None:
    """Check a SQLite store's path before SQLite sees it (its own errors name no file), and create
    a new store file private to its owner (0600: it holds the account's orders and positions;
    SQLite gives its WAL files the database file's mode). A missing folder is an error, not
    created: a mistyped path would otherwise start a bot on an empty store, knowing no stop."""
    if path.is_dir():
        raise StoreError(f"store {path} is a directory, not a SQLite database file: "
                         f"name a file, e.g. {path / 'mlcoord-live.db'}")
    if not path.parent.is_dir():
        raise StoreError(f"store {path}: its folder {path.parent} does not exist (create it, or fix the store path)")
    if path.exists():
        if not os.access(path, os.R_OK | os.W_OK):
            raise StoreError(f"store {path} is read-only (mode {path.stat().st_mode & 0o777:o}): the bot writes "
                             "every order there before sending it; give its user read and write access")
    elif path.is_symlink():
        raise StoreError(f"store {path} is a symbolic link to a missing file")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise StoreError(f"store {path}: its folder {path.parent} is read-only (SQLite writes its WAL files "
                         "next to the database)")
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    except OSError as exc:
        raise StoreError(f"store {path} cannot be created: {exc.strerror}") from None


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


# -- one bot per store ----------------------------------------------------------------------------

class StoreLock:
    """Held by the one bot process that may write a store, until :meth:`release` or the process
    ends (a kill -9 included: the OS drops an ``flock``, PostgreSQL a dead session's locks).
    Readers (``mlcoord status``, reports) never take it."""

    def __init__(self, where: str, release: Optional[Callable[[], None]] = None):
        self.where = where
        self._release = release

    def release(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()


def lock_store(url: URL) -> StoreLock:
    """Take the store's lock for this process or raise :class:`~mlcoord.errors.StoreLocked`
    naming the holder (pid, host, since). SQLite: an exclusive ``flock`` on ``<database>.lock``
    (which records the holder); PostgreSQL: a session-level ``pg_try_advisory_lock`` held by a
    connection of its own (its ``application_name`` records the holder). An in-memory SQLite
    store is this process's alone: nothing to lock."""
    backend = url.get_backend_name()
    if backend == "sqlite":
        database = url.database
        if database in (None, "", ":memory:"):
            return StoreLock(":memory:")
        return _lock_sqlite(Path(database).expanduser())
    if backend == "postgresql":
        return _lock_postgresql(url)
    raise StoreError(f"cannot lock store {url.render_as_string(hide_password=True)!r}: unsupported database")


def _holder() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "since": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}


def _in_use(where: str, holder: str) -> StoreLocked:
    return StoreLocked(f"store {where} is in use by another bot ({holder}): one bot per store; stop that one "
                       "first, or give this bot its own [live] store")


def _lock_sqlite(database: Path) -> StoreLock:
    import fcntl

    path = database.with_name(database.name + ".lock")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise StoreError(f"store {database}: cannot open its lock file {path}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            found = json.loads(os.pread(fd, 4096, 0) or b"{}")
            holder = f"pid {found['pid']} on {found['host']} since {found['since']}"
        except (ValueError, KeyError, TypeError):
            holder = f"a process that has not written {path} yet"
        finally:
            os.close(fd)
        raise _in_use(str(database), holder) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(_holder(), sort_keys=True).encode(), 0)

    def release() -> None:
        os.ftruncate(fd, 0)
        os.close(fd)            # closing the last descriptor drops the lock; the file stays (no race)

    return StoreLock(str(database), release)


def _lock_postgresql(url: URL) -> StoreLock:
    from sqlalchemy import text
    from sqlalchemy.pool import NullPool

    where = url.render_as_string(hide_password=True)
    # one store per database: the key names the database (advisory locks are per database anyway)
    key = int.from_bytes(hashlib.blake2b(f"mlcoord store {url.database}".encode(), digest_size=8).digest(),
                         "big", signed=True)
    me = _holder()
    engine = create_engine(url, poolclass=NullPool)
    conn = engine.connect()
    try:
        conn.execute(text("SELECT set_config('application_name', :name, false)"),
                     {"name": f"mlcoord bot pid {me['pid']} on {me['host']}"[:63]})
        got = conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar()
        holder = None if got else conn.execute(text(
            "SELECT a.application_name, a.backend_start FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
            "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND l.classid::bigint = :hi AND l.objid::bigint = :lo"),
            {"hi": (key >> 32) & 0xFFFFFFFF, "lo": key & 0xFFFFFFFF}).first()
        conn.commit()             # the lock is the session's: no transaction stays open meanwhile
    except BaseException:
        conn.close()
        engine.dispose()
        raise
    if not got:
        conn.close()
        engine.dispose()
        if holder is None:
            raise _in_use(where, "a session this user cannot see")
        name, since = holder
        text_since = since.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if since else "?"
        who = name.removeprefix("mlcoord bot ") if name else "a session without a name"
        raise _in_use(where, f"{who} since {text_since}")

    def release() -> None:
        try:
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
            conn.commit()
        finally:
            conn.close()
            engine.dispose()

    return StoreLock(where, release)
