"""Configuration: typed attrs classes, read from TOML with one strict cattrs converter.

Unknown keys and bad values fail at start with the key path, the value and what was expected
(``expected a number, got 'abc' @ $.backtest.fee_taker``). Each plugin's options are its own
attrs class, read from ``[plugins.NAME]`` by the same converter.

Spot or futures is ONE setting, ``[exchange] market`` (default ``"futures"``), for every command:
a backtest simulates the market that paper and live trading trade. ``[backtest] market`` is its
old spelling: accepted alone or when equal (with a ``config_key_renamed`` warning), an error when
the two say different things. :class:`Settings` holds the value in both sections (the backtest
engine reads ``settings.backtest.market``) and refuses to be built with two different ones.
"""

from __future__ import annotations

import math
import re
import typing
import tomllib
from pathlib import Path
from typing import Any, Optional

import attrs
import cattrs
from cattrs.errors import IterableValidationError, IterableValidationNote
from cattrs.gen import make_dict_structure_fn, make_mapping_structure_fn
from attrs import validators as v

import structlog

from mlcoord.ensemble import EnsembleOptions
from mlcoord.executor_config import ExecutorConfig
from mlcoord.errors import ConfigError
from mlcoord.jumps import MAX_JUMP_ATR
from mlcoord.learning import EventSpec
from mlcoord.notify.settings import NotifyConfig
from mlcoord.option_checks import AccountSettings, ChecksAccount, env_name, integer, number

log = structlog.get_logger("mlcoord.config")

#: what ``[exchange] market`` may say: USD-M perpetual futures or spot
MARKETS = ("futures", "spot")
#: the engine's default pipeline hedges, and a hedge leg is a short: it needs futures
DEFAULT_MARKET = "futures"
#: the one key that says spot or futures, and its old spelling (section, key)
MARKET_KEY, OLD_MARKET_KEY = ("exchange", "market"), ("backtest", "market")


#: the largest leverage an exchange offers (Binance USD-M: 125x on BTC); a symbol's own limit,
#: when the exchange or ``[instruments]`` gives one, is checked where it is known
MAX_LEVERAGE = 125.0
#: fees and slippage are fractions of notional: 5 % or more is a typo (``0.5`` for 0.5 %)
COST_LIMIT = 0.05
#: funding per event is a fraction of notional: 1 % or more per event is a typo
FUNDING_LIMIT = 0.01
_PERCENT = " (a fraction: 0.0005 is 0.05 %)"


def _same_market(text: str) -> str:
    """``BTC/USDT``, ``btc/usdt`` and the perpetual's ``BTC/USDT:USDT`` name one market here."""
    key = text.strip().upper()
    pair, _, settle = key.partition(":")
    return pair if settle and pair.endswith("/" + settle) else key


def _no_duplicates(what: str):
    """A list whose items must differ (the same symbol twice would run two books in one portfolio)."""
    def check(instance: Any, attribute: Any, value: Any) -> None:
        seen: dict[str, str] = {}
        for item in value:
            key = _same_market(str(item)) if what == "symbol" else str(item).strip()
            if key in seen:
                raise ValueError(f"{attribute.name} must not name the same {what} twice, got {seen[key]!r} "
                                 f"and {item!r}", attribute)
            seen[key] = item
    return check


@attrs.frozen
class EngineConfig:
    """``[engine]``: which plugins load, which profile gives the defaults, the decision threshold.

    ``profile`` (default ``"default"``): a shipped profile's name or a path to a profile TOML file
    (relative to the config file), see :mod:`mlcoord.profile`. ``enable``: plugins whose
    components join the list roles (signal sources, ML components, guards) besides the profile's
    or ``[pipeline]``'s; ``disable``: plugins not loaded at all. ``plugins_dir``: a folder whose
    ``*.py`` files load as one-file plugins (relative to the config file).

    ``min_confidence`` (default 0.55): a BUY/SELL whose calibrated confidence is below it is not
    traded (recorded as ``below_threshold``). ``min_expected_return`` (default 0, in [-1, 1]): an
    entry whose expected net return (:mod:`mlcoord.expected_return`: calibrated probability, the
    plan's reward and risk, round-trip costs; a fraction of the average entry price) is not above
    it is not traded (``below_expected_return``).

    Time budgets (see :mod:`mlcoord.budget`): ``vote_timeout_ms`` for each ML vote,
    ``call_timeout_ms`` for every other per-bar plugin call (portfolio watchers, exit updates and
    initial levels, signal reasons, calibration, planning, entry checks, sizing, learning feedback). A call over
    its budget is interrupted (the engine stops waiting) and its component left out of that
    decision. Unset (default): none in backtests, which keeps runs deterministic, and 5000 ms in
    paper and live trading; 0 turns a budget off.
    """

    disable: tuple[str, ...] = ()
    enable: tuple[str, ...] = ()
    profile: str = "default"
    plugins_dir: Optional[str] = None
    min_confidence: float = attrs.field(default=0.55, validator=number(
        0.0, 1.0, hi_open=True, why=" (at 1 nothing would ever be traded)"))
    min_expected_return: float = attrs.field(default=0.0, validator=number(-1.0, 1.0))
    trace_hooks: bool = False
    # None: off in a backtest (deterministic), the live default in paper and live sessions
    vote_timeout_ms: Optional[float] = attrs.field(default=None, validator=v.optional(number(0.0, 60_000.0)))
    call_timeout_ms: Optional[float] = attrs.field(default=None, validator=v.optional(number(0.0, 60_000.0)))


