"""A ccxt exchange object built from ``[exchange]``: id, spot or USD-M futures, keys, rate limit.

Keys come from the environment or a key file, never from the command line (a command line is
visible to every user of the machine through ``ps`` and lands in shell history). Every key is
registered with :func:`mlcoord.logs.register_secret` before the exchange object exists, so it
is redacted from any log line, including ccxt's own debug logging of request headers.

ccxt is imported inside :func:`create_exchange` only: backtests never import it.
"""

from __future__ import annotations

import difflib
import json
import os
import stat
import tomllib
from pathlib import Path
from typing import Any, Mapping, Optional

import attrs
import structlog

from mlcoord.config import ExchangeConfig
from mlcoord.errors import ConfigError
from mlcoord.logs import register_secret
from mlcoord.datastore import market_symbol  # noqa: F401 (the naming rule lives with the store)

log = structlog.get_logger("mlcoord.live.exchange")

#: ccxt ``defaultType`` per market: USD-margined perpetuals are ccxt's linear "swap"
DEFAULT_TYPE = {"spot": "spot", "futures": "swap"}


@attrs.frozen(repr=False)
class Credentials:
    """API keys. Never printed: ``repr`` shows only where they came from."""

    api_key: str
    secret: str
    password: Optional[str] = None
    source: str = ""

    def __repr__(self) -> str:
        return f"Credentials(from {self.source or 'unknown'}, key=***)"

    __str__ = __repr__


def _read_keys_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"keys file not found: {path} (set [exchange] keys_file)") from None
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("keys_file_permissions", path=str(path), mode=oct(mode & 0o777),
                    hint="chmod 600: other users can read the API keys")
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        # the parser's message may quote a line of the file, i.e. a key: say where, not what
        raise ConfigError(f"keys file {path} is not valid {'JSON' if path.suffix.lower() == '.json' else 'TOML'} "
                          f"({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"keys file {path} must hold a table with api_key and secret")
    return data


def _pick(data: Mapping[str, Any], *names: str) -> Optional[str]:
    for name in names:
        value = data.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def load_credentials(config: ExchangeConfig, env: Optional[Mapping[str, str]] = None) -> Optional[Credentials]:
    """Keys from the environment (``key_env``/``secret_env``/``password_env``), else from ``keys_file``.

    Returns None when neither is set (public data needs no keys). Half a pair is an error. Every
    value found is registered as a secret for log redaction before anything else happens.
    """
    env = os.environ if env is None else env
    file_data: dict[str, Any] = {}
    if config.keys_file:
        file_data = _read_keys_file(Path(config.keys_file).expanduser())
    key = env.get(config.key_env) or _pick(file_data, "api_key", "apiKey", "key")
    secret = env.get(config.secret_env) or _pick(file_data, "secret", "api_secret", "secret_key")
    password = env.get(config.password_env) or _pick(file_data, "password", "passphrase")
    for value in (key, secret, password):
        if value:
            register_secret(value)
    if not key and not secret:
        return None
    if not (key and secret):
        missing = "secret" if key else "API key"
        raise ConfigError(f"the {missing} is missing: set {config.secret_env if key else config.key_env} "
                          f"or add it to the keys file")
    source = "environment" if env.get(config.key_env) else f"keys file {config.keys_file}"
    return Credentials(key, secret, password, source)


def ccxt_options(config: ExchangeConfig, credentials: Optional[Credentials] = None) -> dict[str, Any]:
    """The constructor options for ccxt (keys included: never log this dict)."""
    options: dict[str, Any] = {"enableRateLimit": True, "timeout": config.timeout_ms,
                               "options": {"defaultType": DEFAULT_TYPE[config.market]}}
    if config.rate_limit_ms is not None:
        options["rateLimit"] = config.rate_limit_ms
    if credentials is not None:
        options["apiKey"], options["secret"] = credentials.api_key, credentials.secret
        if credentials.password:
            options["password"] = credentials.password
    return options


def create_exchange(config: ExchangeConfig, credentials: Optional[Credentials] = None,
                    overrides: Optional[Mapping[str, Any]] = None) -> Any:
    """A ccxt exchange (synchronous API) for ``config``; ``overrides`` go to the constructor last."""
    try:
        import ccxt
    except ImportError:
        raise ConfigError("talking to an exchange needs ccxt: pip install 'mlcoord[exchange]'") from None
    if config.id not in ccxt.exchanges:
        close = difflib.get_close_matches(config.id, ccxt.exchanges, n=3)
        raise ConfigError(f"unknown exchange {config.id!r}" + (f"; did you mean {', '.join(close)}?" if close else
                                                               " (see ccxt.exchanges)"))
    exchange = getattr(ccxt, config.id)({**ccxt_options(config, credentials), **(overrides or {})})
    log.info("exchange_created", exchange=config.id, market=config.market, rate_limit_ms=exchange.rateLimit,
             keys=credentials.source if credentials else "none")
    return exchange


def exchange_now_ms(exchange: Any) -> int:
    """The exchange's current time in ms (its clock decides which candle is still open)."""
    if (getattr(exchange, "has", {}) or {}).get("fetchTime"):
        return int(exchange.fetch_time())
    return int(exchange.milliseconds())
