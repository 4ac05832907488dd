"""The console script's exit (``mlcoord.cli.run``): a backtest ends without the interpreter's
teardown, but never without its exit handlers, its output, its exit code or a running thread."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from mlcoord import cli

FAST = ["--timerange", "20240101-20240201", "--no-progress", "--disable", "bayes,lstm,attention,mtf,rl_selector"]


def _script(argv: list[str], before: str = "") -> subprocess.CompletedProcess:
    code = textwrap.dedent(f"""
        import atexit, sys, threading
        from mlcoord.cli import run
        atexit.register(lambda: print("exit handler ran", flush=True))
        import os
        _exit = os._exit
        os._exit = lambda code: (print(f"ended without teardown: {{code}}", flush=True), _exit(code))
        {before}
        sys.argv = {["mlcoord", *argv]!r}
        run()
        print("not reached")
    """)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_a_backtest_runs_the_exit_handlers_and_flushes_its_output():
    done = _script(["backtest", *FAST])
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "not reached" not in out
    # the summary (buffered: stdout is a pipe) comes out whole, then the exit handler, then the end
    assert out.rstrip().endswith("exit handler ran\nended without teardown: 0")
    assert "trades" in out.lower() and len(out.splitlines()) > 5


def test_a_failed_backtest_keeps_its_exit_code_and_message(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("time,open,high,low,close,volume\n2024-01-01 00:00,1,2,0.5,nope,1\n")
    done = _script(["backtest", "--data", str(bad), "--no-progress"])
    assert done.returncode == 2
    assert "error:" in done.stderr and "close" in done.stderr
    assert done.stdout.rstrip().endswith("exit handler ran\nended without teardown: 2")


def test_a_running_thread_is_waited_for():
    # alive until the main thread has finished (Python's exit marks it so before joining the
    # others): still running when the command ends, however fast the machine
    thread = ("threading.Thread(target=lambda: (threading.main_thread().join(), print('thread finished', flush=True)))"
              ".start()")
    done = _script(["backtest", *FAST], before=thread)
    assert done.returncode == 0, done.stderr
    assert "thread finished" in done.stdout
    assert "exit handler ran" in done.stdout
    assert "ended without teardown" not in done.stdout     # Python's own exit, which joins threads


def test_other_commands_end_as_python_ends_them(monkeypatch):
    """In-process: ``run`` raises SystemExit (a skipped teardown would end the test process), even
    after a backtest ran in the same process."""
    monkeypatch.setattr(cli, "_one_shot", True)
    monkeypatch.setattr(sys, "argv", ["mlcoord", "--help"])
    with pytest.raises(SystemExit) as ended:
        cli.run()
    assert ended.value.code == 0
    assert cli._one_shot_console is False          # a later in-process command restores the collector
