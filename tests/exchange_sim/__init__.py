"""A loopback Binance (spot and USD-M futures) for tests: no exchange is reachable, so the
exchange comes to the test.

It speaks Binance's REST dialect (``/api/v3``, ``/fapi/v1|v2|v3``) on ``127.0.0.1`` with an
ephemeral port and is driven by REAL ``ccxt.binance`` / ``ccxt.binanceusdm`` objects. It behaves
like an exchange rather than a mock: HMAC signatures and recvWindow are checked, balances are kept
(spot free/locked; futures wallet, margin, hedge-mode positions with entry, unrealised PnL and
liquidation price), orders are checked against tick size, step size, minimum notional, balance or
margin and client-id uniqueness, and resting orders fill only when replayed real candles (the
bundled BTC/USDT and ETH/USDT 1h bars) cross their prices. Faults (timeouts, 429, 5xx, rejections,
partial fills, responses lost after the order was accepted) are injected on request.

Pointing an mlcoord config at it: ``ccxt_table(server, "spot")`` is the ``[exchange.ccxt]`` table
(``urls`` and the options the server needs), as written in a config file.

Usage::

    from exchange_sim import exchange_server, futures_client, spot_client  # fixture + helpers

    def test_something(exchange_server):
        ex = spot_client(exchange_server)          # ccxt.binance, timeout 500 ms, keys set
        ex.load_markets()
        order = ex.create_order("BTC/USDT", "limit", "buy", 0.01, 9000.0,
                                {"clientOrderId": "plan-1-entry"})
        exchange_server.advance(24)                # replay 24 1h bars: fills, stops, funding
        exchange_server.faults.lose_response(mode="drop")   # next order: created, answer lost
        exchange_server.state.spot.total("BTC")    # server-side truth (Decimal)

Market clock: it stands at the open of the current bar; that open is the last price (MARKET
orders fill there) and klines end with that bar as just opened. ``server.advance(n)`` plays each
bar's range against resting orders (limit: fills at its price, or the open if the bar gaps through;
stops trigger at their price or the gapped open), then moves on; every 8h UTC boundary charges
funding (``funding_rate``, default 0.0001 per 8h, or ``callable(symbol, time_ms)``). Also
``POST /__control/advance?bars=n`` for a server in another process.

Construction: ``ExchangeServer(start=1000, spot_balances={"USDT": 10000}, futures_wallet=10000,
funding_rate=0.0001, options=Options(...), seed=0)``; ``start`` is a bar index, a timestamp in ms
or an ISO date. ``Options`` holds the fees (spot 0.1%/0.1%, futures 0.02%/0.05%), default leverage
(20), the client-id rule (``duplicate_client_ids="open"``: unique among open orders, which is what
Binance documents, so a filled order's id may be reused; ``"all"``: unique forever), a per-bar
volume cap for resting orders (``max_volume_fraction``) and the recvWindow check.

Faults (``server.faults``, see :mod:`exchange_sim.faults`): ``timeout(delay)``,
``rate_limit(retry_after)``, ``server_error(status)``, ``reject(code, msg)``,
``partial_fill(fraction)``, ``auth_error(echo_key=True)``, ``lose_response(mode="drop"|"500"|"unknown"|"timeout")``; each takes
``endpoint=``, ``method=``, ``at_call=`` (N-th matching request), ``probability=`` (seeded) and
``times=``. ``server.faults.log`` lists what fired; ``server.calls`` counts requests per route.

Killing a client at an exact point: ``held = server.hold_request(nth, after_advances=a,
processed=False|True, path=None, method=None, when=None)`` holds the ``nth`` request (of ``path``
and ``method`` if given, made while ``when()`` is true if given: e.g. while a position is open)
after ``a`` clock advances (before or after the exchange processed it); kill the client once
``held.reached`` is set, then ``held.release()``.

Spot cancel-replace (``POST /api/v3/order/cancelReplace``, ccxt's ``edit_order`` on spot) follows
Binance's documented semantics (``cancelReplaceMode``, ``cancelRestrictions``, -2021/-2022 with
``data``); a market allows it when its ``MarketSpec.cancel_replace_allowed`` (default True, as
Binance's BTCUSDT and ETHUSDT; exchangeInfo ``cancelReplaceAllowed``). ``server.state.coverage``
(:mod:`exchange_sim.coverage`) records every time a held position had no resting stop: the
stop-less window a bot leaves, from the exchange's side.

ccxt mapping notes (what a bot sees): 429 -> ``DDoSProtection``; 5xx HTML -> ``ExchangeNotAvailable``;
timeout -> ``RequestTimeout``; dropped connection -> ``NetworkError``; -1022 -> ``AuthenticationError``;
spot -2010 insufficient balance -> ``InsufficientFunds``; futures -2019 -> ``InsufficientFunds``;
PRICE_FILTER/LOT_SIZE -> ``InvalidOrder``; spot NOTIONAL (-1013) -> ``BadRequest`` and futures
tick (-4014) / step (-1111) -> ``BadRequest`` (ccxt's own mapping for Binance); futures notional
(-4164) and duplicate client id (-2010 spot, -4116 futures) -> ``InvalidOrder``. Futures stop,
take-profit and trailing orders go through Binance's algo-order API (``/fapi/v1/algoOrder``): fetch
or cancel them with ``params={"trigger": True}``.
"""

from .bybit import BYBIT_LINEAR_MARKETS, BYBIT_SPOT_MARKETS, bybit_options
from .clients import (bybit_client, okx_client, venue_client, ccxt_table, futures_client, missing_fields, point_at,
                      sim_urls, spot_client)
from .faults import Faults, FaultRule
from .fixtures import (bybit_exchange_server, bybit_server, exchange_server, okx_exchange_server, okx_server,
                       venue_exchange_server, venue_server)
from .okx import OKX_SPOT_MARKETS, OKX_SWAP_MARKETS, PASSPHRASE, okx_options
from .markets import FUTURES_MARKETS, SPOT_MARKETS, MarketSpec
from .server import API_KEY, SECRET, ExchangeServer, HeldRequest
from .state import BinanceError, ExchangeState, Options

__all__ = ["API_KEY", "SECRET", "missing_fields", "OKX_SPOT_MARKETS", "OKX_SWAP_MARKETS", "PASSPHRASE", "okx_client", "okx_options",
           "okx_exchange_server", "okx_server", "venue_exchange_server", "BYBIT_LINEAR_MARKETS", "BYBIT_SPOT_MARKETS", "bybit_client", "bybit_options",
           "bybit_exchange_server", "bybit_server", "venue_client", "venue_server", "FUTURES_MARKETS", "SPOT_MARKETS", "BinanceError", "ExchangeServer",
           "ExchangeState", "FaultRule", "Faults", "HeldRequest", "MarketSpec", "Options", "exchange_server",
           "ccxt_table", "futures_client", "point_at", "sim_urls", "spot_client"]
