"""One bot per store (issue 14): two bot processes on one store once both traded and cancelled
each other's orders. A bot's store is opened ``exclusive``: SQLite holds an OS lock on
``<store>.lock`` (dies with the process, even on kill -9), PostgreSQL a session advisory lock on a
connection of its own. Readers (``status``, reports) never take it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner

from conftest_pg import postgres_database, postgres_server  # noqa: F401  (fixtures)
from mlcoord.errors import StoreError, StoreLocked
from mlcoord.live.store import Store

ENGINE_PATH = os.pathsep.join(p for p in sys.path if p)

HOLDER = textwrap.dedent("""
    import sys
    from mlcoord.errors import StoreLocked
    from mlcoord.live.store import Store
    try:
        store = Store.open(sys.argv[1], exclusive=True)
    except StoreLocked as exc:
        print(exc, file=sys.stderr)
        sys.exit(3)
    print("locked", flush=True)
    sys.stdin.read()          # held until stdin closes or the process is killed
    store.close()
""")


def _holder(url: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, url], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": ENGINE_PATH})
    assert proc.stdout is not None and proc.stderr is not None
    for line in proc.stdout:                 # blocks until the lock is held (log lines come first)
        if line.strip() == "locked":
            return proc
    proc.kill()
    raise AssertionError(f"the first bot did not take the lock: {proc.stderr.read()}")


def test_a_second_bot_process_is_refused_naming_the_first_and_a_kill_9_frees_the_store(tmp_path):
    url = str(tmp_path / "live.db")
    first = _holder(url)
    try:
        second = subprocess.run([sys.executable, "-c", HOLDER, url], stdin=subprocess.DEVNULL, capture_output=True,
                                text=True, timeout=120, env={**os.environ, "PYTHONPATH": ENGINE_PATH})
        assert second.returncode == 3, second.stderr
        message = second.stderr.strip()
        assert url in message and f"pid {first.pid}" in message and socket.gethostname() in message
        assert "since" in message and len(message.splitlines()) == 1
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    with Store.open(url, exclusive=True) as store:       # the OS dropped the dead process's lock
        assert store.schema_version() > 0


def test_in_one_process_a_second_exclusive_open_is_refused_until_the_first_closes(tmp_path):
    url = f"sqlite:///{tmp_path / 'live.db'}"
    first = Store.open(url, exclusive=True)
    with pytest.raises(StoreLocked, match=f"pid {os.getpid()}"):
        Store.open(url, exclusive=True)
    with Store.open(url) as reader:                      # readers never take the lock
        assert reader.active_plans() == []
    first.close()
    Store.open(url, exclusive=True).close()


def test_the_lock_file_sits_next_to_the_database_and_is_private(tmp_path):
    with Store.open(tmp_path / "live.db", exclusive=True):
        lock = tmp_path / "live.db.lock"
        assert lock.exists() and (lock.stat().st_mode & 0o777) == 0o600
        assert f'"pid": {os.getpid()}' in lock.read_text()


def test_an_in_memory_store_has_nothing_to_lock():
    with Store.open("sqlite://", exclusive=True), Store.open("sqlite://", exclusive=True):
        pass


def test_status_works_while_a_bot_holds_the_store(tmp_path):
    """Read-only commands never take the lock: ``status`` runs next to the bot."""
    from mlcoord.cli import main

    config = tmp_path / "bot.toml"
    config.write_text('[live]\nstore = "live.db"\nheartbeat = "beat.json"\nkill_switch = "STOP"\n')
    with Store.open(tmp_path / "live.db", exclusive=True):
        out = CliRunner().invoke(main, ["status", "--config", str(config)])
    assert out.exit_code == 1 and "no heartbeat yet" in out.output and "in use" not in out.output


def test_run_live_refuses_a_store_another_bot_holds_before_touching_the_exchange(tmp_path):
    """``mlcoord live`` opens its store exclusive: the second bot stops before any request."""
    from mlcoord.config import Settings
    from mlcoord.live.runner import LiveLoopOptions
    from mlcoord.live.session import run_live
    from mlcoord.registry import load_plugins

    class Untouchable:
        def __getattr__(self, name):
            raise AssertionError(f"the exchange was used ({name}) although the store is taken")

    options = LiveLoopOptions(store=str(tmp_path / "live.db"))
    with Store.open(options.store, exclusive=True):
        with pytest.raises(StoreLocked, match="another bot"):
            run_live(Settings(), options, Untouchable(), load_plugins(), cycles=1)


def test_postgresql_second_bot_is_refused_naming_the_first(postgres_database):  # noqa: F811
    first = Store.open(postgres_database, exclusive=True)
    try:
        with pytest.raises(StoreLocked) as caught:
            Store.open(postgres_database, exclusive=True)
        message = str(caught.value)
        assert f"pid {os.getpid()}" in message and socket.gethostname()[:20] in message and "since" in message
        assert "postgres@127.0.0.1" in message and "password" not in message
        with Store.open(postgres_database) as reader:     # readers never take the lock
            assert reader.active_plans() == []
    finally:
        first.close()
    Store.open(postgres_database, exclusive=True).close()


def test_store_locked_is_a_store_error():
    assert issubclass(StoreLocked, StoreError)
