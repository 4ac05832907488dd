"""Start-up safety (issue 15): a live bot whose store has no record of what the exchange holds
refuses to trade until the user chooses. The probe behind the issue: a lost store, an open LONG
reported as ``exchange_position_unknown ... leaves it alone``, never managed, ending as LONG 0.094
with no stop. Now the start is refused, naming the position; ``--adopt`` gives it the exit
manager's stop and take profit on the exchange; ``--ignore SYMBOL`` leaves it alone and does not
trade that symbol. On the loopback Binance (real ccxt)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from click.testing import CliRunner
from structlog.testing import capture_logs

from exchange_sim import ExchangeServer, ccxt_table, futures_client, spot_client
from live_helpers import BarClock, live_config
from mlcoord.cli import main
from mlcoord.live.retry import ManualClock
from mlcoord.live.runner import load_live_settings
from mlcoord.live.session import run_live
from mlcoord.live.startup import UnknownExchangeState
from mlcoord.live.store import Store
from mlcoord.registry import load_plugins
from mlcoord.toml_text import toml_value

OWN_ID = "mc" + "A" * 26          # the shape of the bot's client ids (a lost store's order)


@pytest.fixture
def server():
    with ExchangeServer() as running:
        yield running
    assert not running.errors, "\n".join(running.errors)


def _account(server, symbol="BTC/USDT:USDT"):
    """The futures account as a bot left it: hedge mode, isolated margin, leverage 3."""
    ex = futures_client(server)
    ex.load_markets()
    ex.set_position_mode(True)
    ex.set_margin_mode("isolated", symbol)
    ex.set_leverage(3, symbol)
    return ex


def _open_long(server, qty=0.094, symbol="BTC/USDT:USDT"):
    """A LONG the bot opened before its store was lost."""
    ex = _account(server, symbol)
    ex.create_order(symbol, "market", "buy", qty, None, {"positionSide": "LONG"})
    return ex


def _algos(server, symbol="BTCUSDT"):
    return [(a.type, a.side, a.position_side, a.qty) for a in server.state.futures.algos.values()
            if a.is_open and a.symbol == symbol]


def _run(server, tmp_path, cycles=2, symbols=("BTC/USDT",), extra="", **kwargs):
    settings, options = load_live_settings(live_config(tmp_path, symbols=symbols, extra=extra))
    with capture_logs() as logs:
        trader = run_live(settings, options, futures_client(server), load_plugins(), clock=BarClock(server),
                          health_clock=ManualClock(), cycles=cycles, **kwargs)
    trader.store.close()
    return trader, logs


def _events(logs, name):
    return [e for e in logs if e["event"] == name]


def test_an_unknown_position_refuses_the_start(server, tmp_path):
    _open_long(server)
    posts = sum(n for (method, _), n in server.calls.items() if method == "POST")
    with pytest.raises(UnknownExchangeState) as err:
        _run(server, tmp_path)
    message = str(err.value)
    assert "BTC/USDT: position LONG 0.094 at" in message and str(tmp_path / "live.db") in message
    assert "--adopt" in message and "--ignore BTC/USDT" in message
    # nothing was sent: the position is as it was, with no stop and no new order
    assert sum(n for (method, _), n in server.calls.items() if method == "POST") == posts
    assert server.state.futures.positions[("BTCUSDT", "LONG")].amt == Decimal("0.094")
    assert _algos(server) == []


def test_adopt_protects_the_position_with_the_exit_managers_stop(server, tmp_path):
    _open_long(server)
    trader, logs = _run(server, tmp_path, adopt=True)
    [adopted] = _events(logs, "position_adopted")
    assert adopted["symbol"] == "BTC/USDT" and adopted["quantity"] == 0.094 and adopted["side"] == "LONG"
    stops = [a for a in _algos(server) if a[0] == "STOP_MARKET"]
    assert stops == [("STOP_MARKET", "SELL", "LONG", Decimal("0.094"))], _algos(server)
    [stop] = [a for a in server.state.futures.algos.values() if a.is_open and a.type == "STOP_MARKET"]
    price = float(server.state.price("BTCUSDT"))
    assert float(stop.stop_price) < price and float(stop.stop_price) == pytest.approx(adopted["stop"], rel=1e-4)
    store = Store.open(tmp_path / "live.db")
    [plan] = store.active_plans()
    assert plan.quantity == 0.094 and plan.entry.planner == "adopted" and plan.levels.stop == adopted["stop"]
    assert store.decision("BTC/USDT", plan.decision_time)["outcome"] == "adopted"
    assert [p.quantity for p in store.positions()] == [0.094]
    store.close()
    # the store knows it now: a plain restart is not refused, and the plan stays protected
    trader, logs = _run(server, tmp_path)
    assert not _events(logs, "exchange_position_unknown")
    assert [a[0] for a in _algos(server)].count("STOP_MARKET") == 1


def test_ignore_leaves_the_symbol_alone_and_untraded(server, tmp_path):
    _open_long(server)
    before = dict(server.state.futures.orders)
    trader, logs = _run(server, tmp_path, cycles=3, symbols=("BTC/USDT", "ETH/USDT"), ignore=["BTC/USDT"])
    [ignored] = _events(logs, "symbol_ignored")
    assert ignored["symbol"] == "BTC/USDT" and "BTC/USDT: position LONG 0.094" in ignored["unknown"][0]
    assert list(trader.history) == ["ETH/USDT"] and trader.engine.loop.times     # ETH traded on
    assert server.state.futures.positions[("BTCUSDT", "LONG")].amt == Decimal("0.094")
    assert _algos(server) == [] and [o for k, o in server.state.futures.orders.items()
                                     if k not in before and o.symbol == "BTCUSDT"] == []
    with pytest.raises(UnknownExchangeState):          # without the choice, the next start is refused again
        _run(server, tmp_path, symbols=("BTC/USDT", "ETH/USDT"))


def test_unknown_orders_refuse_the_start_unless_the_config_says_what_to_do(server, tmp_path):
    ex = _account(server)
    price = float(server.state.price("BTCUSDT"))
    ex.create_order("BTC/USDT:USDT", "limit", "buy", 0.01, round(price * 0.9), {"positionSide": "LONG",
                                                                                 "clientOrderId": "manual1"})
    ex.create_order("BTC/USDT:USDT", "STOP_MARKET", "buy", 0.01, None, {"positionSide": "LONG",
                                                                         "stopPrice": round(price * 1.2),
                                                                         "clientOrderId": OWN_ID})
    with pytest.raises(UnknownExchangeState) as err:
        _run(server, tmp_path)
    message = str(err.value)
    assert "client id manual1: not the bot's id format" in message and f"client id {OWN_ID}: the bot's id format" \
        in message, message
    _run(server, tmp_path, extra='unknown_orders = "cancel"')      # a choice in the config: both cancelled
    assert _algos(server) == [] and not any(o.is_open for o in server.state.futures.orders.values()
                                            if o.symbol == "BTCUSDT")


def test_adopted_orders_are_known_to_the_next_start(server, tmp_path):
    ex = _open_long(server, qty=0.01)
    ex.create_order("BTC/USDT:USDT", "STOP_MARKET", "sell", 0.01, None,
                    {"positionSide": "LONG", "stopPrice": round(float(server.state.price("BTCUSDT")) * 0.8),
                     "clientOrderId": OWN_ID})
    trader, logs = _run(server, tmp_path, adopt=True)
    store = Store.open(tmp_path / "live.db")
    old = store.order(OWN_ID)
    assert old is not None and old.order.tag == "adopted" and old.order.reduce_only and old.plan_id is None
    store.close()
    _run(server, tmp_path)                               # not refused: the store knows the order now


def test_spot_coins_the_store_does_not_account_for(tmp_path):
    config = live_config(tmp_path, "spot", leverage=None)
    settings, options = load_live_settings(config)

    def start(server, **kwargs):
        with capture_logs() as logs:
            trader = run_live(settings, options, spot_client(server), load_plugins(), clock=BarClock(server),
                              health_clock=ManualClock(), cycles=1, **kwargs)
        trader.store.close()
        return logs

    with ExchangeServer(spot_balances={"USDT": 10_000, "BTC": 0.00002}) as server:
        start(server)                                    # dust (below the minimum notional): left alone
    (tmp_path / "live.db").unlink()
    with ExchangeServer(spot_balances={"USDT": 10_000, "BTC": 0.5}) as server:
        with pytest.raises(UnknownExchangeState, match=r"BTC/USDT: balance BTC 0\.5 "):
            start(server)
        logs = start(server, adopt=True)
        [adopted] = _events(logs, "position_adopted")
        stops = [o for o in server.state.spot.orders.values() if o.is_open and o.type == "STOP_LOSS_LIMIT"]
        assert len(stops) == 1 and stops[0].qty == Decimal("0.5") and float(stops[0].stop_price) == \
            pytest.approx(adopted["stop"], rel=1e-4)


def test_two_unknown_positions_of_one_symbol_are_not_half_adopted(server, tmp_path):
    ex = _open_long(server)
    ex.create_order("BTC/USDT:USDT", "market", "sell", 0.05, None, {"positionSide": "SHORT"})
    with pytest.raises(Exception, match="one plan per symbol") as err:
        _run(server, tmp_path, adopt=True)
    assert "LONG 0.094" in str(err.value) and "SHORT 0.05" in str(err.value)
    store = Store.open(tmp_path / "live.db")
    assert store.plans() == [] and store.orders() == []          # nothing journaled, nothing sent
    store.close()
    assert _algos(server) == []


def test_ignore_needs_a_traded_symbol_without_an_active_plan(server, tmp_path):
    with pytest.raises(Exception, match=r"--ignore SOL/USDT: not a traded symbol \(BTC/USDT\)"):
        _run(server, tmp_path, ignore=["SOL/USDT"])


def test_the_store_is_next_to_the_config_and_named_at_start(server, tmp_path, monkeypatch):
    """Without ``[live] store`` the default store is the config file's neighbour, not the current
    folder's: a bot started from elsewhere finds the same store. Its absolute path is logged."""
    config = live_config(tmp_path)
    config.write_text("\n".join(line for line in config.read_text().splitlines() if not line.startswith("store")))
    monkeypatch.chdir(tmp_path.parent)
    settings, options = load_live_settings(config)
    assert options.store == str(tmp_path / "mlcoord-live.db")
    with capture_logs() as logs:
        run_live(settings, options, futures_client(server), load_plugins(), clock=BarClock(server),
                 health_clock=ManualClock(), cycles=1).store.close()
    [line] = _events(logs, "live_store")
    assert line["store"] == str(tmp_path / "mlcoord-live.db") and line["new"] is True