#: ensemble weights are relative (normalised): a larger one is a typo
MAX_WEIGHT = 1000.0


@attrs.frozen
class PipelineConfig:
    """``[pipeline]``: which registered components fill each role, in order (an allow-list).

    ``None`` means the profile's choice (see :mod:`mlcoord.profile`); installing a package never
    adds a component by itself. An empty string (or list) means none (direct entry without a
    planner, no calibrator). ``weights``: the ensemble's starting weights by component name,
    merged key by key over the profile's.
    """

    signal_sources: Optional[tuple[str, ...]] = None
    ml_components: Optional[tuple[str, ...]] = None
    calibrator: Optional[str] = None
    entry_planner: Optional[str] = None
    sizer: Optional[str] = None
    exit_manager: Optional[str] = None
    entry_guards: Optional[tuple[str, ...]] = None
    portfolio_watchers: Optional[tuple[str, ...]] = None
    #: removed in hooks version 2 (kept only to say so clearly)
    portfolio_guards: Optional[tuple[str, ...]] = attrs.field(default=None)
    weights: dict[str, float] = attrs.field(factory=dict)

    @portfolio_guards.validator
    def _check_portfolio_guards(self, attribute, value):
        if value is not None:
            raise ValueError("portfolio_guards was split in two (hooks version 2): list entry guards in "
                             "[pipeline] entry_guards (may veto entries) and portfolio watchers in "
                             f"[pipeline] portfolio_watchers (hedge and close actions); got {list(value)!r}")

    @weights.validator
    def _check_weights(self, attribute, value):
        for name, weight in value.items():
            if not (math.isfinite(weight) and 0 <= weight <= MAX_WEIGHT):
                raise ValueError(f"weight of {name!r} must be a number in [0, {MAX_WEIGHT:g}], got {weight!r}")


@attrs.frozen
class InputFiles:
    """``[data.inputs."BTC/USDT"]``: files of a symbol's other series, read by the features of
    ``mlcoord.feature_matrix`` (each optional; a store's files are used where none is named).
    ``funding``: funding events (a ``data download`` store file, freqtrade's ``-funding_rate``
    file, or CSV/Parquet/Feather with a time and a rate column); ``spot``, ``perpetual``,
    ``mark``: the asset's spot, perpetual and mark-price candles (for the basis); ``candles``: a
    ``[data] context_symbols`` symbol's own candles."""

    funding: Optional[str] = None
    spot: Optional[str] = None
    perpetual: Optional[str] = None
    mark: Optional[str] = None
    candles: Optional[str] = None


