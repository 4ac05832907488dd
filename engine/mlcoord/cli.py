"""The ``mlcoord`` command. Configures logging once; prints errors without tracebacks."""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import functools
import gc
import logging
import math
import os
import sys
from pathlib import Path
from typing import Any, Optional

import click

from mlcoord.errors import MlcoordError


#: the type of every file option: one instance (click's Path looks up its translated names, which
#: costs filesystem calls, each time one is made)
_FILE = click.Path(dir_okay=False, path_type=Path)


#: ccxt's answers to a key the exchange will not take (by class name: ccxt is imported only for live use)
_KEY_REFUSED = ("AuthenticationError", "PermissionDenied", "AccountSuspended")


def _key_refused(exc: BaseException) -> Optional[str]:
    """One line for an exchange that refused the API key; its message is not repeated (a proxy
    may echo the key back in it)."""
    names = {c.__name__ for c in type(exc).__mro__ if c.__module__.startswith("ccxt")}
    if not names & set(_KEY_REFUSED):
        return None
    first = str(exc).split(" ", 1)[0]
    try:
        import ccxt

        who = first if first in ccxt.exchanges else "the exchange"
    except ImportError:     # pragma: no cover - a ccxt error without ccxt
        who = "the exchange"
    what = "suspended the account of" if "AccountSuspended" in names else "rejected"
    return (f"{who} {what} the API key ({type(exc).__name__}): check the key and secret, that the key is "
            "enabled for this market (spot/futures, trading), its IP whitelist, and [exchange] sandbox "
            "(testnet keys work only on the testnet)")


def _friendly(fn):
    """Known errors (bad config, bad data, broken plugin, a refused API key) end with one clear
    line and exit code 2; any text printed is redacted of loaded secrets."""
    from mlcoord.logs import redact

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MlcoordError as exc:
            click.echo(redact(f"error: {exc}"), err=True)
            sys.exit(2)
        except Exception as exc:
            line = _key_refused(exc)
            if line is None:
                raise                      # an unexpected error: the redacting excepthook prints it
            click.echo(f"error: {line}", err=True)
            sys.exit(2)
    return wrapper


def _redacting_excepthook(kind, value, tb) -> None:
    """Print an unexpected error's traceback as Python would, with loaded secrets redacted (an
    exchange's error message may quote the API key)."""
    import traceback

    from mlcoord.logs import redact

    sys.stderr.write(redact("".join(traceback.format_exception(kind, value, tb))))


def _redacting_thread_hook(args) -> None:
    import traceback

    from mlcoord.logs import redact

    if args.exc_type is not SystemExit:
        sys.stderr.write(redact(f"Exception in thread {getattr(args.thread, 'name', '?')}:\n"
                                + "".join(traceback.format_exception(args.exc_type, args.exc_value,
                                                                     args.exc_traceback))))


_frozen_at_exit = False
#: set when a one-shot command (a backtest) starts: its process may end without the teardown
_one_shot = False
#: the console script (:func:`run`) is running the command: the process ends with it
_one_shot_console = False


@contextlib.contextmanager
def _one_shot_collector():
    """A one-shot command allocates many long-lived objects (modules, candles, decisions, the
    result) and little cyclic garbage: the collector's passes over them cost ~0.05 s of a
    50,000-bar backtest, and the interpreter's full passes at exit ~0.1 s more. Off while the
    command runs (restored after it, for callers in the same process); everything is frozen
    out of the exit passes (cyclic garbage left then is freed with the process anyway)."""
    global _frozen_at_exit
    if not _frozen_at_exit:
        atexit.register(gc.freeze)
        _frozen_at_exit = True
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        # not for the console script, which ends now: the first pass would walk every object
        # the command allocated
        if enabled and not _one_shot_console:
            gc.enable()


def _csv(values: tuple[str, ...]) -> list[str]:
    return [p.strip() for v in values for p in v.split(",") if p.strip()]


def _data_overrides(files=(), symbols=(), timeframe=None, timerange=None, repair=None, store=None,
                    repair_max_drop=None) -> dict[str, Any]:
    """``[data]`` values given on the command line (they win over the config file)."""
    data: dict[str, Any] = {}
    if repair_max_drop is not None:
        data["repair_max_drop"] = repair_max_drop
    if store:
        data["store"] = store
    if files:
        data["files"] = _csv(files)
    if symbols:
        data["symbols"] = _csv(symbols)
    if timeframe:
        data["timeframe"] = timeframe
    if timerange:
        data["timerange"] = timerange
    if repair:
        data["repair"] = True
    return data


#: ``--repair-max-drop``: how much of a file ``--repair`` may drop ([data] repair_max_drop)
_REPAIR_MAX_DROP = click.option(
    "--repair-max-drop", "repair_max_drop", type=float, metavar="FRACTION",
    help="With --repair: the largest share of a file's rows it may drop (default 0.01; beyond, it refuses and "
         "lists them).")


def _executor_options(fn):
    """``--executor``/``--address``/``--workers``: where tasks run (see mlcoord.executors)."""
    fn = click.option("--workers", type=int, help="Local pool size (default: the machine's cores; "
                      "env MLCOORD_WORKERS).")(fn)
    fn = click.option("--address", help="Dask scheduler, tcp://HOST:8786 (env MLCOORD_DASK_ADDRESS).")(fn)
    return click.option("--executor", type=click.Choice(["local", "dask", "inline"]),
                        help="Where tasks run: local process pool (default), an existing Dask cluster, "
                        "or inline (this process). Env MLCOORD_EXECUTOR; config [executor] kind.")(fn)


def _make_executor(kind, address, workers, settings=None, config=None):
    """CLI, then environment, then config ``[executor]``, then a local pool."""
    import attrs

    from mlcoord.executors import ExecutorConfig, choose_executor, make_executor

    config = config or getattr(settings, "executor", None)
    if workers:
        config = attrs.evolve(config or ExecutorConfig(), workers=workers)
    executor = make_executor(choose_executor(kind, address, config))
    click.echo(f"executor: {executor.describe()}", err=True)
    return executor


