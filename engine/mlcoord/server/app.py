"""The routes, under ``/api/v1`` (FastAPI).

Who may call what is declared here, per route, and nowhere else: :data:`PUBLIC` routes need no
user, every other route depends on :func:`ServerContext.require` with a role (``viewer`` reads,
``trader`` controls, ``admin`` reloads and reads the audit log). ``tests/test_api_server.py``
enumerates the application's routes, so a route added without a role fails a test.

Every control becomes a :class:`~mlcoord.live.controls.Control` on the session's channel (applied
by the trading loop at its next cycle) and an audit row (who, role, what, when, from where, and
the result, filled in when the loop has applied it). Nothing here calls the trader.
"""

from __future__ import annotations

from typing import Any, Callable, Literal, Optional

import attrs
import structlog
from fastapi import Depends, FastAPI, HTTPException, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field

from mlcoord.config import ApiConfig
from mlcoord.live.controls import Control, ControlChannel
from mlcoord.server.accounts import Accounts, User, role_rank
from mlcoord.server.auth import ACCESS, REFRESH, WEBSOCKET, LoginLimiter, TokenError, Tokens
from mlcoord.server.events import EventHub
from mlcoord.server.metrics import BotMetrics
from mlcoord.server.readers import BotReader, dca_bands, equity_curve, filtered, performance, profit
from mlcoord.server.static import SecurityHeaders, asset

log = structlog.get_logger("mlcoord.server")

PREFIX = "/api/v1"
#: routes anyone may call (``/metrics`` too when the server listens on loopback only)
PUBLIC = frozenset({f"{PREFIX}/ping", f"{PREFIX}/health", f"{PREFIX}/auth/login", f"{PREFIX}/auth/refresh"})
#: the dashboard's files (public: HTML, JS and CSS only, no data; see :mod:`mlcoord.server.static`)
STATIC = frozenset({"/", "/dashboard/{name:path}"})


@attrs.define
class ServerContext:
    """Everything the routes use: the API's settings, the store's accounts, token issuer, login
    limiter, the bot reader (and the session's channel when the bot runs in this process), the
    websocket hub and the metrics."""

    api: ApiConfig
    accounts: Accounts
    tokens: Tokens
    limiter: LoginLimiter
    reader: BotReader
    hub: EventHub
    metrics: BotMetrics
    loopback: bool
    version: str = ""
    #: the log tail (None: not installed)
    logs: Optional[Any] = None
    #: the running bot's settings, and a reader of its config file as it is now (reload)
    settings: Optional[Any] = None
    load_config: Optional[Callable[[], Any]] = None
    #: the bot's notifier (health, metrics, reload of ``[notify]``); None: no notifications
    notifier: Optional[Any] = None

    @property
    def channel(self) -> Optional[ControlChannel]:
        return self.reader.channel

    def user_from(self, request: Request) -> User:
        """The caller, from a bearer access token or HTTP Basic; 401 otherwise (429 while the
        caller's address is over the login limit)."""
        if self.accounts.user_count() == 0:
            raise HTTPException(401, "no API user exists: create one with `mlcoord api user add --config FILE`",
                                headers={"WWW-Authenticate": "Bearer"})
        header = request.headers.get("authorization", "")
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() == "bearer" and credentials:
            try:
                name = self.tokens.read(credentials.strip(), ACCESS)
            except TokenError as exc:
                raise HTTPException(401, str(exc), headers={"WWW-Authenticate": "Bearer"}) from None
            user = self.accounts.user(name)
            if user is None:
                raise HTTPException(401, "the token's user no longer exists", headers={"WWW-Authenticate": "Bearer"})
            return user
        if scheme.lower() == "basic" and credentials:
            return self.password_login(request, *_basic(credentials))
        raise HTTPException(401, "authentication required (a bearer token or HTTP Basic)",
                            headers={"WWW-Authenticate": "Bearer"})

    def password_login(self, request: Request, username: str, password: str) -> User:
        address = client_address(request)
        wait = self.limiter.retry_after(address)
        if wait is not None:
            raise HTTPException(429, f"too many failed logins from this address; retry in {wait:.0f} s",
                                headers={"Retry-After": str(max(1, int(wait + 0.999)))})
        user = self.accounts.verify(username, password)
        if user is None:
            self.limiter.failed(address)
            log.warning("api_login_failed", user=username[:64], address=address)
            raise HTTPException(401, "wrong username or password", headers={"WWW-Authenticate": "Basic"})
        self.limiter.succeeded(address)
        return user

    def require(self, role: str) -> Callable[[Request], User]:
        def dependency(request: Request) -> User:
            user = self.user_from(request)
            if role_rank(user.role) < role_rank(role):
                raise HTTPException(403, f"the {user.role} role may not do this (needs {role})")
            return user
        setattr(dependency, "role", role)        # the route test reads which role a route needs
        return dependency

    def control(self, request: Request, user: User, kind: str, params: dict[str, Any], **fields: Any) -> JSONResponse:
        """Audit ``kind`` and queue it for the trading loop (202), or refuse it (409) when no bot
        runs in this process."""
        address = client_address(request)
        channel = self.channel
        if channel is None:
            self.accounts.audit(user, kind, params, address, "refused: read-only (no bot runs in this process)")
            return JSONResponse({"detail": "read-only: this server is attached to a store; controls go to the "
                                           "bot's own API"}, status_code=409)
        audit_id = self.accounts.audit(user, kind, params, address, "queued")
        channel.submit(Control(kind, user=user.username, audit_id=audit_id, **fields))
        log.info("api_control_queued", kind=kind, user=user.username, role=user.role, address=address,
                 audit_id=audit_id)
        return JSONResponse({"control_id": audit_id, "status": "queued",
                             "detail": "applied by the trading loop at the start of its next cycle"},
                            status_code=202)