@attrs.frozen
class DataConfig:
    """``[data]``: candles to trade. No files means the bundled dataset.

    ``symbols`` and ``files`` name each symbol or file once. ``repair`` (false): apply the
    documented repairs (:func:`mlcoord.candles.candles_from_frame`); ``repair_max_drop`` (0.01,
    in [0, 0.5]): the largest share of a file's rows a repair may drop, beyond which it refuses
    and lists the rows it would drop. ``max_jump_atr`` (50, in [0, 10000]; 0: off): a bar whose high,
    low or close lies further than this many ATRs (and 5 %) from the last plausible close is
    implausible (:mod:`mlcoord.jumps`): a backtest warns (``candles_implausible``, the data is
    not changed), paper and live trading leave the bar out and pause the symbol's entries until
    a sound bar (:mod:`mlcoord.live.bar_screen`). ``context_symbols``: symbols read (from
    ``inputs``, the store or the bundled data) but never traded, for cross-asset features;
    ``inputs``: files of each symbol's other series (:class:`InputFiles`)."""

    files: tuple[str, ...] = attrs.field(default=(), validator=_no_duplicates("file"))
    symbols: tuple[str, ...] = attrs.field(default=(), validator=_no_duplicates("symbol"))
    timeframe: Optional[str] = None
    higher_timeframes: tuple[str, ...] = attrs.field(default=("4h", "1d"), validator=_no_duplicates("timeframe"))
    timerange: Optional[str] = None
    repair: bool = False
    repair_max_drop: float = attrs.field(default=0.01, validator=number(0.0, 0.5))
    max_jump_atr: float = attrs.field(default=MAX_JUMP_ATR, validator=number(0.0, 10_000.0))
    store: Optional[str] = None  # a `mlcoord data download` store: candles found by symbol and timeframe
    context_symbols: tuple[str, ...] = attrs.field(default=(), validator=_no_duplicates("symbol"))
    inputs: dict[str, InputFiles] = attrs.field(factory=dict)


#: ccxt constructor keys that hold credentials (refused in ``[exchange.ccxt]``)
CREDENTIAL_KEYS = frozenset({"apikey", "secret", "password", "uid", "login", "privatekey", "walletaddress",
                             "token", "twofa"})
_CREDENTIAL_WORD = re.compile(r"key|secret|passw|token|passphrase", re.I)


def is_credential_key(name: str) -> bool:
    """A key whose value is a credential: refused in the config, never echoed in an error."""
    return name.lower() in CREDENTIAL_KEYS or bool(_CREDENTIAL_WORD.search(name))


_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.\-\[\]:]+$")


def _origins(instance, attribute, value):
    """Each an origin (scheme, host, optional port): it goes into the dashboard's CSP header."""
    for item in value:
        if not _ORIGIN.match(str(item)):
            raise ValueError(f"{attribute.name} must list origins like \"https://bot2.example:8080\" (no path), "
                             f"got {item!r}", attribute)


def _exchange_id(instance, attribute, value):
    if not value.strip():        # an empty --exchange must not silently mean the default exchange
        raise ValueError(f"{attribute.name} must name a ccxt exchange, e.g. \"binance\", got {value!r}", attribute)


@attrs.frozen
class ApiConfig:
    """``[api]``: the bot's HTTP API (``mlcoord[api]``, see :mod:`mlcoord.server`).

    ``enabled`` (False): ``mlcoord paper``/``live`` serve it while they run (``mlcoord serve``
    serves a store whatever it says). ``listen`` ("127.0.0.1:8080"): host and port; any address
    but loopback needs ``tls_cert`` and ``tls_key`` (PEM files) unless ``insecure_remote`` is
    true, which logs a warning at every start. ``cors_origins``: origins a browser dashboard may
    call from (none by default). ``token_ttl_minutes`` (15, range [1, 1440]): an access token's
    life (a refresh token lives ``refresh_ttl_hours``, 24, range [1, 720]). ``docs``: serve the
    OpenAPI pages (off). ``allow_force_enter``: allow the force-enter control (off).
    ``dashboard_origins``: other bots' API origins the dashboard served here may call (its CSP's
    ``connect-src``; none by default: it talks to this bot only).
    ``login_attempts`` (5, range [1, 100]) failed logins per ``login_window_seconds`` (60,
    range [1, 86400]) and address, then 429 until the window passes.
    """

    enabled: bool = False
    listen: str = attrs.field(default="127.0.0.1:8080")
    tls_cert: Optional[str] = None
    tls_key: Optional[str] = None
    cors_origins: tuple[str, ...] = ()
    token_ttl_minutes: int = attrs.field(default=15, validator=integer(1, 1440))
    refresh_ttl_hours: int = attrs.field(default=24, validator=integer(1, 720))
    insecure_remote: bool = False
    docs: bool = False
    allow_force_enter: bool = False
    dashboard_origins: tuple[str, ...] = attrs.field(default=(), validator=_origins)
    login_attempts: int = attrs.field(default=5, validator=integer(1, 100))
    login_window_seconds: float = attrs.field(default=60.0, validator=number(1.0, 86_400.0))

    @listen.validator
    def _check_listen(self, attribute, value):
        split_listen(value)

    def __attrs_post_init__(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError(f"tls_cert and tls_key go together, got tls_cert={self.tls_cert!r} and "
                             f"tls_key={self.tls_key!r}")


def split_listen(value: Any) -> tuple[str, int]:
    """``"host:port"`` (``"[::1]:8080"`` for IPv6) as (host, port); a ValueError naming the value
    otherwise. Port 0 asks the system for a free one (tests)."""
    text = str(value) if isinstance(value, str) else ""
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f'listen must be "host:port" with a port in [0, 65535], got {value!r}')
    return host, int(port)


