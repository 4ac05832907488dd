"""HTML reports of backtest and walk-forward results: one self-contained file that opens offline.

``write_report(result, path)`` takes a result as written by ``mlcoord backtest --json`` (or
``mlcoord evaluate --json``) and needs nothing else: candles, fills, the stop paths and every
decision are in the file. ``write_comparison(a, b, path)`` puts two backtest results side by side.
Charts are plotly (plotly.js is inlined once, ~4.8 MB); long series are thinned for the browser.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Union

from mlcoord.errors import ConfigError

Result = Mapping[str, Any]


def load_result(path: Union[str, Path]) -> dict[str, Any]:
    """A result file, with a clear error when it is not one."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"result file {path} does not exist") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path} is not a result file (invalid JSON: {exc})") from None
    kind_of(data, path)
    return data


def kind_of(result: Result, where: Any = "result") -> str:
    """``"backtest"`` or ``"evaluation"``."""
    if isinstance(result, Mapping) and result.get("mlcoord_result"):
        return "backtest"
    if isinstance(result, Mapping) and "scores" in result and "trading" in result:
        return "evaluation"
    raise ConfigError(f"{where} is neither a backtest result (mlcoord backtest --json) nor an evaluation "
                      "result (mlcoord evaluate --json)")


def build_report(result: Result, title: str = "") -> str:
    """The HTML text of the report of one result (backtest or evaluation)."""
    if kind_of(result) == "backtest":
        from mlcoord.report.backtest_page import build
    else:
        from mlcoord.report.evaluation_page import build
    return build(dict(result), title)


def refuse_overwrite(path: Union[str, Path], overwrite: bool) -> None:
    """A ConfigError when ``path`` exists and may not be replaced (the CLI's ``--force``)."""
    if not overwrite and Path(path).exists():
        raise ConfigError(f"{path} already exists; pass --force to overwrite it, or choose another file")


def write_report(result: Result, path: Union[str, Path], title: str = "", *, overwrite: bool = True) -> Path:
    refuse_overwrite(path, overwrite)
    return _write(Path(path), build_report(result, title))


def write_comparison(a: Result, b: Result, path: Union[str, Path], names: tuple[str, str] = ("A", "B"), *,
                     overwrite: bool = True) -> Path:
    """Two backtest results side by side: statistics compared, equity and drawdown overlaid."""
    from mlcoord.report.compare_page import build

    refuse_overwrite(path, overwrite)
    for name, r in zip(names, (a, b)):
        if kind_of(r, name) != "backtest":
            raise ConfigError(f"{name}: only backtest results can be compared (got an evaluation result)")
    return _write(Path(path), build(dict(a), dict(b), names))


def _write(path: Path, text: str) -> Path:
    from mlcoord.files import write_atomic

    write_atomic(path, text)
    return path


__all__ = ["build_report", "kind_of", "load_result", "refuse_overwrite", "write_comparison", "write_report"]
