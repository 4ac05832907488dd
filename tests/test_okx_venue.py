"""OKX as a venue: keys need a passphrase (said at start); swap sizes are contracts (the broker sends
contracts and books coins, from ccxt's ``contractSize``: data, not a branch on the exchange's name);
stops are algo orders identified by ``algoClOrdId`` whose fills sit on the regular order they place;
long/short position mode and the margin mode are set and verified at start; what OKX (as emulated)
cannot do, exchange-side trailing stops, is refused at start naming the fallback."""

from __future__ import annotations

import pytest

from exchange_sim import okx_server, venue_client  # noqa: F401 (fixture)
from live_helpers import BarClock, live_config
from mlcoord.config import ExchangeConfig
from mlcoord.errors import ConfigError
from mlcoord.live.broker import Broker, BrokerError
from mlcoord.live.exchange import Credentials, create_exchange
from mlcoord.live.records import OrderState
from mlcoord.live.retry import ExchangeHealth, ManualClock, RetryPolicy
from mlcoord.live.runner import load_live_settings
from mlcoord.live.session import run_live
from mlcoord.live.startup import open_exchange_orders
from mlcoord.live.store import Store
from mlcoord.model import Order, OrderKind, Side
from mlcoord.model.instruments import contract_size, instrument_from_ccxt
from mlcoord.registry import load_plugins

T0 = 1_600_000_000_000_000_000


def _broker(server, tmp_path, margin_mode="isolated"):
    exchange = venue_client(server, "futures", timeout_ms=250)
    store = Store.open(f"sqlite:///{tmp_path / 'store'}.db")
    broker = Broker(exchange, store, "futures", health=ExchangeHealth(RetryPolicy(max_attempts=8), ManualClock()))
    broker.setup(["BTC/USDT", "ETH/USDT"], leverage=3, margin_mode=margin_mode)
    return broker, store


def _entry(broker, qty, side=Side.LONG, tag="entry:1/1"):
    return Order(broker.client_id("BTC/USDT", T0, tag), "BTC/USDT", side, OrderKind.MARKET, qty, None, T0, tag=tag)


def test_okx_keys_without_a_passphrase_are_refused_at_start():
    config = ExchangeConfig(id="okx", market="futures")
    with pytest.raises(ConfigError, match="okx needs an API passphrase .*MLCOORD_API_PASSWORD"):
        create_exchange(config, Credentials("key", "secret", None, "test"))
    exchange = create_exchange(config, Credentials("key", "secret", "phrase", "test"))
    assert exchange.password == "phrase" and exchange.options["defaultType"] == "swap"
    create_exchange(ExchangeConfig(id="bybit"), Credentials("key", "secret", None, "test"))   # none needed there


def test_contract_size_is_read_from_the_market_and_checked():
    assert contract_size({"contract": True, "contractSize": 0.01}) == 0.01
    assert contract_size({"contract": False, "contractSize": None}) == 1.0      # spot
    assert contract_size({"contract": True, "contractSize": 1}) == 1.0          # Binance, Bybit linear
    with pytest.raises(ValueError, match=r"market 'X/Y:Y': contractSize must be > 0, got 0"):
        contract_size({"symbol": "X/Y:Y", "contract": True, "contractSize": 0})
    rules = instrument_from_ccxt("BTC/USDT", {"contract": True, "contractSize": 0.01,
                                              "precision": {"amount": 0.01, "price": 0.1},
                                              "limits": {"amount": {"min": 0.01}}})
    assert (rules.lot_size, rules.min_quantity, rules.tick_size) == (0.0001, 0.0001, 0.1)     # in BTC


def test_an_order_for_005_btc_sends_5_contracts_and_books_005_btc(okx_server, tmp_path):
    broker, store = _broker(okx_server, tmp_path)
    sent = []
    create = broker.exchange.create_order
    broker.exchange.create_order = lambda *a, **k: sent.append(a[3]) or create(*a, **k)
    assert broker.amount("BTC/USDT", 0.05) == 0.05 and broker.amount("BTC/USDT", 0.012345) == 0.0123
    assert broker.amount("BTC/USDT", 0.00005) == 0.0          # below OKX's minimum of 0.01 contracts
    record = broker.place(_entry(broker, 0.05))
    assert sent == [5.0]                                       # contracts of 0.01 BTC
    assert record.state == OrderState.FILLED and record.filled_quantity == 0.05
    [on_server] = okx_server.state.futures.orders.values()
    assert float(on_server.qty) == 0.05 and float(on_server.executed) == 0.05
    assert [f.fill.quantity for f in store.fills(record.client_order_id)] == [0.05]
    assert [(p.quantity, p.side) for p in store.positions()] == [(0.05, Side.LONG)]
    fee = store.fills(record.client_order_id)[0].fill.fee        # taker 0.05 % of 0.05 BTC's notional
    assert fee == pytest.approx(0.0005 * 0.05 * record.average_price, rel=1e-6)
    [row] = [r for r in broker.fetch_positions(["BTC/USDT:USDT"]) if r["contracts"]]
    assert row["contracts"] == 0.05                             # positions in coins too


