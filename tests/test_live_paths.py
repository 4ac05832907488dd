"""Paths in a config file resolve against the config file's folder, not the current directory
(issue 14): ``mlcoord kill`` run from another folder once switched on a file the bot never read."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from mlcoord.cli import main
from mlcoord.config import load_settings
from mlcoord.live.runner import load_live_settings
from mlcoord.live.supervisor import Supervisor

CONFIG = """
[engine]
plugins_dir = "my_plugins"
[data]
files = ["candles/btc.csv", "/abs/eth.csv"]
store = "user_data/data"
[learning]
state_file = "state/learning.json"
[live]
kill_switch = "STOP"
heartbeat = "run/beat.json"
store = "run/live.db"
poll_seconds = 60
"""


def _bot(tmp_path, text=CONFIG) -> Path:
    folder = tmp_path / "bot"
    (folder / "my_plugins").mkdir(parents=True)
    (folder / "run").mkdir()
    config = folder / "config.toml"
    config.write_text(text)
    return config


def test_every_path_key_resolves_against_the_config_folder(tmp_path, monkeypatch):
    config = _bot(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    settings, options = load_live_settings(Path("../bot/config.toml"))
    bot = config.parent
    assert settings.engine.plugins_dir == str(bot / "my_plugins")
    assert settings.data.files == (str(bot / "candles/btc.csv"), "/abs/eth.csv")
    assert settings.data.store == str(bot / "user_data/data")
    assert settings.learning.state_file == str(bot / "state/learning.json")
    assert options.kill_switch == str(bot / "STOP")
    assert options.heartbeat == str(bot / "run/beat.json")
    assert options.store == str(bot / "run/live.db")


def test_command_line_overrides_stay_relative_to_the_current_directory(tmp_path, monkeypatch):
    """What the user types is relative to where they type it; only the file's values move."""
    config = _bot(tmp_path)
    monkeypatch.chdir(tmp_path)
    settings = load_settings(config, {"learning": {"state_file": "mine.json"}})
    assert settings.learning.state_file == "mine.json"


@pytest.mark.parametrize("given, expected", [
    ("sqlite:///rel/live.db", "sqlite:///{bot}/rel/live.db"),
    ("sqlite:////abs/live.db", "sqlite:////abs/live.db"),
    ("sqlite://", "sqlite://"),
    ("sqlite:///:memory:", "sqlite:///:memory:"),
    (":memory:", ":memory:"),
    ("postgresql+psycopg://bot:pw@db:5432/live", "postgresql+psycopg://bot:pw@db:5432/live"),
    ("/abs/live.db", "/abs/live.db"),
])
def test_store_urls_are_left_alone_but_a_relative_sqlite_path(tmp_path, given, expected):
    config = _bot(tmp_path, f'[live]\nstore = "{given}"\n')
    _, options = load_live_settings(config)
    assert options.store == expected.format(bot=config.parent)


def test_kill_and_status_from_another_folder_see_the_bots_files(tmp_path, monkeypatch):
    """The bot (its Supervisor, built from the config as the bot's start does) runs in one folder;
    ``kill`` and ``status`` run from two others with a relative --config: all three use one file
    each, and both commands print its absolute path."""
    config = _bot(tmp_path)
    bot = config.parent
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
    monkeypatch.chdir(tmp_path / "a")
    _, options = load_live_settings(Path("../bot/config.toml"))
    supervisor = Supervisor(options)
    supervisor.beat(wall_time=time.time(), bar_time=None, status="ok")     # fresh (a beat from the future is not)
    assert (bot / "run/beat.json").exists()

    runner = CliRunner()
    monkeypatch.chdir(tmp_path / "b")
    out = runner.invoke(main, ["kill", "--config", "../bot/config.toml", "--reason", "test"])
    assert out.exit_code == 0, out.output
    assert f"kill switch {bot / 'STOP'}: on" in out.output
    assert (bot / "STOP").exists() and not (tmp_path / "b/STOP").exists()
    monkeypatch.chdir(tmp_path / "a")
    assert supervisor.killed()

    monkeypatch.chdir(tmp_path / "c")
    out = runner.invoke(main, ["status", "--config", "../bot/config.toml"])
    assert "no heartbeat yet" not in out.output
    assert f"kill switch {bot / 'STOP'}: on" in out.output
    assert str(bot / "run/beat.json") in out.output
    out = runner.invoke(main, ["kill", "--config", "../bot/config.toml", "--off"])
    assert out.exit_code == 0 and f"kill switch {bot / 'STOP'}: removed" in out.output
    monkeypatch.chdir(tmp_path / "a")
    assert not supervisor.killed()


def test_kill_and_status_never_load_ccxt(tmp_path):
    """They read and write two files: no exchange is built, ccxt is not even imported (a fresh
    interpreter, so nothing else imported it first)."""
    config = _bot(tmp_path)
    script = textwrap.dedent(f"""
        import sys
        from click.testing import CliRunner
        from mlcoord.cli import main
        runner = CliRunner()
        for args in (["kill"], ["status"], ["kill", "--off"]):
            out = runner.invoke(main, [args[0], "--config", {str(config)!r}, *args[1:]])
            assert out.exception is None or isinstance(out.exception, SystemExit), out.output
        loaded = sorted(m for m in sys.modules if m == "ccxt" or m.startswith("ccxt."))
        print(loaded)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_the_heartbeat_written_names_its_resolved_path_for_status(tmp_path, monkeypatch):
    """``status`` without a beat says where it looked (the absolute path), so a wrong folder shows."""
    config = _bot(tmp_path)
    monkeypatch.chdir(tmp_path)
    out = CliRunner().invoke(main, ["status", "--config", "bot/config.toml"])
    assert out.exit_code == 1
    assert f"no heartbeat yet at {config.parent / 'run/beat.json'}" in out.output
    assert f"kill switch {config.parent / 'STOP'}: off" in out.output


def test_a_wrong_typed_path_value_keeps_its_own_error(tmp_path):
    """Only values of the right type move: ``files = "a.csv"`` is reported as written."""
    from mlcoord.errors import ConfigError

    config = _bot(tmp_path, '[data]\nfiles = "a.csv"\n')
    with pytest.raises(ConfigError, match=r"expected a list, got 'a.csv'"):
        load_settings(config)


def test_the_key_file_is_found_next_to_the_config(tmp_path, monkeypatch):
    from mlcoord.config import load_settings

    folder = tmp_path / "bot"
    folder.mkdir()
    (folder / "c.toml").write_text('[exchange]\nkeys_file = "keys.toml"\n')
    monkeypatch.chdir(tmp_path)
    assert load_settings(folder / "c.toml").exchange.keys_file == str(folder / "keys.toml")
