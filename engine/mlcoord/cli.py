"""The ``mlcoord`` command. Configures logging once; prints errors without tracebacks."""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path
from typing import Any, Optional

import click

from mlcoord.errors import MlcoordError


def _friendly(fn):
    """Known errors (bad config, bad data, broken plugin) end with a clear message and exit code 2."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MlcoordError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
    return wrapper


def _csv(values: tuple[str, ...]) -> list[str]:
    return [p.strip() for v in values for p in v.split(",") if p.strip()]


def _data_overrides(files=(), symbols=(), timeframe=None, timerange=None, repair=None) -> dict[str, Any]:
    """``[data]`` values given on the command line (they win over the config file)."""
    data: dict[str, Any] = {}
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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mlcoord")
@click.option("-v", "--verbose", count=True, help="-v: every decision as a block; -vv: debug.")
@click.option("--log-json/--no-log-json", default=None, help="JSON log lines (default: when not a terminal).")
@click.pass_context
def main(ctx: click.Context, verbose: int, log_json: Optional[bool]) -> None:
    """mlcoord: ML improves entries; exits, sizing and hedging stay independent."""
    from mlcoord import logs

    logs.configure(["warning", "info", "debug"][min(verbose, 2)], json=log_json)
    ctx.obj = {"verbose": verbose}


@main.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), help="TOML config file.")
@click.option("--data", "data_files", multiple=True, help="Candle file(s): CSV, Feather, Parquet, JSON. "
              "Repeat or separate with commas. Default: the bundled BTC/USDT 1h data.")
@click.option("--symbol", "symbols", multiple=True, help="Symbol(s) to trade, e.g. BTC/USDT,ETH/USDT.")
@click.option("--timeframe", help="Trade on this timeframe (resampled from completed base bars).")
@click.option("--timerange", help="YYYYMMDD-YYYYMMDD, either side optional.")
@click.option("--disable", "disable", multiple=True, help="Plugins to disable, e.g. dca,hedging.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the full result (trades, fills, equity, decisions) as JSON.")
@click.option("--repair", is_flag=True, default=None, help="Repair malformed candles (documented repairs).")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a terminal).")
@click.option("--trades", "show_trades", default=10, show_default=True, help="Trades to list in the summary.")
@click.option("--state", "state_file", help="Learning state file (ensemble weights, calibration, bandit): "
              "restored at start, saved at the end.")
@click.option("--trace", is_flag=True, help="Log which plugin answered which call, for every decision "
              "(combine with --timerange to look at one).")
@_friendly
def backtest(config_path, data_files, symbols, timeframe, timerange, disable, json_path, repair, progress,
             show_trades, state_file, trace) -> None:
    """Backtest the pipeline on real candles and print a summary."""
    from mlcoord.backtest.run import disabled_plugins, run_backtest
    from mlcoord.config import load_settings
    from mlcoord.report_text import summary

    data = _data_overrides(data_files, symbols, timeframe, timerange, repair)
    overrides: dict[str, Any] = {"data": data} if data else {}
    if state_file:
        overrides["learning"] = {"state_file": state_file}
    if trace:
        from mlcoord import logs

        overrides["engine"] = {"trace_hooks": True}
        if logs.current_level() > logging.INFO:
            logs.set_level("info")
    settings = load_settings(config_path, overrides or None)
    disabled = disabled_plugins(settings, _csv(disable))
    factory = None
    if progress is not False:
        from tqdm import tqdm

        def factory(total: int):
            return tqdm(total=total, unit="bar", desc="backtest", disable=None if progress is None else False,
                        dynamic_ncols=True, leave=False)
    result = run_backtest(settings, disabled=disabled, progress_factory=factory)
    click.echo(summary(result, show_trades))
    if json_path:
        result.write_json(json_path)
        click.echo(f"result written to {json_path}")


@main.command()
@click.option("--component", required=True, help="The ML component to train, e.g. lstm or attention.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--data", "data_files", multiple=True, help="Candle file(s); default: the bundled data.")
@click.option("--symbol", "symbols", multiple=True, help="Symbol(s) to train on, e.g. BTC/USDT,ETH/USDT.")
@click.option("--timerange", help="Training history, YYYYMMDD-YYYYMMDD (labels past its end are not used).")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the model artifact (.npz).")
@_friendly
def train(component, config_path, data_files, symbols, timerange, out) -> None:
    """Train an ML component's model on a chosen history (chronological split, early stopping)."""
    from mlcoord.backtest.run import disabled_plugins, load_market
    from mlcoord.components import build_market_data
    from mlcoord.config import load_settings
    from mlcoord.errors import ConfigError
    from mlcoord.pipeline import build_component
    from mlcoord.registry import check_names, load_plugins

    data = _data_overrides(data_files, symbols, timerange=timerange)
    settings = load_settings(config_path, {"data": data} if data else None)
    loaded = load_plugins(disabled_plugins(settings))
    check_names([component], loaded.components, "component")
    built = build_component(settings, loaded.components[component])
    if not hasattr(built.obj, "train"):
        raise ConfigError(f"component {component!r} has no model to train")
    candles = load_market(settings, cut_start=False)
    datasets = [build_market_data(c, settings.data.higher_timeframes, event=settings.learning.event)
                for c in candles]
    report = built.obj.train(datasets, out, None)
    for key, value in report.items():
        click.echo(f"{key}: {value}")
    click.echo(f"model written to {out}")


