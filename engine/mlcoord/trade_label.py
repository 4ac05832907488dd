"""The trade label: would a trade entered at this bar have closed positive, net of costs?

Meta-labelling (López de Prado, *Advances in Financial Machine Learning*, ch. 3; Joubert,
"Meta-Labeling", 2022) with the engine's own triple barrier. For bar ``t`` and a side ``s``
(+1 long, -1 short) the hypothetical trade is the one the engine would make:

* **levels** from the *configured* exit manager's ``initial(t, side, plan)`` for a direct entry (one
  market leg) at bar ``t``'s close: the stop and the take profit are the two price barriers
  (later trailing and target moves are not simulated; a plan without a take profit has none);
* **entry** at bar ``t+1``'s open plus slippage, paying the taker fee (a decision at ``t`` fills
  from ``t+1``);
* **barriers** checked from bar ``t+1`` on as the simulated venue does: a stop at the worse of the
  stop and the open, less slippage; a take profit at the better of the target and the open; the
  stop first when both are inside one bar (the engine's convention); every exit pays the taker fee;
* **time barrier**: the close of bar ``t + H`` at market (less slippage), ``H`` the learning
  event's horizon (``[learning] horizon``, default 24 bars), so the label and the event resolve
  within the same bars.

The net return is ``s * (exit / entry - 1) - fee * (1 + exit / entry)`` (relative to the entry
notional; funding and liquidation are left out) and the label is ``net return > 0``.

**No look-ahead.** The label of bar ``t`` is *known* at the bar where its barriers resolve: the
bar a stop or take profit is hit, else ``t + H``. :func:`trade_labels` reports that bar
(``resolved``) and NaN for a bar whose trade has not resolved inside the data; the trading loop
hands a decision's labels to learners with its outcome, at bar ``t + H``, never earlier.
"""

from __future__ import annotations

from typing import Any, Optional

import attrs
import numpy as np
import structlog

from mlcoord import features
from mlcoord.costs import CostModel
from mlcoord.learning import TradeLabel
from mlcoord.model import EntryLeg, EntryPlan, ExitLevels, Side

#: barrier codes of :class:`TradeLabels` (``UNRESOLVED``: not known inside the data)
UNRESOLVED, STOP, TAKE_PROFIT, TIME = 0, 1, 2, 3
BARRIER_NAMES = {STOP: "stop", TAKE_PROFIT: "take_profit", TIME: "time"}

log = structlog.get_logger("mlcoord.trade_label")


@attrs.frozen(eq=False)
class TradeLabels:
    """Per labelled bar: ``win`` (1.0 / 0.0, NaN while unresolved), ``net_return`` (NaN likewise),
    ``resolved`` (the bar index where the label became known, -1 while unresolved) and
    ``barrier`` (:data:`STOP`, :data:`TAKE_PROFIT`, :data:`TIME` or :data:`UNRESOLVED`)."""

    win: np.ndarray
    net_return: np.ndarray
    resolved: np.ndarray
    barrier: np.ndarray

    def label(self, k: int, side: int, stop: float, take_profit: Optional[float]) -> Optional[TradeLabel]:
        """Entry ``k`` as a :class:`~mlcoord.learning.TradeLabel` (None while unresolved)."""
        if self.barrier[k] == UNRESOLVED:
            return None
        return TradeLabel(side, bool(self.win[k] > 0.5), float(self.net_return[k]),
                          BARRIER_NAMES[int(self.barrier[k])], int(self.resolved[k]), stop, take_profit)