_PLUGIN_FLAGS: contextvars.ContextVar[tuple[tuple[str, ...], Optional[str]]] = contextvars.ContextVar(
    "plugin_flags", default=((), None))


def _plugin_flags(fn):
    """``--enable NAME`` and ``--plugins-dir DIR``; the command folds them into its settings with
    :func:`_flagged` (so every command reads one ``[engine]`` whatever spelled it)."""
    @click.option("--enable", "enable", multiple=True,
                  help="Plugins whose components join the pipeline, e.g. volume_spike (as [engine] enable).")
    @click.option("--plugins-dir", "plugins_dir", type=click.Path(file_okay=False, exists=True),
                  help="Load every *.py file of this folder as a one-file plugin (as [engine] plugins_dir).")
    @functools.wraps(fn)
    def wrapper(*args, enable=(), plugins_dir=None, **kwargs):
        token = _PLUGIN_FLAGS.set((tuple(enable), plugins_dir))
        try:
            return fn(*args, **kwargs)
        finally:
            _PLUGIN_FLAGS.reset(token)
    return wrapper


def _flagged(settings):
    from mlcoord.backtest.run import with_plugin_flags

    enable, plugins_dir = _PLUGIN_FLAGS.get()
    return with_plugin_flags(settings, enable, plugins_dir)


def _reloader(config_path, overrides):
    """The API's ``reload``: the settings read again as this command read them (its plugin flags
    captured here: the server's thread does not see this context's variables)."""
    from mlcoord.backtest.run import with_plugin_flags
    from mlcoord.live.runner import load_live_settings

    enable, plugins_dir = _PLUGIN_FLAGS.get()
    return lambda: with_plugin_flags(load_live_settings(config_path, overrides)[0], enable, plugins_dir)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mlcoord")
@click.option("-v", "--verbose", count=True, help="-v: every decision as a block; -vv: debug.")
@click.option("--log-json/--no-log-json", default=None, help="JSON log lines (default: when not a terminal).")
@click.pass_context
def main(ctx: click.Context, verbose: int, log_json: Optional[bool]) -> None:
    """mlcoord: ML improves entries; exits, sizing and hedging stay independent."""
    if ctx.invoked_subcommand == "backtest":      # from here until the command is done
        global _one_shot
        _one_shot = True
        ctx.with_resource(_one_shot_collector())
    from mlcoord import logs

    logs.configure(["warning", "info", "debug"][min(verbose, 2)], json=log_json)
    import threading

    sys.excepthook, threading.excepthook = _redacting_excepthook, _redacting_thread_hook
    ctx.obj = {"verbose": verbose}


@main.command()
@click.option("--config", "config_path", type=_FILE, help="TOML config file.")
@click.option("--data", "data_files", multiple=True, help="Candle file(s): CSV, Feather, Parquet, JSON. "
              "Repeat or separate with commas. Default: the bundled BTC/USDT 1h data.")
@click.option("--symbol", "symbols", multiple=True, help="Symbol(s) to trade, e.g. BTC/USDT,ETH/USDT.")
@click.option("--timeframe", help="Trade on this timeframe (resampled from completed base bars).")
@click.option("--timerange", help="YYYYMMDD-YYYYMMDD, either side optional.")
@click.option("--disable", "disable", multiple=True, help="Plugins to disable, e.g. dca,hedging.")
@click.option("--json", "json_path", type=_FILE,
              help="Write the full result (trades, fills, equity, decisions) as JSON.")
@click.option("--repair", is_flag=True, default=None, help="Repair malformed candles (documented repairs).")
@_REPAIR_MAX_DROP
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a terminal).")
@click.option("--trades", "show_trades", default=10, show_default=True, help="Trades to list in the summary.")
@click.option("--state", "state_file", help="Learning state file (ensemble weights, calibration, bandit): "
              "restored at start, saved at the end.")
@click.option("--trace", is_flag=True, help="Log which plugin answered which call, for every decision "
              "(combine with --timerange to look at one).")
@click.option("--report", "report_path", type=_FILE,
              help="Write a self-contained HTML report (charts, breakdowns, trades; opens offline).")
@click.option("--force", is_flag=True, help="Replace an existing --report file, or a --json/--state file that "
              "is not a backtest result / learning state.")
@click.option("--store", help="A `mlcoord data download` store directory: candles by --symbol/--timeframe.")
@click.option("--per-symbol", is_flag=True, help="One independent backtest per symbol (own account), "
              "run in parallel on the executor, instead of one portfolio backtest.")
@_executor_options
@_plugin_flags
@_friendly
def backtest(config_path, data_files, symbols, timeframe, timerange, disable, json_path, repair, repair_max_drop,
             progress, show_trades, state_file, trace, report_path, force, store, per_symbol, executor, address,
             workers) -> None:
    """Backtest the pipeline on real candles and print a summary."""
    from mlcoord.backtest.run import disabled_plugins, run_backtest
    from mlcoord.config import load_settings
    from mlcoord.report_text import summary

    if report_path:                     # before the run, not after it
        from mlcoord.report import refuse_overwrite

        refuse_overwrite(report_path, force)
    if json_path:
        from mlcoord.files import has_json_key, refuse_to_replace

        refuse_to_replace(json_path, "a backtest result (mlcoord backtest --json)", has_json_key("mlcoord_result"),
                          force=force, option="--json")

    data = _data_overrides(data_files, symbols, timeframe, timerange, repair, store, repair_max_drop)
    overrides: dict[str, Any] = {"data": data} if data else {}
    if state_file:
        overrides["learning"] = {"state_file": state_file}
    if trace:
        from mlcoord import logs

        overrides["engine"] = {"trace_hooks": True}
        if logs.current_level() > logging.INFO:
            logs.set_level("info")
    settings = _flagged(load_settings(config_path, overrides or None))
    disabled = disabled_plugins(settings, _csv(disable))
    factory = None
    if progress or (progress is None and sys.stderr.isatty()):     # tqdm is imported only to be shown
        from tqdm import tqdm

        def factory(total: int):
            return tqdm(total=total, unit="bar", desc="backtest", disable=None if progress is None else False,
                        dynamic_ncols=True, leave=False)
    if per_symbol:
        _backtest_per_symbol(settings, disabled, show_trades, progress, json_path or report_path,
                             _make_executor(executor, address, workers, settings))
        return
    result = run_backtest(settings, disabled=disabled, progress_factory=factory, replace_state=force)
    click.echo(summary(result, show_trades))
    if json_path:
        result.write_json(json_path)
        click.echo(f"result written to {json_path}")
    if report_path:
        from mlcoord.report import write_report

        write_report(result.to_json(), report_path, overwrite=force)
        click.echo(f"report written to {report_path}")


