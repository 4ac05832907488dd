"""Walk-forward evaluation: out-of-sample scores of every component and of the ensemble, and the
trading result of the signal sources alone against the ML-enhanced pipeline, with fees.

For window ``k`` with test range ``[a, b)``:

1. trainable models (``train`` method: lstm, attention) are trained on ``[a - fit - train, a - fit)``
   of every symbol (labels past the end of that range are unknown, so never used);
2. the online learners (ensemble, mtf, rl_selector, bayes) start fresh and learn, online, from
   ``a - fit`` on, so by ``a`` they have been fitted on data before the window only, and the
   models they learn from are out of sample there too;
3. every bar of ``[a, b)`` is scored: votes against the learning event (``label = "event"``) or
   the engine's trade label (``"trade"``, :mod:`mlcoord.evaluation.labels`), trading from ``a``.

No bar is ever scored by a model trained on it.

The result (``--json``) carries its schema version under ``mlcoord_evaluation``
(:data:`EVALUATION_SCHEMA`). Schema 2 names no component in its keys: the trading arms are
``signals_only``, ``signals + calibrator``, ``logistic voter``, ``with_ml`` and ``always abstain``
(schema 1, files without the key: ``technical``, ``technical + calibrator``, ``logistic voter``,
``ml``, ``always abstain``), as are each ``trading`` row's per-window stats (``signals_only`` and
``with_ml``, were ``technical`` and ``ml``) and ``trading_summary``; the signal sources' score row
is ``signals`` (was ``technical``), and the paired differences compare ``ensemble (raw)`` with every
ML component of the run. Schema 3 adds ``populations.<pop>.label`` (``event`` or ``trade``) and,
for the trade label, ``barriers``: a schema-2 reader would take trade-label scores for event
scores; files without ``label`` scored the event. Since schema 3 the differences also compare
``ensemble (final, calibrated)`` (what the engine trades on) with the logistic baseline and every
ML component (added keys; no existing one changed).
"""

from __future__ import annotations

import math
import os
import pickle
import tempfile
import zlib
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import attrs
import numpy as np
import pandas as pd
import structlog

from mlcoord.backtest.run import BacktestResult, run_backtest
from mlcoord.candles import Candles, union_times
from mlcoord.market_inputs import MarketInputs
from mlcoord.market_sources import load_inputs, market_datasets
from mlcoord.config import Settings
from mlcoord.errors import ConfigError
from mlcoord.evaluation import arms as arms_mod
from mlcoord.evaluation.baselines import BaselineOptions, fit_baselines
from mlcoord.evaluation.bootstrap import WeeklyBootstrap
from mlcoord.evaluation.collect import (EVERY_BAR, SIGNAL_BARS, SIGNALS, Records, collect_every_bar,
                                       collect_signal_bars)
from mlcoord.evaluation.export import write_decisions
from mlcoord.evaluation.labels import EVENT, Labeller, causal_climatology, check_label
from mlcoord.evaluation.holdout import (Split, append_log, config_hash, current_commit, development_candles,
                                       log_rows)
from mlcoord.evaluation.scoring import POPULATION_EVENTS, merge, score_population
from mlcoord.evaluation.voter import NAME as LOGISTIC_VOTER
from mlcoord.executors import Executor, InlineExecutor, PluginRecipe, Task, TaskResult, plugins_from
from mlcoord.learning import expected_calibration_error, reliability
from mlcoord.pipeline import build_component, resolve_components
from mlcoord.registry import PluginSet

log = structlog.get_logger("mlcoord.evaluate")
WARMUP = 600
#: the result's schema: 3 = each population says which label it scored (``label``: event or
#: trade; absent: event); 2 = arms, per-window stats and the signal row keyed by role
#: (``signals_only``, ``signals + calibrator``, ``with_ml``, ``signals``), never by a component's
#: name (schema 1, no ``mlcoord_evaluation`` key: ``technical``, ``technical + calibrator``, ``ml``)
EVALUATION_SCHEMA = 3


