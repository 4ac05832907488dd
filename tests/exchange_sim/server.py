"""The loopback HTTP server: Binance spot (``/api/v3``) and USD-M futures (``/fapi``) REST routes,
HMAC-SHA256 request signing checked as Binance does, and the fault plan applied per request."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import sys
import threading
import time
import traceback
from collections import Counter
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import parse_qsl, urlsplit

from .dialect import Answer, Dialect
from .faults import KLINE_ENDPOINTS, ORDER_ENDPOINTS, Faults
from .markets import futures_symbol_info, spot_symbol_info
from .state import BinanceError, ExchangeState

API_KEY = "sim-api-key"
SECRET = "sim-secret"
INTERVALS = {"1m": 1, "3m": 3, "5m": 5, "15m": 15, "30m": 30, "1h": 60, "2h": 120, "4h": 240,
             "6h": 360, "8h": 480, "12h": 720, "1d": 1440, "3d": 4320, "1w": 10080}
RATE_LIMITS = [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
               {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100}]


# --- route handlers: (state, params, fill_fraction) -> JSON ------------------------------------
def _klines(futures: bool, mark: bool = False):
    """Klines; ``mark``: the mark-price klines, which Binance sends with a volume of 0."""
    def handler(st: ExchangeState, p: dict, _):
        markets = st.futures_markets if futures else st.spot_markets
        if p.get("symbol") not in markets:
            raise BinanceError(-1121, "Invalid symbol.")
        minutes = INTERVALS.get(p.get("interval", ""))
        if minutes is None or minutes * 60_000 < st.step_ms:
            raise BinanceError(-1120, "Invalid interval.")
        limit = int(p.get("limit") or 500)
        if not 1 <= limit <= (1500 if futures else 1000):
            raise BinanceError(-1130, "Invalid data sent for a parameter.")
        start, end = p.get("startTime"), p.get("endTime")
        rows = st.klines(p["symbol"], minutes * 60_000, int(start) if start else None,
                         int(end) if end else None, limit)
        return [[*r[:5], "0", r[6], "0", *r[8:]] for r in rows] if mark else rows
    return handler


def _tickers(futures: bool):
    def handler(st: ExchangeState, p: dict, _):
        markets = st.futures_markets if futures else st.spot_markets
        if p.get("symbol"):
            if p["symbol"] not in markets:
                raise BinanceError(-1121, "Invalid symbol.")
            return st.ticker(p["symbol"])
        wanted = json.loads(p["symbols"]) if p.get("symbols") else list(markets)
        return [st.ticker(m) for m in wanted if m in markets]
    return handler


def _exchange_info(futures: bool):
    def handler(st: ExchangeState, p: dict, _):
        if futures:
            symbols = [futures_symbol_info(m, st.first_ms) for m in st.futures_markets.values()]
            return {"timezone": "UTC", "serverTime": st.now_ms, "futuresType": "U_MARGINED",
                    "rateLimits": RATE_LIMITS, "exchangeFilters": [],
                    "assets": [{"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-10000"}],
                    "symbols": symbols}
        return {"timezone": "UTC", "serverTime": st.now_ms, "rateLimits": RATE_LIMITS,
                "exchangeFilters": [], "symbols": [spot_symbol_info(m) for m in st.spot_markets.values()]}
    return handler


def _premium_index(st: ExchangeState, p: dict, _):
    def row(m):
        nxt = (st.now_ms // 28_800_000 + 1) * 28_800_000
        price = f"{st.price(m):.8f}"
        return {"symbol": m, "markPrice": price, "indexPrice": price, "estimatedSettlePrice": price,
                "lastFundingRate": f"{st.funding_rate_at(m, nxt):.8f}", "interestRate": "0.00010000",
                "nextFundingTime": nxt, "time": st.now_ms}
    return row(p["symbol"]) if p.get("symbol") else [row(m) for m in st.futures_markets]


def _open_orders(st: ExchangeState, p: dict, _):
    return [st.spot.order_json(o) for o in st.spot.open_orders(p.get("symbol"))]


def _brackets(st: ExchangeState, p: dict, _):
    return [{"symbol": m, "notionalCoef": 1.0, "brackets": [
        {"bracket": 1, "initialLeverage": 125, "notionalCap": 1_000_000_000, "notionalFloor": 0,
         "maintMarginRatio": float(spec.maint_margin_ratio), "cum": 0.0}]}
        for m, spec in st.futures_markets.items() if not p.get("symbol") or p["symbol"] == m]


PUBLIC = {
    ("GET", "/api/v3/ping"): lambda st, p, _: {},
    ("GET", "/api/v3/time"): lambda st, p, _: {"serverTime": st.now_ms},
    ("GET", "/api/v3/exchangeInfo"): _exchange_info(False),
    ("GET", "/api/v3/klines"): _klines(False),
    ("GET", "/api/v3/ticker/24hr"): _tickers(False),
    ("GET", "/fapi/v1/ping"): lambda st, p, _: {},
    ("GET", "/fapi/v1/time"): lambda st, p, _: {"serverTime": st.now_ms},
    ("GET", "/fapi/v1/exchangeInfo"): _exchange_info(True),
    ("GET", "/fapi/v1/klines"): _klines(True),
    ("GET", "/fapi/v1/markPriceKlines"): _klines(True, mark=True),
    ("GET", "/fapi/v1/ticker/24hr"): _tickers(True),
    ("GET", "/fapi/v1/premiumIndex"): _premium_index,
    ("GET", "/fapi/v1/fundingRate"): lambda st, p, _: st.futures.funding_history(p),
}
SIGNED = {
    ("GET", "/api/v3/account"): lambda st, p, _: st.spot.account(),
    ("POST", "/api/v3/order"): lambda st, p, f: st.spot.create(p, f),
    ("GET", "/api/v3/order"): lambda st, p, _: st.spot.get(p),
    ("DELETE", "/api/v3/order"): lambda st, p, _: st.spot.cancel(p),
    ("POST", "/api/v3/order/cancelReplace"): lambda st, p, f: st.spot.cancel_replace(p, f),
    ("GET", "/api/v3/openOrders"): _open_orders,
    ("DELETE", "/api/v3/openOrders"): lambda st, p, _: st.spot.cancel_all(p),
    ("GET", "/api/v3/allOrders"): lambda st, p, _: st.spot.all_orders(p),
    ("GET", "/api/v3/myTrades"): lambda st, p, _: st.spot.my_trades(p),
    ("GET", "/fapi/v2/account"): lambda st, p, _: st.futures.account_json(),
    ("GET", "/fapi/v3/account"): lambda st, p, _: st.futures.account_json(),
    ("GET", "/fapi/v2/balance"): lambda st, p, _: st.futures.balance_json(),
    ("GET", "/fapi/v3/balance"): lambda st, p, _: st.futures.balance_json(),
    ("GET", "/fapi/v2/positionRisk"): lambda st, p, _: st.futures.position_rows(False, p.get("symbol"), v2=True),
    ("GET", "/fapi/v3/positionRisk"): lambda st, p, _: st.futures.position_rows(True, p.get("symbol")),
    ("GET", "/fapi/v1/leverageBracket"): _brackets,
    ("POST", "/fapi/v1/leverage"): lambda st, p, _: st.futures.set_leverage(p),
    ("POST", "/fapi/v1/marginType"): lambda st, p, _: st.futures.set_margin_type(p),
    ("POST", "/fapi/v1/positionSide/dual"): lambda st, p, _: st.futures.set_dual(p),
    ("GET", "/fapi/v1/positionSide/dual"): lambda st, p, _: {"dualSidePosition": st.futures.dual},
    ("POST", "/fapi/v1/order"): lambda st, p, f: st.futures.create(p, f),
    ("GET", "/fapi/v1/order"): lambda st, p, _: st.futures.get(p),
    ("DELETE", "/fapi/v1/order"): lambda st, p, _: st.futures.cancel(p),
    ("GET", "/fapi/v1/openOrders"): lambda st, p, _: st.futures.listing(p, algo=False, open_only=True),
    ("DELETE", "/fapi/v1/allOpenOrders"): lambda st, p, _: st.futures.cancel_all(p),
    ("GET", "/fapi/v1/allOrders"): lambda st, p, _: st.futures.listing(p, algo=False, open_only=False),
    ("GET", "/fapi/v1/userTrades"): lambda st, p, _: st.futures.user_trades(p),
    ("GET", "/fapi/v1/income"): lambda st, p, _: st.futures.income_history(p),
    ("POST", "/fapi/v1/algoOrder"): lambda st, p, f: st.futures.create_algo(p, f),
    ("GET", "/fapi/v1/algoOrder"): lambda st, p, _: st.futures.get_algo(p),
    ("DELETE", "/fapi/v1/algoOrder"): lambda st, p, _: st.futures.cancel_algo(p),
    ("GET", "/fapi/v1/openAlgoOrders"): lambda st, p, _: st.futures.listing(p, algo=True, open_only=True),
    ("GET", "/fapi/v1/allAlgoOrders"): lambda st, p, _: st.futures.listing(p, algo=True, open_only=False),
}


def _binance_auth(server, headers, method, raw_query, raw_body, params) -> None:
    server.authenticate(headers.get("X-MBX-APIKEY"), raw_query, raw_body, params)


def _binance_error(err: BinanceError) -> Answer:
    return Answer(err.status, err.body())


BINANCE = Dialect(
    name="binance", public=PUBLIC, signed=SIGNED, order_endpoints=ORDER_ENDPOINTS,
    kline_endpoints=KLINE_ENDPOINTS, key_header="X-MBX-APIKEY", authenticate=_binance_auth,
    parse_body=lambda raw: dict(parse_qsl(raw, keep_blank_values=True)), error=_binance_error,
    ok=lambda result, now_ms: result,
    rate_limited=lambda retry, now_ms: Answer(429, {
        "code": -1003, "msg": "Too many requests; current limit of IP(127.0.0.1) is 6000 requests per minute. "
                              "Please use the websocket for live updates to avoid bans."}, {"Retry-After": str(retry)}),
    lost=lambda mode: Answer(500, {"code": -1000, "msg": "An unknown error occurred while processing the request."})
    if mode == "500" else Answer(503, {"code": -1007, "msg": "Timeout waiting for response from backend server. "
                                       "Send status unknown; execution status unknown."}),
    usage_headers=lambda now_ms: {"X-MBX-USED-WEIGHT-1M": "1"},
    reject=(-2010, "New order rejected."),
    auth_error=(-2015, "Invalid API-key, IP, or permissions for action", 401),
)


class HeldRequest:
    """A request the server holds unanswered until :meth:`release` (see
    :meth:`ExchangeServer.hold_request`): while it waits, the test kills the client at an exact,
    repeatable point of its conversation with the exchange, whatever the machine's load."""

    def __init__(self, nth: int, after_advances: int, processed: bool, path: str | None = None,
                 method: str | None = None, when: Callable[[], bool] | None = None) -> None:
        if nth < 1 or after_advances < 0:
            raise ValueError(f"nth must be >= 1 and after_advances >= 0, got {nth} and {after_advances}")
        self.nth, self.after_advances, self.processed = nth, after_advances, processed
        self.path, self.method = path, method     # count only these requests (None: any)
        self.when = when                          # ... and only while this holds (None: always)
        self.advances = self.seen = 0
        self.request: tuple[str, str] | None = None   # (method, path) of the held request
        self.reached = threading.Event()
        self.released = threading.Event()

    def count(self, method: str, path: str) -> bool:
        """Count one request (under the server's lock); True if it is the one to hold."""
        if self.request is not None:
            return False
        if self.advances < self.after_advances:
            self.advances += path == "/__control/advance"
            return False
        if (self.path is not None and path != self.path) or (self.method is not None and method != self.method):
            return False
        if self.when is not None and not self.when():
            return False
        self.seen += 1
        if self.seen == self.nth:
            self.request = (method, path)
            return True
        return False

    def hold(self) -> None:
        self.reached.set()
        self.released.wait(120)   # bounded: a test that forgot to release does not hang the server

    def release(self) -> None:
        self.released.set()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms stalls
    server: _HTTPServer

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def _handle(self, method: str) -> None:
        ex = self.server.exchange
        d = ex.dialect
        url = urlsplit(self.path)
        path, raw_query = url.path, url.query
        raw_body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        params = dict(parse_qsl(raw_query, keep_blank_values=True))
        params.update(d.parse_body(raw_body))
        ex.calls[(method, path)] += 1
        self._held = ex.held_request(method, path)
        if self._held is not None and not self._held.processed:   # never reaches the exchange
            return self._drop()
        if path.startswith("/__control/"):
            return self._control(ex, method, path, params)
        fault = ex.faults.pick(method, path, ("timeout", "rate_limit", "server_error"))
        if fault is not None:
            return self._before_fault(fault)
        route = d.signed.get((method, path)) or d.public.get((method, path))
        if route is None:
            return self._send(404, {"code": -5000, "msg": f"Path {path}, Method {method} is invalid"})
        try:
            if (method, path) in d.signed:
                refused = ex.faults.pick(method, path, ("auth_error",))
                if refused is not None:
                    code, msg, status = d.auth_error
                    p = refused.params
                    echo = f" (key {self.headers.get(d.key_header)})" if p.get("echo_key") else ""
                    raise BinanceError(p.get("code", code), f"{p.get('msg', msg)}{echo}.", p.get("status", status))
                d.authenticate(ex, self.headers, method, raw_query, raw_body, params,
                               **({"path": path} if d.signs_path else {}))
            creating = method == "POST" and path in d.order_endpoints
            fraction = None
            if creating:
                reject = ex.faults.pick(method, path, ("reject",))
                if reject is not None:
                    raise BinanceError(reject.params.get("code", d.reject[0]), reject.params.get("msg", d.reject[1]))
                partial = ex.faults.pick(method, path, ("partial_fill",))
                if partial is not None:
                    fraction = Decimal(str(partial.params.get("fraction", 0.5)))
            with ex.state.lock:
                try:
                    body = d.ok(route(ex.state, params, fraction), ex.state.now_ms)
                finally:
                    if (method, path) in d.signed:
                        ex.state.coverage.observe(f"{method} {path}")
            spoil = ex.faults.pick(method, path, ("bad_klines",)) if method == "GET" else None
            if spoil is not None:
                body = ex.faults.spoil_klines(spoil, body)
            lost = ex.faults.pick(method, path, ("lost_response",)) if creating else None
        except BinanceError as err:
            answer = d.error(err)
            return self._send(answer.status, answer.body, answer.headers)
        except Exception as err:  # a simulator bug: answer like the exchange, keep it for the test
            ex.errors.append(f"{method} {path}: {traceback.format_exc()}")
            answer = d.error(BinanceError(-1000, f"internal simulator error: {err!r}", 500))
            return self._send(500, answer.body)
        if lost is not None:
            return self._lost(lost, body)
        self._send(200, body)

    def _before_fault(self, fault) -> None:
        if fault.kind == "timeout":
            time.sleep(fault.params.get("delay", 1.0))
            return self._drop()
        ex = self.server.exchange
        if fault.kind == "rate_limit":
            answer = ex.dialect.rate_limited(int(fault.params.get("retry_after", 1)), ex.state.now_ms)
            return self._send(answer.status, answer.body, answer.headers)
        status = int(fault.params.get("status", 503))
        self._send(status, f"<html><body><h1>{status} Service Unavailable</h1></body></html>",
                   content_type="text/html")

    def _lost(self, fault, body) -> None:
        mode = fault.params.get("mode", "drop")
        if mode == "drop":
            return self._drop()
        if mode in ("500", "unknown"):
            answer = self.server.exchange.dialect.lost(mode)
            return self._send(answer.status, answer.body, answer.headers)
        time.sleep(fault.params.get("delay", 1.0))
        self._send(200, body)

    def _control(self, ex, method: str, path: str, params: dict) -> None:
        if path == "/__control/advance" and method == "POST":
            return self._send(200, {"now": ex.advance(int(params.get("bars", 1)))})
        if path == "/__control/time":
            return self._send(200, {"now": ex.state.now_ms})
        self._send(404, {"code": -5000, "msg": "unknown control path"})

    def _hold(self) -> bool:
        """Hold this request's answer if it is the held one; True if it was (then it is dropped)."""
        held, self._held = getattr(self, "_held", None), None
        if held is None:
            return False
        held.hold()
        return True

    def _drop(self) -> None:
        self._hold()
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _send(self, status: int, body, headers: dict | None = None,
              content_type: str = "application/json;charset=UTF-8") -> None:
        if self._hold():
            return self._drop()
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
        ex = self.server.exchange
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for key, value in {**ex.dialect.usage_headers(ex.state.now_ms), **(headers or {})}.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout fault)
            self.close_connection = True


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    exchange: ExchangeServer

    def handle_error(self, request, client_address) -> None:
        """A client that went away mid-connection (a bot killed with SIGKILL resets its keep-alive
        socket) is a disconnect, not a simulator error: no traceback on stderr for it."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    def shutdown_request(self, request) -> None:
        """A connection's handler is done (the client closed, or was killed)."""
        super().shutdown_request(request)
        with self.exchange.connections:
            self.exchange.disconnects += 1
            self.exchange.connections.notify_all()


