"""Configuration: disabling plugins from the file, strict typed settings, clear errors, secrets.

Every config error must name the key path and the offending value, because the user has to find
the line in the TOML file; a secret must never reach a log line.
"""

from __future__ import annotations

import io
import json
import math

import attrs
import pytest
import structlog
from structlog.testing import capture_logs

from mlcoord import logs
from mlcoord.backtest.run import disabled_plugins
from mlcoord.config import BacktestConfig, ExchangeConfig, Settings, load_settings, plugin_options, structure
from mlcoord.errors import ConfigError
from mlcoord.live.runner import load_live_settings
from mlcoord.pipeline import resolve_components
from mlcoord.registry import load_plugins
from mlcoord_dca import DCAOptions

pytestmark = pytest.mark.usefixtures("builtin_plugins_only")

BUILTINS = ("technical", "dca", "exits", "risk", "hedging", "protections")


def write(tmp_path, text: str):
    path = tmp_path / "mlcoord.toml"
    path.write_text(text, encoding="utf-8")
    return path


# -- disabling from the config file -------------------------------------------------------------
def test_disable_from_a_toml_file_removes_the_components(tmp_path):
    settings = load_settings(write(tmp_path, '[engine]\ndisable = ["dca", "hedging"]\n'))
    assert settings.engine.disable == ("dca", "hedging")
    disabled = disabled_plugins(settings, env={})
    assert disabled == {"dca": "config [engine] disable", "hedging": "config [engine] disable"}
    plugins = load_plugins(disabled)
    assert plugins.statuses["dca"].reason == "disabled by config [engine] disable"
    described = resolve_components(settings, plugins).describe()
    assert described["entry_planner"] is None
    assert described["entry_guards"] == ["protections"] and described["portfolio_watchers"] == ["protections"]
    assert described["sizer"] == "risk" and described["signal_sources"] == ["technical"]


@pytest.mark.parametrize("name", BUILTINS)
def test_disable_each_builtin_through_load_settings_overrides(name):
    settings = load_settings(None, {"engine": {"disable": [name]}})
    plugins = load_plugins(disabled_plugins(settings, env={}))
    assert not plugins.statuses[name].enabled
    assert name not in plugins.components
    assert sum(s.enabled for s in plugins.statuses.values()) >= len(BUILTINS) - 1


def test_overrides_merge_into_the_file_section(tmp_path):
    path = write(tmp_path, '[data]\nsymbols = ["ETH/USDT"]\ntimerange = "20230101-"\n')
    settings = load_settings(path, {"data": {"timerange": "20240101-20240301"}})
    assert settings.data.symbols == ("ETH/USDT",)            # kept from the file
    assert settings.data.timerange == "20240101-20240301"     # overridden


def test_defaults_are_the_documented_ones():
    s = load_settings()
    assert s.engine.min_confidence == 0.55 and s.engine.disable == ()
    assert (s.backtest.fee_taker, s.backtest.fee_maker, s.backtest.slippage) == (0.0005, 0.0002, 0.0005)
    assert s.exchange.market == s.backtest.market == "futures" and s.backtest.leverage == 1.0
    assert s.data.higher_timeframes == ("4h", "1d")


# -- one key says spot or futures ----------------------------------------------------------------
def test_an_empty_config_is_the_same_market_in_backtest_and_paper(tmp_path):
    """The bug: backtest read ``[backtest] market`` (futures) and paper ``[exchange] market`` (spot)."""
    path = write(tmp_path, "")
    backtest = load_settings(path)
    paper, _ = load_live_settings(path)
    assert backtest.exchange.market == backtest.backtest.market == "futures"
    assert paper.exchange.market == paper.backtest.market == "futures"