def _backtest_per_symbol(settings, disabled, show_trades, progress, wants_file, executor) -> None:
    from mlcoord.backtest.run import load_market, run_per_symbol
    from mlcoord.errors import ConfigError
    from mlcoord.backtest.run import configured_plugins
    from mlcoord.report_text import summary

    if wants_file:
        raise ConfigError("--json and --report describe one backtest; leave them out with --per-symbol")
    with executor:
        results = run_per_symbol(settings, configured_plugins(settings, disabled), load_market(settings), executor, progress)
    for r in results:
        click.echo(f"== {r.labels['symbol']} ==")
        click.echo(summary(r.value, show_trades) if r.ok else f"FAILED {r.describe()}")
    if not all(r.ok for r in results):
        sys.exit(1)


@contextlib.contextmanager
def _progress_env(progress: Optional[bool]):
    """``--no-progress``: quiet every tqdm bar below (training epochs, windows) for this command."""
    if progress is not False:
        yield
        return
    before = os.environ.get("TQDM_DISABLE")
    os.environ["TQDM_DISABLE"] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = before


@main.command()
@click.option("--component", required=True, help="The ML component to train (one whose plugin gives it a train method).")
@click.option("--config", "config_path", type=_FILE)
@click.option("--data", "data_files", multiple=True, help="Candle file(s); default: the bundled data.")
@click.option("--symbol", "symbols", multiple=True, help="Symbol(s) to train on, e.g. BTC/USDT,ETH/USDT.")
@click.option("--timerange", help="Training history, YYYYMMDD-YYYYMMDD (labels past its end are not used).")
@click.option("--out", "out", required=True, type=_FILE,
              help="Where to write the model artifact (.npz).")
@click.option("--progress/--no-progress", default=None, help="Progress bar per epoch (default: on a terminal).")
@_plugin_flags
@_friendly
def train(component, config_path, data_files, symbols, timerange, out, progress) -> None:
    """Train an ML component's model on a chosen history (chronological split, early stopping)."""
    from mlcoord.backtest.run import configured_plugins, disabled_plugins, load_market
    from mlcoord.config import load_settings
    from mlcoord.errors import ConfigError
    from mlcoord.market_sources import market_datasets
    from mlcoord.pipeline import build_component
    from mlcoord.protocols import Trainable
    from mlcoord.registry import check_names

    data = _data_overrides(data_files, symbols, timerange=timerange)
    settings = _flagged(load_settings(config_path, {"data": data} if data else None))
    loaded = configured_plugins(settings, disabled_plugins(settings))
    check_names([component], loaded.components, "component")
    built = build_component(settings, loaded.components[component])
    if not isinstance(built.obj, Trainable):
        raise ConfigError(f"component {component!r} has no model to train (no train(datasets, out, progress) method)")
    datasets = market_datasets(settings, load_market(settings, cut_start=False))
    with _progress_env(progress):
        report = built.obj.train(datasets, out, None)
    for key, value in report.items():
        click.echo(f"{key}: {value}")
    click.echo(f"model written to {out}")


@main.command()
@click.option("--config", "config_path", type=_FILE)
@click.option("--data", "data_files", multiple=True, help="Candle file(s); default: the bundled data.")
@click.option("--symbol", "symbols", multiple=True, help="Symbol(s), e.g. BTC/USDT,ETH/USDT.")
@click.option("--timeframe", help="Evaluate on this timeframe (resampled from completed base bars).")
@click.option("--disable", "disable", multiple=True, help="Plugins to disable.")
@click.option("--train-bars", default=17_520, show_default=True, help="Bars the models train on per window.")
@click.option("--fit-bars", default=4_380, show_default=True, help="Bars the online learners fit on, after those.")
@click.option("--test-bars", default=4_380, show_default=True, help="Bars scored per window.")
@click.option("--windows", type=int, help="Only the last N windows.")
@click.option("--no-retrain", is_flag=True, help="Use the configured models instead of retraining per window.")
@click.option("--json", "json_path", type=_FILE, help="Write all results as JSON.")
@click.option("--report", "report_path", type=_FILE,
              help="Write a self-contained HTML report (scores, reliability, technical vs ML trading).")
@click.option("--progress/--no-progress", default=None, help="Progress bars (default: on a terminal).")
@click.option("--store", help="A `mlcoord data download` store directory: candles by --symbol/--timeframe.")
@click.option("--holdout-from", "holdout_from", metavar="DATE",
              help="Start of the holdout part (default: where the last 30 % of the bars begin).")
@click.option("--part", type=click.Choice(["development", "holdout"]), default="development", show_default=True,
              help="Score the development part (reads no holdout bar) or the holdout part (the run is logged).")
@click.option("--holdout-log", "holdout_log", default="benchmarks/holdout-log.csv", show_default=True,
              type=_FILE, help="CSV every holdout run is appended to.")
@click.option("--every-bar", is_flag=True, help="Add a second table scoring every bar (up / long), not only signal bars.")
@click.option("--label", type=click.Choice(["event", "trade"]), default="event", show_default=True,
              help="What predictions are scored against: the learning event, or the trade label (the configured "
                   "exit manager's barriers and [learning] horizon, net of fees and slippage).")
@click.option("--export", "export_path", type=_FILE,
              help="Write every scored prediction to this Parquet file (e.g. decisions.parquet).")
@click.option("--resamples", default=1000, show_default=True, type=click.IntRange(min=1),
              help="Weekly-block bootstrap resamples.")
