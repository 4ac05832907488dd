"""Walk-forward evaluation: out-of-sample scores of every component and of the ensemble, and the
trading result of technical-only against ML-enhanced, with fees.

For window ``k`` with test range ``[a, b)``:

1. trainable models (``train`` method: lstm, attention) are trained on ``[a - fit - train, a - fit)``
   of every symbol (labels past the end of that range are unknown, so never used);
2. the online learners (ensemble, mtf, rl_selector, bayes) start fresh and learn, online, from
   ``a - fit`` on, so by ``a`` they have been fitted on data before the window only, and the
   models they learn from are out of sample there too;
3. every bar of ``[a, b)`` is scored: votes against the learning event, trading from ``a``.

No bar is ever scored by a model trained on it.
"""

from __future__ import annotations

import math
import os
import tempfile
import zlib
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import attrs
import numpy as np
import pandas as pd
import structlog

from mlcoord.backtest.run import BacktestResult, run_backtest
from mlcoord.candles import Candles
from mlcoord.components import build_market_data
from mlcoord.config import Settings
from mlcoord.executors import Executor, InlineExecutor, PluginRecipe, Task, TaskResult, plugins_from
from mlcoord.learning import event_happened, expected_calibration_error, reliability, scores
from mlcoord.model import Action
from mlcoord.pipeline import build_component, resolve_components
from mlcoord.registry import PluginSet

log = structlog.get_logger("mlcoord.evaluate")
WARMUP = 600


@attrs.frozen
class WalkForward:
    """``[evaluate]``-style settings of a walk-forward run (all in base bars)."""

    train_bars: int = 17_520        # two years of 1h bars for the models
    fit_bars: int = 4_380           # half a year for the online learners, after the models' data
    test_bars: int = 4_380          # half a year scored per window
    windows: Optional[int] = None   # at most this many (the latest ones); None: all that fit
    retrain: bool = True            # False: use the configured (shipped) models everywhere


@attrs.frozen
class Window:
    index: int
    train_start: int
    fit_start: int
    test_start: int
    test_end: int


def plan_windows(times: np.ndarray, wf: WalkForward) -> list[Window]:
    """Consecutive test windows over the common time axis, each with its training history."""
    n = len(times)
    first_test = wf.train_bars + wf.fit_bars
    out = []
    k = 0
    for start in range(first_test, n, wf.test_bars):
        end = min(start + wf.test_bars, n)
        if end - start < wf.test_bars // 4:
            break
        out.append(Window(k, int(times[start - wf.fit_bars - wf.train_bars]), int(times[start - wf.fit_bars]),
                          int(times[start]), int(times[end - 1]) + 1))
        k += 1
    if wf.windows is not None:
        out = out[-wf.windows:]
    return out


def _between(c: Candles, start: int, end: int) -> Candles:
    lo, hi = np.searchsorted(c.time, [start, end])
    return c.slice(int(lo), int(hi))


