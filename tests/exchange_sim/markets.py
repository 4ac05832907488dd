"""Markets of the loopback exchange: symbol rules (Binance filters) and the replayed candles.

Prices and quantities are :class:`~decimal.Decimal` throughout the simulator, so a tick or step
check is exact and balances add up to the last unit, as on the real exchange.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from functools import lru_cache

import numpy as np

HOUR_MS = 3_600_000
MAX_LEVERAGE = 125
ZERO = Decimal(0)


def dec(value) -> Decimal:
    """A Decimal from a float/str/int without binary noise (``0.1`` -> ``Decimal('0.1')``)."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):  # includes numpy.float64
        return Decimal(repr(float(value)))
    return Decimal(str(value))


def fmt(value: Decimal, places: int = 8) -> str:
    """Binance's fixed-point string (``"0.00100000"``)."""
    return f"{dec(value):.{places}f}"


@dataclass(frozen=True)
class MarketSpec:
    """One tradable symbol and its exchange filters (PRICE_FILTER, LOT_SIZE, (MIN_)NOTIONAL)."""

    symbol: str  # unified, "BTC/USDT"
    tick: Decimal
    step: Decimal
    min_notional: Decimal
    min_qty: Decimal | None = None  # defaults to one step
    max_qty: Decimal = Decimal(9000)
    maint_margin_ratio: Decimal = Decimal("0.004")  # futures only: first leverage bracket
    # spot only: POST /api/v3/order/cancelReplace accepted (exchangeInfo ``cancelReplaceAllowed``;
    # true for Binance's BTCUSDT and ETHUSDT); False tests a bot's fallback
    cancel_replace_allowed: bool = True

    @property
    def base(self) -> str:
        return self.symbol.split("/")[0]

    @property
    def quote(self) -> str:
        return self.symbol.split("/")[1]

    @property
    def id(self) -> str:
        return self.base + self.quote

    @property
    def lot_min(self) -> Decimal:
        return self.min_qty if self.min_qty is not None else self.step

    def round_price(self, price: Decimal) -> Decimal:
        return (dec(price) / self.tick).quantize(Decimal(1), ROUND_HALF_UP) * self.tick

    def floor_qty(self, qty: Decimal) -> Decimal:
        return (dec(qty) / self.step).to_integral_value(ROUND_DOWN) * self.step

    def filter_failure(self, price: Decimal | None, qty: Decimal, ref_price: Decimal) -> str | None:
        """Name of the first Binance filter the order breaks, or None."""
        if price is not None and (price <= 0 or price % self.tick != 0):
            return "PRICE_FILTER"
        if qty < self.lot_min or qty > self.max_qty or qty % self.step != 0:
            return "LOT_SIZE"
        if qty * (price if price is not None else ref_price) < self.min_notional:
            return "NOTIONAL"
        return None


# Real Binance rules for the bundled pairs (2025): spot BTC/ETH, USD-M perpetual BTC/ETH.
SPOT_MARKETS = (
    MarketSpec("BTC/USDT", tick=Decimal("0.01"), step=Decimal("0.00001"), min_notional=Decimal(5)),
    MarketSpec("ETH/USDT", tick=Decimal("0.01"), step=Decimal("0.0001"), min_notional=Decimal(5)),
)
FUTURES_MARKETS = (
    MarketSpec("BTC/USDT", tick=Decimal("0.10"), step=Decimal("0.001"), min_notional=Decimal(100),
               max_qty=Decimal(1000), maint_margin_ratio=Decimal("0.004")),
    MarketSpec("ETH/USDT", tick=Decimal("0.01"), step=Decimal("0.001"), min_notional=Decimal(20),
               max_qty=Decimal(10000), maint_margin_ratio=Decimal("0.005")),
)