@click.option("--seed", default=0, show_default=True, help="Seed of the bootstrap and the baselines.")
@click.option("--force", is_flag=True, help="Replace a --json file that is not an evaluation result.")
@_executor_options
@_plugin_flags
@_friendly
def evaluate(config_path, data_files, symbols, timeframe, disable, train_bars, fit_bars, test_bars, windows,
             no_retrain, json_path, report_path, progress, store, holdout_from, part, holdout_log, every_bar, label,
             export_path, resamples, seed, force, executor, address, workers) -> None:
    """Walk-forward evaluation: component, baseline and ensemble scores with intervals, trading arms."""
    import json as _json

    import attrs

    from mlcoord import strict_json
    from mlcoord.backtest.run import disabled_plugins, load_market
    from mlcoord.config import load_settings
    from mlcoord.evaluate import EvalOptions, WalkForward, evaluate as run_evaluation, render
    from mlcoord.evaluation.baselines import BaselineOptions
    from mlcoord.evaluation.holdout import make_split
    from mlcoord.backtest.run import configured_plugins
    from mlcoord.files import has_json_key, refuse_to_replace, write_atomic

    if json_path:                       # before the run, not after it
        refuse_to_replace(json_path, "an evaluation result (mlcoord evaluate --json)",
                          has_json_key("mlcoord_evaluation"), force=force, option="--json")
    data = _data_overrides(data_files, symbols, timeframe, store=store)
    settings = _flagged(load_settings(config_path, {"data": data} if data else None))
    loaded = configured_plugins(settings, disabled_plugins(settings, _csv(disable)))
    candles = load_market(settings, cut_start=False)
    wf = WalkForward(train_bars, fit_bars, test_bars, windows, not no_retrain)
    split = make_split(candles, holdout_from, part)
    options = EvalOptions(resamples=resamples, seed=seed, every_bar=every_bar, label=label,
                          baselines=attrs.evolve(BaselineOptions(), seed=seed))
    with _progress_env(progress), _make_executor(executor, address, workers, settings) as pool:
        result = run_evaluation(settings, loaded, candles, wf, executor=pool, show_progress=progress,
                                options=options, split=split, holdout_log=holdout_log if part == "holdout" else None,
                                export=export_path)
    click.echo(render(result))
    if part == "holdout":
        click.echo(f"holdout look recorded in {holdout_log}")
    if export_path:
        click.echo(f"{result['export']['rows']:,} scored predictions written to {export_path}")
    if json_path:
        write_atomic(json_path, strict_json.dumps(result, indent=1))
        click.echo(f"result written to {json_path}")
    if report_path:
        from mlcoord.report import write_report

        write_report(_json.loads(_json.dumps(result, default=str)), report_path)
        click.echo(f"report written to {report_path}")


@main.command()
@click.option("--config", "config_path", required=True, type=_FILE,
              help="sweep.toml: a config plus [sweep] (objective, trials, storage, [sweep.space]).")
@click.option("--trials", type=int, help="Complete trials wanted (overrides [sweep] trials).")
@click.option("--storage", help="Optuna storage, e.g. sqlite:///sweep.db (overrides [sweep] storage).")
@click.option("--json", "json_path", type=_FILE, help="Write the table as JSON.")
@click.option("--progress/--no-progress", default=None, help="Progress bars (default: on a terminal).")
@click.option("--walk-forward", "walk_forward", is_flag=True, help="Optimise on each window's in-sample part, "
              "score the best set on the next out-of-sample part ([sweep.walk_forward] sizes); report the "
              "concatenated out-of-sample result and the in/out gap.")
@_executor_options
@_plugin_flags
@_friendly
def sweep(config_path, trials, storage, json_path, progress, walk_forward, executor, address, workers) -> None:
    """Search plugin options for the best Sharpe (net of fees) or calibrated log-loss; resumable."""
    import attrs

    from mlcoord import strict_json
    from mlcoord.backtest.run import disabled_plugins, load_market
    from mlcoord.backtest.run import configured_plugins
    from mlcoord.files import write_atomic
    from mlcoord.sweep import load_sweep, render, run_sweep

    spec, settings, raw, executor_config = load_sweep(config_path)
    settings = _flagged(settings)
    spec = attrs.evolve(spec, **{k: v for k, v in (("trials", trials), ("storage", storage)) if v})
    loaded = configured_plugins(settings, disabled_plugins(settings))
    candles = load_market(settings, cut_start=spec.objective == "sharpe")
    if walk_forward:
        from mlcoord.config import structure
        from mlcoord.walk_forward_sweep import WalkForwardSpec, render as render_wf, run_walk_forward

        wf = structure(spec.walk_forward, WalkForwardSpec, "$.sweep.walk_forward")
        with _progress_env(progress), _make_executor(executor, address, workers, config=executor_config) as pool:
            table = run_walk_forward(spec, wf, raw, loaded, candles, pool, progress=progress, echo=click.echo)
        click.echo(render_wf(table))
        if json_path:
            write_atomic(json_path, strict_json.dumps(table, indent=1))
            click.echo(f"table written to {json_path}")
        return
    with _progress_env(progress), _make_executor(executor, address, workers, config=executor_config) as pool:
        summary = run_sweep(spec, raw, loaded, candles, pool, progress=progress, echo=click.echo)
    click.echo(render(summary, spec.space))
    if json_path:
        write_atomic(json_path, strict_json.dumps(summary, indent=1))
        click.echo(f"table written to {json_path}")


@main.command()
@click.argument("results", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--out", "out", type=_FILE,
              help="HTML file to write (default: next to the first result, .html).")
@click.option("--title", default="", help="Page title.")
@click.option("--force", is_flag=True, help="Overwrite an existing HTML file.")
@_friendly
def report(results, out, title, force) -> None:
    """HTML report of RESULT.json (backtest or evaluate --json); two files: side by side."""
    from mlcoord.errors import ConfigError
    from mlcoord.report import load_result, write_comparison, write_report

    if len(results) > 2:
        raise ConfigError(f"give one result file, or two to compare (got {len(results)})")
    loaded = [load_result(p) for p in results]
    if len(results) == 1:
        out = out or results[0].with_suffix(".html")
        write_report(loaded[0], out, title, overwrite=force)
    else:
        a, b = results
        names = (a.stem, b.stem) if a.stem != b.stem else (str(a), str(b))
        out = out or a.with_name(f"{a.stem}-vs-{b.stem}.html")
        write_comparison(loaded[0], loaded[1], out, names, overwrite=force)
    click.echo(f"report written to {out}")


