"""`mlcoord paper` against the loopback exchange (real ccxt, no sleeping), reconciliation, the
supervisor's kill switch and heartbeat, and `mlcoord live`'s start-up refusals."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from exchange_sim import exchange_server, futures_client, spot_client, venue_client, venue_server  # noqa: F401 (fixture)
from mlcoord.cli import main
from mlcoord.errors import ConfigError
from mlcoord.live.broker import Broker
from mlcoord.live.reconcile import reconcile
from mlcoord.live.records import OrderState
from mlcoord.live.retry import ExchangeHealth, ManualClock, RetryPolicy
from mlcoord.live.runner import check_live_start, load_live_settings, run_paper
from mlcoord.live.store import Store
from mlcoord.live.supervisor import LiveOptions, Supervisor
from mlcoord.pipeline import build_pipeline
from mlcoord.registry import load_plugins
from live_helpers import BarClock, live_config


def _config(tmp_path, market="spot", extra=""):
    """The paper/start-up tests' session: no leverage; futures runs the hedging guard too."""
    guards = ("protections",) if market == "spot" else ("protections", "hedging")
    return live_config(tmp_path, market, extra, guards=guards, leverage=None, history_bars=400, poll_seconds=60)


def test_paper_runs_bar_by_bar_on_the_exchange_clock(exchange_server, tmp_path):
    settings, options = load_live_settings(_config(tmp_path))
    exchange = spot_client(exchange_server)
    clock = BarClock(exchange_server)
    trader = run_paper(settings, options, exchange, load_plugins(), clock=clock, cycles=300)
    bars = len(trader.history["BTC/USDT"]) - 400
    assert 295 <= bars <= 300              # one closed bar per poll
    assert len(trader.engine.journal.decisions) > 0
    beat = json.loads((tmp_path / "beat.json").read_text())
    assert beat["status"] == "ok" and beat["bar_time_ns"] == trader.last_time and beat["beats"] == 300
    (tmp_path / "STOP").write_text("")
    again = run_paper(settings, options, exchange, load_plugins(), clock=clock, cycles=5)
    assert again.last_time == again.history["BTC/USDT"].time[-1] and len(again.history["BTC/USDT"]) == 400
    assert json.loads((tmp_path / "beat.json").read_text())["status"] == "killed"


def test_paper_pauses_while_the_exchange_is_down(exchange_server, tmp_path):
    from structlog.testing import capture_logs

    settings, options = load_live_settings(_config(tmp_path))
    clock = BarClock(exchange_server)
    for k in range(2, 14):        # the history and the first poll get through, then 12 failures in a row
        exchange_server.faults.server_error(endpoint="/api/v3/klines", at_call=k)
    with capture_logs() as logs:
        trader = run_paper(settings, options, spot_client(exchange_server), load_plugins(), clock=clock, cycles=20)
    events = [e["event"] for e in logs]
    assert "trading_paused" in events and "trading_resumed" in events
    assert trader.last_time == trader.history["BTC/USDT"].time[-1]
    assert len(trader.history["BTC/USDT"]) > 400          # it carried on after the outage


def test_hedging_on_spot_stops_start_up(tmp_path):
    path = _config(tmp_path, "spot")
    path.write_text(path.read_text().replace('portfolio_watchers = ["protections"]',
                                             'portfolio_watchers = ["protections", "hedging"]'))
    settings, _ = load_live_settings(path)
    with pytest.raises(ConfigError, match="hedging.*needs a futures account"):
        check_live_start(settings, load_plugins(), real_money=True, env={})


