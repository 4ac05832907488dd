"""The API server in a thread of the bot's process (uvicorn), or of ``mlcoord serve``.

The listening socket is bound before the thread starts, so a bad address fails at once with its
own error and a test knows its ephemeral port; uvicorn's access log is off (a websocket token
travels in the query string) and its other lines go through the project's logging (redacted).
Binding to anything but loopback needs TLS, or ``[api] insecure_remote = true`` and a warning at
every start.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from typing import Optional

import structlog

from mlcoord.config import ApiConfig, split_listen
from mlcoord.errors import ConfigError
from mlcoord.live.controls import ControlChannel

log = structlog.get_logger("mlcoord.server")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_listen(api: ApiConfig) -> tuple[str, int, bool]:
    """(host, port, loopback) of ``[api] listen``; a ConfigError for a remote address without
    TLS unless ``insecure_remote`` (then a warning, at every start)."""
    host, port = split_listen(api.listen)
    loopback = is_loopback(host)
    if not loopback and api.tls_cert is None:
        if not api.insecure_remote:
            raise ConfigError(f"[api] listen = {api.listen!r} is not loopback: set [api] tls_cert and tls_key, or "
                              "[api] insecure_remote = true to serve passwords and tokens in clear text")
        log.warning("api_insecure_remote", listen=api.listen,
                    note="serving a remote address without TLS: passwords and tokens cross the network in clear")
    return host, port, loopback


class ApiServer:
    """A started server; :meth:`stop` ends it. ``port`` is the bound port (``listen`` port 0: a free one)."""

    def __init__(self, app, sock: socket.socket, api: ApiConfig, context):
        import uvicorn

        self.app, self.context = app, context
        self.sock = sock
        self.port = int(sock.getsockname()[1])
        self.host = str(sock.getsockname()[0])
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on", log_level="warning",
                                ssl_certfile=api.tls_cert, ssl_keyfile=api.tls_key, ws="auto",
                                timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, name="mlcoord-api",
                                       daemon=True)
        self.scheme = "https" if api.tls_cert else "http"

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def start(self) -> "ApiServer":
        self.thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        from mlcoord.logs import remove_tap

        if self.context.logs is not None:
            remove_tap(self.context.logs)
        self.context.hub.close()
        self.server.should_exit = True
        self.thread.join(timeout)
        self.sock.close()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"[api] listen = {host}:{port} cannot be bound: {exc.strerror or exc}") from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


def _reloaded(context, control, result: str) -> None:
    """A reload the loop applied: the running bot's settings are the reloaded ones from now on
    (the next reload compares with them)."""
    if control.kind == "reload" and result.startswith("reloaded"):
        context.settings = control.payload[0]


def start_api(settings, options, store, channel: Optional[ControlChannel] = None, *, clock=None,
              monotonic=None, load_config=None, notifier=None) -> ApiServer:
    """Serve the API of the bot whose store is ``store`` (``options``: its ``[live]``); with
    ``channel`` the bot runs in this process and takes controls, without it the server is
    read-only. ``clock`` (wall seconds, tokens) and ``monotonic`` (login limits) are injectable.
    ``load_config()``: the bot's settings read again from its config file (``reload``; None: no reload).
    ``notifier``: the bot's :class:`~mlcoord.notify.service.Notifier` (health, metrics, reload)."""
    import time

    from mlcoord import __version__
    from mlcoord.logs import add_tap, register_secret
    from mlcoord.server.accounts import Accounts, record_results
    from mlcoord.server.app import ServerContext, create_app
    from mlcoord.server.auth import LoginLimiter, Tokens
    from mlcoord.server.events import EventHub
    from mlcoord.server.logtail import LogTail
    from mlcoord.server.metrics import BotMetrics
    from mlcoord.server.readers import BotReader

    api = settings.api
    host, port, loopback = check_listen(api)
    accounts = Accounts(store)
    key = accounts.signing_key()
    register_secret(key)
    tokens = Tokens(key, access_seconds=api.token_ttl_minutes * 60, refresh_seconds=api.refresh_ttl_hours * 3600,
                    clock=clock or time.time)
    reader = BotReader(store, options, channel)
    hub = EventHub()
    metrics = BotMetrics(reader.snapshot, reader.orders_by_state)
    tail = LogTail(publish=hub.publish)
    context = ServerContext(api, accounts, tokens,
                            LoginLimiter(api.login_attempts, api.login_window_seconds, monotonic or time.monotonic),
                            reader, hub, metrics, loopback, __version__, logs=tail,
                            settings=settings, load_config=load_config, notifier=notifier)
    if notifier is not None:
        from mlcoord.notify.metrics import NotifyCollector

        metrics.registry.register(NotifyCollector(notifier))
    if channel is not None:
        channel.events += [hub.publish, metrics.on_event]
        record_results(channel, accounts)
        channel.results.append(lambda control, result: _reloaded(context, control, result))
    add_tap(tail)
    server = ApiServer(create_app(context), _bind(host, port), api, context).start()
    users = accounts.user_count()
    log.info("api_started", url=server.url, read_only=channel is None, users=users, docs=api.docs)
    if users == 0:
        log.warning("api_no_users", note="no API user: only /api/v1/ping, /api/v1/health and /metrics are served; "
                                         "add one with `mlcoord api user add --config FILE`")
    return server
