"""``mlcoord sweep``: the search space, the table, and a study that resumes after its driver dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlcoord.errors import ConfigError

optuna = pytest.importorskip("optuna")

from mlcoord.sweep import apply_params, load_sweep  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SWEEP = """
[sweep]
objective = "sharpe"
trials = {trials}
storage = "sqlite:///{db}"
study = "resume-test"
seed = 1
[sweep.space]
"plugins.exits.atr_stop_multiplier" = {{ float = [1.0, 4.0] }}
"plugins.dca.expire_after_bars" = {{ int = [6, 48] }}
"ensemble.learning_rate" = {{ float = [0.005, 0.1], log = true }}
[executor]
kind = "inline"
[pipeline]
ml_components = ["mtf"]
[data]
symbols = ["BTC/USDT"]
timerange = "20250101-20250215"
"""


def _write(tmp_path: Path, trials: int) -> Path:
    path = tmp_path / "sweep.toml"
    path.write_text(SWEEP.format(trials=trials, db=tmp_path / "study.db"), encoding="utf-8")
    return path


def _complete(tmp_path: Path) -> dict[int, float]:
    try:
        study = optuna.load_study(study_name="resume-test", storage=f"sqlite:///{tmp_path / 'study.db'}")
    except Exception:   # not created yet
        return {}
    return {t.number: t.value for t in study.trials if t.state.name == "COMPLETE"}


def _sweep(config: Path) -> list[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in ("engine", "plugins"))}
    env.pop("MLCOORD_EXECUTOR", None)
    return [sys.executable, "-m", "mlcoord.cli", "sweep", "--config", str(config), "--no-progress"], env


def test_space_and_paths_are_checked(tmp_path):
    spec, settings, raw, executor = load_sweep(_write(tmp_path, 3))
    assert [p.kind for p in spec.space] == ["float", "int", "float"] and spec.space[2].log
    assert executor.kind == "inline" and spec.objective == "sharpe"
    tuned = apply_params(raw, {"ensemble.learning_rate": 0.05, "plugins.exits.atr_stop_multiplier": 3.0})
    assert tuned.ensemble.learning_rate == 0.05 and tuned.plugins["exits"]["atr_stop_multiplier"] == 3.0
    assert "exits" not in raw.get("plugins", {})       # the base config is not changed
    bad = tmp_path / "bad.toml"
    bad.write_text('[sweep]\n[sweep.space]\n"ensemble.learning_rate" = { float = [0.1, 0.01] }\n')
    with pytest.raises(ConfigError, match="low < high"):
        load_sweep(bad)
    bad.write_text('[sweep]\nobjective = "profit"\n[sweep.space]\n"ensemble.learning_rate" = { choices = [0.1] }\n')
    with pytest.raises(ConfigError, match="objective"):
        load_sweep(bad)


def test_sweep_resumes_after_its_driver_is_killed(tmp_path):
    target = 25   # enough trials that the driver cannot finish before the poll sees 3 of them
    config = _write(tmp_path, target)
    cmd, env = _sweep(config)
    driver = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while len(_complete(tmp_path)) < 3 and time.monotonic() < deadline and driver.poll() is None:
            time.sleep(0.2)
    finally:
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=10)
    before = _complete(tmp_path)
    assert 3 <= len(before) < target, "the driver must die mid-sweep"
    out = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "resuming study 'resume-test'" in out.stdout
    after = _complete(tmp_path)
    assert len(after) == target                               # continued to the target, not restarted
    assert all(after[n] == v for n, v in before.items())      # saved results kept
    assert "best:" in out.stdout and "all trials:" in out.stdout and "atr_stop_multiplier" in out.stdout