def test_stop_is_an_algo_order_known_by_its_client_id_and_its_fill_is_booked_once(okx_server, tmp_path):
    broker, store = _broker(okx_server, tmp_path)
    last = broker.exchange.fetch_ticker("BTC/USDT:USDT")["last"]
    assert broker.place(_entry(broker, 0.05, Side.SHORT)).state == OrderState.FILLED
    stop = Order(broker.client_id("BTC/USDT", T0, "stop"), "BTC/USDT", Side.SHORT, OrderKind.STOP, 0.05,
                 broker.price("BTC/USDT", last * 1.02), T0, reduce_only=True, tag="stop")
    tp = Order(broker.client_id("BTC/USDT", T0, "take_profit"), "BTC/USDT", Side.SHORT, OrderKind.STOP, 0.05,
               broker.price("BTC/USDT", last * 0.5), T0, reduce_only=True, tag="take_profit")
    assert broker.place(stop).state == OrderState.OPEN and broker.place(tp).state == OrderState.OPEN
    assert {a.client_id for a in okx_server.state.futures.algos.values()} == {stop.id, tp.id}
    listed = open_exchange_orders(broker, "BTC/USDT")        # what reconciliation compares with the store
    assert sorted((o["clientOrderId"], o["amount"]) for o in listed) == sorted([(stop.id, 0.05), (tp.id, 0.05)])
    for _ in range(200):                                       # replay bars until the stop triggers
        okx_server.advance(1)
        if broker.refresh(store.order(stop.id)).state.terminal:
            break
    done = store.order(stop.id)
    assert done.state == OrderState.FILLED and done.filled_quantity == 0.05
    broker.refresh(done)                                       # asked again: nothing booked twice
    assert [f.fill.quantity for f in store.fills(stop.id)] == [0.05]
    assert store.positions() == []
    assert broker.cancel(store.order(tp.id)).state == OrderState.CANCELLED
    assert okx_server.state.futures.algos and not any(a.status == "NEW" for a in okx_server.state.futures.algos.values())


def test_position_mode_and_isolated_leverage_per_side_are_set_and_verified(okx_server, tmp_path):
    fut = okx_server.state.futures
    assert not fut.dual                                        # the emulated account starts in net mode
    broker, _ = _broker(okx_server, tmp_path)
    assert fut.dual and broker.margin_mode == "isolated"
    assert okx_server.calls[("POST", "/api/v5/account/set-leverage")] == 4       # 2 symbols x long, short
    assert fut.lev("BTCUSDT") == 3
    broker.place(_entry(broker, 0.05))
    assert fut.margin_type["BTCUSDT"] == "ISOLATED"             # the order's tdMode
    broker.exchange.set_position_mode = lambda hedged: None    # an exchange that ignores the switch
    broker.exchange.fetch_position_mode = lambda: {"hedged": False, "info": {"posMode": "net_mode"}}
    with pytest.raises(BrokerError, match=r"okx: hedge mode was set but the account reports position mode "
                                          r"'net_mode'; switch it to long/short"):
        broker.verify_hedge_mode(["BTC/USDT"])


def test_exchange_trailing_on_okx_is_refused_at_start(okx_server, tmp_path):
    settings, options = load_live_settings(live_config(tmp_path, extra='trailing = "exchange"'))
    with pytest.raises(BrokerError, match=r'okx has no exchange-side trailing .*trailing = "bot"'):
        run_live(settings, options, venue_client(okx_server, "futures"), load_plugins(), clock=BarClock(okx_server),
                 health_clock=ManualClock(), cycles=1)
    assert okx_server.calls[("POST", "/api/v5/trade/order")] == 0
    assert okx_server.calls[("POST", "/api/v5/account/set-position-mode")] == 0
