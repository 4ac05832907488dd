"""Instruments: the exchange's rules for prices and quantities of one symbol.

A backtest that fills an order the exchange would refuse (a quantity below the lot, a notional
below the minimum) flatters itself; so the simulated venue and the exchange venues round and check
orders with the same :class:`Instrument`. The rules come from the exchange when known (``mlcoord
data download`` stores them beside the candles), else from ``[instruments."<symbol>"]`` in the
config; a symbol with neither gets a permissive default (no rounding, no minimum) and a warning,
never a failure.
"""

from __future__ import annotations

import math
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal
from typing import Any, Callable, Mapping, Optional

import attrs


def _non_negative(instance, attribute, value):
    if isinstance(value, bool) or not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        raise ValueError(f"instrument {instance.symbol!r}: {attribute.name} must be a finite number >= 0, "
                         f"got {value!r}")


def _leverage(instance, attribute, value):
    if value is not None and (isinstance(value, bool) or not (isinstance(value, (int, float)) and value >= 1)):
        raise ValueError(f"instrument {instance.symbol!r}: max_leverage must be a number >= 1, got {value!r}")


def _step(value: float, step: float, rounding: str) -> float:
    if step <= 0:
        return value
    ratio = Decimal(repr(value)) / Decimal(repr(step))
    if rounding == ROUND_DOWN:
        # a float sum or difference (0.3 - 0.1 = 0.19999999999999998) must not lose a whole step:
        # the broker's rule for the exchange's own rounding (live.broker.Broker.amount)
        ratio *= Decimal("1.000000001")
    units = ratio.quantize(Decimal(1), rounding=rounding)
    return float(units * Decimal(repr(step)))


@attrs.frozen
class Instrument:
    """``tick_size``: price increment; ``lot_size``: quantity increment; ``min_quantity`` and
    ``min_notional`` (quote): the smallest order; ``max_leverage``. Zero means no rule."""

    symbol: str
    tick_size: float = attrs.field(default=0.0, validator=_non_negative)
    lot_size: float = attrs.field(default=0.0, validator=_non_negative)
    min_quantity: float = attrs.field(default=0.0, validator=_non_negative)
    min_notional: float = attrs.field(default=0.0, validator=_non_negative)
    max_leverage: Optional[float] = attrs.field(default=None, validator=_leverage)
    source: str = "default"          # "exchange", "config" or "default" (permissive)

    @property
    def permissive(self) -> bool:
        return not (self.tick_size or self.lot_size or self.min_quantity or self.min_notional)

    def round_price(self, price: float) -> float:
        """To the nearest tick (what the exchange accepts for a limit or trigger price)."""
        return _step(price, self.tick_size, ROUND_HALF_EVEN)

    def round_quantity(self, quantity: float) -> float:
        """Down to the lot: never more than asked for."""
        return _step(quantity, self.lot_size, ROUND_DOWN)

    def refusal(self, quantity: float, price: float) -> Optional[str]:
        """Why the exchange would refuse an order of ``quantity`` at ``price`` (None: it accepts)."""
        if quantity <= 0:
            return f"{self.symbol}: quantity {quantity:g} rounds to nothing at lot size {self.lot_size:g}"
        if self.min_quantity and quantity < self.min_quantity:
            return f"{self.symbol}: quantity {quantity:g} below the minimum {self.min_quantity:g}"
        if self.min_notional and quantity * price < self.min_notional:
            return (f"{self.symbol}: notional {quantity * price:.4f} below the minimum {self.min_notional:g} "
                    f"({quantity:g} at {price:g})")
        return None


#: ccxt's ``exchange.precisionMode`` values
DECIMAL_PLACES, TICK_SIZE = 2, 4


def contract_size(market: Mapping[str, Any]) -> float:
    """Coins per unit of a ccxt amount on ``market``: a contract market's ``contractSize`` (OKX's
    BTC-USDT-SWAP: 0.01 BTC), 1 on spot and where a contract is one coin (Binance, Bybit). The
    engine counts coins; ccxt's amounts, fills, trades and positions of a contract market count
    contracts, so every amount crossing that boundary goes through this."""
    size = market.get("contractSize") if market.get("contract") else None
    try:
        value = float(size) if size is not None else 1.0
    except (TypeError, ValueError):
        raise ValueError(f"market {market.get('symbol')!r}: contractSize must be a number, got {size!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"market {market.get('symbol')!r}: contractSize must be > 0, got {size!r}")
    return value


def in_units(amount: float, unit: float) -> float:
    """``amount`` x ``unit`` without the float residue a product of decimal steps leaves
    (5 contracts x 0.01 BTC is 0.05 BTC, not 0.05000000000000001)."""
    return float(f"{float(amount) * unit:.12g}")


def instrument_from_ccxt(symbol: str, market: Mapping[str, Any], precision_mode: int = TICK_SIZE) -> Instrument:
    """An :class:`Instrument` from a ccxt market: ``precision`` (steps in ccxt's TICK_SIZE mode,
    digits in DECIMAL_PLACES mode: ``exchange.precisionMode`` says which) and ``limits``; a
    contract market's lot and minimum amount in coins (x :func:`contract_size`)."""
    precision = market.get("precision") or {}
    limits = market.get("limits") or {}
    coins = contract_size(market)

    def step(value) -> float:
        if value is None:
            return 0.0
        value = float(value)
        return 10.0 ** -value if precision_mode == DECIMAL_PLACES else value

    leverage = (limits.get("leverage") or {}).get("max")
    return Instrument(symbol, tick_size=step(precision.get("price")), lot_size=in_units(step(precision.get("amount")), coins),
                      min_quantity=in_units((limits.get("amount") or {}).get("min") or 0.0, coins),
                      min_notional=float((limits.get("cost") or {}).get("min") or 0.0),
                      max_leverage=float(leverage) if leverage else None, source="exchange")


class Instruments:
    """The instrument of every symbol: exchange rules first, then the config's table, else a
    permissive default, announced once per symbol through ``warn``."""

    def __init__(self, exchange: Mapping[str, Instrument] = {}, config: Mapping[str, Instrument] = {},
                 warn: Optional[Callable[[str], None]] = None):
        self._known = {**dict(config), **dict(exchange)}
        self._warn = warn
        self._defaulted: dict[str, Instrument] = {}

    def __getitem__(self, symbol: str) -> Instrument:
        found = self._known.get(symbol)
        if found is not None:
            return found
        default = self._defaulted.get(symbol)
        if default is None:
            default = self._defaulted[symbol] = Instrument(symbol)
            if self._warn is not None:
                self._warn(symbol)
        return default

