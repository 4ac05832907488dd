"""``make test`` leaves ``make backtest``'s environment untouched (issue 14): the tests install
every extra and the plugin template into their own venv (``TEST_VENV``), and a last step checks
that the backtest venv holds no template."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def _dry_run(target: str, tmp_path: Path) -> list[str]:
    done = subprocess.run(["make", "-n", "-C", str(ROOT), target, f"VENV={tmp_path}/user-venv",
                           f"TEST_VENV={tmp_path}/test-venv"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


@pytest.mark.parametrize("target", ["test", "setup-test", "typecheck"])
def test_test_targets_install_and_run_in_their_own_venv(target, tmp_path):
    lines = _dry_run(target, tmp_path)
    assert any(f"{tmp_path}/test-venv/bin/pip install" in line or "-m venv" in line for line in lines)
    touching = [line for line in lines if f"{tmp_path}/user-venv" in line
                and ".ci/backtest-venv-untouched" not in line]
    assert touching == [], touching


def test_backtest_keeps_its_venv(tmp_path):
    lines = _dry_run("backtest", tmp_path)
    assert any(f"{tmp_path}/user-venv/bin/mlcoord backtest" in line for line in lines)
    assert not any("test-venv" in line for line in lines)


def _fake_venv(folder: Path, packages: str) -> Path:
    """A venv whose python answers ``-m pip list`` with ``packages``."""
    (folder / "bin").mkdir(parents=True)
    python = folder / "bin" / "python"
    python.write_text(f"#!/bin/sh\nprintf '{packages}'\n")
    python.chmod(0o755)
    return folder


def test_the_check_fails_when_the_template_reached_the_backtest_venv(tmp_path):
    check = ROOT / ".ci" / "backtest-venv-untouched"
    clean = _fake_venv(tmp_path / "clean", "mlcoord==0.1.0\\nnumpy==2.0.0\\n")
    dirty = _fake_venv(tmp_path / "dirty", "mlcoord==0.1.0\\nmlcoord-volume-spike==0.1.0\\n")
    env = {**os.environ}
    ok = subprocess.run(["bash", str(check), str(clean)], capture_output=True, text=True, env=env, timeout=30)
    assert ok.returncode == 0 and "untouched" in ok.stdout
    bad = subprocess.run(["bash", str(check), str(dirty)], capture_output=True, text=True, env=env, timeout=30)
    assert bad.returncode == 1 and "plugin template is installed" in bad.stderr
    absent = subprocess.run(["bash", str(check), str(tmp_path / "none")], capture_output=True, text=True, timeout=30)
    assert absent.returncode == 0 and "not present" in absent.stdout
