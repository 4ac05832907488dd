"""Where a run's market inputs come from, and the run's :class:`MarketData` built with them.

For each traded symbol: ``[data.inputs."SYM"]`` files first, then a ``mlcoord data download``
store (``[data] store``: funding and mark prices from its futures folder, spot and perpetual
candles from both folders). Peers (cross-asset inputs) are the run's other symbols plus
``[data] context_symbols``, whose candles come from ``[data.inputs."SYM"] candles``, the store,
or the bundled data. Nothing is read from anywhere else, and an input that is not there is
simply absent (its features are NaN); a file that is named but unreadable is an error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np
import pandas as pd
import structlog

from mlcoord.candles import Candles, load_candles, resample, timeframe_to_ns
from mlcoord.components import MarketData, build_market_data
from mlcoord.config import InputFiles, Settings
from mlcoord.errors import ConfigError, DataError
from mlcoord.funding import FundingSeries, _times as rounded_times
from mlcoord.market_inputs import MarketInputs

log = structlog.get_logger("mlcoord.market_sources")

_TIME_COLUMNS = ("time", "timestamp", "date", "datetime", "fundingtime")
_RATE_COLUMNS = ("rate", "fundingrate", "funding_rate")
#: a funding rate per event of 100 % or more is not a rate (a percentage, or the wrong column)
_MAX_RATE = 1.0


class FundingFileError(DataError):
    """A funding file that cannot be read as (time, rate) events; the message names file and row."""


def _read_frame(path: Path) -> pd.DataFrame:
    name = path.name.lower().removesuffix(".gz")
    try:
        if name.endswith(".parquet"):
            return pd.read_parquet(path)
        if name.endswith(".feather"):
            return pd.read_feather(path)
        if name.endswith(".csv"):
            return pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise FundingFileError(f"funding file {path}: cannot read it ({type(exc).__name__}: {exc})") from None
    raise FundingFileError(f"funding file {path}: unsupported file type (expected .parquet, .feather, .csv)")


def load_funding(path) -> FundingSeries:
    """Funding events from a file: a ``data download`` store file (``time``, ``rate``), freqtrade's
    ``-funding_rate`` file (``date``, the rate in ``open``) or any CSV/Parquet/Feather with a time
    column (``time``/``timestamp``/``date``/``fundingTime``: epoch or ISO, UTC) and a rate column
    (``rate``/``fundingRate``/``funding_rate``), one row per event, as a fraction per event."""
    from mlcoord.candle_frames import _parse_times

    path = Path(path)
    frame = _read_frame(path)
    names = {str(c).strip().lower(): c for c in frame.columns}
    time_col = next((names[n] for n in _TIME_COLUMNS if n in names), None)
    rate_col = next((names[n] for n in (*_RATE_COLUMNS, "open") if n in names), None)
    if time_col is None or rate_col is None:
        raise FundingFileError(f"funding file {path}: needs a time column ({'/'.join(_TIME_COLUMNS)}) and a rate "
                               f"column ({'/'.join(_RATE_COLUMNS)}, or freqtrade's open); found "
                               f"{[str(c) for c in frame.columns]}")
    if not len(frame):
        raise FundingFileError(f"funding file {path}: no rows")
    times = _parse_times(frame[time_col], f"funding file {path}", str(time_col)).asi8
    rates = pd.to_numeric(frame[rate_col], errors="coerce").to_numpy(np.float64)
    bad = np.flatnonzero(~np.isfinite(rates) | (np.abs(rates) >= _MAX_RATE))
    if bad.size:
        i = int(bad[0])
        value = frame[rate_col].iloc[i]
        value = value.item() if isinstance(value, np.generic) else value
        raise FundingFileError(f"funding file {path}: row {i}: {rate_col} {value!r} is not a "
                               f"funding rate (a finite fraction per event, below 1 in size)")
    series_times = rounded_times(times)              # the rounding FundingSeries applies
    bad = np.flatnonzero(np.diff(series_times) <= 0)
    if bad.size:
        i = int(bad[0]) + 1
        raise FundingFileError(f"funding file {path}: row {i}: time {pd.Timestamp(int(times[i]), tz='UTC')} is not "
                               f"after the row before it (events must be in time order, one per second at most)")
    return FundingSeries(times, rates)


def _in_timeframe(c: Candles, timeframe: str) -> Candles:
    """``c`` resampled to ``timeframe`` when it is finer and divides it; else as it is (aligned by
    close time, a coarser series is read at its last closed bar)."""
    tf, own = timeframe_to_ns(timeframe), c.timeframe_ns
    return resample(c, timeframe) if len(c) and own < tf and tf % own == 0 else c


def _candles_file(path: str, symbol: str, timeframe: str, settings: Settings) -> Candles:
    d = settings.data
    return _in_timeframe(load_candles(path, symbol=symbol, repair=d.repair, repair_max_drop=d.repair_max_drop),
                         timeframe)


def _spot_name(symbol: str) -> str:
    return symbol.split(":", 1)[0]


def _own_inputs(settings: Settings, c: Candles) -> tuple[Optional[FundingSeries], dict[str, Optional[Candles]]]:
    """The funding and the spot, perpetual and mark candles of ``c``'s symbol (files, then store)."""
    files = settings.data.inputs.get(c.symbol, InputFiles())
    store, exchange = settings.data.store, settings.exchange
    if store:       # only then: most runs read files
        from mlcoord.datastore import load_store_funding, load_store_series
    funding = load_funding(files.funding) if files.funding else None
    if funding is None and store:
        funding = load_store_funding(store, exchange, [c.symbol]).get(c.symbol)
    series: dict[str, Optional[Candles]] = {}
    for kind, market, mark in (("spot", "spot", False), ("perpetual", "futures", False), ("mark", "futures", True)):
        path = getattr(files, kind)
        if path:
            series[kind] = _candles_file(path, c.symbol, c.timeframe, settings)
        elif store:
            symbol = _spot_name(c.symbol) if market == "spot" else c.symbol
            found = load_store_series(store, exchange, market, symbol, c.timeframe, mark=mark)
            series[kind] = None if found is None else _in_timeframe(found, c.timeframe)
        else:
            series[kind] = None
    return funding, series