@attrs.frozen
class ExchangeConfig:
    """``[exchange]``: which exchange and account, and where its API keys come from.

    ``id`` is the ccxt exchange id (default ``binance``); ``market`` ``futures`` (USD-margined
    perpetuals, the default) or ``spot``: the one setting for backtest, paper, live and ``data
    download`` (``[backtest] market`` is its old spelling, see the module docstring). Keys are read from ``keys_file`` (TOML or JSON with ``api_key``,
    ``secret`` and optional ``password``) or from the environment variables named by ``key_env``,
    ``secret_env``, ``password_env`` (these win over the file); never from the command line.
    ``rate_limit_ms``: minimum milliseconds between requests (default: ccxt's value for the
    exchange). ``timeout_ms`` (10000): per request.

    ``sandbox = true``: the exchange's test network (ccxt ``set_sandbox_mode``, e.g. Binance's
    testnet). ``[exchange.ccxt]``: passed to the ccxt constructor last (``urls``, ``options``,
    ``headers``, ``timeout``, ``httpsProxy``...), e.g. ``urls`` at a loopback emulator; keys are
    checked against the ccxt class when the exchange is built. It may not hold credentials (they
    come from the environment or the keys file) nor ``urls`` with ``sandbox``.
    """

    id: str = attrs.field(default="binance", validator=_exchange_id)
    market: str = attrs.field(default=DEFAULT_MARKET, validator=v.in_(MARKETS))
    keys_file: Optional[str] = None
    key_env: str = attrs.field(default="MLCOORD_API_KEY", validator=env_name)
    secret_env: str = attrs.field(default="MLCOORD_API_SECRET", validator=env_name)
    password_env: str = attrs.field(default="MLCOORD_API_PASSWORD", validator=env_name)
    rate_limit_ms: Optional[int] = attrs.field(default=None, validator=v.optional(integer(1, 60_000)))
    timeout_ms: int = attrs.field(default=10_000, validator=integer(100, 600_000))
    sandbox: bool = False
    #: repr shows the keys only: headers may carry tokens
    ccxt: dict[str, Any] = attrs.field(factory=dict, repr=lambda table: f"<keys {sorted(table)}>")

    @ccxt.validator
    def _check_ccxt(self, attribute, value):
        for key in value:
            if is_credential_key(str(key)):
                raise ValueError(f"[exchange.ccxt] must not hold {key!r}: credentials come from the environment "
                                 "(key_env, secret_env, password_env) or the keys file, never from the config",
                                 attribute)
        if self.sandbox and "urls" in value:
            raise ValueError("[exchange] sandbox = true and [exchange.ccxt] urls both choose the endpoints: "
                             "keep one", attribute)


@attrs.frozen
class BacktestConfig:
    """``[backtest]``: account and cost model. Defaults are deliberately not optimistic.

    Futures defaults follow Binance USD-M VIP0 (taker 0.05 %, maker 0.02 %); slippage 0.05 % of
    price on market and stop fills; funding 0.01 % per 8 h (longs pay shorts) when no funding
    series is given; maintenance margin 0.5 % for the liquidation price.

    Plausible ranges (outside them the config is refused, naming the key and the range):
    ``initial_equity`` (0, 1e12]; ``leverage`` [1, 125] (the exchange's own limit and the sizer's
    ``max_leverage`` are checked too); ``fee_taker``, ``fee_maker``, ``slippage`` [0, 0.05);
    ``funding_rate`` (-0.01, 0.01) per event; ``funding_interval_hours`` [1, 24];
    ``maintenance_margin`` [0, 0.5) and below 1 / leverage (or every position is liquidated when
    it opens); ``seed`` [0, 2**32 - 1].

    ``market`` mirrors ``[exchange] market`` (the loader puts the one value in both sections);
    writing it here is the old spelling.
    """

    initial_equity: float = attrs.field(default=10_000.0, validator=number(0.0, 1e12, lo_open=True))
    market: str = attrs.field(default=DEFAULT_MARKET, validator=v.in_(MARKETS))
    leverage: float = attrs.field(default=1.0, validator=number(1.0, MAX_LEVERAGE))
    fee_taker: float = attrs.field(default=0.0005, validator=number(0.0, COST_LIMIT, hi_open=True, why=_PERCENT))
    fee_maker: float = attrs.field(default=0.0002, validator=number(0.0, COST_LIMIT, hi_open=True, why=_PERCENT))
    slippage: float = attrs.field(default=0.0005, validator=number(0.0, COST_LIMIT, hi_open=True, why=_PERCENT))
    funding_rate: float = attrs.field(default=0.0001, validator=number(
        -FUNDING_LIMIT, FUNDING_LIMIT, lo_open=True, hi_open=True, why=" per funding event (0.0001 is 0.01 %)"))
    funding_interval_hours: int = attrs.field(default=8, validator=integer(1, 24))
    maintenance_margin: float = attrs.field(default=0.005, validator=number(0.0, 0.5, hi_open=True))
    seed: int = attrs.field(default=0, validator=integer(0, 2**32 - 1))

    @maintenance_margin.validator
    def _below_initial_margin(self, attribute, value):
        if isinstance(self.leverage, (int, float)) and self.leverage > 0 and value >= 1.0 / self.leverage:
            raise ValueError(f"maintenance_margin must be below 1 / leverage = {1.0 / self.leverage:g} (the initial "
                             f"margin at leverage {self.leverage:g}), got {value!r}: every position would be "
                             "liquidated as it opens", attribute)