def trade_labels(open_: Any, high: Any, low: Any, close: Any, bars: Any, side: int, stop: Any,
                 take_profit: Any, horizon: int, fee: float, slippage: float) -> TradeLabels:
    """Labels of trades decided at ``bars`` (indices into the price arrays) on ``side``, with the
    per-bar barriers ``stop`` and ``take_profit`` (NaN: no take profit; a NaN stop leaves the bar
    unlabelled), vectorised over the bars: ``horizon`` array steps however many bars there are.
    ``fee`` is the taker fee, ``slippage`` the market and stop slippage (fractions)."""
    if side not in (1, -1):
        raise ValueError(f"side must be +1 or -1, got {side!r}")
    if horizon < 1:
        raise ValueError(f"horizon must be at least 1 bar, got {horizon!r}")
    o, h, l, c = (np.asarray(a, dtype=np.float64) for a in (open_, high, low, close))
    bars = np.asarray(bars, dtype=np.int64)
    stop = np.broadcast_to(np.asarray(stop, dtype=np.float64), bars.shape)
    tp = np.broadcast_to(np.asarray(take_profit, dtype=np.float64), bars.shape)
    n, m = len(c), len(bars)
    exit_price = np.full(m, np.nan)
    resolved = np.full(m, -1, dtype=np.int64)
    barrier = np.zeros(m, dtype=np.int8)
    entry = np.full(m, np.nan)
    open_trade = (bars + 1 < n) & np.isfinite(stop)
    entry[open_trade] = o[bars[open_trade] + 1] * (1.0 + side * slippage)
    has_tp = np.isfinite(tp)
    for k in range(1, horizon + 1):
        j = bars + k
        live = open_trade & (barrier == UNRESOLVED) & (j < n)
        if not live.any():
            break
        jj, s_, t_ = j[live], stop[live], tp[live]
        bo, bh, bl = o[jj], h[jj], l[jj]
        if side > 0:
            hit_stop = bl <= s_
            hit_tp = has_tp[live] & (bh >= t_) & ~hit_stop
            at_stop, at_tp = np.minimum(s_, bo), np.maximum(t_, bo)
        else:
            hit_stop = bh >= s_
            hit_tp = has_tp[live] & (bl <= t_) & ~hit_stop
            at_stop, at_tp = np.maximum(s_, bo), np.minimum(t_, bo)
        at_time = (k == horizon) & ~hit_stop & ~hit_tp
        price = np.where(hit_stop, at_stop * (1.0 - side * slippage),
                         np.where(hit_tp, at_tp, c[jj] * (1.0 - side * slippage)))
        code = np.where(hit_stop, STOP, np.where(hit_tp, TAKE_PROFIT, np.where(at_time, TIME, UNRESOLVED)))
        idx = np.flatnonzero(live)
        done = code != UNRESOLVED
        exit_price[idx[done]] = price[done]
        barrier[idx[done]] = code[done]
        resolved[idx[done]] = jj[done]
    with np.errstate(invalid="ignore"):
        ratio = exit_price / entry
        net = side * (ratio - 1.0) - fee * (1.0 + ratio)
    known = barrier != UNRESOLVED
    net = np.where(known, net, np.nan)
    win = np.where(known, (net > 0).astype(np.float64), np.nan)
    return TradeLabels(win, net, resolved, barrier)


def atr_trade_labels(open_: Any, high: Any, low: Any, close: Any, bars: Any, side: int, stop_atr: float,
                     reward_risk: float, horizon: int, fee: float, slippage: float) -> TradeLabels:
    """:func:`trade_labels` with ATR barriers, the label a model learns when it cannot see the
    configured exit manager: a stop ``stop_atr`` ATR(14) from the decision bar's close, a take
    profit ``reward_risk`` times that risk beyond it. The ATR reads the arrays given, so pass only
    the bars known at the time (a prefix)."""
    h, l, c = (np.asarray(a, dtype=np.float64) for a in (high, low, close))
    bars = np.asarray(bars, dtype=np.int64)
    risk = stop_atr * features.atr(h, l, c, 14)[bars]
    at = c[bars]
    return trade_labels(open_, h, l, c, bars, side, at - side * risk, at + side * reward_risk * risk, horizon,
                        fee, slippage)


def direct_plan(side: Side, price: float) -> EntryPlan:
    """The hypothetical trade's plan: one market leg at ``price``."""
    return EntryPlan(side, (EntryLeg(price, 1.0, market=True),), planner="trade label")


