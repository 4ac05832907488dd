"""Parameter sweeps: Optuna searches plugin options for the best objective; resumable.

``sweep.toml`` is an ordinary mlcoord config (the base every trial starts from) plus::

    [sweep]
    objective = "sharpe"            # or "log_loss"
    trials = 40                     # complete trials wanted in the study (a resumed study counts its own)
    storage = "sqlite:///sweep.db"  # where the study lives; rerunning resumes it
    study = "mlcoord-sweep"
    seed = 0                        # TPE sampler seed
    best = 5                        # best sets printed
    [sweep.space]                   # dotted config path = {int|float = [low, high], log = bool} or {choices = [...]}
    "plugins.exits.atr_stop_multiplier" = { float = [1.0, 4.0] }
    [sweep.evaluate]                # for "log_loss": WalkForward settings (train_bars, fit_bars, test_bars, windows, retrain)
    [sweep.walk_forward]            # for --walk-forward: in_sample_bars, out_of_sample_bars, windows, anchored, batch
    [executor]                      # kind, address, workers (see mlcoord.executors)

Objectives: ``sharpe`` is the mean, over symbols, of the Sharpe ratio of one backtest per
symbol, net of fees and slippage (maximised); ``log_loss`` is the log-loss of the calibrated
final ensemble probability in the walk-forward evaluation (minimised). For ``sharpe`` a batch of
trials (as many as the executor has workers) runs at once, one task per trial and symbol; for
``log_loss`` trials run one after another, each evaluation spread over windows and symbols.

Resume: the study is stored after every trial. A driver killed mid-batch leaves trials marked
running; the next run marks them failed and queues their parameters again, so no set is lost
(do not run two drivers on one study at the same time).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Literal, Optional

import attrs

from mlcoord.config import Settings, read_toml, structure
from mlcoord.errors import ConfigError
from mlcoord.executors import Executor, ExecutorConfig, PluginRecipe, Task, failures, plugins_from
from mlcoord.registry import PluginSet

OBJECTIVES: dict[str, Literal["maximize", "minimize"]] = {"sharpe": "maximize", "log_loss": "minimize"}
CALIBRATED = "ensemble (final, calibrated)"


@attrs.frozen
class Param:
    path: str
    kind: str                       # int, float, choices
    low: Any = None
    high: Any = None
    log: bool = False
    choices: tuple = ()


@attrs.frozen
class SweepSpec:
    objective: str = attrs.field(default="sharpe", validator=attrs.validators.in_(tuple(OBJECTIVES)))
    trials: int = attrs.field(default=20, validator=attrs.validators.gt(0))
    storage: str = "sqlite:///mlcoord-sweep.db"
    study: str = "mlcoord-sweep"
    seed: int = 0
    best: int = 5
    space: tuple[Param, ...] = ()
    evaluate: dict[str, Any] = attrs.field(factory=dict)
    walk_forward: dict[str, Any] = attrs.field(factory=dict)   # for --walk-forward, see mlcoord.walk_forward_sweep


def _param(path: str, spec: Any) -> Param:
    where = f"$.sweep.space.{path}"
    if not isinstance(spec, dict):
        raise ConfigError(f"expected a table like {{ float = [1.0, 4.0] }}, got {spec!r} @ {where}")
    if "choices" in spec:
        if not isinstance(spec["choices"], list) or not spec["choices"]:
            raise ConfigError(f"choices must be a non-empty list @ {where}")
        return Param(path, "choices", choices=tuple(spec["choices"]))
    for kind in ("int", "float"):
        if kind in spec:
            bounds = spec[kind]
            if not (isinstance(bounds, list) and len(bounds) == 2 and bounds[0] < bounds[1]):
                raise ConfigError(f"{kind} must be [low, high] with low < high, got {bounds!r} @ {where}")
            extra = set(spec) - {kind, "log"}
            if extra:
                raise ConfigError(f"unknown key(s) {sorted(extra)} @ {where}")
            return Param(path, kind, bounds[0], bounds[1], bool(spec.get("log", False)))
    raise ConfigError(f"give int = [low, high], float = [low, high] or choices = [...] @ {where}")


def load_sweep(path: Path) -> tuple[SweepSpec, Settings, dict[str, Any], Optional[ExecutorConfig]]:
    """The sweep spec, the base settings, the base raw config (trials edit a copy), the executor."""
    raw = read_toml(path, "sweep file")
    sweep = dict(raw.pop("sweep", {}))
    executor = structure(raw.pop("executor"), ExecutorConfig, "$.executor") if "executor" in raw else None
    space = tuple(_param(p, s) for p, s in sweep.pop("space", {}).items())
    if not space:
        raise ConfigError("the sweep has no parameters: add [sweep.space] entries")
    spec = structure({**sweep, "space": []}, SweepSpec, "$.sweep")
    spec = attrs.evolve(spec, space=space)
    settings = structure(raw, Settings)
    for p in space:           # every path must be a real option: try its low value / first choice
        apply_params(raw, {p.path: p.choices[0] if p.kind == "choices" else p.low})
    return spec, settings, raw, executor


def apply_params(raw: dict[str, Any], params: dict[str, Any]) -> Settings:
    """The base config with dotted paths set (``plugins.exits.atr_stop_multiplier = 2.5``)."""
    data = _copy(raw)
    for path, value in params.items():
        node = data
        parts = path.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{path}: {part!r} is not a table")
        node[parts[-1]] = value
    return structure(data, Settings)


def _copy(d: Any) -> Any:
    return {k: _copy(v) for k, v in d.items()} if isinstance(d, dict) else d


def suggest(trial, space: tuple[Param, ...]) -> dict[str, Any]:
    out = {}
    for p in space:
        if p.kind == "int":
            out[p.path] = trial.suggest_int(p.path, int(p.low), int(p.high), log=p.log)
        elif p.kind == "float":
            out[p.path] = trial.suggest_float(p.path, float(p.low), float(p.high), log=p.log)
        else:
            out[p.path] = trial.suggest_categorical(p.path, list(p.choices))
    return out


@attrs.frozen(eq=False)
class SweepJob:
    """Sent to every worker once: the base config, plugins and candles."""

    raw: dict[str, Any]
    plugins: Any
    candles: tuple


def backtest_task(job: SweepJob, params: dict[str, Any], j: int) -> float:
    """Task: the Sharpe ratio (net of fees) of one symbol's backtest with ``params``."""
    from mlcoord.backtest.run import run_backtest

    settings = apply_params(job.raw, params)
    plugins = plugins_from(job.plugins) if isinstance(job.plugins, PluginRecipe) else job.plugins
    return float(run_backtest(settings, plugins=plugins, candles=[job.candles[j]]).stats["sharpe"])


