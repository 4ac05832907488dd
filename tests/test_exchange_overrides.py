"""``[exchange] sandbox`` and ``[exchange.ccxt]`` (issue 14): endpoints and ccxt settings from the
config file, checked against ccxt, never holding credentials, never logged; and the commands
reaching the loopback exchange through them (no URL patched in code)."""

from __future__ import annotations

import io

import pytest
from click.testing import CliRunner

from exchange_sim import ccxt_table, exchange_server, venue_server  # noqa: F401 (fixtures)
from live_helpers import live_config
from mlcoord import logs
from mlcoord.cli import main
from mlcoord.config import ExchangeConfig, load_settings
from mlcoord.errors import ConfigError
from mlcoord.live.exchange import create_exchange
from mlcoord.toml_text import toml_value

TOKEN = "Bearer tok3nABCDEF0123456789ghijkl"


def _exchange_section(path, body: str):
    path.write_text(f"[exchange]\nmarket = \"spot\"\n{body}\n")
    return path


def ccxt_lines(table: dict) -> str:
    """``[exchange.ccxt]`` as TOML lines (inline tables)."""
    return "[exchange.ccxt]\n" + "".join(f"{key} = {toml_value(value)}\n" for key, value in table.items())


def test_sandbox_and_the_ccxt_table_are_read_from_the_config(tmp_path):
    path = _exchange_section(tmp_path / "c.toml", 'sandbox = true\n[exchange.ccxt]\ntimeout = 2500\n'
                                                  'options = {recvWindow = 9000}\nheaders = {Authorization = "x"}')
    config = load_settings(path).exchange
    assert config.sandbox and config.ccxt["options"] == {"recvWindow": 9000}
    assert "headers" in repr(config) and "Authorization" not in repr(config) and '"x"' not in repr(config) and "'x'" not in repr(config)
    exchange = create_exchange(config)
    assert exchange.urls["api"]["public"].startswith("https://testnet.binance.vision")   # Binance's testnet
    assert exchange.timeout == 2500 and exchange.options["recvWindow"] == 9000
    assert exchange.options["defaultType"] == "spot"           # the table's options merge, not replace


def test_sandbox_with_urls_is_an_error_and_an_exchange_without_a_sandbox_is_named(tmp_path):
    path = _exchange_section(tmp_path / "c.toml", 'sandbox = true\n[exchange.ccxt]\nurls = {api = {public = "http://127.0.0.1:1"}}')
    with pytest.raises(ConfigError, match=r"sandbox = true and \[exchange.ccxt\] urls"):
        load_settings(path)
    with pytest.raises(ConfigError, match="no sandbox.*for kraken"):
        create_exchange(ExchangeConfig(id="kraken", sandbox=True))


@pytest.mark.parametrize("key", ["apiKey", "secret", "password", "uid", "privateKey", "walletAddress", "token",
                                 "myApiKEY", "client_secret", "accessToken"])
def test_credentials_are_refused_in_the_ccxt_table_without_echoing_them(tmp_path, key):
    value = "v4lue0123456789SECRETabcdef"
    path = _exchange_section(tmp_path / "c.toml", f'[exchange.ccxt]\n{key} = "{value}"')
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    text = str(err.value)
    assert key in text and "environment" in text and "keys file" in text and value not in text


def test_ccxt_keys_are_checked_against_the_exchange_class():
    with pytest.raises(ConfigError, match=r"'urlz': ccxt's binance has no such setting; did you mean urls"):
        create_exchange(ExchangeConfig(ccxt={"urlz": {}}))
    with pytest.raises(ConfigError, match="'fetch_ticker'"):          # a method is not a setting
        create_exchange(ExchangeConfig(ccxt={"fetch_ticker": 1}))
    for key, value in (("headers", {"X": "1"}), ("httpsProxy", "http://127.0.0.1:9"), ("timeout", 100),
                       ("hostname", "binance.us")):
        assert getattr(create_exchange(ExchangeConfig(ccxt={key: value})), key) == value