def reload_config(ctx: ServerContext, request: Request, user: User) -> JSONResponse:
    """Read the config file again and name the keys that differ: keys outside the reloadable set,
    and options of a component that cannot take them in place (``Reconfigurable``), answer 409
    "restart required"; new symbols, scanner settings and options of guards and the exit manager
    are queued for the loop (202), which applies them between two cycles
    (:mod:`mlcoord.live.universe` for the symbols: a refused change leaves the bot as it was).
    Notification settings are applied at once by the notifier (200). Audited (the audit row's
    result is the loop's)."""
    from mlcoord.config import unstructure
    from mlcoord.errors import MlcoordError
    from mlcoord.server.reload import differing, is_notify, reloadable_prefixes, split

    address = client_address(request)

    def answer(result: str, code: int, **body: Any) -> JSONResponse:
        ctx.accounts.audit(user, "reload", {}, address, result)
        return JSONResponse({"detail": result, **body}, status_code=code)

    if ctx.channel is None or ctx.load_config is None or ctx.settings is None:
        return answer("refused: read-only (no bot runs in this process)", 409)
    try:
        new = ctx.load_config()
    except MlcoordError as exc:
        return answer(f"refused: the config file does not load: {exc}", 422)
    keys = differing(unstructure(ctx.settings), unstructure(new))
    ok, restart = split(keys, reloadable_prefixes(ctx.channel.components))
    channel = ctx.channel
    names = sorted({k.split(".")[1] for k in ok if k.startswith("plugins.")})
    fixed = [k for k in ok if k.startswith("plugins.") and k.split(".")[1] not in channel.reconfigurable]
    restart += fixed
    if restart:
        why = "restart required: " + ", ".join(restart)
        if fixed:
            why += f" ({', '.join(sorted({k.split('.')[1] for k in fixed}))}: cannot take new options in place)"
        return answer(why, 409, restart_required=restart, reloadable=[k for k in ok if k not in fixed])
    notify = [k for k in ok if is_notify(k)]
    if notify:
        ok = [k for k in ok if not is_notify(k)]
        done, code = _reload_notify(ctx, new)
        if not ok or code != 200:
            return answer(done, code, reloaded=notify if code == 200 else [])
        ctx.accounts.audit(user, "reload", {"keys": notify}, address, done)
    symbol_keys = [k for k in ok if not k.startswith("plugins.")]
    if names or symbol_keys:
        params: dict[str, Any] = {"components": names} if names else {}
        if symbol_keys:
            params["keys"] = symbol_keys
        return ctx.control(request, user, "reload", params, payload=(new, names, symbol_keys))
    return answer("nothing to reload: the config file matches the running bot", 200, reloadable=[])


