"""The fill and cost model, shared by the backtest and paper trading.

* A decision at bar t fills from bar t+1: market orders at t+1's open plus slippage.
* Limit orders fill when the bar's range touches them, at the limit or at a better open.
* A stop fills at the worse of the stop and the open (a gap through it fills at the open), plus
  slippage. If the stop and the take profit are both inside one bar, the stop is assumed first.
* Fees on every fill (taker for market and stop fills, maker for limits); funding on perpetual
  positions at every funding time.
"""

from __future__ import annotations

import attrs

from mlcoord.config import BacktestConfig

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

    @classmethod
    def from_config(cls, config: BacktestConfig) -> "CostModel":
        return cls(config.fee_taker, config.fee_maker, config.slippage, config.funding_rate,
                   config.funding_interval_hours * HOUR_NS, config.market, config.leverage,
                   config.maintenance_margin)

    def describe(self) -> str:
        funding = (f"funding {self.funding_rate * 100:.4f}% per {self.funding_interval_ns // HOUR_NS}h "
                   f"(longs pay when positive)" if self.market == "futures" else "no funding (spot)")
        return (f"{self.market}, leverage {self.leverage:g}x; fees taker {self.fee_taker * 100:.3f}% / "
                f"maker {self.fee_maker * 100:.3f}%; slippage {self.slippage * 100:.3f}% on market and stop "
                f"fills; stops gapped through fill at the open; stop assumed before take profit in one bar; "
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
        """Funding times in (previous_open, open_]."""
        if self.market != "futures" or not self.funding_rate:
            return 0
        step = self.funding_interval_ns
        return open_ // step - previous_open // step
