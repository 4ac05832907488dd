"""Arguments checked against the exchange before any side effect (issue 15), on the loopback
Binance: an unknown symbol, ``--timeframe 7m``, a leverage the exchange does not take, ``data
download --limit 0``, a file where the store directory belongs and ``--exchange ""`` each end
in one ``error:`` (a config error lists the key below it) and exit 2, never a ccxt traceback, and nothing is set on the account
(``live --timeframe 7m`` used to fail only after the exchange's leverage had been set)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from exchange_sim import ExchangeServer, ccxt_table
from exchange_sim import server as sim_server
from live_helpers import live_config
from mlcoord.cli import main
from mlcoord.toml_text import toml_value


@pytest.fixture(scope="module")
def server():
    with ExchangeServer() as running:
        yield running
    assert not running.errors, "\n".join(running.errors)


def _session(tmp_path, server, market="futures", **kwargs):
    """A live/paper config pointed at ``server`` through ``[exchange.ccxt]``."""
    exchange_id = "binanceusdm" if market == "futures" else "binance"
    path = live_config(tmp_path, market, **kwargs)
    table = "".join(f"{k} = {toml_value(v)}\n" for k, v in
                    ccxt_table(server, "linear" if market == "futures" else "spot", exchange_id).items())
    text = path.read_text().replace("[exchange]\n", f'[exchange]\nid = "{exchange_id}"\n')
    path.write_text(text + "[exchange.ccxt]\n" + table)
    return path


def _run(server, args):
    out = CliRunner(env={"MLCOORD_API_KEY": server.api_key, "MLCOORD_API_SECRET": server.secret}).invoke(main, args)
    errors = [line for line in out.output.splitlines() if line.startswith("error:")]
    assert out.exit_code == 2 and len(errors) == 1 and "Traceback" not in out.output, out.output
    return out.output[out.output.index("error:"):]     # a config error lists its problems below that line


def _account_writes(server) -> list:
    return [route for route, n in server.calls.items() if route[0] in ("POST", "PUT", "DELETE") and n]


LIVE = ["live", "--i-understand-this-is-real-money", "--cycles", "1"]


@pytest.mark.parametrize("kwargs, args, says", [
    ({"symbols": ("FOO/USDT",)}, [], "unknown symbol 'FOO/USDT': binanceusdm futures lists no FOO/USDT:USDT"),
    ({}, ["--timeframe", "7m"], "unknown timeframe '7m'"),
    ({"leverage": 2.5}, [], "[backtest] leverage = 2.5: binanceusdm sets whole-number leverage only"),
], ids=["unknown-symbol", "timeframe-7m", "fractional-leverage"])
def test_live_refuses_a_bad_argument_before_touching_the_account(tmp_path, server, kwargs, args, says):
    server.calls.clear()
    line = _run(server, [*LIVE, "--config", str(_session(tmp_path, server, **kwargs)), *args])
    assert says in line
    assert _account_writes(server) == [] and server.state.futures.leverage == {}


def test_live_refuses_a_leverage_above_the_symbols_bracket(tmp_path, server, monkeypatch):
    """Binance caps many symbols below 125x: the bracket read at start says so (here 20x)."""
    def brackets(st, params, _):
        return [{"symbol": m, "brackets": [{"bracket": 1, "initialLeverage": 20, "notionalCap": 1e9,
                                            "notionalFloor": 0, "maintMarginRatio": 0.004, "cum": 0.0}]}
                for m in st.futures_markets]

    monkeypatch.setitem(sim_server.SIGNED, ("GET", "/fapi/v1/leverageBracket"), brackets)
    server.calls.clear()
    config = _session(tmp_path, server, leverage=25)
    config.write_text(config.read_text() + "[plugins.risk]\nmax_leverage = 25\n")
    line = _run(server, [*LIVE, "--config", str(config)])
    assert "[backtest] leverage = 25 is outside binanceusdm's range for BTC/USDT: 1 to 20x" in line
    assert _account_writes(server) == [] and server.state.futures.leverage == {}


def test_paper_refuses_an_unknown_symbol_and_timeframe(tmp_path, server):
    config = _session(tmp_path, server, "spot", leverage=None, symbols=("FOO/USDT",))
    assert "unknown symbol 'FOO/USDT': binance spot lists no FOO/USDT" in _run(server, ["paper", "--config", str(config)])
    config = _session(tmp_path, server, "spot", leverage=None)
    assert "unknown timeframe '7m'" in _run(server, ["paper", "--config", str(config), "--timeframe", "7m"])


@pytest.mark.parametrize("args, says", [
    (["--limit", "0"], "--limit must be a whole number of candles per request >= 1, got 0"),
    (["--exchange", ""], "id must name a ccxt exchange"),
    (["--symbols", "FOO/USDT"], "unknown symbol 'FOO/USDT': binance spot lists no FOO/USDT"),
    (["--timeframes", "1h,7m"], "unknown timeframe '7m'"),
    (["--store", "FILE"], "is a file: the store is a directory"),
], ids=["limit-0", "empty-exchange", "unknown-symbol", "timeframe-7m", "store-is-a-file"])
def test_data_download_refuses_a_bad_argument_before_writing(tmp_path, server, args, says):
    config = _session(tmp_path, server, "spot", leverage=None)
    (tmp_path / "FILE").write_text("not a store")
    args = [str(tmp_path / "FILE") if a == "FILE" else a for a in args]
    store = ["--store", str(tmp_path / "store")] if "--store" not in args else []
    symbols = ["--symbols", "BTC/USDT"] if "--symbols" not in args else []
    line = _run(server, ["data", "download", "--config", str(config), *symbols, *store, "--since", "2020-10-01", *args])
    assert says in line
    assert not (tmp_path / "store").exists() and (tmp_path / "FILE").read_text() == "not a store"


def test_backtest_store_that_is_a_file(tmp_path):
    (tmp_path / "data").write_text("x")
    out = CliRunner().invoke(main, ["backtest", "--store", str(tmp_path / "data"), "--no-progress"])
    assert out.exit_code == 2
    assert f"error: store {tmp_path / 'data'} is a file, not a store directory" in out.output
