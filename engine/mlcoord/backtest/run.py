"""From settings to a finished backtest: load data, load plugins, prepare, loop, compute figures."""

from __future__ import annotations

import json
import re
import os
import time as _time
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import attrs
import numpy as np
import structlog

from mlcoord.files import refuse_to_replace, write_atomic
from mlcoord.backtest.engine import Backtest, RawResult
from mlcoord.simulation import instruments_for
from mlcoord.backtest.plain import rounded
from mlcoord.times import day_ns, iso, iso_times, strftime, text as time_text
from mlcoord.backtest.stats import breakdowns, compute_stats
from mlcoord.candles import Candles, load_candles, resample, timeframe_to_ns, union_times
from mlcoord.market_inputs import MarketInputs
from mlcoord.market_sources import market_datasets
from mlcoord.config import Settings, unstructure
from mlcoord.datasets import BUNDLED, DEFAULT_SYMBOL, bundled_path  # noqa: F401 (re-exported)
from mlcoord.errors import ConfigError, DataError
from mlcoord.journal import Journal, decision_to_dict
from mlcoord.learning_state import (
    MIN_BARS_AFTER_STATE, few_bars_note, first_traded_bar, is_state_file, restore as restore_learning_state,
)
from mlcoord.model_coverage import leave_out_models_covering
from mlcoord.pipeline import build_pipeline
from mlcoord.registry import PluginSet, load_plugins

log = structlog.get_logger("mlcoord.backtest")

ENV_DISABLE = "MLCOORD_DISABLE"
RESULT_SCHEMA = 2
#: bars before a --timerange's start that only warm indicators up: `mlcoord check recursive` on the
#: bundled data shows the default signal source's net score still 0.86 (relative) off the
#: full-history value with 500 bars (its EMA(200) 2.7e-4 off), within 1e-3 from 1,000 bars on
WARMUP_BARS = 1000


def disabled_plugins(settings: Settings, cli: Sequence[str] = (), env: Optional[Mapping[str, str]] = None
                     ) -> dict[str, str]:
    """Plugin name -> where it was disabled. Config, CLI and environment feed the same set."""
    env = os.environ if env is None else env
    out: dict[str, str] = {}
    for name in settings.engine.disable:
        out[name] = "config [engine] disable"
    for name in _split(env.get(ENV_DISABLE, "")):
        out[name] = f"environment {ENV_DISABLE}"
    for name in cli:
        out[name] = "CLI --disable"
    return out


def with_plugin_flags(settings: Settings, enable: Sequence[str] = (), plugins_dir: Optional[str] = None) -> Settings:
    """The command line's ``--enable`` (added to ``[engine] enable``) and ``--plugins-dir``
    (replacing ``[engine] plugins_dir``) folded into the settings every later step reads."""
    engine = settings.engine
    added = tuple(n for n in _split(",".join(enable)) if n not in engine.enable)
    if not added and plugins_dir is None:
        return settings
    engine = attrs.evolve(engine, enable=engine.enable + added,
                          plugins_dir=str(Path(plugins_dir).resolve()) if plugins_dir else engine.plugins_dir)
    return attrs.evolve(settings, engine=engine)


def configured_plugins(settings: Settings, disabled: Mapping[str, str] = {}) -> PluginSet:
    """The installed plugins plus ``[engine] plugins_dir``'s files, less the disabled ones."""
    return load_plugins(disabled, plugins_dir=settings.engine.plugins_dir or None)


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_timerange(text: Optional[str]) -> tuple[Optional[int], Optional[int]]:
    """``YYYYMMDD-YYYYMMDD`` (either side may be empty), as freqtrade users type it: the UTC
    midnights (ns) of the two days."""
    if not text:
        return None, None
    match = re.fullmatch(r"(\d{8})?-(\d{8})?", text.strip())
    if not match or text.strip() == "-":
        raise ConfigError(f"timerange {text!r} must look like 20210101-20220101 (YYYYMMDD, either side may be empty)")
    try:
        start, end = day_ns(match.group(1)), day_ns(match.group(2))
    except ValueError:
        raise ConfigError(f"timerange {text!r}: {match.group(1)} or {match.group(2)} is not a valid date") from None
    if start is not None and end is not None and end <= start:
        raise ConfigError(f"timerange {text!r}: the end must be after the start")
    return start, end


