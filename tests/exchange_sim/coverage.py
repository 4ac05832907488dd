"""Stop coverage: when a held position had no resting stop on the exchange (the stop-less window).

The exchange knows what a bot can only infer: after every signed request it processed and after
every replayed bar, :meth:`StopCoverage.observe` looks at each holding (a spot base balance above
the market's minimum amount and notional; a futures position side) and the quantity its resting
stops cover (spot: open ``STOP_LOSS``/``STOP_LOSS_LIMIT`` sells; futures: open ``STOP_MARKET``
closing orders of that position side). A holding with more uncovered than the market's minimum
opens a :class:`Gap`; the gap closes when it is covered again (or the holding is gone).

A gap records its ``kind`` (``"fill"``: the holding grew past its stops, e.g. an entry filled
and its stop is not placed yet; ``"stop"``: a stop was taken away, e.g. cancelled before its
replacement rests), what opened it (``"bar"``: a replayed bar; else the request,
``"DELETE /api/v3/order"``), its wall-clock span, its span in market time (bars; a bar's gap is
counted from the bar's open) and how many signed requests the exchange processed while it was open
(a latency-free measure: each is a round trip a real exchange makes slower).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Callable

SPOT_STOPS = ("STOP_LOSS", "STOP_LOSS_LIMIT")


@dataclass
class Gap:
    market: str        # "spot" or "futures"
    symbol: str        # the exchange's id, "BTCUSDT"
    side: str          # the position side ("LONG" on spot)
    kind: str          # "fill" (the holding grew) or "stop" (a stop was removed)
    cause: str         # "bar", or the request that uncovered it ("DELETE /api/v3/order")
    start_wall: float
    start_ms: int
    end_wall: float | None = None
    end_ms: int | None = None
    requests: int = 0  # signed requests processed while it was open

    def seconds(self, now: float | None = None) -> float:
        end = self.end_wall if self.end_wall is not None else (now if now is not None else time.monotonic())
        return end - self.start_wall

    def bars(self, step_ms: int, now_ms: int | None = None) -> float:
        end = self.end_ms if self.end_ms is not None else now_ms
        return 0.0 if end is None else (end - self.start_ms) / step_ms


@dataclass
class StopCoverage:
    """The gaps of one exchange (see the module docstring). Called under the state's lock."""

    state: object
    clock: Callable[[], float] = time.monotonic
    gaps: list[Gap] = field(default_factory=list)      # closed
    open: dict[tuple, Gap] = field(default_factory=dict)
    _held: dict[tuple, Decimal] = field(default_factory=dict)     # each holding at the last look

    def observe(self, cause: str, at_ms: int | None = None) -> None:
        """After a request (``cause`` names it) or a replayed bar (``"bar"``, ``at_ms`` its open:
        a fill in it is counted from there, the most it can have been uncovered)."""
        now = self.clock()
        for gap in self.open.values():
            gap.requests += cause != "bar"
        bare, held = self._bare()
        for key, gap in list(self.open.items()):
            if key not in bare:
                gap.end_wall, gap.end_ms = now, self.state.now_ms
                self.gaps.append(self.open.pop(key))
        for key in bare:
            if key not in self.open:
                market, symbol, side = key
                kind = "fill" if held[key] > self._held.get(key, Decimal(0)) else "stop"
                self.open[key] = Gap(market, symbol, side, kind, cause, now,
                                     self.state.now_ms if at_ms is None else at_ms)
        self._held = held

    def all(self) -> list[Gap]:
        """Every gap, the open ones included (they end now)."""
        return [*self.gaps, *self.open.values()]

    def _bare(self) -> tuple[set[tuple], dict[tuple, Decimal]]:
        """The holdings their stops do not cover, and every holding's quantity."""
        st = self.state
        bare, held = set(), {}
        spot = st.spot
        for spec in st.spot_markets.values():
            key, qty = ("spot", spec.id, "LONG"), spot.total(spec.base)
            held[key] = qty
            if qty < spec.lot_min:
                continue
            covered = sum((o.remaining for o in spot.open_orders(spec.id)
                           if o.type in SPOT_STOPS and o.side == "SELL"), Decimal(0))
            if qty - covered >= spec.lot_min and (qty - covered) * st.price(spec.id) >= spec.min_notional:
                bare.add(key)
        futures = st.futures
        covered_f: dict[tuple, Decimal] = {}
        for a in futures.algos.values():
            if a.is_open and a.type == "STOP_MARKET":
                k = (a.symbol, a.position_side)
                covered_f[k] = covered_f.get(k, Decimal(0)) + a.remaining
        for (symbol, side), pos in futures.positions.items():
            key = ("futures", symbol, side)
            held[key] = abs(pos.amt)
            if pos.amt and abs(pos.amt) - covered_f.get((symbol, side), Decimal(0)) >= \
                    st.futures_markets[symbol].lot_min:
                bare.add(key)
        return bare, held

    def summary(self, step_ms: int, kind: str | None = None) -> dict:
        """Counts and spans of the gaps of ``kind`` ("fill", "stop"; None: all), the open ones
        ending now."""
        now, now_ms = self.clock(), self.state.now_ms
        picked = [g for g in self.all() if kind is None or g.kind == kind]
        seconds = [g.seconds(now) for g in picked]
        return {"gaps": len(picked), "max_seconds": max(seconds, default=0.0), "total_seconds": sum(seconds),
                "max_bars": max((g.bars(step_ms, now_ms) for g in picked), default=0.0),
                "max_requests": max((g.requests for g in picked), default=0)}
