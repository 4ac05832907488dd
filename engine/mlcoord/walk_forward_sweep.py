"""Walk-forward optimisation: ``mlcoord sweep --walk-forward``.

A sweep over the whole data picks the set that fitted that data best; its score says nothing
about how the set does on data it was not chosen on. Walk-forward optimisation (the check
freqtrade users script by hand, freqtrade#11737) splits the time axis into windows: an in-sample
part (``in_sample_bars``) where Optuna searches the options, then the next out-of-sample part
(``out_of_sample_bars``) where only the best set is scored. Windows roll forward by the
out-of-sample length, so the out-of-sample parts tile the data without overlap. The table gives,
per window, the best set, its in-sample and out-of-sample Sharpe and the gap; and the
out-of-sample parts concatenated (per symbol, then averaged): the honest figure.

Objective: Sharpe net of fees, mean over the symbols (as the plain sweep). Every backtest of a
part trades only that part; the WARMUP_BARS (1,000) bars before it warm the indicators up, the online learners
start fresh at the part's start, and nothing after the part's end is loaded (no look-ahead).

Determinism: each window has its own in-memory study, seeded ``seed + window``; trials are
asked in batches of ``batch`` (a setting, not the executor's size) and all windows' batches run
as one set of tasks, so the table is the same on every executor. Not resumable yet: the studies
live in memory (``storage`` is not used).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence

import attrs
import numpy as np
import pandas as pd

from mlcoord.backtest.run import WARMUP_BARS
from mlcoord.candles import Candles, union_times
from mlcoord.errors import ConfigError
from mlcoord.executors import Executor, PluginRecipe, Task, failures, plugins_from

YEAR_NS = 365.25 * 24 * 3_600_000_000_000


def _at_least(low: int):
    def check(instance, attribute, value):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{attribute.name} must be an integer >= {low}, got {value!r}")
    return check


def _windows_check(instance, attribute, value):
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"windows must be an integer >= 1 or absent, got {value!r}")


@attrs.frozen
class WalkForwardSpec:
    """``[sweep.walk_forward]`` (bars of the data's timeframe; defaults for 1h bars)."""

    in_sample_bars: int = attrs.field(default=4_380, validator=_at_least(50))     # half a year searched
    out_of_sample_bars: int = attrs.field(default=1_460, validator=_at_least(20))  # two months scored
    windows: Optional[int] = attrs.field(default=None, validator=_windows_check)   # only the last N
    anchored: bool = False          # True: every in-sample part starts at the data's start (grows)
    batch: int = attrs.field(default=4, validator=_at_least(1))                   # trials asked at once


@attrs.frozen
class WfWindow:
    index: int
    in_start: int       # ns, first in-sample bar
    in_end: int         # ns, exclusive: the first out-of-sample bar
    out_end: int        # ns, exclusive


def plan(times: np.ndarray, wf: WalkForwardSpec, warmup: int = WARMUP_BARS) -> list[WfWindow]:
    """Windows over the common time axis ``times``: out-of-sample parts tile it after the first
    in-sample part; a last part shorter than a quarter of ``out_of_sample_bars`` is dropped."""
    n, first = len(times), warmup
    out: list[WfWindow] = []
    k = 0
    while True:
        lo = first if wf.anchored else first + k * wf.out_of_sample_bars
        mid = first + wf.in_sample_bars + k * wf.out_of_sample_bars
        hi = min(mid + wf.out_of_sample_bars, n)
        if hi - mid < max(wf.out_of_sample_bars // 4, 1):
            break
        end = int(times[hi]) if hi < n else int(times[-1]) + 1
        out.append(WfWindow(k, int(times[lo]), int(times[mid]), end))
        k += 1
    if wf.windows is not None:
        out = out[-wf.windows:]
    return out


def check_fits(n_bars: int, wf: WalkForwardSpec, warmup: int = WARMUP_BARS) -> None:
    need = warmup + wf.in_sample_bars + max(wf.out_of_sample_bars // 4, 1)
    if n_bars >= need:
        return
    usable = max(n_bars - warmup, 0)
    ratio = wf.in_sample_bars / (wf.in_sample_bars + 2 * wf.out_of_sample_bars)
    fit_in, fit_out = int(usable * ratio), int(usable * (1 - ratio) / 2)
    hint = (f" Sizes in the same proportions that fit (2 windows): in_sample_bars = {fit_in}, "
            f"out_of_sample_bars = {fit_out}." if fit_in >= 50 and fit_out >= 20 else
            " The data is too short for any walk-forward: load more bars.")
    raise ConfigError(f"sweep --walk-forward: the data has {n_bars:,} bars, too few for one window with "
                      f"in_sample_bars = {wf.in_sample_bars}, out_of_sample_bars = {wf.out_of_sample_bars}: "
                      f"{warmup} warm-up + {wf.in_sample_bars} in-sample + at least "
                      f"{max(wf.out_of_sample_bars // 4, 1)} out-of-sample = {need:,} bars.{hint}")


@attrs.frozen(eq=False)
class WfJob:
    """Sent to every worker once: the base config, plugins and candles."""

    raw: dict[str, Any]
    plugins: Any
    candles: tuple


def _part(c: Candles, start: int, end: int) -> Optional[Candles]:
    lo, hi = (int(x) for x in np.searchsorted(c.time, [start, end]))
    if hi - lo < 2:
        return None
    return c.slice(max(lo - WARMUP_BARS, 0), hi)


def part_task(job: WfJob, params: dict[str, Any], j: int, start: int, end: int) -> dict[str, Any]:
    """Task: symbol ``j`` backtested with ``params`` on bars ``[start, end)`` (warm-up before)."""
    from mlcoord.backtest.run import run_backtest
    from mlcoord.sweep import apply_params

    part = _part(job.candles[j], start, end)
    if part is None:    # the planner only gives parts with bars; a task on none is a bug, said plainly
        raise ValueError(f"walk-forward part [{start}, {end}) of {job.candles[j].symbol} has fewer than 2 bars")
    settings = apply_params(job.raw, params)
    plugins = plugins_from(job.plugins) if isinstance(job.plugins, PluginRecipe) else job.plugins
    result = run_backtest(settings, plugins=plugins, candles=[part], start=start)
    equity = np.asarray(result.raw.equity, dtype=float)
    returns = np.diff(equity) / equity[:-1] if len(equity) > 1 else np.array([])
    return {"sharpe": float(result.stats["sharpe"]), "return": float(result.stats["total_return"]),
            "trades": int(result.stats["trades"]), "bars": int(result.stats["bars"]),
            "returns": [float(r) for r in returns]}


def _symbols_in(candles: Sequence[Candles], start: int, end: int) -> list[int]:
    return [j for j, c in enumerate(candles) if _part(c, start, end) is not None]


def _sharpe(returns: np.ndarray, periods_per_year: float) -> float:
    if len(returns) < 2:
        return 0.0
    dev = returns.std(ddof=1)
    return float(returns.mean() / dev * math.sqrt(periods_per_year)) if dev > 0 else 0.0


def _iso(ns: int) -> str:
    return pd.Timestamp(int(ns), tz="UTC").isoformat()


def run_walk_forward(spec: Any, wf: WalkForwardSpec, raw: dict[str, Any], plugins: Any,
                     candles: Sequence[Candles], executor: Executor, progress: Optional[bool] = False,
                     echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Optimise on each window's in-sample part, score the best set out of sample; the table."""
    import optuna
    from optuna.trial import TrialState

    from mlcoord.sweep import OBJECTIVES, suggest

    if spec.objective != "sharpe":
        raise ConfigError(f"sweep --walk-forward: objective {spec.objective!r} is not supported yet; "
                          f"walk-forward optimisation uses objective = \"sharpe\"")
    times = union_times([c.time for c in candles])
    check_fits(len(times), wf)
    windows = plan(times, wf)
    echo(f"walk-forward: {len(windows)} windows x {spec.trials} trials, studies in memory "
         f"(storage {spec.storage!r} is not used: not resumable yet)")
    bar_ns = float(np.median(np.diff(times))) if len(times) > 1 else 3.6e12
    per_year = YEAR_NS / bar_ns
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    studies = [optuna.create_study(direction=OBJECTIVES["sharpe"],
                                   sampler=optuna.samplers.TPESampler(seed=spec.seed + w.index)) for w in windows]
    in_symbols = [_symbols_in(candles, w.in_start, w.in_end) for w in windows]
    recipe = plugins if executor.kind == "inline" else PluginRecipe.of(plugins)
    shared = executor.share(WfJob(raw, recipe, tuple(candles)))
    problems: list[str] = []
    try:
        done = [0] * len(windows)
        while any(d < spec.trials for d in done):
            asked = []      # (window, trial, params)
            for k, w in enumerate(windows):
                for _ in range(min(wf.batch, spec.trials - done[k])):
                    trial = studies[k].ask()
                    asked.append((k, trial, suggest(trial, spec.space)))
            tasks = [Task(f"w{windows[k].index}-t{t.number}-{candles[j].symbol}", part_task,
                          (p, j, windows[k].in_start, windows[k].in_end),
                          {"window": windows[k].index, "trial": t.number, "symbol": candles[j].symbol, "params": p})
                     for k, t, p in asked for j in in_symbols[k]]
            results = executor.run(tasks, shared, desc="in-sample trials", progress=progress)
            problems += failures(results)
            by_key = {r.key: r for r in results}
            for k, t, p in asked:
                mine = [by_key[f"w{windows[k].index}-t{t.number}-{candles[j].symbol}"] for j in in_symbols[k]]
                if mine and all(r.ok for r in mine):
                    value = sum(r.value["sharpe"] for r in mine) / len(mine)
                    studies[k].tell(t, value if math.isfinite(value) else -math.inf)
                else:
                    studies[k].tell(t, state=TrialState.FAIL)
                done[k] += 1
        best: list[Any] = []    # the best complete trial per window (None: none completed)
        for k, study in enumerate(studies):
            complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
            best.append(max(complete, key=lambda t: (t.value, -t.number)) if complete else None)
        out_tasks = [Task(f"w{w.index}-oos-{candles[j].symbol}", part_task, (best[k].params, j, w.in_end, w.out_end),
                          {"window": w.index, "symbol": candles[j].symbol, "params": best[k].params})
                     for k, w in enumerate(windows) if best[k] is not None
                     for j in _symbols_in(candles, w.in_end, w.out_end)]
        out_results = executor.run(out_tasks, shared, desc="out-of-sample", progress=progress)
        problems += failures(out_results)
    finally:
        executor.unshare(shared)
    return summarise(windows, studies, best, out_results, candles, per_year, spec, wf, problems)


def summarise(windows, studies, best, out_results, candles, per_year, spec, wf, problems) -> dict[str, Any]:
    rows = []
    concatenated: dict[str, list[float]] = {}
    trades: dict[str, int] = {}
    for k, w in enumerate(windows):
        row: dict[str, Any] = {"window": w.index, "in_sample": [_iso(w.in_start), _iso(w.in_end)],
                               "out_of_sample": [_iso(w.in_end), _iso(w.out_end)],
                               "trials": len(studies[k].trials), "best": None, "in_sample_sharpe": None,
                               "out_of_sample_sharpe": None, "gap": None, "out_of_sample_return": None,
                               "out_of_sample_trades": None}
        if best[k] is not None:
            mine = [r for r in out_results if r.labels["window"] == w.index]
            row["best"] = dict(best[k].params)
            row["in_sample_sharpe"] = float(best[k].value)
            if mine and all(r.ok for r in mine):
                oos = sum(r.value["sharpe"] for r in mine) / len(mine)
                row["out_of_sample_sharpe"] = oos
                row["gap"] = float(best[k].value) - oos
                row["out_of_sample_return"] = sum(r.value["return"] for r in mine) / len(mine)
                row["out_of_sample_trades"] = sum(r.value["trades"] for r in mine)
                for r in mine:
                    concatenated.setdefault(r.labels["symbol"], []).extend(r.value["returns"])
                    trades[r.labels["symbol"]] = trades.get(r.labels["symbol"], 0) + r.value["trades"]
        rows.append(row)
    scored = [r for r in rows if r["out_of_sample_sharpe"] is not None]
    per_symbol = {s: {"sharpe": _sharpe(np.asarray(rets), per_year),
                      "return": float(np.prod(1.0 + np.asarray(rets)) - 1.0) if rets else 0.0,
                      "bars": len(rets), "trades": trades.get(s, 0)}
                  for s, rets in concatenated.items()}
    mean_in = sum(r["in_sample_sharpe"] for r in scored) / len(scored) if scored else None
    mean_out = sum(r["out_of_sample_sharpe"] for r in scored) / len(scored) if scored else None
    return {
        "objective": "sharpe", "walk_forward": attrs.asdict(wf), "trials_per_window": spec.trials,
        "windows": rows,
        "out_of_sample": {
            "sharpe": (sum(v["sharpe"] for v in per_symbol.values()) / len(per_symbol)) if per_symbol else None,
            "return": (sum(v["return"] for v in per_symbol.values()) / len(per_symbol)) if per_symbol else None,
            "trades": sum(trades.values()), "per_symbol": per_symbol},
        "mean_in_sample_sharpe": mean_in, "mean_out_of_sample_sharpe": mean_out,
        "gap": None if mean_in is None else mean_in - mean_out,
        "failures": problems,
    }


def render(summary: dict[str, Any]) -> str:
    def num(v, fmt="{:+.3f}"):
        return "-" if v is None else fmt.format(v)
    wf = summary["walk_forward"]
    lines = [f"walk-forward optimisation: {len(summary['windows'])} windows, in-sample {wf['in_sample_bars']} bars"
             f"{' (anchored)' if wf['anchored'] else ''}, out-of-sample {wf['out_of_sample_bars']} bars, "
             f"{summary['trials_per_window']} trials per window; objective Sharpe net of fees (mean over symbols)",
             "",
             f"  {'window':>6}  {'out-of-sample part':<41} {'IS Sharpe':>9} {'OOS Sharpe':>10} {'gap':>7} "
             f"{'OOS return':>10} {'trades':>6}  best set"]
    for r in summary["windows"]:
        part = f"{r['out_of_sample'][0][:16]} -> {r['out_of_sample'][1][:16]}"
        best = ", ".join(f"{k.split('.')[-1]}={v:.4g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}"
                         for k, v in (r["best"] or {}).items()) or "no complete trial"
        lines.append(f"  {r['window']:>6}  {part:<41} {num(r['in_sample_sharpe']):>9} "
                     f"{num(r['out_of_sample_sharpe']):>10} {num(r['gap']):>7} "
                     f"{num(r['out_of_sample_return'], '{:+.2%}'):>10} {num(r['out_of_sample_trades'], '{:d}'):>6}  {best}")
    oos = summary["out_of_sample"]
    lines += ["",
              f"  out of sample, concatenated: Sharpe {num(oos['sharpe'])}, return {num(oos['return'], '{:+.2%}')} "
              f"(mean over symbols), {oos['trades']} trades",
              f"  mean in-sample Sharpe {num(summary['mean_in_sample_sharpe'])}, mean out-of-sample "
              f"{num(summary['mean_out_of_sample_sharpe'])}: gap {num(summary['gap'])} (in minus out; large = overfitted)"]
    lines += [f"  FAILED {p}" for p in summary["failures"]]
    return "\n".join(lines)
