"""The local data store: downloaded candles, funding rates and instrument rules, as files.

Layout: ``STORE/<exchange>/<market>/<BASE>_<QUOTE>[_<SETTLE>]-<timeframe>.parquet`` (freqtrade's
names, so :func:`mlcoord.candles.load_candles` reads a file on its own),
``...-<timeframe>-mark.parquet`` for a perpetual's mark prices, ``...-funding.parquet`` for its
funding history and ``instruments.json`` for the exchange's tick, lot and minimum order rules. ``mlcoord data download`` (:mod:`mlcoord.live.data`) writes it; backtests,
evaluations and the live venues read it. Files are written atomically.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Optional, Sequence

import pandas as pd
import structlog

from mlcoord.candles import REPAIR_MAX_DROP, TIMEFRAMES, Candles, candles_from_frame, load_candles, timeframe_to_ns
from mlcoord.config import ExchangeConfig
from mlcoord.funding import FundingSeries
from mlcoord.errors import ConfigError, DataError
from mlcoord.model.instruments import Instrument

log = structlog.get_logger("mlcoord.datastore")

MS = 1_000_000  # ns per ms


class DownloadError(DataError):
    """A response that cannot be stored, or a stored file that cannot be read: the message names
    the exchange, symbol, timeframe and row, or the file."""


def market_symbol(symbol: str, market: str) -> str:
    """The ccxt symbol of ``symbol`` in ``market``: ``BTC/USDT`` on futures is the USD-M perpetual
    ``BTC/USDT:USDT`` (what a user means), a symbol with an explicit settle currency is kept."""
    symbol = symbol.strip().upper()
    if "/" not in symbol:
        raise ConfigError(f"symbol {symbol!r} must look like BASE/QUOTE, e.g. BTC/USDT")
    if market == "futures" and ":" not in symbol:
        return f"{symbol}:{symbol.split('/', 1)[1]}"
    if market == "spot" and ":" in symbol:
        raise ConfigError(f"{symbol!r} is a derivatives symbol; use BASE/QUOTE on the spot market")
    return symbol


# -- the store -----------------------------------------------------------------------------------
def file_stem(symbol: str) -> str:
    return symbol.replace("/", "_").replace(":", "_")


def candles_path(root, exchange_id: str, market: str, symbol: str, timeframe: str) -> Path:
    return Path(root) / exchange_id / market / f"{file_stem(symbol)}-{timeframe}.parquet"


def funding_path(root, exchange_id: str, market: str, symbol: str) -> Path:
    return Path(root) / exchange_id / market / f"{file_stem(symbol)}-funding.parquet"


def mark_path(root, exchange_id: str, symbol: str, timeframe: str) -> Path:
    """A perpetual's mark-price candles (freqtrade's ``-mark`` suffix), beside its trade candles."""
    return Path(root) / exchange_id / "futures" / f"{file_stem(symbol)}-{timeframe}-mark.parquet"


def _write_frame(frame: pd.DataFrame, fh) -> None:
    """Serialise ``frame`` into an open binary file (one seam: tests crash it half-way)."""
    frame.to_parquet(fh, index=False)


def write_parquet_atomic(frame: pd.DataFrame, path: Path) -> None:
    """Write ``frame`` to ``path`` so that ``path`` is always either the old file or the whole new one."""
    from mlcoord.files import write_atomic

    write_atomic(path, lambda fh: _write_frame(frame, fh))


def _read_parquet(path: Path) -> Optional[pd.DataFrame]:
    if not path.exists():
        return None
    try:
        return pd.read_parquet(path)
    except Exception as exc:
        raise DownloadError(f"{path}: stored file is unreadable ({type(exc).__name__}: {exc}); "
                            f"delete it to download again") from None


def read_stored(path: Path, symbol: str, timeframe: str) -> Optional[Candles]:
    """The stored candles of one file, validated, or None if there is no file yet."""
    raw = _read_parquet(path)
    if raw is None:
        return None
    return candles_from_frame(raw, symbol=symbol, timeframe=timeframe, source=str(path))


def _stored_frame(c: Candles) -> pd.DataFrame:
    return c.frame.reset_index()


# -- reading the store (backtest, evaluate) ---------------------------------------------------------
def _locate(root: Path, exchange: ExchangeConfig, symbol: str, timeframe: Optional[str]) -> tuple[str, str, Path]:
    """(market, timeframe, path) of the file to read: the configured market first, then the other one;
    the exact timeframe if stored, else the finest stored timeframe that is not coarser."""
    markets = [exchange.market] + [m for m in ("spot", "futures") if m != exchange.market]
    seen = []
    for market in markets:
        try:
            sym = market_symbol(symbol, market)
        except ConfigError:  # BTC/USDT:USDT has no spot file
            continue
        stored = [tf for tf in TIMEFRAMES if candles_path(root, exchange.id, market, sym, tf).exists()]
        seen += [f"{market} {tf}" for tf in stored]
        usable = [tf for tf in stored if timeframe is None or timeframe_to_ns(tf) <= timeframe_to_ns(timeframe)]
        if timeframe in stored:
            usable = [timeframe]
        if usable:
            return market, usable[0], candles_path(root, exchange.id, market, sym, usable[0])
    raise DataError(f"store {root}: no candles for {symbol} {timeframe or ''} on {exchange.id} "
                    f"(stored for it: {', '.join(seen) or 'nothing'}); run mlcoord data download first")


def load_store_candles(root, exchange: ExchangeConfig, symbols: Sequence[str], timeframe: Optional[str] = None,
                       repair: bool = False, repair_max_drop: float = REPAIR_MAX_DROP) -> list[Candles]:
    """Candles for ``symbols`` from a download store (named as the user typed them)."""
    if not Path(root).is_dir():
        what = "a file, not a store directory" if Path(root).exists() else "missing"
        raise DataError(f"store {root} is {what}: name the directory `mlcoord data download --store` filled")
    out = []
    for symbol in symbols:
        market, tf, path = _locate(Path(root), exchange, symbol, timeframe)
        if market != exchange.market:
            log.info("store_other_market", symbol=symbol, market=market, configured=exchange.market)
        out.append(load_candles(path, symbol=symbol, timeframe=tf, repair=repair, repair_max_drop=repair_max_drop))
    return out


def load_store_series(root, exchange: ExchangeConfig, market: str, symbol: str, timeframe: str,
                      mark: bool = False) -> Optional[Candles]:
    """``symbol``'s stored candles on ``market`` (``mark``: its perpetual's mark prices) in
    ``timeframe``, resampled from the coarsest finer stored timeframe that divides it when that
    one is not stored; None when nothing usable is stored (a feature input, never required)."""
    from mlcoord.candles import resample

    sym = market_symbol(symbol, market)
    wanted = timeframe_to_ns(timeframe)
    for tf in sorted((tf for tf in TIMEFRAMES if wanted % timeframe_to_ns(tf) == 0), key=timeframe_to_ns,
                     reverse=True):
        path = mark_path(root, exchange.id, sym, tf) if mark else candles_path(root, exchange.id, market, sym, tf)
        if path.exists():
            c = load_candles(path, symbol=symbol, timeframe=tf)
            return c if tf == timeframe or not len(c) else resample(c, timeframe)
    return None


def load_store_funding(root, exchange: ExchangeConfig, symbols: Sequence[str]) -> dict[str, FundingSeries]:
    """Each symbol's stored perpetual funding history (symbols without one are left out)."""
    out: dict[str, FundingSeries] = {}
    for symbol in symbols:
        path = funding_path(Path(root), exchange.id, "futures", market_symbol(symbol, "futures"))
        raw = _read_parquet(path)
        if raw is not None and len(raw):
            out[symbol] = FundingSeries(pd.DatetimeIndex(raw["time"]).as_unit("ns").asi8, raw["rate"].to_numpy())
    return out