@main.group()
def data() -> None:
    """Download market data into a local store."""


@data.command("download")
@click.option("--config", "config_path", type=_FILE,
              help="TOML config ([exchange] id, market, keys; [data] store).")
@click.option("--exchange", "exchange_id", help="ccxt exchange id (default: [exchange] id, binance).")
@click.option("--market", type=click.Choice(["spot", "futures"]), help="Spot or USD-M perpetuals (default: [exchange] market).")
@click.option("--symbols", "symbols", multiple=True, required=True, help="e.g. BTC/USDT,ETH/USDT.")
@click.option("--timeframes", "timeframes", multiple=True, default=("1h",), show_default=True, help="e.g. 1h,4h,1d.")
@click.option("--since", default="2021-01-01", show_default=True, help="First candle wanted (UTC date), if not stored yet.")
@click.option("--store", help="Store directory (default: [data] store, else ./user_data/data).")
@click.option("--limit", default=1000, show_default=True, help="Candles per request.")
@click.option("--no-funding", is_flag=True, help="Skip funding-rate history (futures).")
@click.option("--mark", is_flag=True, help="Also the perpetuals' mark-price candles (futures).")
@_friendly
def data_download(config_path, exchange_id, market, symbols, timeframes, since, store, limit, no_funding,
                  mark) -> None:
    """Fetch candles (and perpetual funding rates, and with --mark mark prices) through ccxt; a
    second run fetches only what is new. The funding, basis and cross-asset features read the store
    (download --market spot and --market futures into the same --store for the basis).

    API keys, if needed, come from [exchange] keys_file or the environment, never from options."""
    from mlcoord.config import load_settings
    from mlcoord.errors import ConfigError
    from mlcoord.live.data import Downloader, parse_since
    from mlcoord.live.exchange import create_exchange, load_credentials
    from mlcoord.live.preflight import check_market_arguments

    if limit < 1:
        raise ConfigError(f"--limit must be a whole number of candles per request >= 1, got {limit}")
    overrides: dict[str, Any] = {"exchange": {k: v for k, v in (("id", exchange_id), ("market", market))
                                              if v is not None}}      # --exchange "" is an error, not binance
    settings = load_settings(config_path, overrides)
    root = Path(store or settings.data.store or "user_data/data")
    if root.exists() and not root.is_dir():
        raise ConfigError(f"--store {root} is a file: the store is a directory (it holds one folder per exchange)")
    if mark and settings.exchange.market != "futures":
        raise ConfigError("--mark downloads a perpetual's mark prices: use it with --market futures")
    since_ms = parse_since(since)
    exchange = create_exchange(settings.exchange, load_credentials(settings.exchange))
    check_market_arguments(exchange, settings.exchange.market, _csv(symbols), _csv(timeframes))
    downloader = Downloader(exchange, root, settings.exchange.market, limit=limit)
    for report in downloader.download(_csv(symbols), _csv(timeframes), since_ms, funding=not no_funding, mark=mark):
        click.echo(report.line())


@main.command()
@click.option("--config", "config_path", type=_FILE,
              help="TOML config ([exchange], [data] symbols, [live] kill_switch/heartbeat/poll_seconds).")
@click.option("--symbol", "symbols", multiple=True, help="Symbol(s), e.g. BTC/USDT,ETH/USDT.")
@click.option("--timeframe", default="1h", show_default=True, help="Bar timeframe traded.")
@click.option("--disable", "disable", multiple=True, help="Plugins to disable.")
@click.option("--cycles", type=int, help="Stop after N polls (default: run until stopped).")
@_plugin_flags
@_friendly
def paper(config_path, symbols, timeframe, disable, cycles) -> None:
    """Paper trading: the backtest's pipeline and fill model on live closed candles (no keys, no orders).

    Missed bars (a pause, an outage) are replayed in order. The session's summary, trades and
    fills are kept in [live] store (tables paper_*). Ctrl-C ends it cleanly: the summary is
    saved and printed, exit code 130 (0 when it stops on its own: --cycles, the kill switch)."""
    from mlcoord.backtest.run import disabled_plugins
    from mlcoord.live.exchange import create_exchange
    from mlcoord.live.runner import load_live_settings, paper_summary_line, run_paper
    from mlcoord.backtest.run import configured_plugins

    from mlcoord.live.preflight import check_market_arguments
    from mlcoord.live.runner import market_symbols

    overrides = {"data": {"symbols": _csv(symbols)}} if symbols else {}
    settings, options = load_live_settings(config_path, overrides)
    settings = _flagged(settings)
    loaded = configured_plugins(settings, disabled_plugins(settings, _csv(disable)))
    exchange = create_exchange(settings.exchange)
    check_market_arguments(exchange, settings.exchange.market, market_symbols(settings)[0], [timeframe],
                           settings.backtest.leverage)
    with _api_for(settings, options, exclusive=False,
                  load_config=_reloader(config_path, overrides)) as (store, channel):
        trader = run_paper(settings, options, exchange, loaded, cycles=cycles, timeframe=timeframe, store=store,
                           channel=channel)
    p = trader.portfolio
    click.echo(f"paper: equity {p.equity:,.2f}, open positions {sorted(p.positions) or 'none'}, "
               f"fills {len(trader.engine.fills)}")
    click.echo(paper_summary_line(trader.summary))
    kept = options.store if "://" in options.store else str(Path(options.store).expanduser().resolve())
    click.echo(f"paper: kept in {kept} (session {trader.summary['session_id']})")
    if trader.interrupted:
        sys.exit(130)


@main.command()
@click.option("--config", "config_path", type=_FILE,
              help="TOML config ([exchange] with keys_file or key env names, [live]).")