@attrs.frozen
class WalkForward:
    """``[evaluate]``-style settings of a walk-forward run (all in base bars)."""

    train_bars: int = 17_520        # two years of 1h bars for the models
    fit_bars: int = 4_380           # half a year for the online learners, after the models' data
    test_bars: int = 4_380          # half a year scored per window
    windows: Optional[int] = None   # at most this many (the latest ones); None: all that fit
    retrain: bool = True            # False: use the configured (shipped) models everywhere


@attrs.frozen
class EvalOptions:
    """What is measured besides the components: baselines, intervals, populations, arms."""

    resamples: int = attrs.field(default=1000, validator=attrs.validators.ge(1))  # weekly-block bootstrap
    seed: int = 0
    every_bar: bool = False         # also the second table: every bar, event up
    all_arms: bool = True           # False: trade only signals_only and with_ml (e.g. a sweep needing scores only)
    label: str = attrs.field(default=EVENT, validator=check_label)   # what is scored: "event" or "trade"
    baselines: BaselineOptions = BaselineOptions()


@attrs.frozen
class Window:
    index: int
    train_start: int
    fit_start: int
    test_start: int
    test_end: int


def plan_windows(times: np.ndarray, wf: WalkForward, test_from: Optional[int] = None) -> list[Window]:
    """Consecutive test windows over the common time axis, each with its training history;
    with ``test_from`` (ns) the first test window starts there at the earliest."""
    n = len(times)
    first_test = wf.train_bars + wf.fit_bars
    if test_from is not None:
        first_test = max(first_test, int(np.searchsorted(times, test_from)))
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
                 folder: Path, inputs: Optional[Mapping[str, MarketInputs]] = None
                 ) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Train every trainable ML component on the window's training range; returns option
    changes pointing each at its new artifact, and the training reports. ``inputs``: each
    symbol's market inputs (cut at the training range's end, as the data is)."""
    changes, reports = {}, {}
    components = resolve_components(settings, plugins)
    parts = [p for p in (_between(c, window.train_start, window.fit_start) for c in candles)
             if len(p) > max(WARMUP, settings.learning.horizon * 4)]
    datasets = market_datasets(settings, parts, inputs or {})
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


@attrs.frozen(eq=False)
class EvalJob:
    """What every task of one evaluation needs; sent to each worker once."""

    settings: Settings
    plugins: Any                    # a PluginRecipe on workers; the PluginSet itself inline
    candles: tuple[Candles, ...]
    windows: tuple[Window, ...]
    options: EvalOptions = EvalOptions()
    inputs: Mapping[str, MarketInputs] = attrs.field(factory=dict)   # each symbol's market inputs


def _job_plugins(job: EvalJob) -> PluginSet:
    return plugins_from(job.plugins) if isinstance(job.plugins, PluginRecipe) else job.plugins


def _voter_plugins(job: EvalJob) -> PluginSet:
    """The job's plugins plus the logistic baseline voter (for its trading arm)."""
    recipe = job.plugins if isinstance(job.plugins, PluginRecipe) else PluginRecipe.of(job.plugins)
    return plugins_from(PluginRecipe(recipe.plugins + ((LOGISTIC_VOTER, "mlcoord.evaluation.voter"),)))


def train_window_task(job: EvalJob, k: int) -> dict[str, Any]:
    """Task: train window ``k``'s models; returns each artifact as bytes (workers share no disk)."""
    with tempfile.TemporaryDirectory(prefix="mlcoord-train-") as tmp:
        changes, reports = train_models(job.settings, _job_plugins(job), job.candles, job.windows[k], Path(tmp),
                                        job.inputs)
        blobs = {name: Path(c["model_path"]).read_bytes() for name, c in changes.items()}
    return {"models": blobs, "reports": reports}


def _labeller(job: EvalJob, changes: Optional[dict[str, dict[str, Any]]] = None) -> Labeller:
    return Labeller(job.options.label, job.settings, _job_plugins(job), job.inputs, changes)


