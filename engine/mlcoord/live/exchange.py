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

from mlcoord.config import ExchangeConfig, shown
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
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        # other users of the machine could read (or replace) the keys: refuse, as ssh does
        raise ConfigError(f"keys file {path} is open to group or others (mode {oct(mode & 0o777)}): "
                          f"run chmod 600 {path}")
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
            return value
    return None


def _clean(value: Optional[str], what: str) -> Optional[str]:
    """``value`` registered for redaction as found and stripped: a pasted key often ends in a newline,
    which ccxt would send in a header (and a log would show escaped, past the redaction)."""
    if not value:
        return None
    register_secret(value)
    stripped = value.strip()
    if stripped != value:
        log.warning("credential_whitespace_stripped", credential=what,
                    note="leading or trailing whitespace removed from the value")
    return stripped or None


def load_credentials(config: ExchangeConfig, env: Optional[Mapping[str, str]] = None) -> Optional[Credentials]:
    """Keys from the environment (``key_env``/``secret_env``/``password_env``), else from ``keys_file``.

    Returns None when neither is set (public data needs no keys). Half a pair is an error. Every
    value found is registered as a secret for log redaction before anything else happens.
    """
    env = os.environ if env is None else env
    file_data: dict[str, Any] = {}
    if config.keys_file:
        file_data = _read_keys_file(Path(config.keys_file).expanduser())
    key = _clean(env.get(config.key_env) or _pick(file_data, "api_key", "apiKey", "key"), "API key")
    secret = _clean(env.get(config.secret_env) or _pick(file_data, "secret", "api_secret", "secret_key"), "secret")
    password = _clean(env.get(config.password_env) or _pick(file_data, "password", "passphrase"), "password")
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


def _settable(cls: Any) -> set[str]:
    """What a ccxt constructor may set for ``cls``: its data attributes and ``describe()`` keys."""
    instance = cls()
    names = {n for n in dir(instance) if not n.startswith("_") and not callable(getattr(instance, n, None))}
    return names | set(instance.describe())


def check_ccxt_table(exchange_id: str, cls: Any, table: Mapping[str, Any]) -> None:
    """Every ``[exchange.ccxt]`` key must be something ccxt's ``exchange_id`` has (a typo would
    otherwise be set silently and ignored)."""
    if not table:                        # nothing to check: no throwaway exchange built per connection
        return
    known = _settable(cls)
    for key in table:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=3)
            raise ConfigError(f"[exchange.ccxt] {key!r}: ccxt's {exchange_id} has no such setting"
                              + (f"; did you mean {', '.join(close)}?" if close else ""))


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``extra`` over ``base``; tables merged key by key (``options`` keeps ``defaultType``)."""
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), dict) else value
    return out


def create_exchange(config: ExchangeConfig, credentials: Optional[Credentials] = None,
                    overrides: Optional[Mapping[str, Any]] = None) -> Any:
    """A ccxt exchange (synchronous API) for ``config``: ``[exchange.ccxt]`` and then ``overrides``
    go to the constructor last; ``sandbox`` switches to the exchange's test network."""
    try:
        import ccxt
    except ImportError:
        raise ConfigError("talking to an exchange needs ccxt: pip install 'mlcoord[exchange]'") from None
    if config.id not in ccxt.exchanges:
        close = difflib.get_close_matches(config.id, ccxt.exchanges, n=3)
        raise ConfigError(f"unknown exchange {shown(config.id)}" + (f"; did you mean {', '.join(close)}?" if close else
                                                               " (see ccxt.exchanges)"))
    cls = getattr(ccxt, config.id)
    if credentials is not None and not credentials.password and (cls().requiredCredentials or {}).get("password"):
        # OKX (and a few others) sign with a passphrase too: say so now, not as an auth error mid-session
        raise ConfigError(f"{config.id} needs an API passphrase as well as the key and secret: set "
                          f"{config.password_env} or add password to the keys file")
    table = {**config.ccxt, **(overrides or {})}
    check_ccxt_table(config.id, cls, table)
    exchange = cls(_merge(ccxt_options(config, credentials), table))
    if config.sandbox:
        if not (getattr(exchange, "urls", None) or {}).get("test"):
            raise ConfigError(f"[exchange] sandbox = true: ccxt knows no sandbox (testnet) URL for {config.id}; "
                              "remove sandbox or point [exchange.ccxt] urls at the test endpoints")
        try:
            exchange.set_sandbox_mode(True)
        except ccxt.BaseError as exc:
            raise ConfigError(f"[exchange] sandbox = true: {config.id} refuses it ({type(exc).__name__}: {exc})") from None
    # the table's values may hold tokens (headers, proxy credentials): only its keys are logged
    log.info("exchange_created", exchange=config.id, market=config.market, rate_limit_ms=exchange.rateLimit,
             keys=credentials.source if credentials else "none", sandbox=config.sandbox,
             ccxt_settings=sorted(table))
    return exchange


def exchange_now_ms(exchange: Any) -> int:
    """The exchange's current time in ms (its clock decides which candle is still open)."""
    if (getattr(exchange, "has", {}) or {}).get("fetchTime"):
        return int(exchange.fetch_time())
    return int(exchange.milliseconds())