@main.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--data", "data_files", multiple=True, help="Candle file(s); default: the bundled data.")
@click.option("--symbol", "symbols", multiple=True, help="Symbol(s), e.g. BTC/USDT,ETH/USDT.")
@click.option("--timeframe", help="Evaluate on this timeframe (resampled from completed base bars).")
@click.option("--disable", "disable", multiple=True, help="Plugins to disable.")
@click.option("--train-bars", default=17_520, show_default=True, help="Bars the models train on per window.")
@click.option("--fit-bars", default=4_380, show_default=True, help="Bars the online learners fit on, after those.")
@click.option("--test-bars", default=4_380, show_default=True, help="Bars scored per window.")
@click.option("--windows", type=int, help="Only the last N windows.")
@click.option("--no-retrain", is_flag=True, help="Use the configured models instead of retraining per window.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Write all results as JSON.")
@_friendly
def evaluate(config_path, data_files, symbols, timeframe, disable, train_bars, fit_bars, test_bars, windows,
             no_retrain, json_path) -> None:
    """Walk-forward evaluation: component and ensemble scores, technical vs ML trading."""
    import json as _json

    from mlcoord.backtest.run import disabled_plugins, load_market
    from mlcoord.config import load_settings
    from mlcoord.evaluate import WalkForward, evaluate as run_evaluation, render
    from mlcoord.registry import load_plugins

    data = _data_overrides(data_files, symbols, timeframe)
    settings = load_settings(config_path, {"data": data} if data else None)
    loaded = load_plugins(disabled_plugins(settings, _csv(disable)))
    candles = load_market(settings, cut_start=False)
    wf = WalkForward(train_bars, fit_bars, test_bars, windows, not no_retrain)
    result = run_evaluation(settings, loaded, candles, wf,
                            progress=lambda msg: click.echo(f"  {msg}", err=True))
    click.echo(render(result))
    if json_path:
        json_path.write_text(_json.dumps(result, indent=1, default=str), encoding="utf-8")
        click.echo(f"result written to {json_path}")


@main.group()
def plugins() -> None:
    """List and inspect plugins."""


@plugins.command("list")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--disable", "disable", multiple=True)
@_friendly
def plugins_list(config_path, disable) -> None:
    """Every discovered plugin: name, distribution, version, hooks, enabled or why not."""
    from mlcoord.backtest.run import disabled_plugins
    from mlcoord.config import load_settings
    from mlcoord.registry import load_plugins

    settings = load_settings(config_path)
    loaded = load_plugins(disabled_plugins(settings, _csv(disable)))
    from mlcoord.pipeline import ESSENTIAL

    essential = {default: human for default, human in ESSENTIAL.values()}
    for name, status in sorted(loaded.statuses.items()):
        state = "enabled" if status.enabled else f"disabled ({status.reason})"
        if name in essential:
            state += f"; essential ({essential[name]}: disabling it needs another plugin for that role)"
        comps = ", ".join(f"{c.name} [{c.role}]" for c in loaded.components.values() if c.owner == name)
        click.echo(f"{name:<14} {status.distribution or '-'} {status.version or ''}  {state}")
        if status.hooks:
            click.echo(f"{'':<14} hooks: {', '.join(status.hooks)}")
        if comps:
            click.echo(f"{'':<14} components: {comps}")


@plugins.command("info")
@click.argument("name")
@_friendly
def plugins_info(name: str) -> None:
    """A plugin's hooks, components and their options with defaults."""
    import attrs

    from mlcoord.registry import check_names, load_plugins

    loaded = load_plugins()
    check_names([name], loaded.statuses, "plugin")
    status = loaded.statuses[name]
    click.echo(f"{name}: {'enabled' if status.enabled else status.reason}")
    click.echo(f"hooks: {', '.join(status.hooks) or 'none'}")
    for comp in loaded.components.values():
        if comp.owner != name:
            continue
        click.echo(f"component {comp.name} ({comp.role}): {comp.description}")
        if comp.options is not None:
            for field in attrs.fields(comp.options):
                default = field.default.factory() if isinstance(field.default, attrs.Factory) else field.default
                click.echo(f"  [plugins.{comp.name}] {field.name} = {default!r}")


if __name__ == "__main__":  # pragma: no cover
    main()