def baselines_window_task(job: EvalJob, k: int) -> dict[str, bytes]:
    """Task: fit window ``k``'s baselines on its training part (the bars its models train on):
    ``scored`` on the scored label, ``voter`` (the logistic voter's trading arm) on the event
    whatever is scored, so the trading arms do not depend on the label."""
    w = job.windows[k]
    fit = lambda labels=None: pickle.dumps(fit_baselines(job.candles, w.train_start, w.fit_start,  # noqa: E731
                                                         job.settings.learning.event, job.options.baselines, labels))
    event = fit()
    return {"scored": event if job.options.label == EVENT else fit(_labeller(job)), "voter": event}


_MODEL_DIR: list[tempfile.TemporaryDirectory] = []


def _materialise(blobs: dict[str, bytes], k: int, suffix: str = ".npz") -> dict[str, dict[str, Any]]:
    """Write window ``k``'s artifacts once per process; option changes pointing at them."""
    if not _MODEL_DIR:
        _MODEL_DIR.append(tempfile.TemporaryDirectory(prefix="mlcoord-models-"))
    changes = {}
    for name, blob in sorted(blobs.items()):
        path = Path(_MODEL_DIR[0].name) / f"{name}-w{k}-{zlib.crc32(blob):08x}{suffix}"
        if not path.exists():
            tmp = path.with_suffix(".part")
            tmp.write_bytes(blob)
            os.replace(tmp, path)
        changes[name] = {"model_path": str(path)}
    return changes


def window_symbol_task(shared: tuple[EvalJob, tuple[dict[int, dict[str, bytes]], dict[int, dict[str, bytes]]]], k: int,
                       j: int) -> Optional[dict[str, Any]]:
    """Task: score window ``k`` on symbol ``j`` and trade it in every arm; pure."""
    job, (models, baselines) = shared
    settings, w, c = job.settings, job.windows[k], job.candles[j]
    plugins = _job_plugins(job)
    part = _between(c, w.fit_start - WARMUP * c.timeframe_ns, w.test_end)
    if len(part) < WARMUP:
        return None
    changes = _materialise(models.get(k, {}), k)
    voter_changes = _materialise({LOGISTIC_VOTER: baselines[k]["voter"]}, k, ".pkl")
    base = pickle.loads(baselines[k]["scored"]).predict(part)
    labels = _labeller(job, changes)(part)
    if job.options.label != EVENT:      # the trade label's causal climatology: labels known by each bar
        base["climatology (causal)"] = causal_climatology(labels, settings.learning.horizon)
    fit_from = pd.Timestamp(w.fit_start, tz="UTC").strftime("%Y%m%d")
    fitted = attrs.evolve(settings, data=attrs.evolve(settings.data, timerange=f"{fit_from}-"))
    runs = {}
    inputs = {c.symbol: job.inputs.get(c.symbol, MarketInputs())}
    for arm in arms_mod.BACKTESTED if job.options.all_arms else (arms_mod.SIGNALS_ONLY, arms_mod.WITH_ML):
        voter = arm == arms_mod.LOGISTIC_ARM
        runs[arm] = run_backtest(arms_mod.arm_settings(fitted, arm, plugins, changes),
                                 plugins=_voter_plugins(job) if voter else plugins,
                                 candles=[part], option_changes=voter_changes if voter else changes, inputs=inputs)
    records = Records(c.symbol, w.index)
    collect_signal_bars(runs[arms_mod.WITH_ML], part, w, labels, base, records)
    if job.options.every_bar:
        collect_every_bar(fitted, plugins, changes, part, w, labels, base, records, inputs[c.symbol])
    arms = {arm: {**_segment_stats(r, w.test_start), "trades": arms_mod.trades_of(r, w.test_start)}
            for arm, r in runs.items()}
    row = {"window": w.index, "symbol": c.symbol,
           "test": [pd.Timestamp(w.test_start, tz="UTC").isoformat(), pd.Timestamp(w.test_end, tz="UTC").isoformat()],
           **{arm: _segment_stats(runs[arm], w.test_start) for arm in (arms_mod.SIGNALS_ONLY, arms_mod.WITH_ML)},
           "arms": arms}
    return {"records": records.data, "row": row}