class Series:
    """A symbol's replayed 1h candles as millisecond times and float arrays."""

    def __init__(self, time_ms, open_, high, low, close, volume) -> None:
        self.time = np.asarray(time_ms, dtype=np.int64)
        self.open, self.high, self.low = (np.asarray(a, dtype=float) for a in (open_, high, low))
        self.close, self.volume = np.asarray(close, dtype=float), np.asarray(volume, dtype=float)
        self.step_ms = int(np.min(np.diff(self.time))) if len(self.time) > 1 else HOUR_MS

    @classmethod
    def from_candles(cls, candles) -> Series:
        return cls(candles.time // 1_000_000, candles.open, candles.high, candles.low, candles.close,
                   candles.volume)

    def index_at(self, now_ms: int) -> int:
        """Index of the last bar that opened at or before ``now_ms`` (-1 if none)."""
        return int(np.searchsorted(self.time, now_ms, side="right")) - 1


@lru_cache(maxsize=None)
def bundled_series(symbol: str) -> Series:
    """The real candles bundled with mlcoord (loaded once per process)."""
    from mlcoord.candles import load_candles
    from mlcoord.datasets import bundled_path

    return Series.from_candles(load_candles(bundled_path(symbol), symbol=symbol))


def exchange_filters(spec: MarketSpec, futures: bool) -> list[dict]:
    lot = {"filterType": "LOT_SIZE", "minQty": str(spec.lot_min), "maxQty": str(spec.max_qty),
           "stepSize": str(spec.step)}
    price = {"filterType": "PRICE_FILTER", "minPrice": str(spec.tick), "maxPrice": "4529764",
             "tickSize": str(spec.tick)}
    if futures:
        return [price, lot, {"filterType": "MARKET_LOT_SIZE", "minQty": str(spec.lot_min),
                             "maxQty": str(spec.max_qty), "stepSize": str(spec.step)},
                {"filterType": "MIN_NOTIONAL", "notional": str(spec.min_notional)},
                {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10}]
    return [price, lot, {"filterType": "NOTIONAL", "minNotional": str(spec.min_notional),
                         "applyMinToMarket": True, "maxNotional": "9000000.00000000",
                         "applyMaxToMarket": False, "avgPriceMins": 5},
            {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200}]


def _decimals(step: Decimal) -> int:
    return max(0, -step.normalize().as_tuple().exponent)


def spot_symbol_info(spec: MarketSpec) -> dict:
    return {"symbol": spec.id, "status": "TRADING", "baseAsset": spec.base, "baseAssetPrecision": 8,
            "quoteAsset": spec.quote, "quotePrecision": 8, "quoteAssetPrecision": 8,
            "baseCommissionPrecision": 8, "quoteCommissionPrecision": 8,
            "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS", "STOP_LOSS_LIMIT",
                           "TAKE_PROFIT", "TAKE_PROFIT_LIMIT"],
            "icebergAllowed": True, "ocoAllowed": True, "quoteOrderQtyMarketAllowed": True,
            "allowTrailingStop": False, "cancelReplaceAllowed": spec.cancel_replace_allowed, "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False, "filters": exchange_filters(spec, futures=False),
            "permissions": [], "permissionSets": [["SPOT"]],
            "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
            "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"]}


def futures_symbol_info(spec: MarketSpec, onboard_ms: int) -> dict:
    return {"symbol": spec.id, "pair": spec.id, "contractType": "PERPETUAL",
            "deliveryDate": 4133404800000, "onboardDate": onboard_ms, "status": "TRADING",
            "maintMarginPercent": "2.5000", "requiredMarginPercent": "5.0000",
            "baseAsset": spec.base, "quoteAsset": spec.quote, "marginAsset": spec.quote,
            "pricePrecision": _decimals(spec.tick), "quantityPrecision": _decimals(spec.step),
            "baseAssetPrecision": 8, "quotePrecision": 8, "underlyingType": "COIN",
            "underlyingSubType": ["PoW"], "triggerProtect": "0.0500", "liquidationFee": "0.012500",
            "marketTakeBound": "0.05", "maxMoveOrderLimit": 10000,
            "filters": exchange_filters(spec, futures=True),
            "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT",
                           "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"],
            "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"]}
