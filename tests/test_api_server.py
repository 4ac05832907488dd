"""The bot's API (issue 17), served by the real server (uvicorn on 127.0.0.1, an ephemeral port, in a
thread) against a paper bot on the loopback exchange simulator.

One paper session runs for the module (``bot``): the security checks are made against it while
it trades, a forced exit is sent through the API once it holds a position, a websocket client
reads the event stream throughout; every response body and every log line (structlog and stdlib,
uvicorn's included) is kept and searched for secrets at the end."""

from __future__ import annotations

import base64
import json
import logging
import subprocess
import sys
import threading

import httpx
import pytest
from structlog.testing import capture_logs

from exchange_sim import spot_client
from exchange_sim.server import ExchangeServer
from live_helpers import BarClock, live_config
from mlcoord.config import Settings, structure
from mlcoord.errors import ConfigError
from mlcoord.live.controls import FORCE_EXIT_REASON, ControlChannel
from mlcoord.live.runner import load_live_settings, run_paper
from mlcoord.live.store import Store
from mlcoord.registry import load_plugins

pytest.importorskip("fastapi")     # the api extra ([test] CI installs it: make test)

from fastapi.routing import APIRoute, APIWebSocketRoute  # noqa: E402

from mlcoord.server.accounts import Accounts  # noqa: E402
from mlcoord.server.app import PUBLIC, STATIC  # noqa: E402
from mlcoord.server.events import EventHub  # noqa: E402
from mlcoord.server.run import check_listen, start_api  # noqa: E402

PASSWORDS = {"vera": "viewer-pass-0001", "tom": "trader-pass-0002", "ada": "admin-pass-0003"}
ROLES = {"vera": "viewer", "tom": "trader", "ada": "admin"}
RANK = {"viewer": 0, "trader": 1, "admin": 2}


class WallClock:
    """The server's wall clock (token lifetimes): real time, moved on by a test."""

    def __init__(self):
        import time

        self.offset, self._time = 0.0, time.time

    def __call__(self) -> float:
        return self._time() + self.offset


class Monotonic:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record):
        if record.name.startswith("websockets.client"):     # the test's own client, debug-logging its request
            return
        self.lines.append(f"{record.name}: " + record.getMessage() + (self.format(record) if record.exc_info else ""))


