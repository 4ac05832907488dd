"""Config sanity (issue 15): every numeric setting has a plausible range, and a value outside it,
a contradiction between settings or a symbol given twice stops the run at start with the key
path and the range. The probe behind the issue had 49 of 97 absurd values accepted: leverage
1000 or 1e-9, fees up to 5.0, ``fee_maker = 1e308`` ending at equity -inf, ``leverage = 5``
above the risk manager's ``max_leverage`` giving a year of ``vetoed:risk`` and exit 0."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from mlcoord.cli import main
from mlcoord.config import Settings, load_settings, structure
from mlcoord.errors import ConfigError
from mlcoord.pipeline import resolve_components
from mlcoord.registry import load_plugins

#: (section, key, a value below the range, a value above it, the range as the error states it)
RANGES = [
    ("engine", "min_confidence", -0.1, 1.0, "[0, 1)"),
    ("engine", "min_expected_return", -1.5, 1.01, "[-1, 1]"),
    ("engine", "vote_timeout_ms", -1.0, 60_001.0, "[0, 60000]"),
    ("data", "repair_max_drop", -0.01, 0.6, "[0, 0.5]"),
    ("data", "max_jump_atr", -1.0, 10_001.0, "[0, 10000]"),
    ("backtest", "initial_equity", 0.0, 1e13, "(0, 1e+12]"),
    ("backtest", "leverage", 1e-9, 1000.0, "[1, 125]"),
    ("backtest", "fee_taker", -0.0001, 0.5, "[0, 0.05)"),
    ("backtest", "fee_maker", -0.0001, 1e308, "[0, 0.05)"),
    ("backtest", "slippage", -0.001, 5.0, "[0, 0.05)"),
    ("backtest", "funding_rate", -10.0, 10.0, "(-0.01, 0.01)"),
    ("backtest", "funding_interval_hours", 0, 25, "[1, 24]"),
    ("backtest", "maintenance_margin", -0.1, 1.0, "[0, 0.5)"),
    ("backtest", "seed", -1, 2**32, "[0, 4.29497e+09]"),
    ("learning", "horizon", 0, 10_001, "[1, 10000]"),
    ("learning", "threshold", -0.001, 0.5, "[0, 0.5)"),
    ("exchange", "rate_limit_ms", 0, 60_001, "[1, 60000]"),
    ("exchange", "timeout_ms", 99, 600_001, "[100, 600000]"),
    ("executor", "workers", 0, 1025, "[1, 1024]"),
    ("executor", "max_pool_restarts", -1, 101, "[0, 100]"),
]
CASES = [pytest.param(section, key, value, span, id=f"{section}.{key}={value!r}")
         for section, key, low, high, span in RANGES for value in (low, high)]


@pytest.mark.parametrize("section, key, value, span", CASES)
def test_a_value_outside_its_range_names_the_key_and_the_range(section, key, value, span):
    with pytest.raises(ConfigError) as err:
        structure({section: {key: value}}, Settings)
    message = str(err.value)
    assert f"{key} must be" in message and span in message and f"@ $.{section}.{key}" in message, message


@pytest.mark.parametrize("section, key, low, high, span", RANGES, ids=[f"{s}.{k}" for s, k, *_ in RANGES])
def test_the_defaults_lie_inside_the_ranges(section, key, low, high, span):
    settings = structure({}, Settings)
    value = getattr(getattr(settings, section), key)
    assert structure({section: {key: value}}, Settings) == settings       # None too: an optional key left unset


@pytest.mark.parametrize("key, value", [("tick_size", -0.1), ("lot_size", -1.0), ("min_quantity", -1.0),
                                        ("min_notional", -5.0), ("max_leverage", 0.5), ("max_leverage", 126.0)])
def test_instrument_rules_have_ranges(key, value):
    with pytest.raises(ConfigError, match=rf"{key} must be .* @ \$\.instruments\['BTC/USDT'\]\.{key}"):
        structure({"instruments": {"BTC/USDT": {key: value}}}, Settings)


@pytest.mark.parametrize("weight", [-1.0, 1e4])
def test_ensemble_weights_have_a_range(weight):
    with pytest.raises(ConfigError, match=r"weight of 'lstm' must be a number in \[0, 1000\]"):
        structure({"pipeline": {"weights": {"lstm": weight}}}, Settings)


@pytest.mark.parametrize("table, key, value, span", [
    ("live", "poll_seconds", 0.0, "(0, 86400]"), ("live", "poll_seconds", 86_401.0, "(0, 86400]"),
    ("live", "history_bars", 50, "[51, 100000]"), ("live", "history_bars", 100_001, "[51, 100000]"),
    ("live.scanner", "top_n", 0, "[1, 1000]"), ("live.scanner", "candles", 5001, "[2, 5000]"),
    ("live.scanner", "min_quote_volume", -1.0, "[0, 1e+12]"),
])
def test_live_options_have_ranges(tmp_path, table, key, value, span):
    from mlcoord.live.runner import load_live_settings

    path = tmp_path / "live.toml"
    path.write_text(f"[{table}]\n{key} = {value!r}\n")
    with pytest.raises(ConfigError) as err:
        load_live_settings(path)
    assert f"{key} must be a number in {span}" in str(err.value) or f"{key} must be an integer in {span}" in str(err.value)
    assert f"@ $.{table}.{key}" in str(err.value)


def test_maintenance_margin_at_or_above_the_initial_margin_is_a_contradiction():
    """At leverage 5 the initial margin is 20 %: a maintenance margin of 30 % liquidates every
    position as it opens."""
    with pytest.raises(ConfigError, match=r"maintenance_margin must be below 1 / leverage = 0.2 .* "
                                          r"@ \$\.backtest\.maintenance_margin"):
        structure({"backtest": {"leverage": 5.0, "maintenance_margin": 0.3}}, Settings)
    assert structure({"backtest": {"leverage": 5.0, "maintenance_margin": 0.1}}, Settings).backtest.leverage == 5.0


@pytest.mark.parametrize("symbols", [["BTC/USDT", "BTC/USDT"], ["BTC/USDT", "btc/usdt"],
                                     ["BTC/USDT", "ETH/USDT", "BTC/USDT:USDT"]])
def test_the_same_symbol_twice_is_an_error(symbols):
    with pytest.raises(ConfigError, match=r"symbols must not name the same symbol twice.*@ \$\.data\.symbols"):
        structure({"data": {"symbols": symbols}}, Settings)


def test_the_same_symbol_from_two_files_is_an_error(tmp_path):
    """Two copies of one file (or two files of one symbol) would run two books in one portfolio."""
    from mlcoord.backtest.run import load_market
    from mlcoord.datasets import bundled_path

    copy = tmp_path / "BTC_USDT-1h.feather"
    copy.write_bytes(bundled_path("BTC/USDT").read_bytes())
    settings = load_settings(None, {"data": {"files": [str(bundled_path("BTC/USDT")), str(copy)]}})
    with pytest.raises(ConfigError, match=r"symbol 'BTC/USDT' is given twice"):
        load_market(settings)
    with pytest.raises(ConfigError, match=r"files must not name the same file twice"):
        load_settings(None, {"data": {"files": [str(copy), str(copy)]}})


def test_an_empty_exchange_id_does_not_mean_binance():
    with pytest.raises(ConfigError, match=r"id must name a ccxt exchange.*got '' @ \$\.exchange\.id"):
        structure({"exchange": {"id": ""}}, Settings)


# -- contradictions between the engine's settings and a plugin's options --------------------------

def test_leverage_above_the_sizers_max_leverage_is_an_error_not_a_year_of_vetoes():
    """The bug: ``leverage = 5`` with the risk manager's ``max_leverage`` 3 ran a year with 281
    ``vetoed:risk`` decisions and no trade, exit 0."""
    settings = structure({"backtest": {"leverage": 5.0}}, Settings)
    with pytest.raises(ConfigError) as err:
        resolve_components(settings, load_plugins())
    message = str(err.value)
    assert "max_leverage must be >= the account's leverage 5" in message
    assert message.endswith("@ $.plugins.risk.max_leverage"), message
    fixed = structure({"backtest": {"leverage": 5.0}, "plugins": {"risk": {"max_leverage": 5.0}}}, Settings)
    assert resolve_components(fixed, load_plugins()).sizer.obj.options.max_leverage == 5.0


def test_the_contradiction_stops_the_backtest_command_with_exit_2(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[backtest]\nleverage = 5\n")
    result = CliRunner().invoke(main, ["backtest", "--config", str(path), "--no-progress"])
    assert result.exit_code == 2, result.output
    assert "max_leverage must be >=" in result.output and "Traceback" not in result.output


def test_any_options_class_may_check_itself_against_the_account():
    """The check is a generic protocol (``check_account``), not the engine knowing the risk plugin:
    a third-party sizer's options get the same account settings."""
    import attrs

    from mlcoord.api import AccountSettings, number
    from mlcoord.config import plugin_options

    seen: list[AccountSettings] = []

    @attrs.frozen
    class Options:
        fee_cap: float = attrs.field(default=0.01, validator=number(0.0))

        def check_account(self, account: AccountSettings) -> None:
            seen.append(account)
            if account.fee_taker > self.fee_cap:
                raise ValueError(f"fee_cap must be >= fee_taker {account.fee_taker:g}, got {self.fee_cap:g}")

    settings = structure({"backtest": {"fee_taker": 0.002}, "plugins": {"mine": {"fee_cap": 0.001}}}, Settings)
    with pytest.raises(ConfigError, match=r"fee_cap must be >= fee_taker 0.002, got 0.001 @ \$\.plugins\.mine\.fee_cap"):
        plugin_options(settings, "mine", Options)
    assert seen == [AccountSettings("futures", 1.0, 0.002, 0.0002, 0.0005)]