@click.option("--disable", "disable", multiple=True, help="Plugins to disable.")
@click.option("--i-understand-this-is-real-money", "real_money", is_flag=True,
              help="Required: without it nothing is sent (use `mlcoord paper` for a dry run).")
@click.option("--timeframe", default="1h", show_default=True, help="Bar timeframe traded.")
@click.option("--cycles", type=int, help="Stop after N polls (default: run until stopped).")
@click.option("--adopt", is_flag=True,
              help="Take over positions, balances and orders the exchange holds and the store does not know "
                   "(positions get the exit manager's stop and take profit).")
@click.option("--ignore", "ignore", multiple=True, metavar="SYMBOL",
              help="Leave SYMBOL's unknown positions and orders alone and do not trade it this session (repeatable).")
@_plugin_flags
@_friendly
def live(config_path, disable, real_money, timeframe, cycles, adopt, ignore) -> None:
    """Live trading with real orders ([exchange] market: USD-M futures in hedge mode, or spot). Keys
    come from the environment or [exchange] keys_file only.

    At start the bot refuses to trade next to positions, balances or open orders on its symbols
    that its store ([live] store, next to the config file by default) has no record of, until you
    choose: --adopt takes them over, --ignore SYMBOL leaves that symbol alone."""
    from mlcoord.backtest.run import disabled_plugins
    from mlcoord.errors import ConfigError
    from mlcoord.live.exchange import create_exchange
    from mlcoord.live.runner import check_live_start, load_live_settings
    from mlcoord.live.session import run_live
    from mlcoord.backtest.run import configured_plugins

    if config_path is None:
        raise ConfigError("mlcoord live needs --config FILE: the bot's store (its positions, orders and plans) "
                          "is kept next to that file (or at its [live] store), never in whatever folder the bot "
                          "happens to be started from")
    settings, options = load_live_settings(config_path)
    settings = _flagged(settings)
    loaded = configured_plugins(settings, disabled_plugins(settings, _csv(disable)))
    credentials = check_live_start(settings, loaded, real_money=real_money)
    # the scanner's threads each get their own instance, built from the same [exchange] (and ccxt table)
    with _api_for(settings, options, exclusive=True,
                  load_config=_reloader(config_path, None)) as (store, channel):
        trader = run_live(settings, options, create_exchange(settings.exchange, credentials), loaded, cycles=cycles,
                          timeframe=timeframe, make_exchange=lambda: create_exchange(settings.exchange, credentials),
                          store=store, channel=channel, adopt=adopt, ignore=_csv(ignore))
    click.echo(f"live: open positions {sorted(trader.portfolio.positions) or 'none'}, "
               f"active plans {len(trader.store.active_plans())}")


@main.command()
@click.option("--config", "config_path", type=_FILE, required=True,
              help="The bot's TOML config ([live] kill_switch).")
@click.option("--off", is_flag=True, help="Remove the kill switch (new entries allowed again).")
@click.option("--reason", default="mlcoord kill", show_default=True, help="Recorded in the kill-switch file.")
@_friendly
def kill(config_path, off, reason) -> None:
    """Kill switch of a running paper or live bot: no new entries (stops keep working; with
    [live] flatten_on_kill positions are closed). Takes effect at the bot's next cycle."""
    import time as _time

    from mlcoord.live.runner import load_live_settings
    from mlcoord.live.supervisor import Supervisor

    _, options = load_live_settings(config_path)
    supervisor = Supervisor(options)
    if off:
        was = supervisor.release()
        click.echo(f"kill switch {options.kill_switch}: {'removed' if was else 'was not on'}")
        return
    path = supervisor.engage(reason, wall_time=_time.time())
    click.echo(f"kill switch {path}: on ({reason}); flatten_on_kill={options.flatten_on_kill}")


@main.command()
@click.option("--config", "config_path", type=_FILE, required=True,
              help="The bot's TOML config ([live] heartbeat, kill_switch, poll_seconds).")
@click.option("--max-age", type=float, help="Exit 1 if the last cycle is older than this many seconds (default: 3 x poll_seconds + 60).")
@_friendly
def status(config_path, max_age) -> None:
    """A running bot's last heartbeat and kill-switch state, for supervisors: exits 1 when the bot
    is silent (no beat, an old one, or one dated in the future) or paused, 0 when it is cycling."""
    import time as _time

    from mlcoord.times import iso
    from mlcoord.live.runner import load_live_settings
    from mlcoord.live.supervisor import Supervisor, beat_problem

    _positive_seconds(max_age, "--max-age")
    _, options = load_live_settings(config_path)
    supervisor = Supervisor(options)
    beat = supervisor.last_beat()
    switch = (f"kill switch {options.kill_switch}: {'on' if supervisor.killed() else 'off'}" if options.kill_switch
              else "no kill switch configured")
    limit = max_age if max_age is not None else 3 * options.poll_seconds + 60
    if beat is None:
        click.echo(f"no heartbeat yet at {options.heartbeat}; {switch}")
        raise SystemExit(1)
    now = _time.time()
    age = now - float(beat["wall_time"])
    bar = beat.get("bar_time_ns")
    bar_text = iso(int(bar)) if bar else "none"
    bad = beat.get("bad_bars")
    bad_text = f"; bad bars left out {bad}" if isinstance(bad, int) and not isinstance(bad, bool) else ""
    click.echo(f"status {beat.get('status')}; last cycle {age:.0f} s ago (limit {limit:.0f} s); last bar {bar_text}; "
               f"pid {beat.get('pid')}; cycles {beat.get('beats')}{bad_text}; {switch}; heartbeat {options.heartbeat}")
    problem = beat_problem(beat, now, limit)
    if problem:
        click.echo(f"unhealthy: {problem}")
        raise SystemExit(1)


