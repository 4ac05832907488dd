"""A throwaway PostgreSQL server for the tests: Debian's ``postgresql`` package, started on
127.0.0.1 with ``initdb`` + ``pg_ctl`` in a temporary directory, stopped and removed at the end.

Import the fixtures into a test module (``from conftest_pg import postgres_server,
postgres_database``). Tests using them skip only when the server binaries are not installed;
any other failure (initdb, start-up, psycopg missing) is an error, so CI cannot pass by accident.
The server runs with ``fsync=off`` (``-F``): it is thrown away, and the tests kill clients, never
it. PostgreSQL refuses to run as root: as root, the server runs as the ``postgres`` user the Debian
package creates (through ``runuser``).
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator, Optional

import pytest

_counter = itertools.count()


def postgres_bindir() -> Optional[Path]:
    """The directory of ``initdb`` and ``pg_ctl``: ``$MLCOORD_PG_BINDIR``, else the newest
    ``/usr/lib/postgresql/*/bin``, else the PATH."""
    candidates = [os.environ["MLCOORD_PG_BINDIR"]] if os.environ.get("MLCOORD_PG_BINDIR") else []
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_major, reverse=True)
    if shutil.which("initdb"):
        candidates.append(os.path.dirname(shutil.which("initdb")))
    for c in candidates:
        if all(os.access(os.path.join(c, tool), os.X_OK) for tool in ("initdb", "pg_ctl", "postgres")):
            return Path(c)
    return None


def _major(path: str) -> int:
    name = Path(path).parent.name
    return int(name) if name.isdigit() else 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd: list[str], check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """URL (without database name) of a PostgreSQL server running for this test session."""
    bindir = postgres_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not installed (apt-get install -y postgresql)")
    import psycopg  # noqa: F401  (an error, not a skip: the 'postgres' extra must be installed)

    root = Path(tempfile.mkdtemp(prefix="mlcoord-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, logfile = root / "data", root / "server.log"
    _run(as_user + [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                    "--locale=C", "--no-sync"])
    port = None
    try:
        for _ in range(3):   # the free port may be taken between the probe and the start
            port = _free_port()
            started = _run(as_user + [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(logfile), "-w", "-t", "30",
                                      "-o", f"-k {root} -h 127.0.0.1 -p {port} -F", "start"], check=False)
            if started.returncode == 0:
                break
        else:
            raise RuntimeError(f"PostgreSQL did not start:\n{logfile.read_text() if logfile.exists() else ''}")
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    finally:
        _run(as_user + [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], check=False)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_database(postgres_server: str) -> Iterator[str]:
    """URL of an empty database of its own for one test, dropped afterwards."""
    import psycopg

    name = f"mlcoord_{os.getpid()}_{next(_counter)}"
    admin = postgres_server.replace("postgresql+psycopg://", "postgresql://") + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{postgres_server}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
