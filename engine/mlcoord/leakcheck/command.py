"""What ``mlcoord check lookahead`` / ``mlcoord check recursive`` do once their options are read:
plugins and candles exactly as ``mlcoord backtest`` loads them, the check, the summary, the JSON
report. Returns the exit code (0 clean, 1 found); bad input raises a ConfigError (exit code 2).
Options left out (None) take the checks' defaults, which live in their modules only."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence

from mlcoord.backtest.run import configured_plugins, disabled_plugins, load_market
from mlcoord.config import Settings
from mlcoord.errors import ConfigError
from mlcoord.leakcheck import lookahead, recursive
from mlcoord.leakcheck.report import write_json


def parse_warmups(text: Optional[str]) -> tuple[int, ...]:
    """``"100,200,500"`` -> (100, 200, 500); a part that is not a whole number is an error naming it."""
    if text is None:
        return recursive.DEFAULT_WARMUPS
    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part.isdigit():
            raise ConfigError(f"--warmups {text!r}: {part!r} is not a whole number of bars "
                              f"(expected e.g. 100,200,500,1000)")
        out.append(int(part))
    return tuple(out)


def _finish(report, json_path: Optional[Path], echo: Callable[[str], None]) -> int:
    echo(report.render())
    if json_path:
        write_json(report.to_json(), json_path)
        echo(f"report written to {json_path}")
    return int(report.exit_code)


def run_lookahead(settings: Settings, disable: Sequence[str], *, samples: Optional[int] = None, seed: int = 0,
                  json_path: Optional[Path] = None, echo: Callable[[str], None] = print) -> int:
    samples = lookahead.MIN_SAMPLES if samples is None else samples
    lookahead.check_options(samples, seed)
    plugins = configured_plugins(settings, disabled_plugins(settings, disable))
    report = lookahead.check_lookahead(settings, plugins, load_market(settings), samples=samples, seed=seed)
    return _finish(report, json_path, echo)


def run_recursive(settings: Settings, disable: Sequence[str], *, warmups: Optional[str] = None,
                  window: Optional[int] = None, tolerance: Optional[float] = None,
                  json_path: Optional[Path] = None, echo: Callable[[str], None] = print) -> int:
    sizes = parse_warmups(warmups)
    window = recursive.DEFAULT_WINDOW if window is None else window
    tolerance = recursive.DEFAULT_TOLERANCE if tolerance is None else tolerance
    recursive.check_options(sizes, window, tolerance)
    plugins = configured_plugins(settings, disabled_plugins(settings, disable))
    report = recursive.check_recursive(settings, plugins, load_market(settings, cut_start=False), warmups=sizes,
                                       window=window, tolerance=tolerance)
    return _finish(report, json_path, echo)