@contextlib.contextmanager
def _api_for(settings, options, *, exclusive: bool, load_config=None):
    """With ``[api] enabled`` or a ``[notify.*]`` channel: the bot's store opened here, the
    session's control channel, the notifier (subscribed to the channel's events) and the API served
    in a thread; yields (store, channel), both None with neither."""
    if not settings.api.enabled and not settings.notify.enabled:
        yield None, None
        return
    from mlcoord.live.controls import ControlChannel
    from mlcoord.live.store import Store

    if settings.api.enabled:
        _need_api_extra()

    store = Store.open(options.store, exclusive=exclusive)
    notifier = server = None
    try:
        channel = ControlChannel()
        if settings.notify.enabled:
            from mlcoord.notify.service import start_notify

            notifier = start_notify(settings, options, store, channel)
        if settings.api.enabled:
            from mlcoord.server.run import start_api

            server = start_api(settings, options, store, channel, load_config=load_config, notifier=notifier)
            click.echo(f"api: serving {server.url}/api/v1", err=True)
        yield store, channel
    finally:
        if server is not None:
            server.stop()
        if notifier is not None:
            notifier.close()
        store.close()


def _need_api_extra() -> None:
    import importlib.util

    from mlcoord.errors import ConfigError

    missing = [m for m in ("fastapi", "uvicorn", "argon2", "jwt", "prometheus_client")
               if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"the API needs its extra (missing {', '.join(missing)}): pip install 'mlcoord[api]'")


@main.command()
@click.option("--config", "config_path", type=_FILE, required=True,
              help="The bot's TOML config ([live] store, [api]).")
@_friendly
def serve(config_path) -> None:
    """Serve the API of a bot's store (read-only: controls go to the bot's own API, [api] enabled).

    Serves health and metrics at once; every other route needs a user (`mlcoord api user add`).
    Runs until stopped (Ctrl-C)."""
    from mlcoord.live.runner import load_live_settings
    from mlcoord.live.store import Store

    _need_api_extra()
    from mlcoord.server.run import start_api

    settings, options = load_live_settings(config_path)
    with Store.open(options.store) as store:
        server = start_api(settings, options, store, None)
        click.echo(f"serving {server.url}/api/v1 (read-only, store {options.store})", err=False)
        sys.stdout.flush()
        try:
            while server.thread.is_alive():
                server.thread.join(1.0)
        except KeyboardInterrupt:
            pass
        finally:
            server.stop()


@main.group()
def api() -> None:
    """The bot's HTTP API: users and roles (see `mlcoord serve` and [api] in the README)."""


@api.group("user")
def api_user() -> None:
    """API users: viewer (reads), trader (also controls), admin (also reload and the audit log)."""


def _accounts(config_path):
    from mlcoord.live.runner import load_live_settings
    from mlcoord.live.store import Store

    _need_api_extra()
    from mlcoord.server.accounts import Accounts

    _, options = load_live_settings(config_path)
    store = Store.open(options.store)
    return store, Accounts(store)


_CONFIG_OPTION = click.option("--config", "config_path", type=_FILE,
                              required=True, help="The bot's TOML config ([live] store holds the users).")


