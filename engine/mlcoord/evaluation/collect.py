"""Scored predictions of one (window, symbol) task, as columns: every BUY/SELL of the signal
sources in the ML run with every component's and baseline's probability beside it
(``signal_bars``), and, on request, every test bar judged up / long (``every_bar``), against the
run's label (:mod:`mlcoord.evaluation.labels`: the event or the trade label).

Rows are keyed by role, never by a component's name: the signal sources' vote (the first vote of
every decision, whatever sources the pipeline runs) is the row :data:`SIGNALS`; each ML component
is the row of its registered name."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from mlcoord.bounds import ComponentFailure, checked_vote
from mlcoord.candles import Candles
from mlcoord.components import build_market_data
from mlcoord.config import Settings
from mlcoord.evaluation.baselines import NAMES as BASELINES
from mlcoord.market_inputs import MarketInputs
from mlcoord.model import Action, Signal
from mlcoord.pipeline import Guarded, resolve_components
from mlcoord.registry import PluginSet

SIGNAL_BARS, EVERY_BAR = "signal_bars", "every_bar"
#: the row of the signal sources' vote (one source or several, as the pipeline combined them)
SIGNALS = "signals"


class Records:
    """Scored predictions of one task, by population and component, as columns."""

    def __init__(self, symbol: str, window: int):
        self.symbol, self.window = symbol, window
        self.data: dict[str, dict[str, dict[str, list]]] = {}

    def add(self, population: str, component: str, time: int, y: float, p: float, side: int, pc: float) -> None:
        cols = self.data.setdefault(population, {}).setdefault(
            component, {"time": [], "symbol": [], "window": [], "y": [], "p": [], "side": [], "pc": []})
        for key, value in (("time", time), ("symbol", self.symbol), ("window", self.window), ("y", y), ("p", p),
                           ("side", side), ("pc", pc)):
            cols[key].append(value)


def collect_signal_bars(result: Any, candles: Candles, w: Any, labels: tuple[np.ndarray, np.ndarray],
                        base: dict[str, tuple[np.ndarray, np.ndarray]], into: Records) -> None:
    """Score every decision of the test part whose label is known inside the data (``labels``:
    per bar of ``candles``, the up / long and down / short label, NaN where unknown), with every
    baseline beside it (same bar, same direction)."""
    index_of = {int(t): i for i, t in enumerate(candles.time)}
    clim = base["climatology (causal)"]
    for d in result.raw.decisions:
        if not w.test_start <= d.time < w.test_end:
            continue
        i = index_of.get(d.time)
        if i is None or not d.votes:
            continue
        signals, ml_votes = d.votes[0], d.votes[1:]     # the first vote is always the signal sources'
        direction = int(signals.action)
        if direction == 0:
            continue
        head = 0 if direction > 0 else 1
        y = float(labels[head][i])
        if y != y:                      # not known inside the data: not scored
            continue
        pc = float(clim[head][i])
        add = lambda name, p, side=direction, pc=pc, y=y: into.add(SIGNAL_BARS, name, d.time, y, p, side, pc)  # noqa
        add(SIGNALS, signals.confidence)
        for v in ml_votes:
            add(v.component, v.probability(direction))
        if d.p_signal is not None:
            add("ensemble (raw)", d.p_signal)
        for name in BASELINES:
            add(name, float(base[name][head][i]))
        if d.signal.action != Action.HOLD:
            final = int(d.signal.action)
            y_final = float(labels[0 if final > 0 else 1][i])
            pc_final = float(clim[0 if final > 0 else 1][i])
            if y_final == y_final:
                add("ensemble (final, raw)", d.raw_confidence, final, pc_final, y_final)
                add("ensemble (final, calibrated)", d.confidence, final, pc_final, y_final)


def collect_every_bar(settings: Settings, plugins: PluginSet, changes: dict, part: Candles, w: Any,
                      labels: tuple[np.ndarray, np.ndarray], base: dict[str, tuple[np.ndarray, np.ndarray]],
                      into: Records, inputs: Optional[MarketInputs] = None) -> None:
    """Every test bar, the up / long label (``labels[0]``; a bar whose label is not known inside
    the data is not scored): the baselines and the ML components whose votes do not depend on
    online learning (those with a trained model); the online learners and the ensemble only vote
    on signal bars inside the backtest, so they are not in this table."""
    event = settings.learning.event
    lo, hi = np.searchsorted(part.time, [w.test_start, w.test_end])
    hi = min(int(hi), len(part) - event.horizon)
    if hi <= lo:
        return
    data = build_market_data(part, settings.data.higher_timeframes, event=event,
                             inputs=None if inputs is None else inputs.until(int(part.time[-1]) + part.timeframe_ns))
    voters = []
    for built in resolve_components(settings, plugins, changes).ml_components:
        if hasattr(built.obj, "train"):
            voters.append((built.name, built.obj.prepare(data)))
    buy = Signal(Action.BUY, 0.5, (), "evaluate")
    refused = Guarded()
    clim = base["climatology (causal)"][0]
    for i in range(int(lo), hi):
        t, y, pc = int(part.time[i]), float(labels[0][i]), float(clim[i])
        if y != y:
            continue
        for name in BASELINES:
            into.add(EVERY_BAR, name, t, y, float(base[name][0][i]), 1, pc)
        for name, voter in voters:
            v = voter.vote(i, buy)
            if v is None:
                continue
            try:
                v = checked_vote(v, name)           # what the engine refuses is not scored either
            except ComponentFailure as exc:
                refused.failed(name, "vote", exc, note="not scored", bar=i)
                continue
            into.add(EVERY_BAR, name, t, y, v.probability(1), 1, pc)
