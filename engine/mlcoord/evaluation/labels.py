"""What a scored prediction is judged against: the learning event or the engine's trade label.

* ``event`` - the move in the judged direction reached ``[learning] threshold`` by the close
  ``horizon`` bars later (:func:`mlcoord.learning.event_labels`), what the ensemble and the
  calibrator learn by default;
* ``trade`` - the trade label (:mod:`mlcoord.trade_label`): would a direct entry at the bar, with
  the run's configured exit manager's initial stop and take profit and the time barrier at
  ``horizon``, have closed positive net of the backtest's fees and slippage? Computed by
  :func:`~mlcoord.trade_label.history_trade_labels` on the data the run reads, as the trading
  loop hands it to learners.

Either way a bar's label counts as known at bar ``i + horizon`` (when the loop hands it over),
so bars whose horizon reaches past the data are not labelled. The causal climatology of the
trade label at bar ``t`` is the base rate of the labels known by then
(:func:`causal_climatology`).
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import attrs
import numpy as np

from mlcoord.candles import Candles
from mlcoord.config import Settings, plugin_options, unstructure
from mlcoord.costs import CostModel
from mlcoord.errors import ConfigError
from mlcoord.learning import event_labels
from mlcoord.market_inputs import MarketInputs
from mlcoord.market_sources import market_datasets
from mlcoord.pipeline import resolve_components
from mlcoord.trade_label import history_trade_labels

EVENT, TRADE = "event", "trade"
LABELS = (EVENT, TRADE)

Pair = tuple[np.ndarray, np.ndarray]


def check_label(_instance: Any, _attribute: Any, value: str) -> None:
    """attrs validator: one line naming the field and the value."""
    if value not in LABELS:
        raise ConfigError(f"label {value!r} is not one of {', '.join(LABELS)}")


@attrs.frozen(eq=False)
class Labeller:
    """Per bar of one series: (long / up, short / down) labels, 1.0 / 0.0, NaN where unknown.

    ``plugins`` (and ``changes``, the window's option changes) pick the configured exit manager
    for the trade label; ``inputs`` are the symbols' market inputs, cut at each series' end."""

    kind: str = attrs.field(validator=check_label)
    settings: Settings
    plugins: Any = None
    inputs: Mapping[str, MarketInputs] = attrs.field(factory=dict)
    changes: Optional[dict[str, dict[str, Any]]] = None

    def __call__(self, candles: Candles) -> Pair:
        event = self.settings.learning.event
        if self.kind == EVENT:
            return event_labels(candles.close, event)
        manager = resolve_components(self.settings, self.plugins, self.changes).exit_manager
        data = market_datasets(self.settings, [candles], self.inputs)[0]
        costs = CostModel.from_config(self.settings.backtest)
        found = history_trade_labels(manager.obj.prepare(data), candles, event.horizon, costs.fee_taker, costs.slippage)
        known_by_end = np.arange(len(candles)) + event.horizon < len(candles)   # handed over at i + horizon
        return tuple(np.where(known_by_end, found[side].win, np.nan) for side in (1, -1))  # type: ignore[return-value]

    def describe(self) -> dict[str, Any]:
        """The barriers behind the labels (for the result): the event's horizon and threshold, or
        the exit manager with its options, the horizon, fee and slippage."""
        event = self.settings.learning.event
        if self.kind == EVENT:
            return {"horizon": event.horizon, "threshold": event.threshold}
        spec = resolve_components(self.settings, self.plugins, self.changes).exit_manager.spec
        costs = CostModel.from_config(self.settings.backtest)
        return {"exit_manager": spec.name, "options": unstructure(plugin_options(self.settings, spec.name, spec.options)),
                "horizon": event.horizon, "fee_taker": costs.fee_taker, "slippage": costs.slippage,
                "entry": "next bar's open plus slippage (a direct market entry decided at the bar's close)"}


def causal_climatology(labels: Pair, horizon: int) -> Pair:
    """Per side, the base rate at bar ``t`` of the labels known by then (bars ``i <= t - horizon``
    of the series; NaN labels skipped, 0.5 before any is known)."""
    out = []
    for y in labels:
        y = np.asarray(y, dtype=float)
        known = ~np.isnan(y)
        wins = np.cumsum(np.where(known, y, 0.0))
        count = np.cumsum(known)
        rate = np.full(len(y), 0.5)
        if len(y) > horizon:
            c = count[:-horizon]
            rate[horizon:] = np.where(c > 0, wins[:-horizon] / np.maximum(c, 1), 0.5)
        out.append(rate)
    return out[0], out[1]