class Bot:
    """What the module's session left: the server, its clients' answers, the captured logs."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.bodies: list[tuple[str, str]] = []     # (path, body) of every answer
        self.tokens: list[str] = []
        self.events: list[dict] = []
        self.forced: dict = {}
        self.checks: dict = {}
        self.locks: list = []       # the lock scenario's steps (see _lock_steps)
        self.reloads: list = []     # the reload scenario's (see _reload_steps)
        self.entered: list = []     # the force-enter scenario's (see _force_enter_steps)

    def client(self) -> httpx.Client:
        def keep(response):
            response.read()
            self.bodies.append((response.request.url.path, response.text))
        return httpx.Client(base_url=self.server.url, event_hooks={"response": [keep]}, timeout=30)

    def login(self, name: str) -> dict:
        r = self.http.post("/api/v1/auth/login", json={"username": name, "password": PASSWORDS[name]})
        assert r.status_code == 200, r.text
        body = r.json()
        self.tokens += [body["access_token"], body["refresh_token"]]
        return body

    def auth(self, name: str) -> dict:
        return {"Authorization": f"Bearer {self.login(name)['access_token']}"}


def _ws_reader(bot: Bot, url: str, done: threading.Event) -> None:
    from websockets.sync.client import connect

    with connect(url) as ws:
        done.set()
        try:
            while True:
                bot.events.append(json.loads(ws.recv(timeout=60)))
        except Exception:
            return


@pytest.fixture(scope="module")
def bot(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("api")
    b = Bot(tmp)
    handler = _Lines()
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.DEBUG)
    try:
        with ExchangeServer() as exchange, capture_logs() as logs:
            settings, options = load_live_settings(live_config(tmp, "spot", leverage=None, history_bars=300,
                                                               poll_seconds=60, extra='[api]\nlisten = "127.0.0.1:0"'))
            store = Store.open(options.store)
            accounts = Accounts(store)
            for name, password in PASSWORDS.items():
                accounts.add_user(name, password, ROLES[name])
            b.wall, b.monotonic = WallClock(), Monotonic()
            channel = ControlChannel()
            b.settings, b.next_settings = settings, None      # reload reads b.next_settings (None: unchanged)
            b.server = start_api(settings, options, store, channel, clock=b.wall, monotonic=b.monotonic,
                                 load_config=lambda: b.next_settings or b.settings)
            b.http = b.client()
            b.app = b.server.app
            ws_done = threading.Event()

            def on_cycle(trader):
                if not ws_done.is_set():
                    r = b.http.post("/api/v1/auth/ws-token", headers=b.auth("vera"))
                    b.tokens.append(r.json()["ws_token"])
                    url = b.server.url.replace("http", "ws") + "/api/v1/ws?token=" + r.json()["ws_token"]
                    threading.Thread(target=_ws_reader, args=(b, url, ws_done), daemon=True).start()
                    assert ws_done.wait(10)
                if not b.checks:
                    b.checks = _security_checks(b)
                _lock_steps(b, trader)
                _reload_steps(b, trader)
                _force_enter_steps(b, trader)
                positions = [p for p in trader.portfolio.positions if not p.startswith("~")]
                if positions and not b.forced:
                    symbol = positions[0]
                    r = b.http.post("/api/v1/force-exit", headers=b.auth("tom"), json={"symbol": symbol})
                    b.forced = {"symbol": symbol, "answer": r.status_code, "control_id": r.json()["control_id"],
                                "trades_before": len(trader.engine.trades), "bar": trader.last_time}
                elif b.forced and "after" not in b.forced and len(trader.engine.trades) > b.forced["trades_before"]:
                    b.forced["after"] = [t for t in trader.engine.trades[b.forced["trades_before"]:]]

            b.trader = run_paper(settings, options, spot_client(exchange), load_plugins(), clock=BarClock(exchange),
                                 cycles=120, store=store, channel=channel, on_cycle=on_cycle)
            b.audit = b.http.get("/api/v1/audit", headers=b.auth("ada")).json()["audit"]
            b.trades = b.http.get("/api/v1/trades", headers=b.auth("vera")).json()
            b.metrics = b.http.get("/metrics").text
            b.ml = b.http.get("/api/v1/ml", headers=b.auth("vera")).json()
            b.outcomes = channel.ml.observed
            b.hashes = [h for (h,) in store.engine.connect().exec_driver_sql(
                "SELECT password_hash FROM api_users").all()]
            b.key = accounts.signing_key()
            b.logs, b.lines = logs, handler.lines        # still filling while the module's tests run
            yield b
            b.server.stop()
            store.close()
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def _lock_steps(b: Bot, trader) -> None:
    """Cycle by cycle: plant a lock in the protections guard (through its state, as a restart
    would), read it through ``/locks`` and remove it through the API, read ``/locks`` again."""
    from mlcoord.api import ExposesLocks

    step = len(b.locks)
    if step == 0:
        [guard] = [g.obj for g in trader.engine.loop.pipeline.components.guards if isinstance(g.obj, ExposesLocks)]
        state = guard.state()
        state["locks"]["DOGE/USDT"] = [int(trader.last_time) + 48 * 3_600_000_000_000, "test: planted"]
        guard.load_state(state)
        b.locks.append(None)
    elif step == 1:
        listed = b.http.get("/api/v1/locks", headers=b.auth("vera")).json()
        removed = b.http.delete("/api/v1/locks/DOGE/USDT", headers=b.auth("tom"))
        b.locks.append((listed, removed.json()["control_id"]))
    elif step == 2:
        b.locks.append(b.http.get("/api/v1/locks", headers=b.auth("vera")).json())


def _reload_steps(b: Bot, trader) -> None:
    """Cycle by cycle: reload new options of the exit manager and the protections guard (refused:
    the exit manager cannot take them in place), then of the guard alone (queued), then read the
    guard's options and the audit row the loop's result went to."""
    import attrs

    step, admin, s = len(b.reloads), b.auth("ada"), b.settings
    guard = trader.engine.loop.pipeline.components.entry_guards[0]
    if step == 0:
        guarded = {**s.plugins, "protections": {**s.plugins.get("protections", {}), "max_open_trades": 4}}
        b.next_settings = attrs.evolve(s, plugins={**guarded, "exits": {"atr_stop_multiplier": 3.5}})
        refused = b.http.post("/api/v1/reload", headers=admin)
        b.next_settings = attrs.evolve(s, plugins=guarded)
        queued = b.http.post("/api/v1/reload", headers=admin)
        b.reloads.append((guard.obj.options.max_open_trades, refused.status_code, refused.json(),
                          queued.status_code, queued.json()))
    elif step == 1:
        b.reloads.append((guard.name, guard.obj.options.max_open_trades))
        b.settings, b.next_settings = b.next_settings, None
        b.reloads.append(b.http.post("/api/v1/reload", headers=admin).json())     # now the running config


def _force_enter_steps(b: Bot, trader) -> None:
    """Once the forced exit has closed its position and nothing is held or working: force-enter
    refused while ``allow_force_enter`` is off and for a viewer, queued for the trader once on;
    a cycle later, what the loop did (the audit row, the decision, the position)."""
    import attrs

    step, ctx, sym = len(b.entered), b.server.context, "BTC/USDT"
    if step == 0:
        if "after" not in b.forced or sym in trader.engine.ledger.positions or \
                trader.engine.loop.venue.has_entries(sym):
            return
        body = {"symbol": sym}
        off = b.http.post("/api/v1/force-enter", headers=b.auth("tom"), json=body).status_code
        ctx.api = attrs.evolve(ctx.api, allow_force_enter=True)
        viewer = b.http.post("/api/v1/force-enter", headers=b.auth("vera"), json=body).status_code
        bad = b.http.post("/api/v1/force-enter", headers=b.auth("tom"), json={"symbol": sym, "side": "up"}).status_code
        queued = b.http.post("/api/v1/force-enter", headers=b.auth("tom"), json=body)
        b.entered.append((off, viewer, bad, queued.status_code, queued.json()))
    elif step == 1:
        ctx.api = attrs.evolve(ctx.api, allow_force_enter=False)
        viewer = b.auth("vera")
        b.entered.append((b.http.get("/api/v1/decisions", headers=viewer, params={"symbol": sym}).json(),
                          b.http.get("/api/v1/positions", headers=viewer).json(),
                          {s: p.quantity for s, p in trader.engine.ledger.positions.items()}))


def _routes(app):
    """(method, path with sample parameters, route) for every route of the application."""
    out = []
    for route in app.routes:
        path = route.path.replace("{symbol:path}", "BTC/USDT").replace("{name:path}", "app.js")
        if isinstance(route, APIRoute):
            out += [(m, path, route) for m in sorted(route.methods)]
        elif isinstance(route, APIWebSocketRoute):
            out.append(("WS", path, route))
        else:       # a mount (static files, a sub-application) would escape the checks below
            raise AssertionError(f"route {route.path!r} ({type(route).__name__}) is not enumerable")
    return out


def _role(route) -> str | None:
    roles = [getattr(d.call, "role", None) for d in route.dependant.dependencies]
    return next((r for r in roles if r), None)


def _security_checks(b: Bot) -> dict:
    """Made while the bot trades (the first cycle): every route without credentials, and with the
    viewer's and the trader's."""
    found: dict = {"anonymous": {}, "viewer": {}, "trader": {}}
    viewer, trader = b.auth("vera"), b.auth("tom")
    for method, path, route in _routes(b.app):
        if method == "WS":
            from websockets.exceptions import InvalidStatus
            from websockets.sync.client import connect

            for token in ("", "not-a-token", b.login("vera")["access_token"]):   # an access token is not a ws token
                try:
                    with connect(b.server.url.replace("http", "ws") + path + "?token=" + token):
                        found["anonymous"][(method, path, token[:5])] = 101
                except InvalidStatus as exc:
                    found["anonymous"][(method, path, token[:5])] = exc.response.status_code
            continue
        found["anonymous"][(method, path)] = b.http.request(method, path).status_code
        role = _role(route)
        if role is not None and RANK[role] >= RANK["trader"]:
            found["viewer"][(method, path)] = b.http.request(method, path, headers=viewer, json={}).status_code
        if role == "admin":
            found["trader"][(method, path)] = b.http.request(method, path, headers=trader, json={}).status_code
    return found


def test_every_route_refuses_anonymous_calls_but_the_declared_public_ones(bot):
    anonymous = bot.checks["anonymous"]
    routes = _routes(bot.app)
    assert len(routes) >= 30 and len(anonymous) >= len(routes)
    static = {p.replace("{name:path}", "app.js") for p in STATIC}
    for key, code in anonymous.items():
        method, path = key[:2]
        if path in PUBLIC or path == "/metrics":     # /metrics: public because the server listens on loopback
            assert code != 401, key
        elif path in static:       # the dashboard's own files (HTML, JS, CSS), never data: public by design
            assert method == "GET" and code == 200, key
        elif method == "WS":
            assert code == 403, key                   # the handshake refused: no valid websocket token
        else:
            assert code == 401, key
    # every non-public route declares a role (a route added without one fails here)
    for method, path, route in routes:
        if path not in PUBLIC and path not in static and path != "/metrics" and method != "WS":
            assert _role(route) in RANK, (method, path)


def test_the_viewer_is_refused_on_every_control_route_and_the_trader_on_admin_routes(bot):
    viewer, trader = bot.checks["viewer"], bot.checks["trader"]
    assert {p for _, p in viewer} >= {"/api/v1/force-exit", "/api/v1/pause", "/api/v1/kill", "/api/v1/stop",
                                      "/api/v1/reload", "/api/v1/audit", "/api/v1/locks/BTC/USDT"}
    assert set(viewer.values()) == {403}, viewer
    assert set(trader.values()) == {403} and ("GET", "/api/v1/audit") in trader
    refused = [r for r in bot.audit if r["username"] == "vera"]
    assert not refused       # a refused role never reaches a control (nor the audit log as a control)


def test_a_forced_exit_closes_the_position_through_the_loop_and_is_audited(bot):
    forced = bot.forced
    assert forced and forced["answer"] == 202, forced
    [trade] = [t for t in forced["after"] if t.symbol == forced["symbol"] and not t.hedge]
    assert trade.exit_reason == FORCE_EXIT_REASON == "api:force_exit"
    assert trade.closed_at > forced["bar"]          # filled by the venue on a later bar: the loop closed it
    [row] = [r for r in bot.audit if r["id"] == forced["control_id"]]
    assert (row["username"], row["role"], row["action"], row["address"]) == ("tom", "trader", "force_exit", "127.0.0.1")
    assert row["params"] == {"symbol": forced["symbol"], "fraction": 1.0}
    assert row["result"] == f"intents submitted: close 1 of {forced['symbol']}"
    assert any(t["exit_reason"] == "api:force_exit" for t in bot.trades["trades"])
    kinds = {e["type"] for e in bot.events}
    assert {"cycle", "decision", "fill", "trade_closed", "control"} <= kinds, kinds
    assert any(e["type"] == "trade_closed" and e["exit_reason"] == "api:force_exit" for e in bot.events)


def test_locks_lists_a_guards_own_locks_and_the_api_lifts_them_through_the_loop(bot):
    _, (listed, control_id), after = bot.locks
    assert listed["guard_locks"]["protections"]["DOGE/USDT"]["why"] == "test: planted"
    assert "DOGE/USDT" not in listed["locks"]           # not an API lock
    assert "DOGE/USDT" not in after["guard_locks"].get("protections", {})
    [row] = [r for r in bot.audit if r["id"] == control_id]
    assert (row["username"], row["action"], row["result"]) == ("tom", "lock_remove", "DOGE/USDT unlocked (protections)")


def test_the_websocket_streams_order_events_of_the_paper_session(bot):
    by_type: dict = {}
    for e in bot.events:
        by_type.setdefault(e["type"], []).append(e)
    assert by_type.get("order_placed") and by_type.get("order_filled"), sorted(by_type)
    placed = [e["order_id"] for e in by_type["order_placed"]]
    order = [e["type"] for e in bot.events]
    for e in by_type["order_filled"]:     # placed first, in an earlier (or the same) cycle's events
        assert e["order_id"] in placed and e["average_price"] > 0
        assert bot.events.index(e) > order.index("order_placed")
    fills = {(e["symbol"], e["time"]) for e in by_type["fill"]}
    assert len(by_type["order_filled"]) <= len(fills)


def test_force_enter_places_a_checked_market_plan_through_the_loop_when_allowed(bot):
    (off, viewer, bad, code, queued), (decisions, positions, held) = bot.entered
    assert (off, viewer, bad, code) == (403, 403, 422, 202), queued
    [row] = [r for r in bot.audit if r["id"] == queued["control_id"]]
    assert (row["username"], row["role"], row["action"]) == ("tom", "trader", "force_enter")
    assert row["result"].startswith("entered: BTC/USDT long at market, quantity "), row
    assert any(r["action"] == "force_enter" and r["result"] == "refused: allow_force_enter off" for r in bot.audit)
    forced = [d for d in decisions["decisions"] if d["reasons"] == ["api:force_enter"]]
    assert [d["outcome"] for d in forced] == ["entered"], forced
    d = forced[0]
    assert d["plan"]["legs"][0]["market"] and d["levels"]["stop"] > 0 and d["sizing"]["quantity"] > 0
    [p] = [p for p in positions["positions"] if p["symbol"] == "BTC/USDT" and not p["hedge"]]
    assert p["plan_id"].endswith(":api") and held["BTC/USDT"] == p["quantity"] > 0


def test_expired_tampered_and_misused_tokens_are_refused(bot):
    http = bot.http
    body = bot.login("vera")
    access, refresh = body["access_token"], body["refresh_token"]
    ok = http.get("/api/v1/status", headers={"Authorization": f"Bearer {access}"})
    assert ok.status_code == 200 and ok.json()["running"] is True
    head, claims, signature = access.split(".")
    forged_claims = json.loads(base64.urlsafe_b64decode(claims + "=="))
    forged_claims["sub"] = "ada"
    forged = base64.urlsafe_b64encode(json.dumps(forged_claims).encode()).decode().rstrip("=")
    none_head = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').decode().rstrip("=")
    for bad in (f"{head}.{forged}.{signature}", f"{head}.{claims}.{signature[:-2]}xx", f"{none_head}.{claims}.",
                refresh, "garbage"):
        r = http.get("/api/v1/status", headers={"Authorization": f"Bearer {bad}"})
        assert r.status_code == 401, bad[:20]
    bot.wall.offset = 15 * 60 + 1                  # past the access token's life
    try:
        assert http.get("/api/v1/status", headers={"Authorization": f"Bearer {access}"}).status_code == 401
        fresh = http.post("/api/v1/auth/refresh", json={"refresh_token": refresh})   # the refresh token lives on
        assert fresh.status_code == 200
        bot.tokens.append(fresh.json()["access_token"])
        assert http.get("/api/v1/status", headers={"Authorization": f"Bearer {fresh.json()['access_token']}"}
                        ).status_code == 200
    finally:
        bot.wall.offset = 0.0


def test_login_rate_limiting_holds_until_the_window_passes(bot):
    http = bot.http
    wrong = {"username": "tom", "password": "not-his-password"}
    assert [http.post("/api/v1/auth/login", json=wrong).status_code for _ in range(5)] == [401] * 5
    right = {"username": "tom", "password": PASSWORDS["tom"]}
    limited = http.post("/api/v1/auth/login", json=right)
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert http.get("/api/v1/status", auth=("tom", PASSWORDS["tom"])).status_code == 429   # Basic too
    bot.monotonic.now += 61
    ok = http.post("/api/v1/auth/login", json=right)
    assert ok.status_code == 200
    bot.tokens += [ok.json()["access_token"], ok.json()["refresh_token"]]
    assert http.get("/api/v1/status", auth=("tom", PASSWORDS["tom"])).status_code == 200


def test_read_routes_answer_and_the_log_tail_is_for_traders(bot):
    http, auth = bot.http, bot.auth("vera")
    for path in ("status", "positions", "orders", "trades", "profit", "performance", "balance", "locks",
                 "decisions", "dca", "version", "me", "ml"):
        assert http.get(f"/api/v1/{path}", headers=auth).status_code == 200, path
    assert http.get("/api/v1/logs", headers=auth).status_code == 403          # a viewer reads no log
    tail = http.get("/api/v1/logs?limit=5&level=warning", headers=bot.auth("tom"))
    assert tail.status_code == 200 and isinstance(tail.json()["lines"], list)
    assert http.get("/api/v1/logs?level=loud", headers=bot.auth("tom")).status_code == 422
    assert http.get("/api/v1/openapi.json").status_code == 404 and http.get("/api/docs").status_code == 404
    assert "mlcoord_equity" in bot.metrics and "mlcoord_cycle_seconds_bucket" in bot.metrics
    assert 'mlcoord_bot_running 1.0' in bot.metrics


def test_no_body_and_no_log_line_holds_a_secret(bot):
    secrets = list(PASSWORDS.values()) + bot.hashes + bot.tokens + [bot.key]
    assert len(bot.tokens) > 10 and len(bot.hashes) == 3
    logged = [json.dumps(e, default=str) for e in bot.logs] + bot.lines
    assert len(bot.bodies) > 50 and len(logged) > 100
    issuing = ("/api/v1/auth/login", "/api/v1/auth/refresh", "/api/v1/auth/ws-token")
    for secret in secrets:
        # a token appears only in the answer that issues it
        where = [path for path, body in bot.bodies if secret in body
                 and not (secret in bot.tokens and path in issuing)]
        assert not where, (secret[:6], where)
        assert not [line for line in logged if secret in line], [line for line in logged if secret in line]


def test_a_slow_websocket_client_is_dropped_and_the_others_keep_their_events():
    import asyncio

    async def scenario():
        hub = EventHub(queue_size=2)
        fast, slow = hub.connect(), hub.connect()
        got = []
        for k in range(5):
            hub._fan_out({"type": "cycle", "k": k})
            got.append(await fast.queue.get())
        return hub, fast, slow, got

    hub, fast, slow, got = asyncio.run(scenario())
    assert [e["k"] for e in got] == [0, 1, 2, 3, 4]
    assert slow.dropped and slow not in hub.clients and hub.dropped == 1 and fast in hub.clients
    assert slow.queue.get_nowait() is None          # its socket is closed (1013) when its handler wakes


def test_remote_listening_needs_tls_or_an_explicit_insecure_switch():
    with pytest.raises(ConfigError, match="not loopback"):
        check_listen(structure({"api": {"listen": "0.0.0.0:8080"}}, Settings).api)
    with capture_logs() as logs:
        assert check_listen(structure({"api": {"listen": "0.0.0.0:8080", "insecure_remote": True}}, Settings).api
                            )[2] is False
    assert [e["event"] for e in logs] == ["api_insecure_remote"]
    tls = structure({"api": {"listen": "10.0.0.1:8443", "tls_cert": "c.pem", "tls_key": "k.pem"}}, Settings).api
    assert check_listen(tls) == ("10.0.0.1", 8443, False)
    for bad, field in (({"listen": "8080"}, "listen"), ({"token_ttl_minutes": 0}, "token_ttl_minutes"),
                       ({"login_attempts": 101}, "login_attempts"), ({"tls_cert": "c.pem"}, "tls_key")):
        with pytest.raises(ConfigError, match=field):
            structure({"api": bad}, Settings)


def test_serve_on_a_fresh_store_serves_health_and_metrics_and_needs_a_user(tmp_path):
    from click.testing import CliRunner

    from mlcoord.cli import main

    config = live_config(tmp_path, "spot", leverage=None, extra='[api]\nlisten = "127.0.0.1:0"')
    proc = subprocess.Popen([sys.executable, "-c", "from mlcoord.cli import main; main()", "serve", "--config",
                             str(config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("serving http://127.0.0.1:"), line + proc.stderr.read() if not line else line
        base = line.split()[1].removesuffix("/api/v1")
        with httpx.Client(base_url=base, timeout=30) as http:
            assert http.get("/api/v1/health").status_code == 200
            assert "mlcoord_bot_running 0.0" in http.get("/metrics").text
            refused = http.get("/api/v1/status")
            assert refused.status_code == 401 and "no API user" in refused.json()["detail"]
            added = CliRunner().invoke(main, ["api", "user", "add", "obs", "--role", "viewer", "--password-stdin",
                                              "--config", str(config)], input="observer-pass-01\n")
            assert added.exit_code == 0 and "observer-pass-01" not in added.output, added.output
            status = http.get("/api/v1/status", auth=("obs", "observer-pass-01"))
            assert status.status_code == 200 and status.json()["read_only"] is True
            control = http.post("/api/v1/pause", auth=("obs", "observer-pass-01"))
            assert control.status_code == 403
        listed = CliRunner().invoke(main, ["api", "user", "list", "--config", str(config)])
        assert listed.output.strip() == "obs\tviewer"
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_backtest_imports_no_server_module(tmp_path):
    code = ("import sys\nfrom mlcoord.cli import main\n"
            "try:\n    main(['backtest', '--timerange', '20240101-20240201', '--no-progress'])\n"
            "except SystemExit as e:\n    assert not e.code, e.code\n"
            "print(sorted(m for m in sys.modules if m.startswith(('mlcoord.server', 'fastapi', 'uvicorn', "
            "'starlette', 'jwt', 'argon2', 'prometheus_client'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_mlcoord_paper_serves_the_api_when_enabled(tmp_path):
    """``[api] enabled``: the paper command opens the store, serves the API while it runs and
    stops it at the end (the session's own store: its summary is there)."""
    from click.testing import CliRunner

    from exchange_sim import ccxt_table
    from mlcoord.cli import main
    from test_exchange_overrides import ccxt_lines

    with ExchangeServer() as exchange:
        config = live_config(tmp_path, "spot", leverage=None, history_bars=300,
                             extra='[api]\nenabled = true\nlisten = "127.0.0.1:0"\n' + ccxt_lines(ccxt_table(exchange)))
        out = CliRunner().invoke(main, ["paper", "--config", str(config), "--cycles", "1"])
    assert out.exit_code == 0, out.output + out.stderr
    assert "api: serving http://127.0.0.1:" in out.stderr and "api_no_users" in out.stderr
    with Store.open(tmp_path / "live.db") as store:
        assert len(store.paper_sessions()) == 1


def test_ml_health_shows_each_contributor_and_the_live_reliability_without_a_reference(bot):
    ml = bot.ml
    assert ml["running"] is True and bot.outcomes > 0, ml
    assert ml["outcomes_seen"] == bot.outcomes
    rows = {r["component"]: r for r in ml["components"]}
    assert rows, ml
    for row in rows.values():
        if row["outcomes"]:
            assert 0.0 <= row["accuracy"] <= 1.0 and row["log_loss"] > 0.0
    # no ML component in this config, so no ensemble: no coefficient is made up
    assert all(r["coefficient"] is None for r in rows.values())
    live = ml["reliability"]["live"]
    assert len(live) == 10 and sum(b["count"] for b in live) == min(bot.outcomes, ml["window"])
    assert ml["reliability"]["reference"] == "none" and ml["drift"]["state"] == "no reference"
    assert "mlcoord_calibration_drift_alert 0.0" in bot.metrics and "mlcoord_ml_accuracy{" in bot.metrics


def test_reload_applies_a_guards_new_options_through_the_loop_and_refuses_the_rest(bot):
    (before, refused_code, refused, queued_code, queued), (name, after), again = bot.reloads
    assert refused_code == 409 and refused["restart_required"] == ["plugins.exits.atr_stop_multiplier"], refused
    assert "exits: cannot take new options in place" in refused["detail"]
    assert queued_code == 202, queued
    assert (name, before, after) == ("protections", 3, 4)
    assert again["detail"].startswith("nothing to reload")
    [row] = [r for r in bot.audit if r["id"] == queued["control_id"]]
    assert (row["username"], row["action"], row["params"]) == ("ada", "reload", {"components": ["protections"]})
    assert row["result"] == "reloaded: options of protections"


def test_reload_names_the_keys_that_need_a_restart_and_is_audited(bot):
    import attrs

    http, admin = bot.http, bot.auth("ada")
    assert http.post("/api/v1/reload", headers=bot.auth("tom")).status_code == 403
    same = http.post("/api/v1/reload", headers=admin)
    assert same.status_code == 200 and same.json()["detail"].startswith("nothing to reload")
    s = bot.settings
    bot.next_settings = attrs.evolve(s, engine=attrs.evolve(s.engine, min_confidence=0.77),
                                     data=attrs.evolve(s.data, symbols=["ETH/USDT"]))
    try:
        restart = http.post("/api/v1/reload", headers=admin)
        assert restart.status_code == 409, restart.text
        assert restart.json()["restart_required"] == ["engine.min_confidence"]
        assert restart.json()["reloadable"] == ["data.symbols"]
        bot.next_settings = attrs.evolve(s, data=attrs.evolve(s.data, symbols=["ETH/USDT"]))
        later = http.post("/api/v1/reload", headers=admin)      # the loop applies it (tests/test_symbol_reload.py)
        assert later.status_code == 202 and later.json()["status"] == "queued"
    finally:
        bot.next_settings = None
    rows = [r for r in http.get("/api/v1/audit", headers=admin).json()["audit"] if r["action"] == "reload"]
    assert [r["result"].split(":")[0] for r in rows[:3]] == ["queued", "restart required", "nothing to reload"]
    assert rows[0]["params"] == {"keys": ["data.symbols"]}
    assert all(r["username"] == "ada" for r in rows)


def test_the_log_tail_keeps_redacted_lines_and_streams_warnings():
    import io

    import structlog

    from mlcoord.logs import add_tap, configure, register_secret, remove_tap
    from mlcoord.server.logtail import LogTail

    register_secret("tail-secret-0042")
    published: list[dict] = []
    tail = LogTail(size=3, publish=published.append)
    old, root = structlog.get_config(), logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure("info", json=True, stream=io.StringIO())
    add_tap(tail)
    try:
        log = structlog.get_logger("t")
        log.info("first", n=1)
        log.warning("careful", note="key tail-secret-0042 leaked", password="hunter2hunter2")
        logging.getLogger("foreign").error("stdlib %s", "tail-secret-0042")
        log.debug("below the level")
        for k in range(3):
            log.info("more", k=k)
    finally:
        remove_tap(tail)
        structlog.configure(**old)
        root.handlers, root.level = handlers, level
    assert [r["event"] for r in tail.tail(10)] == ["more"] * 3           # bounded: the newest 3
    assert [e["event"] for e in published] == ["careful", "stdlib ***"]
    text = json.dumps(published)
    assert "tail-secret-0042" not in text and "hunter2" not in text
    assert all(e["type"] == "warning" for e in published)


def test_exchange_retries_are_counted_and_exported():
    from mlcoord.live.retry import ExchangeHealth, ManualClock
    from mlcoord.server.metrics import BotMetrics

    calls = iter([TimeoutError("slow"), ConnectionError("reset"), "ok"])

    def flaky():
        got = next(calls)
        if isinstance(got, Exception):
            raise got
        return got

    health = ExchangeHealth(clock=ManualClock())
    assert health.call(flaky) == "ok" and health.retries == {"network": 2}
    from prometheus_client import generate_latest

    metrics = BotMetrics(lambda: {"running": True, "exchange_retries": dict(health.retries)}, dict)
    assert 'mlcoord_exchange_retries_total{reason="network"} 2.0' in generate_latest(metrics.registry).decode()


def test_a_live_stores_order_journal_becomes_order_events_once_per_change(tmp_path):
    """Live: each order written new or changed reaches the channel's listener (as the session
    installs it), sent as events after the cycle; an unchanged report adds none."""
    import attrs

    from mlcoord.live.records import OrderRecord, OrderState
    from mlcoord.model import Order, OrderKind, Side

    channel = ControlChannel()
    with Store.open(tmp_path / "o.db") as store:
        store.order_listeners.append(channel.order_changed)
        o = Order(id="c1", symbol="BTC/USDT", side=Side.LONG, kind=OrderKind.LIMIT, quantity=1.0, price=100.0,
                  created_at=1, tag="entry:1/1")
        assert store.journal_order(OrderRecord(o, plan_id="p1")) is None
        opened = OrderRecord(o, plan_id="p1", state=OrderState.OPEN, exchange_order_id="x1")
        store.upsert_order(opened)
        store.upsert_order(opened)                        # nothing new: no event
        store.upsert_order(attrs.evolve(opened, state=OrderState.FILLED, filled_quantity=1.0, average_price=99.5))
        store.journal_order(OrderRecord(attrs.evolve(o, id="c2"), state=OrderState.REJECTED, reason="filters"))
    got = channel._order_events
    assert [(e["type"], e["order_id"]) for e in got] == [
        ("order_placed", "c1"), ("order_accepted", "c1"), ("order_filled", "c1"), ("order_rejected", "c2")]
    assert got[2]["average_price"] == 99.5 and got[3]["reason"] == "filters"


def test_force_enter_is_refused_while_entries_are_blocked_and_names_the_loops_refusal():
    """The kill switch, the loop's entry gate (the API's pause and locks, the session's own) and
    the loop's refusal come back as the control's result; nothing is entered around them."""
    from types import SimpleNamespace

    from mlcoord.live.controls import Control

    entered: list = []

    def force_enter(symbol, side):
        if symbol == "NEW/USDT":
            raise ValueError(f"symbol {symbol!r} is not traded by this session")
        entered.append((symbol, side))
        return SimpleNamespace(outcome="vetoed:protections", veto="max_open_trades 3 reached")

    loop = SimpleNamespace(may_enter=None, force_enter=force_enter)
    trader = SimpleNamespace(engine=SimpleNamespace(loop=loop))
    channel, killed = ControlChannel(), [True]
    supervisor = SimpleNamespace(killed=lambda: killed[0])
    results = []
    channel.results.append(lambda c, r: results.append(r))
    channel.install = lambda trader: None          # the fake loop has no journal or pipeline to hook
    enter = Control("force_enter", symbol="BTC/USDT", payload=1)
    channel.submit(enter)
    channel.apply(trader, supervisor)
    killed[0] = False
    channel.paused = True
    loop.may_enter = lambda symbol: not channel.paused
    channel.submit(enter)
    channel.apply(trader, supervisor)
    channel.paused = False
    for control in (enter, Control("force_enter", symbol="NEW/USDT", payload=-1)):
        channel.submit(control)
    channel.apply(trader, supervisor)
    assert results == ["refused: the kill switch is on",
                       "refused: entries on BTC/USDT are blocked (paused, stopped or locked)",
                       "refused: vetoed:protections: max_open_trades 3 reached",
                       "refused: symbol 'NEW/USDT' is not traded by this session"]
    assert entered == [("BTC/USDT", 1)]
