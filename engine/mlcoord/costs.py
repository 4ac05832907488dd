"""The fill and cost model of the simulated venue (backtests and paper trading).

* A decision at bar t fills from bar t+1: market orders at t+1's open plus slippage.
* Limit orders fill when the bar's range touches them, at the limit or at a better open.
* A stop fills at the worse of the stop and the open (a gap through it fills at the open), plus
  slippage. If the stop and the take profit are both inside one bar, the stop is assumed first.
* Fees on every fill (taker for market and stop fills, maker for limits); funding on perpetual
  positions at every funding time: the exchange's recorded rates where a :class:`FundingSeries`
  covers the time (``mlcoord data download`` stores them), else the configured constant rate.
"""

from __future__ import annotations

from typing import Mapping, Optional

import attrs
import numpy as np

from mlcoord.config import BacktestConfig
from mlcoord.funding import FundingSeries

HOUR_NS = 3_600_000_000_000
DAY_NS = 24 * HOUR_NS


@attrs.frozen
class CostModel:
    fee_taker: float
    fee_maker: float
    slippage: float
    funding_rate: float
    funding_interval_ns: int
    market: str
    leverage: float
    maintenance_margin: float
    funding: Mapping[str, FundingSeries] = attrs.field(factory=dict, repr=False)  # per symbol, optional

    @classmethod
    def from_config(cls, config: BacktestConfig,
                    funding: Optional[Mapping[str, FundingSeries]] = None) -> "CostModel":
        return cls(config.fee_taker, config.fee_maker, config.slippage, config.funding_rate,
                   config.funding_interval_hours * HOUR_NS, config.market, config.leverage,
                   config.maintenance_margin, dict(funding or {}))

    def describe(self) -> str:
        funding = (f"funding {self.funding_rate * 100:.4f}% per {self.funding_interval_ns // HOUR_NS}h "
                   f"(longs pay when positive)" if self.market == "futures" else "no funding (spot)")
        if self.funding and self.market == "futures":
            funding = f"recorded funding rates for {', '.join(sorted(self.funding))}, elsewhere {funding}"
        return (f"{self.market}, leverage {self.leverage:g}x; fees taker {self.fee_taker * 100:.3f}% / "
                f"maker {self.fee_maker * 100:.3f}%; slippage {self.slippage * 100:.3f}% on market and stop "
                f"fills; take profits pay the taker fee (live takes them at market); stops gapped through fill at "
                f"the open; stop assumed before take profit in one bar; "
                f"{funding}; maintenance margin {self.maintenance_margin * 100:.2f}%")

    def market_entry(self, open_: float, side: int) -> float:
        return open_ * (1.0 + self.slippage * side)

    def market_exit(self, open_: float, side: int) -> float:
        return open_ * (1.0 - self.slippage * side)

    def stop_exit(self, stop: float, open_: float, side: int) -> float:
        base = min(stop, open_) if side > 0 else max(stop, open_)
        return base * (1.0 - self.slippage * side)

    @staticmethod
    def limit_entry(price: float, open_: float, side: int) -> float:
        return min(price, open_) if side > 0 else max(price, open_)

    @staticmethod
    def limit_exit(price: float, open_: float, side: int) -> float:
        return max(price, open_) if side > 0 else min(price, open_)

    def funding_events(self, previous_open: int, open_: int) -> int:
        """Funding times in (previous_open, open_] (of the constant-rate schedule)."""
        if self.market != "futures" or not (self.funding_rate or self.funding):
            return 0
        step = self.funding_interval_ns
        return open_ // step - previous_open // step

    def funding_between(self, symbol: str, previous_open: int, open_: int) -> float:
        """Total funding rate due in (previous_open, open_] (positive: longs pay shorts).

        The symbol's recorded series where it covers the time, else the constant rate at every
        ``funding_interval`` boundary."""
        series = self.funding.get(symbol)
        step = self.funding_interval_ns
        if series is None or open_ < series.time[0] or previous_open >= series.time[-1]:
            return (open_ // step - previous_open // step) * self.funding_rate
        rate = series.total(previous_open, open_)
        if previous_open < series.time[0]:  # the part before the recorded history
            rate += ((int(series.time[0]) - 1) // step - previous_open // step) * self.funding_rate
        if open_ > series.time[-1]:  # the part after it
            rate += (open_ // step - series.time[-1] // step) * self.funding_rate
        return rate