def test_the_cli_refuses_in_one_line_and_needs_a_config(server, tmp_path):
    _open_long(server)
    config = live_config(tmp_path)
    table = "".join(f"{k} = {toml_value(v)}\n" for k, v in ccxt_table(server, "linear", "binanceusdm").items())
    config.write_text(config.read_text().replace("[exchange]\n", '[exchange]\nid = "binanceusdm"\n')
                      + "[exchange.ccxt]\n" + table)
    runner = CliRunner(env={"MLCOORD_API_KEY": server.api_key, "MLCOORD_API_SECRET": server.secret})
    live = ["live", "--i-understand-this-is-real-money", "--cycles", "1"]
    out = runner.invoke(main, [*live, "--config", str(config)])
    errors = [line for line in out.output.splitlines() if line.startswith("error:")]
    assert out.exit_code == 2 and len(errors) == 1 and "Traceback" not in out.output, out.output
    assert "BTC/USDT: position LONG 0.094" in errors[0] and "--ignore BTC/USDT" in errors[0]
    out = runner.invoke(main, [*live, "--config", str(config), "--adopt"])
    assert out.exit_code == 0, out.output
    assert "active plans 1" in out.output and [a[0] for a in _algos(server)].count("STOP_MARKET") == 1
    out = runner.invoke(main, live)
    assert out.exit_code == 2 and "error: mlcoord live needs --config FILE" in out.output