class ExchangeServer:
    """A Binance look-alike on ``127.0.0.1:<ephemeral port>``; see the package docstring."""

    def __init__(self, state: ExchangeState | None = None, *, api_key: str = API_KEY,
                 secret: str = SECRET, seed: int = 0, dialect: Dialect | str = "binance",
                 **state_options) -> None:
        self.dialect = _dialect(dialect)
        self.state = state or ExchangeState(**state_options)
        self.faults = Faults(seed, self.dialect.order_endpoints, self.dialect.kline_endpoints)
        self.api_key, self.secret = api_key, secret
        self.calls: Counter = Counter()
        self.errors: list[str] = []  # tracebacks of simulator bugs (answered as HTTP 500)
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.connections = threading.Condition()
        self.disconnects = 0  # connections whose handler has finished
        self._held: HeldRequest | None = None
        self._held_lock = threading.Lock()

    def start(self) -> ExchangeServer:
        self._httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.exchange = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="exchange-sim",
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._held is not None:
            self._held.release()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> ExchangeServer:
        return self.start() if self._httpd is None else self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def now_ms(self) -> int:
        return self.state.now_ms

    def hold_request(self, nth: int, *, after_advances: int = 0, processed: bool = False, path: str | None = None,
                     method: str | None = None, when: Callable[[], bool] | None = None) -> HeldRequest:
        """Hold the ``nth`` request (1-based, any route, control routes included; ``path`` and
        ``method``: only those count; ``when``: only those arriving while it returns True, e.g.
        while a position is open) that arrives after
        ``after_advances`` ``/__control/advance`` requests from now: unprocessed (``processed=False``:
        the exchange never sees it) or processed with its answer held (the exchange acted, the
        client never learns it). Its ``reached`` event is set while it is held; the connection is
        dropped unanswered once :meth:`HeldRequest.release` is called. One hold at a time: a new
        one replaces (and releases) the previous one."""
        held = HeldRequest(nth, after_advances, processed, path, method, when)
        with self._held_lock:
            previous, self._held = self._held, held
        if previous is not None:
            previous.release()
        return held

    def held_request(self, method: str, path: str) -> HeldRequest | None:
        """Count a request against the armed hold; the hold if this request is the one."""
        with self._held_lock:
            held = self._held
            return held if held is not None and held.count(method, path) else None

    def wait_for_disconnects(self, n: int, timeout: float) -> bool:
        """Block until ``n`` connections have been closed and handled (False after ``timeout`` s)."""
        with self.connections:
            return self.connections.wait_for(lambda: self.disconnects >= n, timeout)

    def advance(self, bars: int = 1) -> int:
        """Replay ``bars`` bars of the market (fills, triggers, liquidations, funding)."""
        return self.state.advance(bars)

    def authenticate(self, key: str | None, raw_query: str, raw_body: str, params: dict) -> None:
        if key != self.api_key:
            raise BinanceError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
        signature = params.get("signature")
        if not signature:
            raise BinanceError(-1102, "Mandatory parameter 'signature' was not sent, was empty/null, "
                                      "or malformed.")
        payload = _strip_signature(raw_query) + _strip_signature(raw_body)
        expected = hmac.new(self.secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature):
            raise BinanceError(-1022, "Signature for this request is not valid.")
        if self.state.options.check_timestamp:
            stamp = int(params.get("timestamp") or 0)
            window = int(params.get("recvWindow") or 5000)
            now = int(time.time() * 1000)
            if not now - window <= stamp <= now + 1000:
                raise BinanceError(-1021, "Timestamp for this request is outside of the recvWindow.")


def _strip_signature(raw: str) -> str:
    parts = [kv for kv in raw.split("&") if kv and not kv.startswith("signature=")]
    return "&".join(parts)


def _dialect(dialect: Dialect | str) -> Dialect:
    """A dialect by name (``binance``, ``bybit``) or as given."""
    if isinstance(dialect, Dialect):
        return dialect
    if dialect == "binance":
        return BINANCE
    if dialect == "bybit":
        from .bybit import BYBIT

        return BYBIT
    if dialect == "okx":
        from .okx import OKX

        return OKX
    raise ValueError(f"unknown exchange dialect {dialect!r}; expected binance, bybit or okx")