def instruments_path(root, exchange_id: str, market: str) -> Path:
    return Path(root) / exchange_id / market / "instruments.json"


def save_store_instruments(root, exchange_id: str, market: str, instruments: Mapping[str, Instrument]) -> None:
    """Merge ``instruments`` (by ccxt symbol) into the store's ``instruments.json``."""
    from mlcoord.files import write_atomic

    path = instruments_path(root, exchange_id, market)
    known = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    for symbol, inst in instruments.items():
        known[symbol] = {"tick_size": inst.tick_size, "lot_size": inst.lot_size, "min_quantity": inst.min_quantity,
                         "min_notional": inst.min_notional, "max_leverage": inst.max_leverage}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(known, indent=1, sort_keys=True))


def load_store_instruments(root, exchange: ExchangeConfig, symbols: Sequence[str]) -> dict[str, Instrument]:
    """The stored exchange rules of ``symbols`` (named as the user typed them) on the configured market."""
    path = instruments_path(root, exchange.id, exchange.market)
    if not path.exists():
        return {}
    try:
        known = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise DataError(f"{path}: unreadable instrument rules ({exc}); delete it and download again") from None
    out = {}
    for symbol in symbols:
        rules = known.get(market_symbol(symbol, exchange.market))
        if rules is not None:
            out[symbol] = Instrument(symbol, source="exchange", **rules)
    return out
