"""Files mlcoord writes (issue 15): a mistyped ``--state`` or ``--json`` never replaces a file of
another kind (``--state precious_result.json`` once replaced a 118 KB backtest result with 6.5 KB
of learning state, exit 0); results and state are written atomically; every file mlcoord creates
(results, state, heartbeat, kill switch, the live store) is private to its owner (0600)."""

from __future__ import annotations

import json
import os
import stat

import pytest
from click.testing import CliRunner

from mlcoord.cli import main

RUN = ["backtest", "--timerange", "20240101-20240115", "--disable", "lstm,attention,mtf,rl_selector,bayes",
       "--no-progress", "--trades", "0"]


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture(scope="module")
def result_file(tmp_path_factory):
    """One real backtest result (and the learning state of the same run)."""
    folder = tmp_path_factory.mktemp("run")
    out = CliRunner().invoke(main, [*RUN, "--json", str(folder / "result.json"), "--state", str(folder / "state.json")])
    assert out.exit_code == 0, out.output
    return folder / "result.json"


def test_state_never_replaces_a_backtest_result(result_file, tmp_path):
    precious = tmp_path / "precious_result.json"
    precious.write_bytes(result_file.read_bytes())
    out = CliRunner().invoke(main, [*RUN, "--state", str(precious)])
    assert out.exit_code == 2, out.output
    assert f"learning state file {precious} exists and is not a learning state (saved by --state): refusing to " \
           "replace it" in out.output
    assert precious.read_bytes() == result_file.read_bytes()


def test_force_replaces_a_file_that_is_not_a_state(result_file, tmp_path):
    target = tmp_path / "x.json"
    target.write_text("not json at all")
    out = CliRunner().invoke(main, [*RUN, "--state", str(target), "--force"])
    assert out.exit_code == 0, out.output
    state = json.loads(target.read_text())
    assert {"version", "components", "trained_until"} <= set(state)


def test_json_never_replaces_a_data_file_and_replaces_an_older_result(result_file, tmp_path):
    candles = tmp_path / "candles.csv"
    candles.write_text("time,open,high,low,close,volume\n")
    out = CliRunner().invoke(main, [*RUN, "--json", str(candles)])
    assert out.exit_code == 2 and "--json " + str(candles) + " exists and is not a backtest result" in out.output
    assert candles.read_text() == "time,open,high,low,close,volume\n"
    older = tmp_path / "older.json"
    older.write_bytes(result_file.read_bytes())
    older.chmod(0o644)                                  # shared on purpose: a replaced file keeps its mode
    out = CliRunner().invoke(main, [*RUN, "--timerange", "20240101-20240108", "--json", str(older)])
    assert out.exit_code == 0, out.output
    assert json.loads(older.read_text())["mlcoord_result"] and _mode(older) == 0o644
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []    # no temporary file left


def test_a_directory_is_never_an_output_file(tmp_path):
    out = CliRunner().invoke(main, [*RUN, "--state", str(tmp_path)])
    assert out.exit_code == 2 and f"learning state file {tmp_path} is a directory: name a file" in out.output


def test_evaluate_json_never_replaces_another_kind_of_file(tmp_path):
    target = tmp_path / "notes.json"
    target.write_text('{"mine": 1}')
    out = CliRunner().invoke(main, ["evaluate", "--json", str(target), "--windows", "1"])
    assert out.exit_code == 2 and "exists and is not an evaluation result" in out.output
    assert target.read_text() == '{"mine": 1}'


def test_result_and_state_files_are_created_private(result_file):
    assert _mode(result_file) == 0o600
    assert _mode(result_file.with_name("state.json")) == 0o600


def test_heartbeat_and_kill_switch_are_created_private(tmp_path):
    from mlcoord.live.supervisor import LiveOptions, Supervisor

    sup = Supervisor(LiveOptions(heartbeat=str(tmp_path / "beat.json"), kill_switch=str(tmp_path / "STOP")))
    sup.beat(wall_time=1.0, bar_time=None, status="ok")
    sup.engage("test", wall_time=1.0)
    assert _mode(tmp_path / "beat.json") == 0o600 and _mode(tmp_path / "STOP") == 0o600


def test_the_live_store_and_its_journal_files_are_created_private(tmp_path):
    """The SQLite store holds the order journal; SQLite gives its WAL and shared-memory files the
    database file's mode."""
    from mlcoord.live.store import Store

    store = Store.open(str(tmp_path / "bot.db"))
    try:
        store.flush()
        files = [p for p in tmp_path.iterdir() if p.name.startswith("bot.db")]
        assert {p.name for p in files} >= {"bot.db", "bot.db-wal"}
        assert all(_mode(p) == 0o600 for p in files), {p.name: oct(_mode(p)) for p in files}
    finally:
        store.close()


def test_write_atomic_leaves_the_old_file_when_writing_fails(tmp_path):
    from mlcoord.files import write_atomic

    path = tmp_path / "r.json"
    write_atomic(path, "old")

    with pytest.raises(TypeError):
        write_atomic(path, 3)                                           # type: ignore[arg-type]
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["r.json"]