@attrs.frozen
class LearningConfig:
    """``[learning]``: the event ML probabilities refer to, and where learning state persists.

    ``horizon`` bars (default 24, in [1, 10000]) and ``threshold`` (default 0.002 = taker fees
    2 x 0.05 % plus slippage 2 x 0.05 %, in [0, 0.5)): see :mod:`mlcoord.learning`; ``horizon`` is
    also the time barrier of the trade label (:mod:`mlcoord.trade_label`). ``state_file``: a JSON file from which
    ensemble weights, calibration and bandit state are restored at start and saved at the end
    (default: none, every run starts from the configured weights).
    """

    horizon: int = attrs.field(default=24, validator=integer(1, 10_000))
    threshold: float = attrs.field(default=0.002, validator=number(0.0, 0.5, hi_open=True))
    state_file: Optional[str] = None

    @property
    def event(self) -> EventSpec:
        return EventSpec(self.horizon, self.threshold)


@attrs.frozen
class InstrumentConfig:
    """``[instruments."BTC/USDT"]``: the exchange's rules for a symbol the data store does not know
    (``mlcoord data download`` stores them from the exchange). Zero means no rule; sizes are
    finite numbers >= 0, ``max_leverage`` in [1, 125]."""

    tick_size: float = attrs.field(default=0.0, validator=number(0.0))
    lot_size: float = attrs.field(default=0.0, validator=number(0.0))
    min_quantity: float = attrs.field(default=0.0, validator=number(0.0))
    min_notional: float = attrs.field(default=0.0, validator=number(0.0))
    max_leverage: Optional[float] = attrs.field(default=None, validator=v.optional(number(1.0, MAX_LEVERAGE)))


@attrs.frozen
class Settings:
    """The whole configuration file."""

    engine: EngineConfig = EngineConfig()
    pipeline: PipelineConfig = PipelineConfig()
    data: DataConfig = DataConfig()
    backtest: BacktestConfig = BacktestConfig()
    learning: LearningConfig = LearningConfig()
    ensemble: EnsembleOptions = EnsembleOptions()
    executor: ExecutorConfig = ExecutorConfig()
    #: ``[live]`` (paper/live trading); validated by ``mlcoord.live.runner.load_live_settings``
    #: when those commands start, so one config file serves backtests and live runs
    live: dict[str, Any] = attrs.field(factory=dict)
    exchange: ExchangeConfig = ExchangeConfig()
    api: ApiConfig = ApiConfig()
    notify: NotifyConfig = NotifyConfig()
    plugins: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    instruments: dict[str, InstrumentConfig] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        if self.exchange.market != self.backtest.market:   # a backtest must simulate what is traded
            raise ConfigError(_two_markets(self.exchange.market, self.backtest.market))


def _two_markets(canonical: Any, old: Any) -> str:
    return (f'[exchange] market = "{canonical}" but [backtest] market = "{old}": spot or futures is one '
            f'setting; keep [exchange] market and remove [backtest] market (its old spelling)')


