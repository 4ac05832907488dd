"""Arguments checked against the exchange before anything is set on the account.

``live``, ``paper`` and ``data download`` take a symbol, a timeframe and (futures) a leverage that
only the exchange can judge. Checked one by one as the session used them, an unknown symbol ended
in a ccxt traceback and ``live --timeframe 7m`` failed only after the exchange's leverage had been
set. Here every one is checked first, with reads only (the markets, and on a live futures account
the leverage brackets), and a bad one is a one-line ConfigError naming the argument and what the
exchange offers.
"""

from __future__ import annotations

import difflib
import math
from typing import Any, Optional, Sequence

import structlog

from mlcoord.candles import TIMEFRAMES
from mlcoord.datastore import market_symbol
from mlcoord.errors import ConfigError

log = structlog.get_logger("mlcoord.live.preflight")


def check_market_arguments(exchange: Any, market: str, symbols: Sequence[str], timeframes: Sequence[str],
                           leverage: Optional[float] = None, *, health: Any = None,
                           whole_leverage: bool = False) -> None:
    """Raise a ConfigError for the first argument the exchange cannot take: a timeframe the engine
    or the exchange does not know, a symbol not listed on ``market``, or (futures, ``leverage``
    given) a leverage outside the exchange's range for a symbol. ``whole_leverage`` (live): the
    exchange sets whole-number leverage only, so 2.5 would silently trade at 2 or 3."""
    for timeframe in timeframes:
        _check_timeframe(exchange, timeframe)
    if not symbols and leverage is None:
        return
    markets = _call(health, exchange.load_markets, "load_markets") or {}
    wanted = {s: _ccxt_symbol(s, market) for s in symbols}
    for symbol, sym in wanted.items():
        if sym not in markets:
            close = difflib.get_close_matches(sym, list(markets), n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(f"unknown symbol {symbol!r}: {_name(exchange)} {market} lists no {sym}{hint}")
    if leverage is None or market != "futures":
        return
    if whole_leverage and leverage != math.floor(leverage):
        raise ConfigError(f"[backtest] leverage = {leverage:g}: {_name(exchange)} sets whole-number leverage only "
                          f"(it would trade at {round(leverage)}x, not {leverage:g}x); use a whole number")
    tiers = _leverage_tiers(exchange, list(wanted.values()), health) if whole_leverage else {}
    for symbol, sym in wanted.items():
        low, high = _leverage_range(markets[sym], tiers.get(sym))
        low = low or 1.0
        if leverage < low or (high is not None and leverage > high):
            span = f"{low:g} to {high:g}x" if high is not None else f"at least {low:g}x"
            raise ConfigError(f"[backtest] leverage = {leverage:g} is outside {_name(exchange)}'s range for "
                              f"{symbol}: {span}")


def _check_timeframe(exchange: Any, timeframe: str) -> None:
    if timeframe not in TIMEFRAMES:
        raise ConfigError(f"unknown timeframe {timeframe!r}: expected one of {', '.join(TIMEFRAMES)}")
    offered = getattr(exchange, "timeframes", None)
    if isinstance(offered, dict) and offered and timeframe not in offered:
        raise ConfigError(f"timeframe {timeframe!r} is not offered by {_name(exchange)} "
                          f"(it offers {', '.join(offered)})")


def _ccxt_symbol(symbol: str, market: str) -> str:
    try:
        return market_symbol(symbol, market)
    except ConfigError as exc:
        raise ConfigError(f"symbol {symbol!r}: {exc}") from None


def _name(exchange: Any) -> str:
    return str(getattr(exchange, "id", "the exchange"))


def _call(health: Any, fn, what: str):
    return health.call(fn, what=what) if health is not None else fn()


def _number(value: Any) -> Optional[float]:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def _leverage_range(market: dict, tiers: Optional[list]) -> tuple[Optional[float], Optional[float]]:
    """(lowest, highest) leverage a symbol takes: ccxt's market limits, else its leverage tiers."""
    limits = (market.get("limits") or {}).get("leverage") or {}
    low, high = _number(limits.get("min")), _number(limits.get("max"))
    if high is None and tiers:
        found = [x for x in (_number(t.get("maxLeverage")) for t in tiers if isinstance(t, dict)) if x is not None]
        high = max(found) if found else None
    return low, high


def _leverage_tiers(exchange: Any, symbols: list[str], health: Any) -> dict[str, list]:
    """The exchange's leverage brackets of ``symbols`` (a signed read, no side effect), or nothing
    when the exchange does not offer them."""
    if not symbols or not (getattr(exchange, "has", None) or {}).get("fetchLeverageTiers"):
        return {}
    import ccxt

    try:
        tiers = _call(health, lambda: exchange.fetch_leverage_tiers(symbols), "fetch_leverage_tiers")
    except ccxt.NotSupported:
        return {}
    if not isinstance(tiers, dict):
        log.info("leverage_tiers_unreadable", got=type(tiers).__name__)
        return {}
    return tiers