def train_models(settings: Settings, plugins: PluginSet, candles: Sequence[Candles], window: Window,
                 folder: Path) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Train every trainable ML component on the window's training range; returns option
    changes pointing each at its new artifact, and the training reports."""
    changes, reports = {}, {}
    components = resolve_components(settings, plugins)
    parts = [_between(c, window.train_start, window.fit_start) for c in candles]
    datasets = [build_market_data(p, settings.data.higher_timeframes, event=settings.learning.event)
                for p in parts if len(p) > max(WARMUP, settings.learning.horizon * 4)]
    for built in components.ml_components:
        if not hasattr(built.obj, "train") or not datasets:
            continue
        fresh = build_component(settings, built.spec)
        out = folder / f"{built.name}-w{window.index}.npz"
        reports[built.name] = fresh.obj.train(datasets, out, None)
        changes[built.name] = {"model_path": str(out)}
    return changes, reports


def _segment_stats(result: BacktestResult, start: int) -> dict[str, Any]:
    raw = result.raw
    k = int(np.searchsorted(raw.times, start))
    equity = raw.equity[max(k - 1, 0):]
    if len(equity) < 2:
        return {"return": 0.0, "sharpe": 0.0, "max_drawdown": 0.0, "trades": 0, "dca_bands": {}}
    rets = np.diff(equity) / equity[:-1]
    bars_per_year = 365.25 * 24 * 3600e9 / max(float(np.median(np.diff(raw.times))), 1.0)
    sharpe = float(rets.mean() / rets.std(ddof=1) * math.sqrt(bars_per_year)) if rets.std(ddof=1) > 0 else 0.0
    peak = np.maximum.accumulate(equity)
    trades = [t for t in raw.trades if not t.hedge and t.opened_at >= start]
    bands: dict[str, dict[str, int]] = {}
    for plan in raw.plans:
        if plan["time"] >= start:
            b = bands.setdefault(plan["band"], {"plans": 0, "filled": 0, "planned": 0})
            b["plans"] += 1
            b["planned"] += plan["planned"]
            b["filled"] += plan["filled"]
    return {"return": float(equity[-1] / equity[0] - 1.0), "sharpe": sharpe,
            "max_drawdown": float((1.0 - equity / peak).max()), "trades": len(trades),
            "fees": float(sum(t.fees for t in trades)), "dca_bands": bands}


def _collect(result: BacktestResult, candles: Candles, start: int, end: int, horizon: int,
             threshold: float, into: dict[str, list]) -> None:
    """Score every decision of ``[start, end)`` whose horizon lies inside the data."""
    close = candles.close
    index_of = {int(t): i for i, t in enumerate(candles.time)}
    for d in result.raw.decisions:
        if not start <= d.time < end:
            continue
        i = index_of.get(d.time)
        if i is None or i + horizon >= len(close):
            continue
        fr = close[i + horizon] / close[i] - 1.0
        direction = int(d.technical.action)
        y = float(event_happened(direction, fr, threshold))
        into.setdefault("technical", []).append((y, d.technical.confidence))
        for v in d.votes:
            if v.component != "technical":
                into.setdefault(v.component, []).append((y, v.probability(direction)))
        if d.p_signal is not None:
            into.setdefault("ensemble (raw)", []).append((y, d.p_signal))
        if d.signal.action != Action.HOLD:
            final = int(d.signal.action)
            y_final = float(event_happened(final, fr, threshold))
            into.setdefault("ensemble (final, raw)", []).append((y_final, d.raw_confidence))
            into.setdefault("ensemble (final, calibrated)", []).append((y_final, d.confidence))


@attrs.frozen(eq=False)
class EvalJob:
    """What every task of one evaluation needs; sent to each worker once."""

    settings: Settings
    plugins: Any                    # a PluginRecipe on workers; the PluginSet itself inline
    candles: tuple[Candles, ...]
    windows: tuple[Window, ...]


def _job_plugins(job: EvalJob) -> PluginSet:
    return plugins_from(job.plugins) if isinstance(job.plugins, PluginRecipe) else job.plugins


def train_window_task(job: EvalJob, k: int) -> dict[str, Any]:
    """Task: train window ``k``'s models; returns each artifact as bytes (workers share no disk)."""
    with tempfile.TemporaryDirectory(prefix="mlcoord-train-") as tmp:
        changes, reports = train_models(job.settings, _job_plugins(job), job.candles, job.windows[k], Path(tmp))
        blobs = {name: Path(c["model_path"]).read_bytes() for name, c in changes.items()}
    return {"models": blobs, "reports": reports}


_MODEL_DIR: list[tempfile.TemporaryDirectory] = []