def _one_series_per_symbol(candles: Sequence[Candles], files: Sequence[str]) -> None:
    """Two files of one symbol would trade two books of it in one portfolio: refused."""
    first: dict[str, int] = {}
    for k, c in enumerate(candles):
        if c.symbol in first:
            j = first[c.symbol]
            where = f"{files[j]} and {files[k]}" if len(files) == len(candles) else "two sources"
            raise ConfigError(f"symbol {c.symbol!r} is given twice ({where}): one series per symbol "
                              "(--data/[data] files, --symbol/[data] symbols)")
        first[c.symbol] = k


#: implausible bars named one per line; more are counted in one line
IMPLAUSIBLE_SHOWN = 10


def warn_implausible(candles: Candles, max_jump_atr: float) -> int:
    """One ``candles_implausible`` warning per implausible bar of ``candles`` (:mod:`mlcoord.jumps`;
    a jump the next bar confirms is a real move, not named); the data is not changed, so the
    result is what the file says. Returns how many were found."""
    from mlcoord.jumps import find_jumps

    jumps = [j for j in find_jumps(candles, max_jump_atr) if not j.confirmed]
    for j in jumps[:IMPLAUSIBLE_SHOWN]:
        log.warning("candles_implausible", symbol=candles.symbol, bar_time=iso(j.time), column=j.column,
                    value=j.value, reference=j.reference, atrs=round(j.atrs, 1), max_jump_atr=max_jump_atr,
                    action="kept", note=f"{candles.symbol}: {j.describe()}; a backtest keeps its data as it is: "
                                        "check the file (live trading leaves such a bar out; [data] max_jump_atr)")
    if len(jumps) > IMPLAUSIBLE_SHOWN:
        log.warning("candles_implausible", symbol=candles.symbol, count=len(jumps),
                    note=f"{len(jumps) - IMPLAUSIBLE_SHOWN} more implausible bars not named")
    return len(jumps)


def load_market(settings: Settings, cut_start: bool = True) -> list[Candles]:
    """The candles a run trades, validated, resampled and cut to the timerange (plus warm-up).

    ``cut_start=False`` keeps everything before the timerange's start (training uses it all)."""
    data = settings.data
    if data.files:
        candles = [load_candles(f, repair=data.repair, repair_max_drop=data.repair_max_drop) for f in data.files]
        if data.symbols:
            wanted = set(data.symbols)
            candles = [c for c in candles if c.symbol in wanted]
            found = {c.symbol for c in candles}
            if wanted - found:
                raise ConfigError(f"symbol(s) {sorted(wanted - found)} not in the data files "
                                  f"(symbols found: {sorted(found) or 'none'})")
    elif data.store:  # a `mlcoord data download` store: by symbol and timeframe
        from mlcoord.datastore import load_store_candles

        candles = load_store_candles(data.store, settings.exchange, data.symbols or [DEFAULT_SYMBOL],
                                     data.timeframe, data.repair, data.repair_max_drop)
    else:
        candles = [load_candles(bundled_path(s), symbol=s, repair=data.repair, repair_max_drop=data.repair_max_drop)
                   for s in (data.symbols or [DEFAULT_SYMBOL])]
    _one_series_per_symbol(candles, data.files)
    out = []
    start, end = parse_timerange(data.timerange)
    for c in candles:
        for note in c.repairs:
            log.warning("candles_repaired", symbol=c.symbol, repair=note)
        if c.gaps:
            log.warning("candle_gaps", symbol=c.symbol, gaps=len(c.gaps), missing_bars=sum(g.missing for g in c.gaps),
                        largest=time_text(max(c.gaps, key=lambda g: g.missing).start_ns))
        if data.max_jump_atr > 0:
            warn_implausible(c, data.max_jump_atr)
        if data.timeframe and data.timeframe != c.timeframe:
            if timeframe_to_ns(data.timeframe) < c.timeframe_ns:
                raise ConfigError(f"timeframe {data.timeframe!r} is finer than the data's {c.timeframe!r} "
                                  f"for {c.symbol}; candles cannot be split")
            c = resample(c, data.timeframe)
        if (start is not None and start > c.time[-1]) or (end is not None and end <= c.time[0]):
            span = " -> ".join(strftime(t, "%Y-%m-%d") for t in (c.time[0], c.time[-1]))
            raise DataError(f"--timerange {data.timerange} is outside the data of {c.symbol}: {span}")
        if end is not None:
            c = c.between(None, end)
        if start is not None and cut_start:
            first = int(np.searchsorted(c.time, start))
            c = c.slice(max(first - WARMUP_BARS, 0), len(c))
        if len(c) == 0:
            raise DataError(f"no candles for {c.symbol} in timerange {data.timerange!r}")
        out.append(c)
    return out