def _reload_notify(ctx: ServerContext, new: Any) -> tuple[str, int]:
    """``[notify]`` changed: the notifier takes the new settings at once (its own threads; no
    trading state), or says why not."""
    from mlcoord.errors import ConfigError

    if ctx.notifier is None or ctx.settings is None:
        return "restart required: notify (no notifier runs in this process)", 409
    try:
        ctx.notifier.reconfigure(new.notify)
    except ConfigError as exc:
        return f"refused: {exc}", 422
    ctx.settings = attrs.evolve(ctx.settings, notify=new.notify)
    return "reloaded: notification settings", 200


def client_address(request) -> str:
    client = request.client
    return client.host if client is not None else "unknown"


def _basic(credentials: str) -> tuple[str, str]:
    import base64
    import binascii

    try:
        text = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise HTTPException(401, "malformed Basic credentials", headers={"WWW-Authenticate": "Basic"}) from None
    username, sep, password = text.partition(":")
    if not sep:
        raise HTTPException(401, "malformed Basic credentials", headers={"WWW-Authenticate": "Basic"})
    return username, password


class Login(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class Refresh(BaseModel):
    refresh_token: str = Field(min_length=1, max_length=4096)


class ForceExit(BaseModel):
    symbol: Optional[str] = Field(default=None, max_length=64, description="None: every open position")
    fraction: float = Field(default=1.0, gt=0.0, le=1.0)


class ForceEnter(BaseModel):
    symbol: str = Field(min_length=1, max_length=64)
    side: Literal["long", "short"] = "long"


class SymbolBody(BaseModel):
    symbol: str = Field(min_length=1, max_length=64)


class LockBody(BaseModel):
    symbol: str = Field(min_length=1, max_length=64)
    minutes: Optional[float] = Field(default=None, gt=0, le=525_600, description="None: until removed")


class KillBody(BaseModel):
    on: bool


def create_app(ctx: ServerContext) -> FastAPI:
    docs = ctx.api.docs
    app = FastAPI(title="mlcoord", version=ctx.version, docs_url="/api/docs" if docs else None, redoc_url=None,
                  openapi_url="/api/openapi.json" if docs else None)
    if ctx.api.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(ctx.api.cors_origins), allow_credentials=True,
                           allow_methods=["GET", "POST", "DELETE"], allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(SecurityHeaders, origins=ctx.api.dashboard_origins)
    viewer, trader, admin = (Depends(ctx.require(r)) for r in ("viewer", "trader", "admin"))
    reader = ctx.reader

    # -- public: the dashboard's files (its data comes from the routes below, with a token) -----
    @app.get("/", include_in_schema=False)
    def dashboard():
        return asset("index.html")

    @app.get("/dashboard/{name:path}", include_in_schema=False)
    def dashboard_file(name: str):
        return asset(name)

    # -- public ---------------------------------------------------------------------------------
    @app.get(f"{PREFIX}/ping")
    def ping() -> dict:
        return {"status": "pong"}

    @app.get(f"{PREFIX}/health")
    def health() -> dict:
        out = reader.health()
        if ctx.notifier is not None:
            out["notify"] = ctx.notifier.health()
        if ctx.accounts.user_count() == 0:
            out["note"] = "no API user exists: only public routes are served"
        return out

    @app.get("/metrics")
    def metrics(request: Request):
        if not ctx.loopback:
            ctx.require("viewer")(request)
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return PlainTextResponse(generate_latest(ctx.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post(f"{PREFIX}/auth/login")
    def login(body: Login, request: Request) -> dict:
        user = ctx.password_login(request, body.username, body.password)
        access, life = ctx.tokens.issue(user, ACCESS)
        refresh, _ = ctx.tokens.issue(user, REFRESH)
        log.info("api_login", user=user.username, role=user.role, address=client_address(request))
        return {"access_token": access, "refresh_token": refresh, "token_type": "bearer", "expires_in": life,
                "role": user.role}

    @app.post(f"{PREFIX}/auth/refresh")
    def refresh(body: Refresh) -> dict:
        try:
            name = ctx.tokens.read(body.refresh_token, REFRESH)
        except TokenError as exc:
            raise HTTPException(401, str(exc)) from None
        user = ctx.accounts.user(name)
        if user is None:
            raise HTTPException(401, "the token's user no longer exists")
        access, life = ctx.tokens.issue(user, ACCESS)
        return {"access_token": access, "token_type": "bearer", "expires_in": life, "role": user.role}

    # -- viewer ---------------------------------------------------------------------------------
    @app.post(f"{PREFIX}/auth/ws-token")
    def ws_token(user: User = viewer) -> dict:
        token, life = ctx.tokens.issue(user, WEBSOCKET)
        return {"ws_token": token, "expires_in": life}

    @app.get(f"{PREFIX}/me")
    def me(user: User = viewer) -> dict:
        return {"username": user.username, "role": user.role}

    @app.get(f"{PREFIX}/version")
    def version(user: User = viewer) -> dict:
        return {"version": ctx.version, "api": "v1"}

    @app.get(f"{PREFIX}/status")
    def status(user: User = viewer) -> dict:
        snap = reader.snapshot()
        keys = ("running", "status", "paused", "stopped", "kill_switch", "last_cycle_wall", "last_cycle_seconds",
                "last_bar_ns", "session_id", "mode", "symbols", "exchange_pauses", "session_status")
        out = {k: snap[k] for k in keys if k in snap}
        out["read_only"] = reader.read_only
        out["pending_controls"] = ctx.channel.pending() if ctx.channel is not None else 0
        return out

    @app.get(f"{PREFIX}/positions")
    def positions(user: User = viewer) -> dict:
        snap = reader.snapshot()
        return {"positions": snap.get("positions", []), "working_entries": snap.get("working_entries", [])}

    @app.get(f"{PREFIX}/orders")
    def orders(user: User = viewer) -> dict:
        snap = reader.snapshot()
        return {"exchange_orders": reader.open_orders(), "simulated_working": snap.get("working_entries", [])}

    @app.get(f"{PREFIX}/trades")
    def trades(user: User = viewer, symbol: Optional[str] = None, exit_reason: Optional[str] = None,
               limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0)) -> dict:
        found = filtered(reader.trades(), symbol, exit_reason)
        newest = found[::-1]
        return {"total": len(found), "offset": offset, "trades": newest[offset:offset + limit]}

    @app.get(f"{PREFIX}/profit")
    def profit_route(user: User = viewer) -> dict:
        return profit(reader.trades())

    @app.get(f"{PREFIX}/performance")
    def performance_route(user: User = viewer) -> dict:
        found = reader.trades()
        return {"per_pair": performance(found, "symbol"), "per_entry_reason": performance(found, "entry_reason"),
                "per_exit_reason": performance(found, "exit_reason")}

    @app.get(f"{PREFIX}/balance")
    def balance(user: User = viewer) -> dict:
        snap = reader.snapshot()
        return {k: snap.get(k) for k in ("equity", "cash", "exposure")}

    @app.get(f"{PREFIX}/locks")
    def locks(user: User = viewer) -> dict:
        snap = reader.snapshot()
        return {"locks": snap.get("locks", {}), "guard_locks": snap.get("guard_locks", {}),
                "note": "locks: set through the API (until: wall-clock seconds, null: until removed); "
                        "guard_locks: each guard's own, by guard (until_ns: bar time; '*': every pair)"}

    @app.get(f"{PREFIX}/equity")
    def equity(user: User = viewer) -> dict:
        return equity_curve(reader)

    @app.get(f"{PREFIX}/decisions")
    def decisions(user: User = viewer, symbol: Optional[str] = None,
                  limit: int = Query(100, ge=1, le=1000)) -> dict:
        found = [d for d in reader.decisions() if symbol is None or d.get("symbol") == symbol]
        return {"total": len(found), "decisions": found[::-1][:limit]}

    @app.get(f"{PREFIX}/dca")
    def dca(user: User = viewer) -> dict:
        return {"bands": dca_bands(reader.trades())}

    @app.get(f"{PREFIX}/ml")
    def ml(user: User = viewer) -> dict:
        found = reader.snapshot().get("ml")
        if found is None:
            return {"running": False, "components": [], "reliability": {"live": [], "reference": "none"},
                    "drift": {"state": "no data"},
                    "note": "ML health is measured by a running bot from its realised outcomes"}
        return {"running": True, **found}

    # -- trader: logs (they name users, addresses, positions: not for a read-only observer) -----
    @app.get(f"{PREFIX}/logs")
    def logs(user: User = trader, limit: int = Query(200, ge=1, le=1000),
             level: str = Query("debug", pattern="^(debug|info|warning|error|critical)$")) -> dict:
        if ctx.logs is None:
            return {"lines": [], "note": "no log tail in this process"}
        return {"lines": ctx.logs.tail(limit, level)}

    # -- trader: controls -----------------------------------------------------------------------
    @app.post(f"{PREFIX}/start")
    def start(request: Request, user: User = trader):
        return ctx.control(request, user, "start", {})

    @app.post(f"{PREFIX}/stop")
    def stop(request: Request, user: User = trader):
        return ctx.control(request, user, "stop", {})

    @app.post(f"{PREFIX}/pause")
    def pause(request: Request, user: User = trader):
        return ctx.control(request, user, "pause", {})

    @app.post(f"{PREFIX}/resume")
    def resume(request: Request, user: User = trader):
        return ctx.control(request, user, "resume", {})

    @app.post(f"{PREFIX}/force-exit")
    def force_exit(body: ForceExit, request: Request, user: User = trader):
        return ctx.control(request, user, "force_exit", body.model_dump(), symbol=body.symbol,
                           fraction=body.fraction)

    @app.post(f"{PREFIX}/force-enter")
    def force_enter(body: ForceEnter, request: Request, user: User = trader):
        if not ctx.api.allow_force_enter:
            ctx.accounts.audit(user, "force_enter", body.model_dump(), client_address(request),
                               "refused: allow_force_enter off")
            raise HTTPException(403, "force-enter is off: set [api] allow_force_enter = true")
        return ctx.control(request, user, "force_enter", body.model_dump(), symbol=body.symbol,
                           payload=1 if body.side == "long" else -1)

    @app.post(f"{PREFIX}/orders/cancel")
    def cancel_entries(body: SymbolBody, request: Request, user: User = trader):
        return ctx.control(request, user, "cancel_entries", body.model_dump(), symbol=body.symbol)

    @app.post(f"{PREFIX}/locks")
    def lock_add(body: LockBody, request: Request, user: User = trader):
        until = None if body.minutes is None else ctx.tokens.clock() + body.minutes * 60
        return ctx.control(request, user, "lock_add", body.model_dump(), symbol=body.symbol, until=until)

    @app.delete(f"{PREFIX}/locks/{{symbol:path}}")
    def lock_remove(symbol: str, request: Request, user: User = trader):
        return ctx.control(request, user, "lock_remove", {"symbol": symbol}, symbol=symbol)

    @app.post(f"{PREFIX}/kill")
    def kill(body: KillBody, request: Request, user: User = trader):
        return ctx.control(request, user, "kill_on" if body.on else "kill_off", body.model_dump())

    # -- admin ----------------------------------------------------------------------------------
    @app.post(f"{PREFIX}/reload")
    def reload(request: Request, user: User = admin):
        return reload_config(ctx, request, user)

    @app.get(f"{PREFIX}/audit")
    def audit(user: User = admin, limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0)) -> dict:
        return {"audit": ctx.accounts.audit_rows(limit, offset)}

    @app.get(f"{PREFIX}/users")
    def users(user: User = admin) -> dict:
        return {"users": [{"username": u.username, "role": u.role} for u in ctx.accounts.users()]}

    # -- the event stream -----------------------------------------------------------------------
    @app.websocket(f"{PREFIX}/ws")
    async def events(websocket: WebSocket, token: str = ""):
        try:
            name = ctx.tokens.read(token, WEBSOCKET)
        except TokenError:
            await websocket.close(code=1008)
            return
        if ctx.accounts.user(name) is None:
            await websocket.close(code=1008)
            return
        await websocket.accept()
        client = ctx.hub.connect()
        try:
            while True:
                event = await client.queue.get()
                if event is None:            # dropped: too slow (1013), or the server stops (1001)
                    await websocket.close(code=1013 if client.dropped else 1001)
                    return
                await websocket.send_json(event)
        except WebSocketDisconnect:
            pass
        finally:
            ctx.hub.disconnect(client)

    return app
