"""Series a symbol's features may read besides its own candles: funding, spot and perpetual
prices of the same asset, and other symbols' candles (cross-asset inputs).

Every one is optional: a spot symbol has no funding, the bundled data has none of them, a
single-symbol run has no other symbols. :class:`~mlcoord.components.MarketData` carries them as
``data.inputs``; :mod:`mlcoord.market_features` turns them into feature columns.

Causality is by close time: bar ``i`` of a symbol closes at ``time[i] + timeframe`` (bar times
are open times), and may see another series' bar only once that bar has closed too, and a
funding event only from its timestamp on. :meth:`MarketInputs.until` cuts every series at one
close time, which is what ``MarketData.head`` and the look-ahead checks use.
"""

from __future__ import annotations

from typing import Mapping, Optional

import attrs
import numpy as np

from mlcoord.candles import Candles
from mlcoord.funding import FundingSeries
from mlcoord.views import FrozenDict


def closed_by(candles: Candles, close: int) -> Candles:
    """The bars of ``candles`` that closed at or before ``close`` (ns)."""
    end = int(np.searchsorted(candles.time + candles.timeframe_ns, close, side="right"))
    return candles if end == len(candles) else candles.slice(0, end)


def aligned(candles: Optional[Candles], close: np.ndarray, max_age: int) -> np.ndarray:
    """For each close time in ``close`` (ns), the index of the last bar of ``candles`` closed at or
    before it, or -1 when there is none or it closed ``max_age`` ns or more earlier (a gap in
    that series, or a series that ended: its last bar is then no longer current)."""
    close = np.asarray(close, dtype=np.int64)
    if candles is None or not len(candles):
        return np.full(len(close), -1, dtype=np.int64)
    closes = candles.time + candles.timeframe_ns
    j = np.searchsorted(closes, close, side="right") - 1
    stale = (j < 0) | (close - closes[np.maximum(j, 0)] >= max_age)
    return np.where(stale, -1, j).astype(np.int64)


def _frozen_peers(peers: Mapping[str, Candles]) -> FrozenDict:
    return FrozenDict(sorted(peers.items()))


@attrs.frozen(eq=False)
class MarketInputs:
    """What a symbol's features may read besides its candles (each optional).

    * ``funding``: the symbol's perpetual funding events (:class:`~mlcoord.funding.FundingSeries`);
    * ``spot``, ``perpetual``, ``mark``: the same asset's spot candles, perpetual (trade price)
      candles and perpetual mark-price candles, for the basis;
    * ``peers``: other symbols' candles by symbol (the run's other symbols and ``[data]
      context_symbols``), for cross-asset inputs; a read-only mapping, sorted by symbol.
    """

    funding: Optional[FundingSeries] = None
    spot: Optional[Candles] = None
    perpetual: Optional[Candles] = None
    mark: Optional[Candles] = None
    peers: Mapping[str, Candles] = attrs.field(factory=dict, converter=_frozen_peers)

    def until(self, close: int) -> "MarketInputs":
        """Every series cut at ``close`` (ns): bars closed by then, funding events stamped by then."""
        def cut(c: Optional[Candles]) -> Optional[Candles]:
            return None if c is None else closed_by(c, close)

        return MarketInputs(None if self.funding is None else self.funding.until(close), cut(self.spot),
                            cut(self.perpetual), cut(self.mark),
                            {s: closed_by(c, close) for s, c in self.peers.items()})

    def describe(self) -> dict[str, object]:
        """What is present, for a log line: counts of events and bars, the peers' names."""
        out: dict[str, object] = {}
        if self.funding is not None:
            out["funding_events"] = len(self.funding)
        for name in ("spot", "perpetual", "mark"):
            c = getattr(self, name)
            if c is not None:
                out[f"{name}_bars"] = len(c)
        if self.peers:
            out["peers"] = list(self.peers)
        return out