@attrs.frozen(eq=False)
class BacktestResult:
    raw: RawResult
    stats: dict[str, Any]
    breakdowns: dict[str, Any]
    components: dict[str, Any]
    learning: dict[str, Any]
    plugins: dict[str, Any]
    symbols: tuple[str, ...]
    timeframe: str
    elapsed: dict[str, float]
    candles: tuple[Candles, ...] = ()
    notes: tuple[str, ...] = ()         # what the run changed on its own (a component left out, ...)

    def to_json(self) -> dict[str, Any]:
        raw = self.raw
        times = iso_times(raw.times)
        trades, fills = [unstructure(t) for t in raw.trades], [unstructure(f) for f in raw.fills]
        text = _iso_of([*(f.time for f in raw.fills), *(t.opened_at for t in raw.trades),
                        *(t.closed_at for t in raw.trades), *(t for p in raw.level_paths for t, _, _ in p["path"])])
        return {
            # the result file's schema: 2 = components name entry_guards and portfolio_watchers
            # (hooks version 2); fills and trades may carry namespaced plugin exit reasons
            "mlcoord_result": RESULT_SCHEMA,
            "symbols": list(self.symbols), "timeframe": self.timeframe,
            "stats": self.stats, "breakdowns": self.breakdowns, "components": self.components,
            "learning": self.learning, "notes": list(self.notes),
            "plugins": self.plugins, "elapsed_seconds": self.elapsed, "errors": raw.errors,
            "equity": {"time": times, "value": rounded(raw.equity, 6)},
            "trades": [_plain(d, text) for d in trades],
            "fills": [_plain(d, text) for d in fills],
            "decisions": [decision_to_dict(d) for d in raw.decisions],
            "levels": [{"trade": p["trade"], "symbol": p["symbol"],
                        "path": [[text[t], stop, tp] for t, stop, tp in p["path"]]} for p in raw.level_paths],
            "candles": {c.symbol: _candles_json(c, raw.times, times) for c in self.candles},
        }

    def write_json(self, path: Path) -> None:
        """The result file. orjson writes it ~20x faster than the standard library (0.02 s instead of
        0.42 s for a 50,000-bar run): the file is most of a ``--json`` run's cost otherwise. A number
        that is not finite (a ratio with nothing to divide, a profit factor with no losing trade)
        is written as null, meaning undefined, as every result file does (:mod:`mlcoord.strict_json`)."""
        import orjson

        data = orjson.dumps(self.to_json(), default=str,
                            option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)
        write_atomic(Path(path), data)      # bytes as orjson gives them: no decode and encode again


def _candles_json(c: Candles, traded, traded_iso: list[str]) -> dict[str, list]:
    """The traded bars (warm-up left out), so a report can draw the price chart from the file.
    ``traded``: the equity times (ns), ``traded_iso`` their text, reused when the bars are those."""
    c = c.slice(int(np.searchsorted(c.time, int(traded[0]) if len(traded) else 0)), len(c))
    same = len(c.time) == len(traded) and np.array_equal(c.time, traded)
    return {"time": list(traded_iso) if same else iso_times(c.time), "open": c.open.tolist(),
            "high": c.high.tolist(), "low": c.low.tolist(), "close": c.close.tolist()}


_TIME_KEYS = ("time", "opened_at", "closed_at")
_PLAIN_TYPES = frozenset((int, float, str, bool, type(None)))


def _iso_of(values: list) -> dict[int, str]:
    """ISO text of every int time (ns) in ``values``, converted in one vectorised batch."""
    ns = sorted({v for v in set(values) if isinstance(v, int)})
    return dict(zip(ns, iso_times(ns)))