def one_market(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` (a raw config) with the market in both sections, so the backtest simulates the
    market that is traded: ``[exchange] market``, else the old spelling ``[backtest] market``
    (a warning), else the default. Both given and different: ConfigError naming both. A value
    that is not a market is left where it was written, for the field's own error there."""
    sections = {name: data.get(name) for name in (MARKET_KEY[0], OLD_MARKET_KEY[0])}
    if not all(s is None or isinstance(s, dict) for s in sections.values()):
        return data                                          # not tables: the converter says so
    canonical = (sections[MARKET_KEY[0]] or {}).get(MARKET_KEY[1])
    old = (sections[OLD_MARKET_KEY[0]] or {}).get(OLD_MARKET_KEY[1])
    if old is not None:
        if canonical is not None and canonical != old:
            raise ConfigError(_two_markets(canonical, old))
        log.warning("config_key_renamed", key="[backtest] market", use="[exchange] market", value=old,
                    note="spot or futures is one setting for backtest, paper and live")
    market = canonical if canonical is not None else old if old is not None else DEFAULT_MARKET
    if market not in MARKETS:
        return data
    return {**data, **{name: {**(table or {}), "market": market} for name, table in sections.items()}}


_SECRET_LIKE = re.compile(r"^[A-Za-z0-9_\-+/=]{16,}$")
_QUOTED = re.compile(r"'([^'\s]{16,})'|" r'"([^"\s]{16,})"')


def looks_secret(text: str) -> bool:
    """A long token of letters and digits (an API key or secret pasted into the wrong field)."""
    return bool(_SECRET_LIKE.match(text)) and any(c.isdigit() for c in text) and any(c.isalpha() for c in text)


def shown(value: Any, limit: int = 20) -> str:
    """``value`` for an error message; a string that may be a credential shows only its length
    (config errors reach terminals and CI logs)."""
    if isinstance(value, str) and (len(value) > limit or looks_secret(value.strip())):
        return f"<redacted: {len(value)} characters>"
    return repr(value)


def _scrub(problem: str) -> str:
    """A problem text without quoted secret-looking values (validators quote what they got)."""
    head, sep, path = problem.rpartition(" @ ")
    if sep and is_credential_key(path.rsplit(".", 1)[-1]):      # a credential-like field: no value at all
        head = re.sub(r"got .*$", "got <redacted>", head, flags=re.S)
        problem = f"{head} @ {path}"
    return _QUOTED.sub(lambda m: shown(m.group(1) or m.group(2), 0) if looks_secret(m.group(1) or m.group(2))
                       else m.group(0), problem)


def _strict(kind: str, accept):
    def structure(value, _type):
        if not accept(value):
            raise ValueError(f"expected {kind}, got {shown(value)}")
        return value
    return structure


def _scalar_hooks(converter: cattrs.Converter) -> cattrs.Converter:
    converter.register_structure_hook(bool, _strict("true or false", lambda x: isinstance(x, bool)))
    converter.register_structure_hook(
        int, _strict("an integer", lambda x: isinstance(x, int) and not isinstance(x, bool)))
    converter.register_structure_hook(
        float, lambda x, t: float(_strict("a finite number", lambda y: isinstance(y, (int, float))
                                          and not isinstance(y, bool) and math.isfinite(y))(x, t)))
    converter.register_structure_hook(str, _strict("a string", lambda x: isinstance(x, str)))
    converter.register_structure_hook(Any, lambda x, t: x)
    return converter


def make_converter() -> cattrs.Converter:
    """One strict converter: TOML gives typed values, so nothing is coerced silently.

    Numbers must be finite (TOML allows inf and nan), and a string is never split into a list
    of characters where a list is expected.
    """
    converter = _scalar_hooks(cattrs.Converter(forbid_extra_keys=True))

    def is_sequence(t) -> bool:
        return typing.get_origin(t) in (tuple, list)

    def structure_sequence(value, t):
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"expected a list, got {value!r}")
        args = typing.get_args(t)
        item = args[0] if args else Any
        items, errors = [], []
        for i, v in enumerate(value):
            try:
                items.append(converter.structure(v, item))
            except Exception as exc:
                exc.__notes__ = [*getattr(exc, "__notes__", []),
                                 IterableValidationNote(f"Structuring {t} @ index {i}", i, item)]
                errors.append(exc)
        if errors:
            raise IterableValidationError(f"While structuring {t!r}", errors, t)
        return tuple(items) if typing.get_origin(t) is tuple else items

    converter.register_structure_hook_func(is_sequence, structure_sequence)

    def table(make: typing.Callable[[], typing.Callable]):
        """A section or mapping (``data = "x"`` where ``[data]`` belongs) says it wants a table.
        Its structure function is generated when a table of its kind first comes (generating one
        compiles code, about 1 ms a class, and most runs give few sections)."""
        made: list[typing.Callable] = []

        def structure_table(value, t):
            if not isinstance(value, dict):
                raise ValueError(f"expected a table, got {value!r:.80}")
            if not made:
                made.append(make())
            return made[0](value, t)
        return structure_table

    converter.register_structure_hook_factory(
        attrs.has, lambda cls: table(lambda: make_dict_structure_fn(cls, converter)))
    converter.register_structure_hook_factory(
        lambda t: t is dict or typing.get_origin(t) is dict,
        lambda t: table(lambda: make_mapping_structure_fn(t, converter)))
    return converter


CONVERTER = make_converter()
_STRUCTURE_SETTINGS = make_dict_structure_fn(Settings, CONVERTER, _cattrs_forbid_extra_keys=True)
# every way into Settings (load_settings, sweep trials, tests) resolves the market the same way
CONVERTER.register_structure_hook(
    Settings, lambda value, t: _STRUCTURE_SETTINGS(one_market(value) if isinstance(value, dict) else value, t))


_FIELD = "\x00"


def _describe(exc: BaseException, _type) -> str:
    if isinstance(exc, cattrs.ForbiddenExtraKeysError):
        return f"unknown key(s) {', '.join(sorted(map(repr, exc.extra_fields)))}"
    if isinstance(exc, KeyError):
        return f"required key {exc} is missing"
    if len(exc.args) > 1 and isinstance(exc.args[0], str):  # attrs validators add context args
        attribute = exc.args[1]
        name = getattr(attribute, "name", None)
        return f"{exc.args[0]}{_FIELD}{name}" if name else exc.args[0]
    message = str(exc)
    named = re.match(r"'?([A-Za-z_]\w*)'? must", message)   # plugin validators name their field first
    if named and (_type is None or not attrs.has(_type) or named.group(1) in attrs.fields_dict(_type)):
        return f"{message}{_FIELD}{named.group(1)}"
    return message


def _field_path(problem: str) -> str:
    """Move a validator's field name into the path: ``msg @ $.backtest`` -> ``msg @ $.backtest.fee``."""
    if _FIELD not in problem:
        return problem
    message, rest = problem.split(_FIELD, 1)
    name, _, path = rest.partition(" @ ")
    return f"{message} @ {path}.{name}" if path else f"{message} ({name})"


def _invalid(exc: BaseException, cls: type, path: str) -> ConfigError:
    """A validator's error (raised in the constructor) as one line with the field's path."""
    return ConfigError(f"invalid configuration: {_scrub(_field_path(_describe(exc, cls) + ' @ ' + path))}")


def structure(data: Any, cls: type, path: str = "$"):
    """Structure ``data`` into ``cls`` or raise a ConfigError listing every problem with its path."""
    try:
        return CONVERTER.structure(data, cls)
    except (cattrs.ClassValidationError, cattrs.IterableValidationError) as exc:
        problems = [_scrub(_field_path(p))
                    for p in cattrs.transform_error(exc, path=path, format_exception=_describe)]
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems)) from None
    except (ValueError, TypeError) as exc:  # attrs validators run in the constructor
        raise _invalid(exc, cls, path) from None


def read_toml(path: Path | str, what: str = "config file") -> dict[str, Any]:
    """A TOML file as a dict; a missing file or a syntax error is a ConfigError naming the file."""
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{what} not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{what} {path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {path} is not UTF-8 text: byte {exc.object[exc.start]:#04x} at offset "
                          f"{exc.start}; save it as UTF-8") from None
    except RecursionError:
        raise ConfigError(f"{what} {path} nests arrays or tables too deeply to read") from None
    except OSError as exc:
        raise ConfigError(f"{what} {path} cannot be read: {exc.strerror or exc}") from None


#: (section, key) whose values are paths: relative ones are relative to the config file's folder, so
#: the bot, ``mlcoord kill`` and ``mlcoord status`` agree wherever each is started (issue 14)
PATH_KEYS = (("engine", "profile"), ("engine", "plugins_dir"), ("data", "files"), ("data", "store"),
             ("data", "inputs"), ("learning", "state_file"), ("live", "kill_switch"), ("live", "heartbeat"),
             ("live", "store"), ("exchange", "keys_file"), ("api", "tls_cert"), ("api", "tls_key"))


def _resolve_paths(data: dict[str, Any], folder: Path) -> None:
    """Every :data:`PATH_KEYS` value of ``data`` made absolute against ``folder``, in place. A
    profile is a path only as ``*.toml`` (else a shipped profile's name); a database URL is left
    alone except a relative ``sqlite:///`` path. Values of the wrong type stay for the converter."""
    for section, key in PATH_KEYS:
        table = data.get(section)
        if not isinstance(table, dict) or key not in table:
            continue
        value = table[key]
        if key == "profile" and not (isinstance(value, str) and value.endswith(".toml")):
            continue
        if key == "files":                   # a list; anything else is left for the converter's error
            if isinstance(value, list):
                table[key] = [_relative_to(v, folder) for v in value]
        elif key == "inputs":                # [data.inputs."SYM"]: a table of paths per symbol
            for files in (value.values() if isinstance(value, dict) else ()):
                if isinstance(files, dict):
                    files.update({k: _relative_to(v, folder) for k, v in files.items()})
        else:
            table[key] = _relative_to(value, folder)


def _relative_to(value: Any, folder: Path) -> Any:
    if not isinstance(value, str) or not value or value == ":memory:":
        return value
    if "://" in value:
        scheme, _, rest = value.partition(":///")
        if scheme.split("+")[0] != "sqlite" or not rest or rest.startswith("/") or rest == ":memory:":
            return value
        return f"{scheme}:///{folder / rest}"
    path = Path(value).expanduser()
    return str(path) if path.is_absolute() else str(folder / path)


def load_settings(path: Optional[Path] = None, overrides: Optional[dict[str, Any]] = None) -> Settings:
    """Read a TOML file (or nothing) into Settings; ``overrides`` are merged per section. A market
    in ``overrides`` (``data download --market``) replaces the file's, whichever key it used."""
    data: dict[str, Any] = read_toml(path) if path is not None else {}
    if path is not None:             # the file's paths; command-line overrides stay as typed
        _resolve_paths(data, Path(path).resolve().parent)
    for section, values in (overrides or {}).items():
        if isinstance(values, dict):
            if "market" in values and section in (MARKET_KEY[0], OLD_MARKET_KEY[0]):
                for name in (MARKET_KEY[0], OLD_MARKET_KEY[0]):
                    if isinstance(data.get(name), dict):
                        data[name].pop("market", None)
            data.setdefault(section, {}).update(values)
        else:
            data[section] = values
    return structure(data, Settings)


def account_settings(settings: Settings) -> AccountSettings:
    """What options classes check their values against (:class:`mlcoord.option_checks.ChecksAccount`)."""
    b = settings.backtest
    return AccountSettings(settings.exchange.market, b.leverage, b.fee_taker, b.fee_maker, b.slippage)


_DEFAULTS_ONLY: dict[type, bool] = {}


def _defaults_only(cls: type) -> bool:
    """An attrs class whose every init field has a default: structuring ``{}`` is ``cls()``
    (most plugins run on their defaults; generating the structure function costs ~1 ms)."""
    known = _DEFAULTS_ONLY.get(cls)
    if known is None:
        known = _DEFAULTS_ONLY[cls] = attrs.has(cls) and all(
            a.default is not attrs.NOTHING for a in attrs.fields(cls) if a.init)
    return known


def plugin_options(settings: Settings, name: str, options_cls: Optional[type]):
    """The typed options of component ``name`` from ``[plugins.NAME]`` (defaults if absent),
    checked against the account's settings when the options class asks (``check_account``)."""
    raw = settings.plugins.get(name, {})
    if options_cls is None:
        if raw:
            raise ConfigError(f"component {name!r} takes no options, got {sorted(raw)} @ $.plugins.{name}")
        return None
    if not isinstance(raw, dict):
        raise ConfigError(f"expected a table, got {raw!r} @ $.plugins.{name}")
    path = f"$.plugins.{name}"
    options = None
    if not raw and _defaults_only(options_cls):
        try:        # what structuring {} gives, without generating a structure function for it
            options = options_cls()
        except (ValueError, TypeError):     # a default its validator refuses: reported as below
            options = None
    if options is None:
        options = structure(raw, options_cls, path=path)
    if isinstance(options, ChecksAccount):
        try:
            options.check_account(account_settings(settings))
        except ValueError as exc:
            raise _invalid(exc, options_cls, path) from None
    return options


def unstructure(obj: Any) -> Any:
    return CONVERTER.unstructure(obj)
