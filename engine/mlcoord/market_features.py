"""Features beyond a symbol's own price and volume: funding, basis, cross-asset, calendar and
volatility regime (:data:`MARKET_FEATURES`; formulas in docs/features.md).

Every column is causal: the value at bar ``i`` uses only what had happened by bar ``i``'s close
(``time[i] + timeframe``): other series' bars closed by then (:func:`mlcoord.market_inputs.aligned`),
funding events stamped by then. A column whose input is missing (no funding for a spot symbol,
no BTC among the run's symbols) is all NaN, and :func:`available` leaves it out: a missing input
degrades a feature, never a run.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np

from mlcoord import features as ft
from mlcoord.candles import Candles
from mlcoord.market_inputs import aligned

HOUR_NS = 3_600_000_000_000
DAY_NS = 24 * HOUR_NS
WEEK_DAYS = 7
#: 1970-01-01 was a Thursday: day 0 of the epoch is weekday 3 (Monday = 0)
EPOCH_WEEKDAY = 3
#: the anchor of the cross-asset features: the symbol whose base currency this is
ANCHOR_BASE = "BTC"
#: funding features look back a day of events; an event older than this is no longer current
FUNDING_WINDOW_NS = DAY_NS
VOL_WINDOW, VOL_LONG_WINDOW, VOL_RANK_WINDOW = 24, 168, 500

FUNDING = ("funding_rate", "funding_24h")
BASIS = ("basis",)
CROSS_ASSET = ("btc_ret_1", "btc_ret_24", "btc_vol_24", "market_vol_24")
CALENDAR = ("hour_sin", "hour_cos", "dow_sin", "dow_cos")
VOL_REGIME = ("vol_rank_500", "vol_ratio_24_168")

MARKET_FEATURES: tuple[str, ...] = FUNDING + BASIS + CROSS_ASSET + CALENDAR + VOL_REGIME

Columns = dict[str, np.ndarray]


def _closes(data) -> np.ndarray:
    c = data.candles
    return c.time + c.timeframe_ns


def _take(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    out = np.full(len(index), np.nan)
    ok = index >= 0
    out[ok] = values[index[ok]]
    return out


def _max_age(data, other: Candles) -> int:
    """How old another series' last closed bar may be and still be current: one bar of the
    coarser of the two timeframes."""
    return max(data.candles.timeframe_ns, other.timeframe_ns)


def _base(symbol: str) -> str:
    return symbol.split("/", 1)[0].strip().upper()


def _quote(symbol: str) -> str:
    return symbol.split("/", 1)[-1].split(":", 1)[0].strip().upper()


def anchor(data) -> Optional[Candles]:
    """The cross-asset anchor's candles: the symbol itself if its base is BTC, else the peer with
    base BTC (one with the same quote currency first, then by name); None without one."""
    if _base(data.symbol) == ANCHOR_BASE:
        return data.candles
    found = [(_quote(s) != _quote(data.symbol), s) for s in data.inputs.peers if _base(s) == ANCHOR_BASE]
    return data.inputs.peers[min(found)[1]] if found else None


# -- the groups of columns ---------------------------------------------------------------------------------
def _funding(data) -> Columns:
    f, close = data.inputs.funding, _closes(data)
    k = np.searchsorted(f.time, close, side="right") - 1
    last = f.time[np.maximum(k, 0)]
    current = (k >= 0) & (close - last < FUNDING_WINDOW_NS)
    rate = np.where(current, f.rate[np.maximum(k, 0)], np.nan)
    covered = current & (f.time[0] <= close - FUNDING_WINDOW_NS)       # the whole day is in the history
    day = np.where(covered, f.totals(close - FUNDING_WINDOW_NS, close), np.nan)
    return {"funding_rate": rate, "funding_24h": day}


def _perpetual(data) -> Optional[Candles]:
    i = data.inputs
    return i.perpetual if i.perpetual is not None else i.mark


def _basis(data) -> Columns:
    perp, spot, close = _perpetual(data), data.inputs.spot, _closes(data)
    assert perp is not None and spot is not None
    jp, js = aligned(perp, close, _max_age(data, perp)), aligned(spot, close, _max_age(data, spot))
    with np.errstate(divide="ignore", invalid="ignore"):
        basis = _take(perp.close, jp) / _take(spot.close, js) - 1.0
    return {"basis": basis}


def _series_features(c: Candles) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """1-bar and 24-bar log returns and 24-bar realised volatility of one series, on its own bars."""
    logc = np.log(c.close)
    ret_24 = np.full(len(c), np.nan)
    if len(c) > VOL_WINDOW:
        ret_24[VOL_WINDOW:] = logc[VOL_WINDOW:] - logc[:-VOL_WINDOW]
    return ft.log_returns(c.close), ret_24, ft.realised_volatility(c.close, VOL_WINDOW)


def _on_own_bars(data, other: Candles, values: np.ndarray) -> np.ndarray:
    """``values`` (one per bar of ``other``) at each of the symbol's bars: the last bar of ``other``
    closed by the symbol's bar's close, NaN when it is not current."""
    if other is data.candles:
        return values
    return _take(values, aligned(other, _closes(data), _max_age(data, other)))


def _anchor(data) -> Columns:
    a = anchor(data)
    assert a is not None
    ret_1, ret_24, vol = (_on_own_bars(data, a, v) for v in _series_features(a))
    return {"btc_ret_1": ret_1, "btc_ret_24": ret_24, "btc_vol_24": vol}


def _market(data) -> Columns:
    """Mean 24-bar realised volatility over the symbol and its peers that have a current value;
    NaN where fewer than two do. Added in a fixed order (the symbol, then peers by name)."""
    n = len(data)
    total, count = np.zeros(n), np.zeros(n, dtype=np.int64)
    for c in (data.candles, *data.inputs.peers.values()):
        v = _on_own_bars(data, c, ft.realised_volatility(c.close, VOL_WINDOW))
        ok = np.isfinite(v)
        total[ok] += v[ok]
        count += ok
    with np.errstate(divide="ignore", invalid="ignore"):
        return {"market_vol_24": np.where(count >= 2, total / np.maximum(count, 1), np.nan)}


def _calendar(data) -> Columns:
    close = _closes(data)
    second_of_day = (close // 1_000_000_000) % 86_400
    hour = second_of_day / 3_600.0
    weekday = (close // DAY_NS + EPOCH_WEEKDAY) % WEEK_DAYS + second_of_day / 86_400.0
    day_angle, week_angle = 2 * np.pi * hour / 24.0, 2 * np.pi * weekday / WEEK_DAYS
    return {"hour_sin": np.sin(day_angle), "hour_cos": np.cos(day_angle),
            "dow_sin": np.sin(week_angle), "dow_cos": np.cos(week_angle)}


def _vol_regime(data) -> Columns:
    c = data.candles.close
    vol = ft.realised_volatility(c, VOL_WINDOW)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.log(vol / ft.realised_volatility(c, VOL_LONG_WINDOW))
    return {"vol_rank_500": ft.rolling_percentile_rank(vol, VOL_RANK_WINDOW) - 0.5, "vol_ratio_24_168": ratio}


#: each group: its columns, whether the data has its inputs, and how to compute them
_GROUPS: tuple[tuple[tuple[str, ...], Callable[..., bool], Callable[..., Columns]], ...] = (
    (FUNDING, lambda d: d.inputs.funding is not None, _funding),
    (BASIS, lambda d: _perpetual(d) is not None and d.inputs.spot is not None, _basis),
    (CROSS_ASSET[:3], lambda d: anchor(d) is not None, _anchor),
    (CROSS_ASSET[3:], lambda d: len(d.inputs.peers) > 0, _market),
    (CALENDAR, lambda d: True, _calendar),
    (VOL_REGIME, lambda d: True, _vol_regime),
)


def available(data) -> tuple[str, ...]:
    """The names of :data:`MARKET_FEATURES` whose inputs ``data`` has (the others are all NaN)."""
    return tuple(name for names, has, _ in _GROUPS if has(data) for name in names)


def market_columns(data, names: Sequence[str] = MARKET_FEATURES) -> Columns:
    """float64 columns of ``names`` (a subset of :data:`MARKET_FEATURES`) for every bar of ``data``;
    NaN where an input is missing, warming up or not current; infinities become NaN."""
    wanted = set(names)
    out: Columns = {}
    for group, has, compute in _GROUPS:
        if not wanted.intersection(group):
            continue
        if has(data) and len(data):
            out.update(compute(data))
        else:
            out.update({name: np.full(len(data), np.nan) for name in group})
    for name in names:
        col = out[name]
        col[~np.isfinite(col)] = np.nan
    return {name: out[name] for name in names}