def _named(v: Any) -> Any:
    return getattr(v, "name", v) if not isinstance(v, (int, float, str, type(None))) else v


def _plain(d: dict, text: dict[int, str]) -> dict:
    """A trade's or fill's dict for JSON: int times as ISO text (``text``: from :func:`_iso_of`,
    converted here when missing), anything that is not a number, string or None by its name."""
    if set(map(type, d.values())) <= _PLAIN_TYPES:    # every row so far: one check, no loop
        out = dict(d)
    else:
        out = {k: v if type(v) in _PLAIN_TYPES else _named(v) for k, v in d.items()}
    for k in _TIME_KEYS:
        v = d.get(k)
        if isinstance(v, int):
            t = text.get(v)
            out[k] = iso(v) if t is None else t
    return out


def run_backtest(settings: Settings, *, disabled: Mapping[str, str] = {}, plugins: Optional[PluginSet] = None,
                 candles: Optional[Sequence[Candles]] = None,
                 progress_factory: Optional[Callable[[int], Any]] = None,
                 option_changes: Optional[dict[str, dict[str, Any]]] = None,
                 start: Optional[int] = None, replace_state: bool = False,
                 inputs: Optional[Mapping[str, MarketInputs]] = None) -> BacktestResult:
    """Run one backtest. ``plugins``/``candles`` may be given directly (tests, sweeps); ``start``
    (ns) overrides the timerange's start to the bar (earlier bars only warm up), for walk-forward parts.
    ``inputs``: each symbol's market inputs (None: :func:`mlcoord.market_sources.load_inputs`).

    ``[learning] state_file`` is restored at start and saved at the end; an existing file there
    that is not a learning state is refused before anything runs (a mistyped ``--state`` once
    replaced a 118 KB backtest result), unless ``replace_state`` (``--force``): then it is
    neither read nor kept."""
    t0 = _time.perf_counter()
    state_file = Path(settings.learning.state_file) if settings.learning.state_file else None
    if state_file is not None:
        refuse_to_replace(state_file, "a learning state (saved by --state)", is_state_file, force=replace_state,
                          option="learning state file")
    plugins = plugins if plugins is not None else configured_plugins(settings, disabled)
    pipeline = build_pipeline(settings, plugins, option_changes)
    candles = list(candles) if candles is not None else load_market(settings)
    t1 = _time.perf_counter()
    start = int(start) if start is not None else parse_timerange(settings.data.timerange)[0]
    notes = leave_out_models_covering(pipeline, candles, start)
    if state_file is not None and is_state_file(state_file):   # never used at or before what it learnt from
        first = _after_training(start, pipeline.trained_until())
        restore_learning_state(pipeline, state_file, first_traded_bar([c.time for c in candles], first))
    restored_until = pipeline.learned_until
    event = settings.learning.event
    prepared = [pipeline.prepare(data) for data in market_datasets(settings, candles, inputs)]
    funding = None
    if settings.data.store and settings.backtest.market == "futures":  # recorded funding rates, when stored
        from mlcoord.datastore import load_store_funding

        funding = load_store_funding(settings.data.store, settings.exchange, [c.symbol for c in candles])
    rules = None
    if settings.data.store:      # the exchange's tick, lot and minimum order, when downloaded
        from mlcoord.datastore import load_store_instruments

        rules = load_store_instruments(settings.data.store, settings.exchange, [c.symbol for c in candles])
    backtest = Backtest(pipeline, settings, Journal(), funding=funding, instruments=instruments_for(settings, rules))
    start_ns = start
    trained = pipeline.trained_until()
    if trained is not None and (start_ns is None or start_ns <= trained):
        # no in-sample results: statistics start after the newest model's training data
        log.warning("start_after_training_range", trained_until=iso(trained),
                    requested_start=None if start_ns is None else iso(start_ns))
        notes.append(f"statistics start after {iso(trained)}, the end of the models' training data (requested: "
                     f"{'the data start' if start_ns is None else iso(start_ns)}); no in-sample results")
    start_ns = _after_training(start_ns, trained)
    if first_traded_bar([c.time for c in candles], start_ns) is None:
        raise DataError(f"no bar to trade: the data ends {time_text(max(c.time[-1] for c in candles))}"
                        f", before the first allowed bar {'the data start' if start_ns is None else time_text(start_ns)}")
    traded = union_times([c.time for c in candles])
    traded_bars = int(len(traded) - (np.searchsorted(traded, start_ns) if start_ns else 0))
    few = few_bars_note(traded_bars, restored_until, first_traded_bar([c.time for c in candles], start_ns))
    if few is not None:
        log.warning("few_bars_after_learning_state", bars=traded_bars, minimum=MIN_BARS_AFTER_STATE,
                    state_trained_until=iso(restored_until) if restored_until is not None else None)
        notes.append(few)
    if progress_factory:
        times = traded
        progress = progress_factory(int(len(times) - (np.searchsorted(times, start_ns) if start_ns else 0)))
    else:
        progress = None
    t2 = _time.perf_counter()
    raw = backtest.run(prepared, progress=progress.update if progress else None, start=start_ns)
    if progress:
        progress.close()
    if state_file is not None:   # a component whose state() fails is left out of it, and said so
        write_atomic(state_file, json.dumps(pipeline.state(), indent=1, sort_keys=True))
        notes.extend(pipeline.state_problems)
    t3 = _time.perf_counter()
    stats = compute_stats(raw)
    ensemble = pipeline.coordinator.active
    result = BacktestResult(
        raw=raw, stats=stats, breakdowns=breakdowns(raw), components=pipeline.components.describe(),
        learning={"event": event.describe(), "horizon": event.horizon, "threshold": event.threshold,
                  "component_scores": ensemble.score_table() if ensemble else {},
                  # the share of absolute coefficients (old readers); the signed ones say what is faded
                  "ensemble_weights": ensemble.weights(sorted(ensemble.scores)) if ensemble else {},
                  "ensemble_coefficients": ensemble.coefficients(sorted(ensemble.scores)) if ensemble else {},
                  "ensemble_intercept": ensemble.intercept if ensemble else None,
                  "trained_until": iso(trained) if trained else None,
                  "state_trained_until": iso(restored_until) if restored_until is not None else None},
        plugins={n: {"enabled": s.enabled, "reason": s.reason} for n, s in sorted(plugins.statuses.items())},
        symbols=tuple(c.symbol for c in candles), timeframe=candles[0].timeframe if candles else "",
        elapsed={"load": round(t1 - t0, 4), "prepare": round(t2 - t1, 4), "loop": round(t3 - t2, 4),
                 "stats": round(_time.perf_counter() - t3, 4)},
        candles=tuple(candles), notes=tuple(notes),
    )
    return result