@pytest.mark.parametrize("toml, market, warned", [
    ('[exchange]\nmarket = "spot"\n', "spot", False),
    ('[backtest]\nmarket = "spot"\n', "spot", True),
    ('[exchange]\nmarket = "spot"\n[backtest]\nmarket = "spot"\n', "spot", True),
    ('[exchange]\nmarket = "futures"\n[backtest]\nmarket = "futures"\n', "futures", True),
], ids=["canonical", "old-spelling-only", "both-spot", "both-futures"])
def test_the_market_is_one_value_whichever_spelling_says_it(tmp_path, toml, market, warned):
    path = write(tmp_path, toml)
    with capture_logs() as logs:
        settings = load_settings(path)
        live, _ = load_live_settings(path)
    assert settings.exchange.market == settings.backtest.market == market
    assert live.exchange.market == live.backtest.market == market
    renamed = [e for e in logs if e["event"] == "config_key_renamed"]
    assert len(renamed) == (2 if warned else 0), logs
    if warned:
        assert renamed[0]["key"] == "[backtest] market" and renamed[0]["use"] == "[exchange] market"
        assert renamed[0]["log_level"] == "warning"


def test_two_markets_that_disagree_are_an_error_naming_both(tmp_path):
    path = write(tmp_path, '[exchange]\nmarket = "spot"\n[backtest]\nmarket = "futures"\n')
    for load in (load_settings, load_live_settings):
        with pytest.raises(ConfigError) as err:
            load(path)
        message = str(err.value)
        assert '[exchange] market = "spot"' in message and '[backtest] market = "futures"' in message, message


def test_a_command_line_market_replaces_either_spelling_in_the_file(tmp_path):
    path = write(tmp_path, '[backtest]\nmarket = "futures"\n')
    settings = load_settings(path, {"exchange": {"market": "spot"}})      # mlcoord data download --market spot
    assert settings.exchange.market == settings.backtest.market == "spot"


def test_settings_built_in_code_cannot_hold_two_markets():
    with pytest.raises(ConfigError, match=r'\[exchange\] market = "futures".*\[backtest\] market = "spot"'):
        Settings(backtest=BacktestConfig(market="spot"))
    spot = Settings(exchange=ExchangeConfig(market="spot"), backtest=BacktestConfig(market="spot"))
    with pytest.raises(ConfigError, match="market"):
        attrs.evolve(spot, exchange=attrs.evolve(spot.exchange, market="futures"))


def test_a_bad_market_is_reported_where_it_was_written(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, '[exchange]\nmarket = "margin"\n'))
    assert "'margin'" in str(err.value) and "$.exchange" in str(err.value) and "$.backtest" not in str(err.value)


# -- errors: key path and value -----------------------------------------------------------------
@pytest.mark.parametrize("toml, parts", [
    ("[backtest]\nfee_takr = 0.001\n", ["unknown key(s) 'fee_takr'", "$.backtest"]),
    ("[bakctest]\nfee_taker = 0.001\n", ["unknown key(s) 'bakctest'", "@ $"]),
    ('[backtest]\nfee_taker = "abc"\n', ["expected a finite number, got 'abc'", "$.backtest.fee_taker"]),
    ("[backtest]\nfunding_interval_hours = 8.5\n", ["expected an integer, got 8.5",
                                                     "$.backtest.funding_interval_hours"]),
    ("[engine]\ntrace_hooks = 1\n", ["expected true or false, got 1", "$.engine.trace_hooks"]),
    ('[engine]\ndisable = ["dca", 3]\n', ["expected a string, got 3", "$.engine.disable[1]"]),
    ("[backtest]\nfee_taker = -0.1\n", ["fee_taker must be a number in [0, 0.05), got -0.1", "$.backtest.fee_taker"]),
    ("[engine]\nmin_confidence = 1.5\n", ["min_confidence must be a number in [0, 1), got 1.5", "$.engine.min_confidence"]),
    ('[backtest]\nmarket = "margin"\n', ["'market' must be in ('futures', 'spot')", "'margin'", "$.backtest"]),
    ("[backtest]\nleverage = 0\n", ["leverage must be a number in [1, 125], got 0.0", "$.backtest.leverage"]),
    ("[pipeline.weights]\nlstm = nan\n", ["expected a finite number, got nan", "$.pipeline"]),
], ids=["unknown-key", "unknown-section", "wrong-type", "float-for-int", "int-for-bool", "list-item",
        "negative-fee", "min-confidence", "market", "leverage", "nan-weight"])