def test_the_spot_hedging_error_advises_a_setting_that_takes_effect(tmp_path):
    """The bug: paper refused hedging on spot advising ``[backtest] market = "futures"``, which the
    live loader then overwrote with ``[exchange] market`` (spot by default)."""
    path = tmp_path / "paper.toml"
    path.write_text('[exchange]\nmarket = "spot"\n[pipeline]\nportfolio_watchers = ["hedging"]\n')
    with pytest.raises(ConfigError, match=r'set \[exchange\] market = "futures"') as err:
        build_pipeline(load_live_settings(path)[0], load_plugins())
    assert "[backtest]" not in str(err.value)
    path.write_text(path.read_text().replace('"spot"', '"futures"'))      # follow the advice
    assert build_pipeline(load_live_settings(path)[0], load_plugins()).market == "futures"
    path.write_text('[pipeline]\nportfolio_watchers = ["hedging"]\n')        # or say nothing: futures
    assert build_pipeline(load_live_settings(path)[0], load_plugins()).market == "futures"


def test_live_needs_the_flag_and_keys_from_env(tmp_path):
    settings, _ = load_live_settings(_config(tmp_path, "futures"))
    with pytest.raises(ConfigError, match="i-understand-this-is-real-money"):
        check_live_start(settings, load_plugins(), real_money=False, env={})
    with pytest.raises(ConfigError, match="no API keys"):
        check_live_start(settings, load_plugins(), real_money=True, env={})
    creds = check_live_start(settings, load_plugins(), real_money=True,
                             env={"MLCOORD_API_KEY": "k" * 20, "MLCOORD_API_SECRET": "s" * 20})
    assert "s" * 20 not in repr(creds)
    result = CliRunner().invoke(main, ["live", "--config", str(_config(tmp_path, "futures"))])
    assert result.exit_code == 2 and "i-understand-this-is-real-money" in result.output
    spot = _config(tmp_path, "spot")                # spot live: refused before the exchange is asked anything
    spot.write_text(spot.read_text() + "[backtest]\nleverage = 3\n")
    result = CliRunner(env={"MLCOORD_API_KEY": "k" * 20, "MLCOORD_API_SECRET": "s" * 20}).invoke(
        main, ["live", "--config", str(spot), "--i-understand-this-is-real-money"])
    assert result.exit_code == 2 and "a spot account cannot borrow" in result.output


def test_bad_live_option_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match=r"\$\.live"):
        load_live_settings(_config(tmp_path, extra='unknown_orders = "ignore"'))


@pytest.mark.parametrize("policy", ["cancel", "adopt"])
def test_reconcile_unknown_orders_and_pending(venue_server, tmp_path, policy):
    """An order placed by hand is cancelled or adopted, per policy, on Binance and Bybit."""
    exchange = venue_client(venue_server, "spot")
    store = Store.open(f"sqlite:///{tmp_path / 'r.db'}")
    broker = Broker(exchange, store, "spot", health=ExchangeHealth(RetryPolicy(max_outage=1e9), ManualClock()))
    broker.setup(["BTC/USDT"], leverage=1)
    last = exchange.fetch_ticker("BTC/USDT")["last"]
    manual = exchange.create_order("BTC/USDT", "limit", "buy", 0.001, float(round(last * 0.9)), {"clientOrderId": "manual1"})
    found = reconcile(broker, ["BTC/USDT"], policy)
    if policy == "cancel":
        assert found.cancelled == ("manual1",)
        assert venue_server.state.spot.orders[int(manual["id"])].status == "CANCELED"
    else:
        assert found.adopted == ("manual1",) and store.order("manual1").state == OrderState.OPEN
    assert found.exchange_positions and found.unprotected == ()


def test_supervisor_heartbeat_is_atomic_json(tmp_path):
    sup = Supervisor(LiveOptions(heartbeat=str(tmp_path / "hb" / "beat.json"), kill_switch=str(tmp_path / "k")))
    assert not sup.killed()
    sup.beat(wall_time=1.5, bar_time=7, status="ok")
    assert json.loads((tmp_path / "hb" / "beat.json").read_text())["bar_time_ns"] == 7
    assert [p.name for p in (tmp_path / "hb").iterdir()] == ["beat.json"]
    (tmp_path / "k").write_text("")
    assert sup.killed()