def _after_training(start_ns: Optional[int], trained: Optional[int]) -> Optional[int]:
    """The first time statistics may start: the requested start, but after the models' training data."""
    if trained is not None and (start_ns is None or start_ns <= trained):
        return trained + 1
    return start_ns


def symbol_backtest_task(shared: tuple, j: int) -> BacktestResult:
    """Task: symbol ``j`` backtested alone (its own account); see :func:`run_per_symbol`."""
    from mlcoord.executors import PluginRecipe, plugins_from

    settings, plugins, candles, inputs = shared
    plugins = plugins_from(plugins) if isinstance(plugins, PluginRecipe) else plugins
    return run_backtest(settings, plugins=plugins, candles=[candles[j]], inputs=inputs)


def run_per_symbol(settings: Settings, plugins: PluginSet, candles: Sequence[Candles], executor: Any,
                   progress: Optional[bool] = None) -> list[Any]:
    """One independent backtest per symbol, in parallel on ``executor`` (a portfolio backtest,
    with one account shared by all symbols, is sequential by nature); a TaskResult per symbol.
    Each symbol's features still see the others (its market inputs are loaded for all of them)."""
    from mlcoord.executors import PluginRecipe, Task
    from mlcoord.market_sources import load_inputs

    recipe = plugins if executor.kind == "inline" else PluginRecipe.of(plugins)
    tasks = [Task(f"bt-{c.symbol}", symbol_backtest_task, (j,), {"symbol": c.symbol}) for j, c in enumerate(candles)]
    shared = (settings, recipe, tuple(candles), load_inputs(settings, candles))
    return executor.run(tasks, shared, desc="backtests", progress=progress)
