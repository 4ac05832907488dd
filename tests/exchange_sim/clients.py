"""Real ccxt exchange objects pointed at the loopback server."""

from __future__ import annotations

import re
from typing import Any

from .server import ExchangeServer

_HOST = re.compile(r"^https://[^/]+")


def sim_urls(server: ExchangeServer, exchange_id: str = "binance") -> dict:
    """ccxt ``urls`` sending every Binance API family of ``exchange_id`` to the server (the URL
    paths stay Binance's own): what ``[exchange.ccxt] urls`` says in a config."""
    import ccxt

    api = getattr(ccxt, exchange_id)().urls["api"]
    return {"api": {k: _HOST.sub(server.url, v) for k, v in api.items() if isinstance(v, str)}}


def ccxt_table(server: ExchangeServer, kind: str = "spot", exchange_id: str | None = None) -> dict:
    """The ``[exchange.ccxt]`` table of a config pointed at the server: its urls, and the options
    that keep ccxt to the endpoints the server speaks (``kind``: spot or linear; the exchange id
    defaults to the server's dialect)."""
    exchange_id = exchange_id or server.dialect.name
    if exchange_id == "okx" and kind == "linear":
        kind = "swap"                      # OKX's USDT perpetuals are ccxt's market type "swap"
    options = {"fetchCurrencies": False, "fetchMarkets": {"types": [kind]}, "adjustForTimeDifference": False}
    if exchange_id.startswith("binance"):
        options["fetchMargins"] = False
    return {"urls": sim_urls(server, exchange_id), "options": options}


def point_at(exchange: Any, server: ExchangeServer) -> Any:
    """Map errors by path the way ccxt maps them by host for the real ``api.``/``fapi.`` domains
    (an exchange built with :func:`sim_urls` sends its requests to ``server`` already; an older
    one is pointed at it here)."""
    if not exchange.urls["api"].get("public", "").startswith(server.url):
        exchange.urls["api"] = sim_urls(server, exchange.id)["api"]
    tables = exchange.exceptions

    def by_path(url: str | None, exact_or_broad: str) -> dict:
        path = _HOST.sub("", re.sub(r"^http://[^/]+", "", url or ""))
        kind = "linear" if path.startswith("/fapi") else "spot" if path.startswith("/api") else None
        return (tables.get(kind) or {}).get(exact_or_broad, {}) if kind else {}

    exchange.get_exceptions_by_url = by_path
    return exchange


def _config(server: ExchangeServer, kind: str, timeout_ms: int, api_key: str | None,
            secret: str | None, config: dict) -> dict:
    options = {"fetchCurrencies": False, "fetchMarkets": {"types": [kind]},
               "adjustForTimeDifference": False, "fetchMargins": False,
               **config.pop("options", {})}
    exchange_id = "binanceusdm" if kind == "linear" else "binance"
    return {"apiKey": server.api_key if api_key is None else api_key,
            "secret": server.secret if secret is None else secret, "timeout": timeout_ms,
            "enableRateLimit": False, "options": options, "urls": sim_urls(server, exchange_id), **config}


def spot_client(server: ExchangeServer, *, timeout_ms: int = 500, api_key: str | None = None,
                secret: str | None = None, asyncio: bool = False, **config) -> Any:
    """A ``ccxt.binance`` (spot) object talking to ``server`` (``asyncio=True``: ccxt.async_support)."""
    import ccxt
    import ccxt.async_support as accxt

    cls = (accxt if asyncio else ccxt).binance
    return point_at(cls(_config(server, "spot", timeout_ms, api_key, secret, config)), server)


def futures_client(server: ExchangeServer, *, timeout_ms: int = 500, api_key: str | None = None,
                   secret: str | None = None, asyncio: bool = False, **config) -> Any:
    """A ``ccxt.binanceusdm`` (USD-M perpetuals) object talking to ``server``."""
    import ccxt
    import ccxt.async_support as accxt

    cls = (accxt if asyncio else ccxt).binanceusdm
    return point_at(cls(_config(server, "linear", timeout_ms, api_key, secret, config)), server)


def bybit_client(server: ExchangeServer, kind: str = "spot", *, timeout_ms: int = 500, api_key: str | None = None,
                 secret: str | None = None, **config) -> Any:
    """A ``ccxt.bybit`` object (``kind``: spot or linear) talking to a Bybit-dialect ``server``."""
    import ccxt

    if server.dialect.name != "bybit":
        raise ValueError(f"bybit_client needs a server with the bybit dialect, got {server.dialect.name}")
    options = {"fetchCurrencies": False, "fetchMarkets": {"types": [kind]}, "adjustForTimeDifference": False,
               "defaultType": "spot" if kind == "spot" else "swap", **config.pop("options", {})}
    return ccxt.bybit({"apiKey": server.api_key if api_key is None else api_key,
                       "secret": server.secret if secret is None else secret, "timeout": timeout_ms,
                       "enableRateLimit": False, "options": options, "urls": sim_urls(server, "bybit"), **config})


def okx_client(server: ExchangeServer, kind: str = "spot", *, timeout_ms: int = 500, api_key: str | None = None,
               secret: str | None = None, password: str | None = None, **config) -> Any:
    """A ``ccxt.okx`` object (``kind``: spot or swap) talking to an OKX-dialect ``server`` (with the
    emulator's passphrase unless ``password`` says otherwise)."""
    import ccxt

    from .okx import PASSPHRASE

    if server.dialect.name != "okx":
        raise ValueError(f"okx_client needs a server with the okx dialect, got {server.dialect.name}")
    options = {"fetchCurrencies": False, "fetchMarkets": {"types": [kind]}, "adjustForTimeDifference": False,
               "defaultType": kind, **config.pop("options", {})}
    return ccxt.okx({"apiKey": server.api_key if api_key is None else api_key,
                     "secret": server.secret if secret is None else secret,
                     "password": PASSPHRASE if password is None else password, "timeout": timeout_ms,
                     "enableRateLimit": False, "options": options, "urls": sim_urls(server, "okx"), **config})


def venue_client(server: ExchangeServer, market: str = "spot", *, timeout_ms: int = 500, **config) -> Any:
    """The ccxt object a bot would use on ``server``'s exchange for ``market`` (spot or futures)."""
    if server.dialect.name == "okx":
        return okx_client(server, "spot" if market == "spot" else "swap", timeout_ms=timeout_ms, **config)
    if server.dialect.name == "bybit":
        return bybit_client(server, "spot" if market == "spot" else "linear", timeout_ms=timeout_ms, **config)
    make = spot_client if market == "spot" else futures_client
    return make(server, timeout_ms=timeout_ms, **config)


def missing_fields(structure: dict, fields: tuple[str, ...]) -> list[str]:
    """The dotted ``fields`` (``"USDT.free"``) a ccxt unified structure lacks or leaves None: what
    the emulator tests check against ccxt's manual."""
    out = []
    for name in fields:
        value: Any = structure
        for part in name.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is None:
            out.append(name)
    return out
