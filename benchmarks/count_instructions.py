"""Instructions the whole technical ``mlcoord backtest`` process executes, counted by valgrind's
callgrind: the same count whatever else the machine runs (wall clock moved +-10 % and more on this
shared machine, hiding changes of a few percent). Prints numbers; asserts nothing.

Usage: python benchmarks/count_instructions.py [--data PATH] [--python PYTHON] [--json]

Runs ``PYTHON -m mlcoord.cli backtest --data PATH --no-progress`` once uncounted (so every module
is compiled to bytecode, as a user's second run finds it), then once under callgrind, with the
ML plugins disabled as ``bench_backtest.py``'s technical pipeline. ``PYTHON`` should be a venv
where mlcoord is installed as a user installs it (``pip install .``): the development venv's
``import-linter`` makes structlog import ``rich``. Default data: the last 50,000 rows of nic
BTC/USDT 1h (freqtrade's anchor's candles), written to a temporary CSV.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data" / "nic-tradingstrategyga" / "BTC_USDT-1h.feather"
ML = ("bayes", "lstm", "attention", "mtf", "rl_selector")


def last_rows_csv(source: Path, rows: int, folder: Path) -> Path:
    import pandas as pd

    frame = pd.read_feather(source).tail(rows)
    path = folder / "nic50k.csv"
    frame.to_csv(path, index=False)
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, help="candle file (default: the last 50,000 nic BTC/USDT 1h rows)")
    parser.add_argument("--python", default=sys.executable, help="the interpreter of a user-installed venv")
    parser.add_argument("--json", action="store_true", help="also write the result (--json), as the anchor's "
                                                             "second figure")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["MLCOORD_DISABLE"] = ",".join(ML)
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or last_rows_csv(SHARED, 50_000, Path(tmp))
        command = [args.python, "-m", "mlcoord.cli", "backtest", "--data", str(data), "--no-progress"]
        if args.json:
            command += ["--json", str(Path(tmp) / "result.json"), "--force"]
        subprocess.run(command, env=env, capture_output=True, check=True)
        counted = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *command],
                                 env=env, capture_output=True, text=True, check=True)
    refs = re.search(r"I\s+refs:\s+([\d,]+)", counted.stderr)
    if refs is None:
        raise SystemExit(f"no instruction count in valgrind's output:\n{counted.stderr[-2000:]}")
    print(f"{' '.join(command[1:])}: {int(refs.group(1).replace(',', '')):,} instructions")


if __name__ == "__main__":
    main()
