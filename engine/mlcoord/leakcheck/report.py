"""The checks' reports: typed results, their JSON form (with a schema version) and a terminal summary.

A report says, per component, how much was compared and the first place an output changed, with
both values, so a user can go straight to the bar and the call that leaks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import attrs

from mlcoord.files import write_atomic
from mlcoord.leakcheck.values import plain

#: 1: first version (``check`` is "lookahead" or "recursive")
SCHEMA_VERSION = 1

EXIT_CLEAN, EXIT_FOUND = 0, 1


def _json(report: Any, **extra: Any) -> dict[str, Any]:
    return plain({**attrs.asdict(report, recurse=True), **extra})


def write_json(data: dict[str, Any], path: Path) -> None:
    write_atomic(Path(path), json.dumps(data, indent=1, allow_nan=False) + "\n")


# -- look-ahead ----------------------------------------------------------------------------------
@attrs.frozen
class Difference:
    """The first value that changed when the bars from ``cut`` on were removed."""

    cut: int                    # the truncated run kept bars [0, cut)
    cut_time: str               # time of its last bar
    bar: Optional[int]          # the bar the value belongs to (None: the whole series, e.g. prepare failed)
    time: Optional[str]
    what: str                   # which value: "confidence", "vote", "update(1204) of a LONG opened at 1180", ...
    full: Any                   # the value with every bar (plain JSON data)
    truncated: Any              # the value with the data cut


@attrs.frozen
class ComponentLookahead:
    """One component's (or the combined signal's) result on one symbol."""

    symbol: str
    component: str
    role: str                   # signal source, combined signal, ML component, confidence, exit manager
    compared: int               # values compared over all cuts (bars, votes, level calls)
    cuts: int                   # truncated runs compared
    cuts_differing: int
    first: Optional[Difference] = None
    errors: tuple[str, ...] = ()     # why it could not be checked (it failed on the full data)

    @property
    def status(self) -> str:
        if self.cuts_differing:
            return "leak"
        return "not checked" if self.errors else "clean"


@attrs.frozen
class SymbolRun:
    symbol: str
    bars: int
    first_time: str
    last_time: str
    cuts: tuple[int, ...]       # bars kept by each truncated run


@attrs.frozen
class LookaheadReport:
    schema_version: int
    timeframe: str
    samples: int
    seed: int
    symbols: tuple[SymbolRun, ...]
    components: tuple[ComponentLookahead, ...]
    notes: tuple[str, ...] = ()
    elapsed_seconds: float = 0.0
    check: str = "lookahead"

    @property
    def leaks(self) -> list[ComponentLookahead]:
        return [c for c in self.components if c.status == "leak"]

    @property
    def unchecked(self) -> list[ComponentLookahead]:
        return [c for c in self.components if c.status == "not checked"]

    @property
    def exit_code(self) -> int:
        """1 when a component leaks or could not be checked, 0 when everything was checked clean."""
        return EXIT_FOUND if self.leaks or self.unchecked else EXIT_CLEAN

    def to_json(self) -> dict[str, Any]:
        return _json(self, leak=bool(self.leaks), exit_code=self.exit_code)

    def render(self) -> str:
        lines = []
        for s in self.symbols:
            lines.append(f"look-ahead check: {s.symbol} {self.timeframe}, {s.bars:,} bars ({s.first_time} -> "
                         f"{s.last_time}); {len(s.cuts)} truncated runs (seed {self.seed})")
        width = max([len(c.component) for c in self.components] + [9])
        multi = len(self.symbols) > 1
        head = f"  {'symbol':<12}" if multi else "  "
        lines.append(f"{head}{'component':<{width}}  {'role':<16} {'compared':>10}  {'cuts differing':>14}  result")
        for c in self.components:
            sym = f"  {c.symbol:<12}" if multi else "  "
            lines.append(f"{sym}{c.component:<{width}}  {c.role:<16} {c.compared:>10,}  "
                         f"{f'{c.cuts_differing}/{c.cuts}':>14}  {c.status.upper() if c.status != 'clean' else 'clean'}")
        for c in self.components:
            if c.first is not None:
                f = c.first
                at = f"bar {f.bar} ({f.time})" if f.bar is not None else "the whole series"
                lines.append(f"LEAK {c.component} ({c.symbol}), {at}, data cut after bar {f.cut - 1} "
                             f"({f.cut_time}): {f.what} changed")
                lines.append(f"     with every bar: {_short(f.full)}")
                lines.append(f"     data cut:       {_short(f.truncated)}")
            for e in c.errors:
                lines.append(f"NOT CHECKED {c.component} ({c.symbol}): {e}")
        for note in self.notes:
            lines.append(f"note: {note}")
        if self.leaks:
            names = ", ".join(sorted({c.component for c in self.leaks}))
            lines.append(f"result: LOOK-AHEAD in {names}: outputs before a cut changed when later bars were "
                         f"removed (exit code 1; {self.elapsed_seconds:.1f} s)")
        elif self.unchecked:
            lines.append(f"result: no look-ahead found, but {len(self.unchecked)} component(s) could not be checked "
                         f"(exit code 1; {self.elapsed_seconds:.1f} s)")
        else:
            lines.append(f"result: clean, no output before a cut changed when later bars were removed "
                         f"(exit code 0; {self.elapsed_seconds:.1f} s)")
        return "\n".join(lines)


def _short(value: Any, limit: int = 200) -> str:
    if isinstance(value, dict):
        value = {k: v for k, v in value.items() if v not in (None, [], ())}
    s = value if isinstance(value, str) else json.dumps(value, allow_nan=False, default=str)
    return s if len(s) <= limit else s[: limit - 3] + "..."


# -- recursive -----------------------------------------------------------------------------------
@attrs.frozen
class RecursiveDifference:
    """The first evaluation bar whose value differs beyond the tolerance from the reference."""

    bar: int                    # index in the full data
    time: str
    value: Any                  # with this warm-up
    reference: Any              # with the longest warm-up
    rel_diff: Any               # |value - reference| / max(|value|, |reference|); "inf" when one is NaN


@attrs.frozen
class WarmupResult:
    warmup: int                 # bars of history before the evaluation window
    compared: int
    max_rel_diff: Optional[float]   # over bars where both values are numbers; None if there is none
    nan_mismatches: int         # bars where exactly one of the two is NaN (or not a number)
    flagged: bool
    first: Optional[RecursiveDifference] = None
    error: Optional[str] = None     # the source failed with this warm-up


@attrs.frozen
class SeriesRecursive:
    symbol: str
    component: str
    series: str                 # "action", "confidence" or "feature NAME"
    results: tuple[WarmupResult, ...]

    @property
    def flagged(self) -> bool:
        return any(r.flagged for r in self.results)

    @property
    def clean_from(self) -> Optional[int]:
        """The shortest tested warm-up from which every longer one is within the tolerance."""
        best = None
        for r in sorted(self.results, key=lambda r: -r.warmup):
            if r.flagged:
                break
            best = r.warmup
        return best


@attrs.frozen
class RecursiveWindow:
    symbol: str
    bars: int
    window: int
    window_start: str
    window_end: str
    reference_warmup: int       # every bar before the window
    warmups: tuple[int, ...]    # the tested warm-ups shorter than that


@attrs.frozen
class RecursiveReport:
    schema_version: int
    timeframe: str
    tolerance: float
    symbols: tuple[RecursiveWindow, ...]
    series: tuple[SeriesRecursive, ...]
    notes: tuple[str, ...] = ()
    elapsed_seconds: float = 0.0
    check: str = "recursive"

    @property
    def flagged(self) -> list[SeriesRecursive]:
        return [s for s in self.series if s.flagged]

    @property
    def exit_code(self) -> int:
        return EXIT_FOUND if self.flagged else EXIT_CLEAN

    def to_json(self) -> dict[str, Any]:
        return _json(self, flagged=bool(self.flagged), exit_code=self.exit_code)

    def render(self) -> str:
        lines = []
        for w in self.symbols:
            lines.append(f"recursive check: {w.symbol} {self.timeframe}, evaluation window {w.window:,} bars "
                         f"({w.window_start} -> {w.window_end}); reference: {w.reference_warmup:,} bars of history; "
                         f"max relative difference per warm-up (tolerance {self.tolerance:g})")
        warmups = sorted({r.warmup for s in self.series for r in s.results})
        multi = len(self.symbols) > 1
        name_w = max([len(f"{s.component} {s.series}") for s in self.series] + [6])
        head = f"  {'symbol':<12}" if multi else "  "
        lines.append(f"{head}{'series':<{name_w}}  " + "  ".join(f"{w:>12}" for w in warmups) + "  needs")
        for s in self.series:
            by = {r.warmup: r for r in s.results}
            cells = "  ".join(f"{_cell(by.get(w)):>12}" for w in warmups)
            need = s.clean_from
            sym = f"  {s.symbol:<12}" if multi else "  "
            lines.append(f"{sym}{f'{s.component} {s.series}':<{name_w}}  {cells}  "
                         f"{f'>= {need}' if need is not None else 'more'}")
        for s in self.flagged:
            r = next(r for r in sorted(s.results, key=lambda r: r.warmup) if r.flagged)
            if r.error:
                lines.append(f"FLAGGED {s.component} {s.series} ({s.symbol}): with {r.warmup} bars of warm-up: {r.error}")
            elif r.first is not None:
                f = r.first
                lines.append(f"FLAGGED {s.component} {s.series} ({s.symbol}): with {r.warmup} bars of warm-up, bar "
                             f"{f.bar} ({f.time}) is {_short(f.value)} instead of {_short(f.reference)} "
                             f"(relative difference {_short(f.rel_diff)})")
        for note in self.notes:
            lines.append(f"note: {note}")
        if self.flagged:
            lines.append(f"result: {len(self.flagged)} series depend on the warm-up beyond the tolerance "
                         f"(exit code 1; {self.elapsed_seconds:.1f} s)")
        else:
            lines.append(f"result: clean, every tested warm-up within the tolerance (exit code 0; "
                         f"{self.elapsed_seconds:.1f} s)")
        return "\n".join(lines)


def _cell(r: Optional[WarmupResult]) -> str:
    if r is None:
        return "-"
    if r.error:
        return "failed !"
    text = "0" if r.max_rel_diff == 0 else ("n/a" if r.max_rel_diff is None else f"{r.max_rel_diff:.3g}")
    if r.nan_mismatches:
        text += f" +{r.nan_mismatches}NaN"
    return text + (" !" if r.flagged else "")
