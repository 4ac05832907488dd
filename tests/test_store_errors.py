"""Store problems end in one clear line naming the path (a :class:`mlcoord.errors.StoreError`,
printed by the CLI as ``error: ...``), never a traceback; a new SQLite store is private (0600):
it holds the account's orders, fills and positions."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from mlcoord.errors import StoreError
from mlcoord.live.store import Store

def _import_roots() -> list[str]:
    """This process's import path, plus the folders holding mlcoord and its plugins: an editable
    install finds them through a path hook that another interpreter does not run."""
    import mlcoord
    import mlcoord_technical

    roots = [str(Path(m.__file__).resolve().parents[1]) for m in (mlcoord, mlcoord_technical)]
    return roots + [os.path.abspath(p) for p in sys.path if p]


ENGINE_PATH = os.pathsep.join(_import_roots())
NOBODY = 65534

# `mlcoord live` as a user runs it, up to its store: the exchange is a stand-in that fails on use
DRIVER = textwrap.dedent("""
    import sys
    import mlcoord.live.exchange as exchange

    class Untouchable:
        def __getattr__(self, name):
            raise AssertionError("the exchange was used before the store opened")

    exchange.create_exchange = lambda *args, **kwargs: Untouchable()
    from mlcoord.cli import main
    main(["live", "--config", sys.argv[1], "--i-understand-this-is-real-money", "--cycles", "1"])
""")


def _live(folder: Path, store: str, *, user=None, python=sys.executable) -> subprocess.CompletedProcess:
    config = folder / "bot.toml"
    config.write_text(f'[live]\nstore = "{store}"\n')
    env = {**os.environ, "PYTHONPATH": ENGINE_PATH, "MLCOORD_API_KEY": "k", "MLCOORD_API_SECRET": "s",
           "HOME": str(folder), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([python, "-c", DRIVER, str(config)], capture_output=True, text=True,
                          timeout=180, env=env, cwd=folder, user=user)


def _python_for_nobody() -> str:
    """An interpreter of this version that ``nobody`` may run (this one may live under /root),
    with this environment's packages on ENGINE_PATH."""
    import shutil

    name = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (os.path.realpath(sys.executable), shutil.which(name, path="/usr/local/bin:/usr/bin")):
        if candidate and all(os.stat(p).st_mode & 0o005 == 0o005 for p in _parents(candidate)):
            return candidate
    pytest.skip(f"running as root, and no {name} that the nobody user can run")


def _parents(path: str) -> list[str]:
    parts = Path(path).parents
    return [path] + [str(p) for p in parts]


def _one_error_line(done: subprocess.CompletedProcess, *needles: str) -> str:
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, done.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


@pytest.fixture
def shared_dir():
    """A folder another user can enter (pytest's tmp_path is private to its owner)."""
    folder = Path(tempfile.mkdtemp(prefix="mlcoord-store-"))
    folder.chmod(0o777)
    yield folder
    subprocess.run(["rm", "-rf", str(folder)], check=False)


def test_a_new_sqlite_store_and_its_wal_files_are_private(tmp_path):
    old = os.umask(0o022)
    try:
        with Store.open(tmp_path / "live.db"):          # migrated: the WAL and its index exist
            made = [p for p in tmp_path.iterdir() if p.name.startswith("live.db")]
            assert {p.name for p in made} >= {"live.db", "live.db-wal", "live.db-shm"}
            for path in made:
                assert (path.stat().st_mode & 0o777) == 0o600, path
    finally:
        os.umask(old)


def test_a_directory_where_the_store_should_be(tmp_path):
    (tmp_path / "live.db").mkdir()
    with pytest.raises(StoreError, match=f"store {tmp_path / 'live.db'} is a directory"):
        Store.open(tmp_path / "live.db")
    _one_error_line(_live(tmp_path, "live.db"), str(tmp_path / "live.db"), "is a directory")


def test_a_missing_parent_directory_is_not_created_silently(tmp_path):
    """A mistyped folder would otherwise start a bot on an empty store: no plans, no stops known."""
    where = tmp_path / "no-such-folder" / "live.db"
    with pytest.raises(StoreError, match="does not exist"):
        Store.open(where)
    assert not where.parent.exists()
    _one_error_line(_live(tmp_path, "no-such-folder/live.db"), str(where), str(where.parent), "does not exist")


def test_a_corrupt_sqlite_file(tmp_path):
    (tmp_path / "live.db").write_bytes(b"this is not a database\x00\xff" * 200)
    with pytest.raises(StoreError, match="not a SQLite database"):
        Store.open(tmp_path / "live.db")
    _one_error_line(_live(tmp_path, "live.db"), str(tmp_path / "live.db"), "not a SQLite database")


def test_a_read_only_store_file(shared_dir):
    """As root every file is writable, so the bot runs as ``nobody`` there."""
    Store.open(shared_dir / "live.db").close()
    for p in shared_dir.iterdir():
        if p.name.startswith("live.db"):
            p.chmod(0o444)
    if os.geteuid() == 0:
        done = _live(shared_dir, "live.db", user=NOBODY, python=_python_for_nobody())
    else:
        done = _live(shared_dir, "live.db")
    _one_error_line(done, str(shared_dir / "live.db"), "read-only")


def test_an_unreachable_postgresql_server(tmp_path):
    url = "postgresql://bot:hunter2@127.0.0.1:1/mlcoord"        # nothing listens on port 1
    with pytest.raises(StoreError, match="cannot be opened: .*Connection refused"):
        Store.open(url, exclusive=True)
    line = _one_error_line(_live(tmp_path, url), "store postgresql+psycopg://bot:***@127.0.0.1:1/mlcoord",
                           "Connection refused")
    assert "hunter2" not in line