def _materialise(blobs: dict[str, bytes], k: int) -> dict[str, dict[str, Any]]:
    """Write window ``k``'s artifacts once per process; option changes pointing at them."""
    if not _MODEL_DIR:
        _MODEL_DIR.append(tempfile.TemporaryDirectory(prefix="mlcoord-models-"))
    changes = {}
    for name, blob in sorted(blobs.items()):
        path = Path(_MODEL_DIR[0].name) / f"{name}-w{k}-{zlib.crc32(blob):08x}.npz"
        if not path.exists():
            tmp = path.with_suffix(".part")
            tmp.write_bytes(blob)
            os.replace(tmp, path)
        changes[name] = {"model_path": str(path)}
    return changes


def window_symbol_task(shared: tuple[EvalJob, dict[int, dict[str, bytes]]], k: int, j: int
                       ) -> Optional[dict[str, Any]]:
    """Task: score window ``k`` on symbol ``j`` (ML and technical-only backtests); pure."""
    job, models = shared
    settings, w, c = job.settings, job.windows[k], job.candles[j]
    plugins = _job_plugins(job)
    part = _between(c, w.fit_start - WARMUP * c.timeframe_ns, w.test_end)
    if len(part) < WARMUP:
        return None
    changes = _materialise(models.get(k, {}), k)
    technical_only = attrs.evolve(settings, pipeline=attrs.evolve(settings.pipeline, ml_components=(), calibrator=""))
    fit_from = pd.Timestamp(w.fit_start, tz="UTC").strftime("%Y%m%d")
    s_ml = attrs.evolve(settings, data=attrs.evolve(settings.data, timerange=f"{fit_from}-"))
    s_ta = attrs.evolve(technical_only, data=attrs.evolve(settings.data, timerange=f"{fit_from}-"))
    ml = run_backtest(s_ml, plugins=plugins, candles=[part], option_changes=changes)
    ta = run_backtest(s_ta, plugins=plugins, candles=[part])
    pooled: dict[str, list] = {}
    _collect(ml, part, w.test_start, w.test_end, settings.learning.horizon, settings.learning.threshold, pooled)
    row = {"window": w.index, "symbol": c.symbol,
           "test": [pd.Timestamp(w.test_start, tz="UTC").isoformat(), pd.Timestamp(w.test_end, tz="UTC").isoformat()],
           "technical": _segment_stats(ta, w.test_start), "ml": _segment_stats(ml, w.test_start)}
    return {"pooled": pooled, "row": row}


