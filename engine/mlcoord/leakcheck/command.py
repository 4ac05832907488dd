"""What ``mlcoord check lookahead`` / ``mlcoord check recursive`` do once their options are read:
settings, plugins and candles exactly as ``mlcoord backtest`` loads them, the check, the summary,
the JSON report. Returns the exit code (0 clean, 1 found); bad input raises a ConfigError (2)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from mlcoord.backtest.run import disabled_plugins, load_market
from mlcoord.config import load_settings
from mlcoord.leakcheck.lookahead import check_lookahead
from mlcoord.leakcheck.recursive import check_recursive
from mlcoord.leakcheck.report import write_json
from mlcoord.registry import load_plugins


def _load(config_path: Optional[Path], data: dict[str, Any], disable: Sequence[str]):
    settings = load_settings(config_path, {"data": data} if data else None)
    return settings, load_plugins(disabled_plugins(settings, disable))


def run_lookahead(config_path: Optional[Path], data: dict[str, Any], disable: Sequence[str], *, samples: int,
                  seed: int, json_path: Optional[Path], echo: Callable[[str], None]) -> int:
    settings, plugins = _load(config_path, data, disable)
    report = check_lookahead(settings, plugins, load_market(settings), samples=samples, seed=seed)
    echo(report.render())
    if json_path:
        write_json(report.to_json(), json_path)
        echo(f"report written to {json_path}")
    return report.exit_code


def run_recursive(config_path: Optional[Path], data: dict[str, Any], disable: Sequence[str], *,
                  warmups: Sequence[int], window: int, tolerance: float, json_path: Optional[Path],
                  echo: Callable[[str], None]) -> int:
    settings, plugins = _load(config_path, data, disable)
    report = check_recursive(settings, plugins, load_market(settings, cut_start=False), warmups=warmups,
                             window=window, tolerance=tolerance)
    echo(report.render())
    if json_path:
        write_json(report.to_json(), json_path)
        echo(f"report written to {json_path}")
    return report.exit_code