def test_bad_value_names_key_path_and_value(tmp_path, toml, parts):
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, toml))
    message = str(err.value)
    for part in parts:
        assert part in message, message


def test_every_problem_is_listed_at_once():
    with pytest.raises(ConfigError) as err:
        structure({"backtest": {"slippage": "x"}, "engine": {"min_confidence": 2.0}}, Settings)
    message = str(err.value)
    assert "expected a finite number, got 'x' @ $.backtest.slippage" in message
    assert "min_confidence must be a number in [0, 1), got 2.0" in message
    assert "@ $.engine.min_confidence" in message


@pytest.mark.parametrize("data, path", [
    ({"backtest": {"fee_taker": -0.1}}, "$.backtest.fee_taker"),
    ({"plugins": {"dca": {"expire_after_bars": 0}}}, "$.plugins.dca.expire_after_bars"),
])
def test_out_of_range_value_names_the_full_key_path(data, path):
    with pytest.raises(ConfigError, match=path.replace("$", r"\$").replace(".", r"\.")):
        resolve_components(structure(data, Settings), load_plugins({}))


@pytest.mark.parametrize("data", [{"engine": {"disable": "dca"}}, {"pipeline": {"signal_sources": "technical"}},
                                  {"data": {"symbols": "BTC/USDT"}}])
def test_a_string_is_not_a_list(data):
    with pytest.raises(ConfigError, match="expected a list"):
        structure(data, Settings)


@pytest.mark.parametrize("key", ["fee_taker", "slippage", "funding_rate"])
def test_non_finite_costs_are_rejected(key):
    with pytest.raises(ConfigError, match=key):
        structure({"backtest": {key: math.inf if key != "funding_rate" else math.nan}}, Settings)


def test_toml_syntax_error_names_the_file(tmp_path):
    path = write(tmp_path, "[backtest]\nfee_taker = = 3\n")
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert str(path) in str(err.value)
    assert "not valid TOML" in str(err.value) and "line 2" in str(err.value)


def test_missing_config_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.toml")


# -- plugin options -----------------------------------------------------------------------------------
def test_plugin_options_are_typed_and_defaulted():
    settings = structure({"plugins": {"dca": {"expire_after_bars": 12}}}, Settings)
    options = plugin_options(settings, "dca", DCAOptions)
    assert options == attrs.evolve(DCAOptions(), expire_after_bars=12)
    assert plugin_options(Settings(), "dca", DCAOptions) == DCAOptions()


@pytest.mark.parametrize("options, parts", [
    ({"expire_after_bars": "x"}, ["expected an integer, got 'x'", "$.plugins.dca.expire_after_bars"]),
    ({"expire_afterbars": 3}, ["unknown key(s) 'expire_afterbars'", "$.plugins.dca"]),
    ({"expire_after_bars": 0}, ["'expire_after_bars' must be >= 1", "0", "$.plugins.dca"]),
])
def test_bad_plugin_option_names_key_path_and_value(options, parts):
    settings = structure({"plugins": {"dca": options}}, Settings)  # plugin tables are checked later
    with pytest.raises(ConfigError) as err:
        resolve_components(settings, load_plugins({}))
    for part in parts:
        assert part in str(err.value)


def test_options_for_an_unknown_component_are_an_error_with_a_suggestion():
    settings = structure({"plugins": {"dcaa": {"expire_after_bars": 3}}}, Settings)
    with pytest.raises(ConfigError) as err:
        resolve_components(settings, load_plugins({}))
    assert "'dcaa'" in str(err.value) and "did you mean 'dca'" in str(err.value)
    assert "[plugins.*]" in str(err.value)


def test_options_of_a_disabled_plugin_do_not_block_the_run():
    settings = structure({"plugins": {"dca": {"expire_after_bars": 3}}}, Settings)
    components = resolve_components(settings, load_plugins({"dca": "CLI --disable"}))
    assert components.entry_planner is None


# -- secrets --------------------------------------------------------------------------------------------
SECRETS = ("AKIA-very-secret-1", "s3cr3t-nested-2", "hunter2-3", "tok-4")