def evaluate(settings: Settings, plugins: PluginSet, candles: Sequence[Candles], wf: WalkForward,
             progress: Optional[Callable[[str], None]] = None, executor: Optional[Executor] = None,
             show_progress: Optional[bool] = False) -> dict[str, Any]:
    """Run the walk-forward evaluation; returns plain data (the table and the details).

    Windows are trained, then every (window, symbol) is scored, as tasks on ``executor``
    (default: in this process). Results are gathered in window-then-symbol order, so the
    figures do not depend on the executor; a failed task is listed under ``failures``."""
    times = np.unique(np.concatenate([c.time for c in candles]))
    from mlcoord.window_sizes import check_window_sizes
    check_window_sizes(len(times), wf)      # a clear error naming sizes that fit, not a traceback
    windows = plan_windows(times, wf)
    if not windows:
        raise ValueError(f"not enough data for one window: need more than {wf.train_bars + wf.fit_bars} bars")
    executor = executor or InlineExecutor()
    recipe = plugins if executor.kind == "inline" else PluginRecipe.of(plugins)
    job = executor.share(EvalJob(settings, recipe, tuple(candles), tuple(windows)))
    failed: list[str] = []
    models: dict[int, dict[str, bytes]] = {}
    trained_reports = [{"window": w.index} for w in windows]
    try:
        if wf.retrain:
            tasks = [Task(f"train-w{w.index}", train_window_task, (k,), {"window": w.index, "phase": "train"})
                     for k, w in enumerate(windows)]
            for k, r in enumerate(executor.run(tasks, job, desc="training", progress=show_progress)):
                if r.ok:
                    models[k] = r.value["models"]
                    trained_reports[k].update(r.value["reports"])
                else:
                    failed.append(r.describe())
        tasks = [Task(f"w{w.index}-{c.symbol}", window_symbol_task, (k, j), {"window": w.index, "symbol": c.symbol})
                 for k, w in enumerate(windows) if k in models or not wf.retrain for j, c in enumerate(candles)]

        def step(r: TaskResult) -> None:
            if progress and r.value is not None:
                progress(f"window {r.labels['window'] + 1}/{len(windows)} {r.labels['symbol']}")
        shared_models = executor.share(models)
        try:
            results = executor.run(tasks, (job, shared_models), desc="walk-forward", progress=show_progress,
                                   on_result=step)
        finally:
            executor.unshare(shared_models)
    finally:
        executor.unshare(job)
    pooled: dict[str, list] = {}
    trading = []
    for r in results:
        if not r.ok:
            failed.append(r.describe())
        elif r.value is not None:
            for name, pairs in r.value["pooled"].items():
                pooled.setdefault(name, []).extend(pairs)
            trading.append(r.value["row"])
    table = {}
    for name, pairs in sorted(pooled.items()):
        y = [p[0] for p in pairs]
        p = [p[1] for p in pairs]
        table[name] = {k: (round(v, 4) if isinstance(v, float) and not math.isnan(v) else v)
                       for k, v in scores(y, p).items()}
    diagrams = {name: reliability([q[0] for q in pooled[name]], [q[1] for q in pooled[name]])
                for name in ("ensemble (final, raw)", "ensemble (final, calibrated)") if name in pooled}

    def total(kind: str) -> dict[str, Any]:
        rows = [t[kind] for t in trading]
        return {"mean_return": float(np.mean([r["return"] for r in rows])) if rows else 0.0,
                "mean_sharpe": float(np.mean([r["sharpe"] for r in rows])) if rows else 0.0,
                "worst_drawdown": float(max((r["max_drawdown"] for r in rows), default=0.0)),
                "trades": int(sum(r["trades"] for r in rows))}
    return {"windows": [attrs.asdict(w) for w in windows], "event": settings.learning.event.describe(),
            "scores": table, "reliability": diagrams, "trading": trading,
            "trading_summary": {"technical": total("technical"), "ml": total("ml")},
            "training": trained_reports, "settings": attrs.asdict(wf), "failures": failed}


def render(result: dict[str, Any]) -> str:
    """The table on screen."""
    lines = [f"walk-forward: {len(result['windows'])} windows; event: {result['event']}", "",
             f"  {'component':<30} {'n':>6} {'acc':>6} {'AUC':>6} {'logloss':>8} {'Brier':>6} {'ECE':>6}"]
    fmt = lambda v, w, d: f"{v:>{w}.{d}f}" if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v)) else f"{'n/a':>{w}}"  # noqa: E731,E501
    for name, s in result["scores"].items():
        lines.append(f"  {name:<30} {s['n']:>6} {fmt(s['accuracy'], 6, 3)} {fmt(s['auc'], 6, 3)} "
                     f"{fmt(s['log_loss'], 8, 4)} {fmt(s['brier'], 6, 4)} {fmt(s['ece'], 6, 3)}")
    lines.append("")
    for kind in ("technical", "ml"):
        t = result["trading_summary"][kind]
        lines.append(f"  trading {kind:<10} mean return {t['mean_return'] * 100:+.2f}% per window, "
                     f"mean Sharpe {t['mean_sharpe']:.2f}, worst drawdown {t['worst_drawdown'] * 100:.1f}%, "
                     f"{t['trades']} trades (fees included)")
    for line in result.get("failures", []):
        lines.append(f"  FAILED {line}")
    return "\n".join(lines)


__all__ = ["WalkForward", "Window", "plan_windows", "evaluate", "render", "expected_calibration_error"]