@api_user.command("add")
@click.argument("username")
@click.option("--role", type=click.Choice(["viewer", "trader", "admin"]), default="viewer", show_default=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input (scripts).")
@_CONFIG_OPTION
@_friendly
def api_user_add(username, role, password_stdin, config_path) -> None:
    """Add USERNAME (or change their password and role). The password is asked for (never an argument)."""
    from mlcoord.logs import register_secret

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    register_secret(password)
    store, accounts = _accounts(config_path)
    with store:
        accounts.add_user(username, password, role)
    click.echo(f"api user {username}: {role}")


@api_user.command("remove")
@click.argument("username")
@_CONFIG_OPTION
@_friendly
def api_user_remove(username, config_path) -> None:
    """Remove USERNAME: their tokens stop working at once."""
    store, accounts = _accounts(config_path)
    with store:
        gone = accounts.remove_user(username)
    click.echo(f"api user {username}: {'removed' if gone else 'not found'}")
    if not gone:
        raise SystemExit(1)


@api_user.command("list")
@_CONFIG_OPTION
@_friendly
def api_user_list(config_path) -> None:
    """Every API user and their role."""
    store, accounts = _accounts(config_path)
    with store:
        users = accounts.users()
    for u in users:
        click.echo(f"{u.username}\t{u.role}")
    if not users:
        click.echo("no API user (only public routes are served)")


def _positive_seconds(value: Optional[float], option: str) -> Optional[float]:
    """A number of seconds that is finite and > 0 (``nan`` compares false with everything, so an
    age limit of ``nan`` once made every heartbeat healthy)."""
    if value is not None and not (math.isfinite(value) and value > 0):
        from mlcoord.errors import ConfigError

        raise ConfigError(f"{option} must be a finite number of seconds > 0, got {value!r}")
    return value


@main.group()
def plugins() -> None:
    """List and inspect plugins."""


@plugins.command("list")
@click.option("--config", "config_path", type=_FILE)
@click.option("--disable", "disable", multiple=True)
@_plugin_flags
@_friendly
def plugins_list(config_path, disable) -> None:
    """Every discovered plugin: name, distribution, version, hooks, components, whether each runs
    in this config's pipeline, and how to enable what is installed but not enabled."""
    from mlcoord.backtest.run import configured_plugins, disabled_plugins
    from mlcoord.config import load_settings
    from mlcoord.pipeline import selected_components
    from mlcoord.profile import load_profile

    settings = _flagged(load_settings(config_path))
    loaded = configured_plugins(settings, disabled_plugins(settings, _csv(disable)))
    selected, essential = selected_components(settings, loaded)
    profile = load_profile(settings.engine.profile)
    idle: list[str] = []
    for name, status in sorted(loaded.statuses.items()):
        state = "enabled" if status.enabled else f"disabled ({status.reason})"
        click.echo(f"{name:<14} {status.distribution or '-'} {status.version or ''}  {state}")
        if status.hooks:
            click.echo(f"{'':<14} hooks: {', '.join(status.hooks)}")
        for comp in (c for c in loaded.components.values() if c.owner == name):
            roles = selected.get(comp.name, ())
            where = f"in the pipeline as {', '.join(roles)}" if roles else "installed, not enabled"
            if comp.name in essential:
                where += f"; essential ({essential[comp.name]}: replacing it needs another component for that role)"
            label = profile.display_name(comp.name, comp.display_name)
            click.echo(f"{'':<14} component {comp.name} [{', '.join(comp.roles)}] ({label}): {where}")
            if not roles:
                idle.append(comp.name)
    for text in loaded.clashes:
        click.echo(f"CLASH: {text}")
    if idle:
        click.echo(f"not enabled: {', '.join(idle)}. Enable a plugin's components with --enable PLUGIN or "
                   "[engine] enable = [\"PLUGIN\"] (signal sources, ML components, guards), or name a component "
                   "in [pipeline] (entry_planner, sizer, exit_manager, calibrator)")


@plugins.command("info")
@click.argument("name")
@_plugin_flags
@_friendly
def plugins_info(name: str) -> None:
    """A plugin's hooks, components and their options with defaults, as TOML you can paste."""
    from mlcoord.backtest.run import configured_plugins
    from mlcoord.config import Settings
    from mlcoord.registry import check_names
    from mlcoord.toml_text import option_lines

    loaded = configured_plugins(_flagged(Settings()))
    check_names([name], loaded.statuses, "plugin")
    status = loaded.statuses[name]
    click.echo(f"# {name}: {'enabled' if status.enabled else status.reason}")
    click.echo(f"# hooks: {', '.join(status.hooks) or 'none'}")
    for comp in loaded.components.values():
        if comp.owner != name:
            continue
        click.echo(f"# component {comp.name} ({', '.join(comp.roles)}): {comp.description}")
        if comp.options is not None:
            click.echo(f"[plugins.{comp.name}]")
            for line in option_lines(comp.options):
                click.echo(line)


@main.group()
def check() -> None:
    """Check the configured pipeline on your data: look-ahead and warm-up dependence."""


def _check_options(fn):
    """``mlcoord backtest``'s data and plugin options plus ``--json``, for the ``check`` commands."""
    options = [
        click.option("--config", "config_path", type=_FILE, help="TOML config file."),
        click.option("--data", "data_files", multiple=True, help="Candle file(s), as for backtest (default: bundled)."),
        click.option("--symbol", "symbols", multiple=True, help="Symbol(s), e.g. BTC/USDT,ETH/USDT."),
        click.option("--timeframe", help="Check on this timeframe (resampled from completed base bars)."),
        click.option("--timerange", help="YYYYMMDD-YYYYMMDD, either side optional."),
        click.option("--store", help="A `mlcoord data download` store directory."),
        click.option("--repair", is_flag=True, default=None, help="Repair malformed candles (documented repairs)."),
        _REPAIR_MAX_DROP,
        click.option("--disable", "disable", multiple=True, help="Plugins to disable, e.g. dca,hedging."),
        click.option("--json", "json_path", type=_FILE,
                     help="Write the report as JSON."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return _plugin_flags(fn)


def _check_settings(config_path, data_files, symbols, timeframe, timerange, store, repair, repair_max_drop):
    from mlcoord.config import load_settings

    data = _data_overrides(data_files, symbols, timeframe, timerange, repair, store, repair_max_drop)
    return _flagged(load_settings(config_path, {"data": data} if data else None))


@check.command("lookahead", short_help="Outputs that change when later bars are removed.")
@_check_options
@click.option("--samples", type=int, help="Bars to cut the data after (default and minimum 50).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the sampled cuts.")
@_friendly
def check_lookahead(config_path, data_files, symbols, timeframe, timerange, store, repair, repair_max_drop, disable,
                    json_path, samples, seed) -> None:
    """Run the pipeline on the data, then on the data cut after sampled bars: an output before a cut
    that changes is a look-ahead. Exit code 1 when one is found (or a component cannot be checked)."""
    from mlcoord.leakcheck.command import run_lookahead

    settings = _check_settings(config_path, data_files, symbols, timeframe, timerange, store, repair, repair_max_drop)
    sys.exit(run_lookahead(settings, _csv(disable), samples=samples, seed=seed, json_path=json_path, echo=click.echo))


@check.command("recursive", short_help="Values that depend on the warm-up length.")
@_check_options
@click.option("--warmups", help="Warm-ups to test, bars before the window (default 100,200,500,1000).")
@click.option("--window", type=int, help="Evaluation window: the data's last N bars (default 500).")
@click.option("--tolerance", type=float, help="Largest relative difference allowed (default 0.001).")
@_friendly
def check_recursive(config_path, data_files, symbols, timeframe, timerange, store, repair, repair_max_drop, disable,
                    json_path, warmups, window, tolerance) -> None:
    """Signal sources on the last bars after different warm-ups: values that depend on the warm-up
    beyond the tolerance are flagged (exit code 1)."""
    from mlcoord.leakcheck.command import run_recursive

    settings = _check_settings(config_path, data_files, symbols, timeframe, timerange, store, repair, repair_max_drop)
    sys.exit(run_recursive(settings, _csv(disable), warmups=warmups, window=window, tolerance=tolerance,
                           json_path=json_path, echo=click.echo))


def run() -> None:
    """The console script: :func:`main` in click's standalone mode. A one-shot command (a
    backtest) ends without the interpreter's teardown, which frees every module, candle array and
    decision one by one (about 0.03 s of a 50,000-bar backtest, for a process that is ending):
    the exit handlers run, the output is flushed, and the process exits with the command's code.
    Other commands, an unexpected error, or a thread still running end as Python ends them."""
    global _one_shot, _one_shot_console
    _one_shot, _one_shot_console = False, True
    try:
        main()
    except SystemExit as exc:
        code = exc.code
        import threading

        if not (_one_shot and (code is None or type(code) is int) and threading.active_count() == 1):
            raise
        _end_now(code or 0)
    finally:                       # still here (in a caller's process): the collector as it was
        _one_shot_console = False


def _end_now(code: int) -> None:
    """What the interpreter's exit does that matters once a command has finished (``atexit``
    handlers, among them logging's and every ``weakref.finalize``; flushing the output) without
    freeing the heap object by object."""
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:              # a closed pipe, say: Python's own exit reports it as usual
        raise SystemExit(code) from None
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    run()