def _context_candles(settings: Settings, symbol: str, timeframe: str) -> Candles:
    """A context symbol's candles: its ``[data.inputs]`` file, else the store, else the bundled data."""
    from mlcoord.datasets import BUNDLED, bundled_path

    d = settings.data
    files = d.inputs.get(symbol, InputFiles())
    if files.candles:
        return _candles_file(files.candles, symbol, timeframe, settings)
    if d.store:
        from mlcoord.datastore import load_store_candles

        return _in_timeframe(load_store_candles(d.store, settings.exchange, [symbol], timeframe, d.repair,
                                                d.repair_max_drop)[0], timeframe)
    if symbol in BUNDLED:
        return _in_timeframe(load_candles(bundled_path(symbol), symbol=symbol), timeframe)
    raise ConfigError(f"[data] context_symbols: no candles for {symbol!r}: name a file in "
                      f"[data.inputs.\"{symbol}\"] candles, or a store with [data] store")


def _configured_symbols(settings: Settings) -> set[str]:
    """The symbols a run of ``settings`` may trade, without reading a file: ``[data] symbols``, the
    symbols the data files' names give, or the bundled default (a sweep backtests them one by one)."""
    from mlcoord.candles import _guess_from_name
    from mlcoord.datasets import DEFAULT_SYMBOL

    d = settings.data
    if d.symbols:
        return set(d.symbols)
    if d.files:
        return {_guess_from_name(Path(f))[0] for f in d.files}
    return {DEFAULT_SYMBOL}


def load_inputs(settings: Settings, candles: Sequence[Candles]) -> dict[str, MarketInputs]:
    """Each traded symbol's :class:`MarketInputs`: its own series (files, then the store) and its
    peers (the other traded symbols and ``[data] context_symbols``)."""
    d = settings.data
    known = {c.symbol for c in candles} | set(d.context_symbols) | _configured_symbols(settings)
    unknown = sorted(set(d.inputs) - known)
    if unknown:
        raise ConfigError(f"[data.inputs.\"{unknown[0]}\"]: {unknown[0]!r} is neither traded nor in [data] "
                          f"context_symbols (traded: {', '.join(sorted(c.symbol for c in candles))}; context: "
                          f"{', '.join(d.context_symbols) or 'none'})")
    if not candles:
        return {}
    timeframe = candles[0].timeframe
    everyone = {c.symbol: c for c in candles}
    for symbol in d.context_symbols:
        if symbol not in everyone:
            everyone[symbol] = _context_candles(settings, symbol, timeframe)
    out = {}
    for c in candles:
        funding, series = _own_inputs(settings, c)
        inputs = MarketInputs(funding, series["spot"], series["perpetual"], series["mark"],
                              {s: p for s, p in everyone.items() if s != c.symbol})
        if inputs.describe():
            log.info("market_inputs", symbol=c.symbol, **inputs.describe())
        out[c.symbol] = inputs
    return out


def market_datasets(settings: Settings, candles: Sequence[Candles],
                    inputs: Optional[Mapping[str, MarketInputs]] = None) -> list[MarketData]:
    """The run's :class:`MarketData`, one per candle series, with their inputs (``inputs``: as
    :func:`load_inputs` gives them; None: loaded here) cut where the series ends: no series a
    component is handed reaches past its candles' last close."""
    inputs = load_inputs(settings, candles) if inputs is None else inputs
    out = []
    for c in candles:
        own = inputs.get(c.symbol)
        if own is not None and len(c):
            own = own.until(int(c.time[-1]) + c.timeframe_ns)
        out.append(build_market_data(c, settings.data.higher_timeframes, event=settings.learning.event, inputs=own))
    return out
