"""The real market data bundled with mlcoord (MIT licensed; provenance in data/README.md)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from mlcoord.errors import ConfigError

BUNDLED = {"BTC/USDT": "BTC_USDT-1h.feather", "ETH/USDT": "ETH_USDT-1h.feather"}
DEFAULT_SYMBOL = "BTC/USDT"


def bundled_path(symbol: str) -> Path:
    """Path of a bundled candle file (1h, 2020-09-20 -> 2025-09-19)."""
    if symbol not in BUNDLED:
        raise ConfigError(f"no bundled data for symbol {symbol!r}; bundled: {', '.join(BUNDLED)}. "
                          f"Pass your own candles with --data FILE")
    return Path(str(resources.files("mlcoord") / "data" / BUNDLED[symbol]))