def test_the_exchange_setup_log_shows_the_table_keys_only():
    stream = io.StringIO()
    logs.configure("info", json=True, stream=stream)
    try:
        create_exchange(ExchangeConfig(ccxt={"headers": {"Authorization": TOKEN},
                                             "httpsProxy": "http://user:pw-9f8e7d6c5b4a@proxy:3128"}))
    finally:
        logs.configure("warning", json=True, stream=io.StringIO())
    out = stream.getvalue()
    assert "exchange_created" in out and "headers" in out
    assert "tok3n" not in out and "pw-9f8e7d6c5b4a" not in out


def test_mlcoord_paper_reaches_the_loopback_exchange_through_the_config(exchange_server, tmp_path):
    """End to end: the CLI builds the exchange from ``[exchange.ccxt] urls``; no URL is patched in code."""
    path = live_config(tmp_path, "spot", leverage=None, history_bars=400, poll_seconds=60)
    path.write_text(path.read_text() + ccxt_lines(ccxt_table(exchange_server, "spot")))
    result = CliRunner().invoke(main, ["paper", "--config", str(path), "--cycles", "1"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "paper: equity 10,000.00" in result.output
    # the history, then one poll: no bar closed since, so it asks the time only (paper asks only
    # for bars that can have closed, as live does)
    assert exchange_server.calls[("GET", "/api/v3/klines")] == 1 and exchange_server.calls[("GET", "/api/v3/time")] >= 2


def test_mlcoord_data_download_reaches_the_loopback_exchange_through_the_config(exchange_server, tmp_path):
    config = tmp_path / "d.toml"
    config.write_text('[exchange]\nmarket = "spot"\n' + ccxt_lines(ccxt_table(exchange_server, "spot")))
    import datetime as dt

    since = dt.datetime.fromtimestamp(exchange_server.state.now_ms / 1000 - 3 * 86400, dt.timezone.utc)
    args = ["data", "download", "--config", str(config), "--symbols", "BTC/USDT", "--store", str(tmp_path / "s"),
            "--since", since.strftime("%Y-%m-%d")]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert exchange_server.calls[("GET", "/api/v3/klines")] >= 1 and "BTC/USDT" in result.output


@pytest.mark.parametrize("venue_server", ["binance", "bybit", "okx"], indirect=True)
def test_one_live_config_runs_on_binance_bybit_and_okx_by_its_exchange_id(venue_server, tmp_path):
    """Issue 19: the same futures config, ``[exchange] id`` set to the venue (and its
    ``[exchange.ccxt] urls`` pointing at the loopback emulator, which a real account would not
    need), runs ``mlcoord live`` end to end: hedge mode and leverage set, history fetched, bars
    stepped, every request in that exchange's own dialect."""
    from exchange_sim import API_KEY, SECRET

    server = venue_server
    path = live_config(tmp_path, "futures", history_bars=300, poll_seconds=60)
    text = path.read_text().replace('[exchange]\n', f'[exchange]\nid = "{server.dialect.name}"\n')
    path.write_text(text + ccxt_lines(ccxt_table(server, "linear")))
    from exchange_sim import PASSPHRASE

    env = {"MLCOORD_API_KEY": API_KEY, "MLCOORD_API_SECRET": SECRET, "MLCOORD_API_PASSWORD": PASSPHRASE}
    result = CliRunner(env=env).invoke(main, ["live", "--config", str(path), "--cycles", "1",
                                              "--i-understand-this-is-real-money"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert not server.errors
    routes = {route for _, route in server.calls}
    own = {"binance": "/fapi/", "bybit": "/v5/", "okx": "/api/v5/"}[server.dialect.name]
    assert routes and all(own in route for route in routes), sorted(routes)
    assert any("kline" in route or "candles" in route for route in routes)      # the history was fetched
    assert 3 in {server.state.futures.leverage.get(k) for k in ("BTCUSDT", "BTC-USDT-SWAP")}   # set at start