def evaluate(settings: Settings, plugins: PluginSet, candles: Sequence[Candles], wf: WalkForward,
             progress: Optional[Callable[[str], None]] = None, executor: Optional[Executor] = None,
             show_progress: Optional[bool] = False, options: EvalOptions = EvalOptions(),
             split: Optional[Split] = None, holdout_log: Optional[Path] = None,
             export: Optional[Path] = None) -> dict[str, Any]:
    """Run the walk-forward evaluation; returns plain data (the tables and the details).

    With ``split``, the development part reads no bar from ``split.holdout_from`` on, and the
    holdout part's test windows start there. Windows are trained (models and baselines), then
    every (window, symbol) is scored, as tasks on ``executor`` (default: in this process).
    Results are gathered in window-then-symbol order, so the figures do not depend on the
    executor; a failed task is listed under ``failures``. A holdout run is appended to
    ``holdout_log`` (required then); ``export`` writes every scored prediction as Parquet."""
    if split is not None and split.part == "holdout" and holdout_log is None:
        raise ConfigError("a run on the holdout part must be recorded: give holdout_log (--holdout-log)")
    if split is not None and split.part == "development":
        candles = development_candles(candles, split)
    times = union_times([c.time for c in candles])
    holdout_from = split.holdout_from if split is not None and split.part == "holdout" else None
    if holdout_from is None:
        from mlcoord.window_sizes import check_window_sizes
        check_window_sizes(len(times), wf)      # a clear error naming sizes that fit, not a traceback
    windows = plan_windows(times, wf, holdout_from)
    if not windows:
        from mlcoord.window_sizes import check_window_sizes, needed_bars
        check_window_sizes(len(times), wf)      # too short overall: names sizes that fit
        where = f" in the {split.part} part" if split is not None else ""
        raise ConfigError(f"not enough data for one window{where}: {len(times)} bars, need at least "
                          f"{needed_bars(wf.train_bars, wf.fit_bars, wf.test_bars)} (train {wf.train_bars} + fit "
                          f"{wf.fit_bars} + a quarter of test {wf.test_bars}) with the test windows there")
    executor = executor or InlineExecutor()
    recipe = plugins if executor.kind == "inline" else PluginRecipe.of(plugins)
    job = executor.share(EvalJob(settings, recipe, tuple(candles), tuple(windows), options,
                                 load_inputs(settings, candles)))
    failed: list[str] = []
    models: dict[int, dict[str, bytes]] = {}
    baselines: dict[int, dict[str, bytes]] = {}
    trained_reports = [{"window": w.index} for w in windows]
    try:
        tasks = [Task(f"baselines-w{w.index}", baselines_window_task, (k,), {"window": w.index, "phase": "baselines"})
                 for k, w in enumerate(windows)]
        if wf.retrain:
            tasks += [Task(f"train-w{w.index}", train_window_task, (k,), {"window": w.index, "phase": "train"})
                      for k, w in enumerate(windows)]
        for r in executor.run(tasks, job, desc="training", progress=show_progress):
            k = r.labels["window"] - windows[0].index
            if not r.ok:
                failed.append(r.describe())
            elif r.labels["phase"] == "baselines":
                baselines[k] = r.value
                trained_reports[k]["baselines"] = pickle.loads(r.value["scored"]).describe()
            else:
                models[k] = r.value["models"]
                trained_reports[k].update(r.value["reports"])
        ready = [k for k in range(len(windows)) if k in baselines and (k in models or not wf.retrain)]
        tasks = [Task(f"w{windows[k].index}-{c.symbol}", window_symbol_task, (k, j),
                      {"window": windows[k].index, "symbol": c.symbol}) for k in ready for j, c in enumerate(candles)]

        def step(r: TaskResult) -> None:
            if progress and r.value is not None:
                progress(f"window {r.labels['window'] + 1}/{len(windows)} {r.labels['symbol']}")
        shared = executor.share((models, baselines))
        try:
            results = executor.run(tasks, (job, shared), desc="walk-forward", progress=show_progress,
                                   on_result=step)
        finally:
            executor.unshare(shared)
    finally:
        executor.unshare(job)
    records: dict[str, dict[str, dict[str, list]]] = {}
    trading = []
    for r in results:
        if not r.ok:
            failed.append(r.describe())
        elif r.value is not None:
            merge(r.value["records"], records)
            trading.append(r.value["row"])
    week_times = [np.asarray(cols["time"], dtype=np.int64) for pop in records.values() for cols in pop.values()]
    week_times += [np.asarray([t[0] for a in row["arms"].values() for t in a["trades"]], dtype=np.int64)
                   for row in trading]
    boot = WeeklyBootstrap(np.concatenate(week_times) if week_times else np.zeros(0, np.int64),
                           options.resamples, options.seed)
    populations = {}
    labeller = Labeller(options.label, settings, plugins, {})
    scored = {"label": options.label, **({} if options.label == EVENT else {"barriers": labeller.describe()})}
    for population, reference in ((SIGNAL_BARS, SIGNALS), (EVERY_BAR, "climatology (causal)")):
        if population in records:
            populations[population] = {"event": POPULATION_EVENTS[options.label][population], **scored,
                                       **score_population(records[population], boot, reference)}
    signal = records.get(SIGNAL_BARS, {})
    diagrams = {name: reliability(signal[name]["y"], signal[name]["p"])
                for name in ("ensemble (final, raw)", "ensemble (final, calibrated)") if name in signal}

    def total(kind: str) -> dict[str, Any]:
        rows = [t[kind] for t in trading]
        return {"mean_return": float(np.mean([r["return"] for r in rows])) if rows else 0.0,
                "mean_sharpe": float(np.mean([r["sharpe"] for r in rows])) if rows else 0.0,
                "worst_drawdown": float(max((r["max_drawdown"] for r in rows), default=0.0)),
                "trades": int(sum(r["trades"] for r in rows))}
    scores_table = populations.get(SIGNAL_BARS, {}).get("scores", {})
    result = {"mlcoord_evaluation": EVALUATION_SCHEMA,
            "windows": [attrs.asdict(w) for w in windows], "event": settings.learning.event.describe(),
            "symbols": [c.symbol for c in candles],
            "split": None if split is None else {"holdout_from": pd.Timestamp(split.holdout_from, tz="UTC").isoformat(),
                                                 "part": split.part, "chosen_by": split.chosen_by},
            "config_hash": config_hash(_plain_settings(settings), attrs.asdict(wf), _hashed(options),
                                       None if split is None else attrs.asdict(split), [c.symbol for c in candles]),
            "bootstrap": {"resamples": options.resamples, "seed": options.seed, "block": "calendar week (UTC)",
                          "weeks": int(len(boot.weeks)), "level": 0.95},
            "scores": scores_table, "populations": populations, "reliability": diagrams, "trading": trading,
            "trading_summary": {arm: total(arm) for arm in (arms_mod.SIGNALS_ONLY, arms_mod.WITH_ML)},
            "trading_arms": arms_mod.summarise(trading, settings.backtest.initial_equity, boot),
            "training": trained_reports, "settings": attrs.asdict(wf), "failures": failed}
    if export is not None:
        result["export"] = {"path": str(export), "rows": write_decisions(records, Path(export), options.label)}
    if split is not None and split.part == "holdout":
        assert holdout_log is not None      # checked at the start: a holdout run must be recorded
        run_at = pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds")
        append_log(Path(holdout_log), log_rows(result, current_commit(), run_at))
    return result


def _hashed(options: EvalOptions) -> dict[str, Any]:
    """The options as hashed: an event run keeps the hash it had before ``label`` existed."""
    return attrs.asdict(options, filter=lambda a, v: not (a.name == "label" and v == EVENT))


def _plain_settings(settings: Settings) -> Any:
    from mlcoord.config import unstructure

    return unstructure(settings)


def render(result: dict[str, Any]) -> str:
    """The tables on screen (see :mod:`mlcoord.evaluation.tables`)."""
    from mlcoord.evaluation.tables import render_text

    return render_text(result)


__all__ = ["EVALUATION_SCHEMA", "WalkForward", "EvalOptions", "Window", "plan_windows", "evaluate", "render",
           "expected_calibration_error"]