def hypothetical_levels(positions: Any, close: Any, side: Side, bars: Any) -> tuple[np.ndarray, np.ndarray]:
    """The exit manager's initial (stop, take profit) for a direct entry at each of ``bars``' close
    (``positions``: what the exit manager's ``prepare`` returned). A bar the manager refuses (it
    raises, or places the stop on the wrong side) gets NaN levels and stays unlabelled; no take
    profit is NaN. A Python loop: the manager is plugin code, one call per bar."""
    close = np.asarray(close, dtype=np.float64)
    bars = np.asarray(bars, dtype=np.int64)
    stops, tps = np.full(len(bars), np.nan), np.full(len(bars), np.nan)
    s = int(side)
    failed: list[tuple[int, Exception]] = []
    for k, i in enumerate(bars.tolist()):
        price = float(close[i])
        try:
            levels = positions.initial(i, side, direct_plan(side, price))
            stop = float(levels.stop)
        except Exception as exc:
            failed.append((i, exc))
            continue
        if not (np.isfinite(stop) and s * (price - stop) > 0):
            continue
        stops[k] = stop
        if levels.take_profit is not None:
            tps[k] = float(levels.take_profit)
    if failed:                   # a plugin bug must not pass as "unlabelled bars"
        first_bar, first_error = failed[0]
        log.warning("trade_label_levels_failed", side=side.name, bars=len(failed), first_bar=first_bar,
                    error=f"{type(first_error).__name__}: {first_error}"[:300], note="those bars stay unlabelled")
    return stops, tps


def history_trade_labels(positions: Any, candles: Any, horizon: int, fee: float, slippage: float,
                         bars: Any = None) -> dict[int, TradeLabels]:
    """Both sides' labels (+1, -1) of ``bars`` (default: every bar) of ``candles``, for training and
    evaluation on history. The label of bar ``i`` may be used at bar ``k`` only if
    ``resolved[i] <= k`` (``-1``: not known inside the data)."""
    bars = np.arange(len(candles.close)) if bars is None else np.asarray(bars, dtype=np.int64)
    out = {}
    for side in (Side.LONG, Side.SHORT):
        stop, tp = hypothetical_levels(positions, candles.close, side, bars)
        out[int(side)] = trade_labels(candles.open, candles.high, candles.low, candles.close, bars, int(side),
                                      stop, tp, horizon, fee, slippage)
    return out


def resolve_trade(open_: Any, high: Any, low: Any, close: Any, side: int, stop: float,
                  take_profit: Optional[float], horizon: int, costs: CostModel) -> Optional[tuple[float, int, int]]:
    """One trade decided at bar 0 of the given bars, bar by bar with the simulated venue's own fill
    rules (``costs``): (net return, barrier code, resolving bar) or None while unresolved. The
    trading loop labels each decision this way (microseconds, where one small numpy call per step
    costs more); :func:`trade_labels` is the same rule vectorised over a history, and the tests
    hold the two equal."""
    n = len(close)
    if n < 2:
        return None
    entry = costs.market_entry(open_[1], side)
    for j in range(1, min(horizon, n - 1) + 1):
        if (side > 0 and low[j] <= stop) or (side < 0 and high[j] >= stop):
            price, barrier = costs.stop_exit(stop, open_[j], side), STOP
        elif take_profit is not None and ((side > 0 and high[j] >= take_profit) or
                                          (side < 0 and low[j] <= take_profit)):
            price, barrier = costs.limit_exit(take_profit, open_[j], side), TAKE_PROFIT
        elif j == horizon:
            price, barrier = costs.market_exit(close[j], side), TIME
        else:
            continue
        return (side * (price - entry) - costs.fee_taker * (entry + price)) / entry, barrier, j
    return None


def decision_trade_labels(open_: Any, high: Any, low: Any, close: Any, index: int, horizon: int,
                          levels: tuple[Optional[ExitLevels], Optional[ExitLevels]], costs: CostModel
                          ) -> tuple[Optional[TradeLabel], Optional[TradeLabel]]:
    """The long and short labels of a decision at bar ``index`` (``levels``: each side's initial
    levels, None where the exit manager gave none), read from bars ``index .. index + horizon``
    only: the trading loop calls it at bar ``index + horizon``, when both have resolved."""
    end = index + horizon + 1
    o, h, l, c = open_[index:end], high[index:end], low[index:end], close[index:end]
    out: list[Optional[TradeLabel]] = []
    for side, level in zip((1, -1), levels):
        found = None if level is None else resolve_trade(o, h, l, c, side, level.stop, level.take_profit, horizon,
                                                         costs)
        if level is None or found is None:
            out.append(None)
            continue
        net, barrier, j = found
        out.append(TradeLabel(side, net > 0, net, BARRIER_NAMES[barrier], index + j, level.stop, level.take_profit))
    return out[0], out[1]