def test_redact_secrets_at_any_depth():
    event = {"event": "connect", "api_key": SECRETS[0], "exchange": {"name": "binance", "secret": SECRETS[1],
             "apiKey": SECRETS[0]}, "accounts": [{"password": SECRETS[2]}], "pair": ("a", {"token": SECRETS[3]})}
    out = logs.redact_secrets(None, "info", event)
    assert not any(s in repr(out) for s in SECRETS)
    assert out["api_key"] == "***" and out["exchange"]["secret"] == "***" and out["exchange"]["apiKey"] == "***"
    assert out["exchange"]["name"] == "binance" and out["event"] == "connect"   # the rest is untouched
    assert event["api_key"] == SECRETS[0]                                       # input not mutated


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "console"])
def test_configured_logger_never_prints_a_secret(as_json):
    stream = io.StringIO()
    logs.configure("info", json=as_json, stream=stream)
    log = structlog.get_logger("mlcoord.test")
    log.warning("exchange_connect", api_key=SECRETS[0], config={"exchange": {"secret": SECRETS[1]}},
                users=[{"password": SECRETS[2]}], symbol="BTC/USDT")
    log.info("token_refresh", token=SECRETS[3])
    text = stream.getvalue()
    assert "exchange_connect" in text and "BTC/USDT" in text and "token_refresh" in text
    assert not any(s in text for s in SECRETS), text
    if as_json:
        first = json.loads(text.splitlines()[0])
        assert first["api_key"] == "***" and first["config"] == {"exchange": {"secret": "***"}}


def test_configured_level_filters():
    stream = io.StringIO()
    logs.configure("warning", json=True, stream=stream)
    structlog.get_logger("t").info("quiet")
    structlog.get_logger("t").warning("loud")
    assert "loud" in stream.getvalue() and "quiet" not in stream.getvalue()


def test_registered_secret_value_is_redacted_in_free_text(monkeypatch):
    if not hasattr(logs, "register_secret"):
        pytest.skip("logs.register_secret not available")
    monkeypatch.setattr(logs, "_secret_values", set())
    logs.register_secret(SECRETS[0])
    stream = io.StringIO()
    logs.configure("info", json=True, stream=stream)
    structlog.get_logger("t").warning(f"login failed for key {SECRETS[0]}", detail=f"key={SECRETS[0]}")
    text = stream.getvalue()
    assert "login failed for key ***" in text and "key=***" in text
    assert SECRETS[0] not in text


@attrs.frozen
class ExchangeCredentials:
    exchange: str
    api_key: str


def test_secret_inside_an_options_object_is_not_printed():
    stream = io.StringIO()
    logs.configure("info", json=True, stream=stream)
    structlog.get_logger("t").warning("startup", credentials=ExchangeCredentials("binance", SECRETS[0]))
    assert SECRETS[0] not in stream.getvalue()


@attrs.frozen
class _DefaultFails:
    level: float = attrs.field(default=-1.0, validator=attrs.validators.ge(0.0))


@attrs.frozen
class _Required:
    level: float
    other: int = 2


def test_options_of_an_absent_section_are_what_structuring_an_empty_table_gives():
    """A plugin without its ``[plugins.NAME]`` table gets ``cls()`` without a structure function
    being generated for it: the same options as structuring ``{}``, and the same errors (a
    default its own validator refuses; a required field still goes through the converter)."""
    from mlcoord_exits import ExitOptions
    from mlcoord_hedging import HedgingOptions
    from mlcoord_protections import ProtectionsOptions
    from mlcoord_risk.manager import RiskOptions
    from mlcoord_technical import TechnicalOptions

    settings = Settings()
    for cls in (DCAOptions, ExitOptions, HedgingOptions, ProtectionsOptions, RiskOptions, TechnicalOptions):
        assert plugin_options(settings, "absent", cls) == structure({}, cls, path="$.plugins.absent")
    for cls in (_DefaultFails, _Required):
        with pytest.raises(ConfigError) as direct:
            plugin_options(settings, "absent", cls)
        with pytest.raises(ConfigError) as structured:
            structure({}, cls, path="$.plugins.absent")
        assert str(direct.value) == str(structured.value) and "$.plugins.absent" in str(direct.value)