def _study(spec: SweepSpec):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=spec.seed)
    study = optuna.create_study(storage=spec.storage, study_name=spec.study, sampler=sampler,
                                direction=OBJECTIVES[spec.objective], load_if_exists=True)
    if study.direction.name.lower() != OBJECTIVES[spec.objective]:
        raise ConfigError(f"study {spec.study!r} in {spec.storage} was created for the other objective")
    return study


def _requeue_interrupted(study) -> int:
    """Trials left running by a killed driver: mark failed, queue their parameters again."""
    from optuna.trial import TrialState

    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for t in stale:
        study.tell(t.number, state=TrialState.FAIL)
        study.enqueue_trial(t.params, skip_if_exists=False)
    return len(stale)


def run_sweep(spec: SweepSpec, raw: dict[str, Any], plugins: PluginSet, candles: list, executor: Executor,
              progress: Optional[bool] = False, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run trials until the study has ``spec.trials`` complete ones; returns the table."""
    from optuna.trial import TrialState

    study = _study(spec)
    requeued = _requeue_interrupted(study)
    done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    if done or requeued:
        echo(f"resuming study {spec.study!r}: {done} complete trial(s), {requeued} interrupted re-queued")
    problems: list[str] = []
    if spec.objective == "sharpe":
        recipe = plugins if executor.kind == "inline" else PluginRecipe.of(plugins)
        shared = executor.share(SweepJob(raw, recipe, tuple(candles)))
        try:
            while done < spec.trials:
                batch = [study.ask() for _ in range(min(max(executor.workers, 1), spec.trials - done))]
                params = [suggest(t, spec.space) for t in batch]
                tasks = [Task(f"t{t.number}-{c.symbol}", backtest_task, (p, j),
                              {"trial": t.number, "symbol": c.symbol, "params": p})
                         for t, p in zip(batch, params) for j, c in enumerate(candles)]
                results = executor.run(tasks, shared, desc=f"trials {done + 1}-{done + len(batch)}",
                                       progress=progress)
                problems += failures(results)
                for t in batch:
                    mine = [r for r in results if r.labels["trial"] == t.number]
                    if all(r.ok for r in mine) and mine:
                        value = sum(r.value for r in mine) / len(mine)
                        study.tell(t, value if math.isfinite(value) else -math.inf)
                        done += 1
                    else:
                        study.tell(t, state=TrialState.FAIL)
                if not any(r.ok for r in results):
                    raise ConfigError("every task of a batch failed:\n  " + "\n  ".join(problems[-len(results):]))
        finally:
            executor.unshare(shared)
    else:
        from mlcoord.evaluate import WalkForward, evaluate

        wf = structure(spec.evaluate, WalkForward, "$.sweep.evaluate")
        while done < spec.trials:
            trial = study.ask()
            chosen = suggest(trial, spec.space)
            result = evaluate(apply_params(raw, chosen), plugins, candles, wf, executor=executor,
                              show_progress=progress)
            problems += [f"trial {trial.number} {chosen}: {f}" for f in result["failures"]]
            score = result["scores"].get(CALIBRATED, {}).get("log_loss")
            if result["failures"] or score is None or not math.isfinite(score):
                study.tell(trial, state=TrialState.FAIL)
                problems.append(f"trial {trial.number} {chosen}: no calibrated log-loss")
            else:
                study.tell(trial, float(score))
                done += 1
    return summarise(study, spec, problems)


def summarise(study, spec: SweepSpec, problems: list[str]) -> dict[str, Any]:
    from optuna.trial import TrialState

    rows = [{"trial": t.number, "state": t.state.name, "value": t.value, **t.params}
            for t in study.get_trials(deepcopy=False)]
    complete = [r for r in rows if r["state"] == TrialState.COMPLETE.name]
    reverse = OBJECTIVES[spec.objective] == "maximize"
    best = sorted(complete, key=lambda r: r["value"], reverse=reverse)[:spec.best]
    return {"objective": spec.objective, "direction": OBJECTIVES[spec.objective], "study": spec.study,
            "storage": spec.storage, "complete": len(complete), "best": best, "trials": rows, "failures": problems}


def render(summary: dict[str, Any], space: tuple[Param, ...]) -> str:
    names = [p.path for p in space]
    head = f"  {'trial':>5} {'state':<8} {summary['objective']:>10}  " + "  ".join(f"{n:>22}" for n in names)

    def line(r: dict[str, Any]) -> str:
        value = f"{r['value']:>10.4f}" if isinstance(r.get("value"), float) else f"{'-':>10}"
        cells = "  ".join(f"{_fmt(r.get(n)):>22}" for n in names)
        return f"  {r['trial']:>5} {r['state']:<8} {value}  {cells}"
    out = [f"sweep {summary['study']!r}: {summary['complete']} complete trials, objective {summary['objective']} "
           f"({summary['direction']}), stored in {summary['storage']}", "", "best:", head]
    out += [line(r) for r in summary["best"]]
    out += ["", "all trials:", head] + [line(r) for r in summary["trials"]]
    out += [f"  FAILED {p}" for p in summary["failures"]]
    return "\n".join(out)


def _fmt(v: Any) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


__all__ = ["SweepSpec", "Param", "load_sweep", "apply_params", "run_sweep", "render", "backtest_task"]
