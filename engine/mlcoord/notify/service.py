"""The notifier of a running bot: its channels, built from ``[notify]``; health; reload.

:meth:`Notifier.on_event` is a sink on the session's
:class:`~mlcoord.live.controls.ControlChannel` (the websocket's events) and runs in the trading
thread: a kind lookup and, per channel whose verbosity is not ``off``, one
:meth:`Outbox.put <mlcoord.notify.outbox.Outbox.put>`. Everything else happens in the outboxes'
workers and Telegram's polling thread.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Callable, Mapping, Optional

import structlog

from mlcoord.errors import ConfigError
from mlcoord.logs import register_secret
from mlcoord.notify.discord import DiscordChannel
from mlcoord.notify.events import Message, Notification, kind_of
from mlcoord.notify.outbox import Outbox
from mlcoord.notify.settings import NotifyConfig
from mlcoord.notify.telegram import Reply, TelegramChannel
from mlcoord.notify.webhook import WebhookChannel

log = structlog.get_logger("mlcoord.notify")


def secret(env: Mapping[str, str], section: str, field: str, name: str) -> str:
    """The credential in environment variable ``name`` (``[notify.SECTION] FIELD = name``),
    registered for redaction; a ConfigError naming the field and the variable when it is unset."""
    value = (env.get(name) or "").strip()
    if not value:
        raise ConfigError(f"[notify.{section}] {field} = {name!r}: that environment variable is not set (it holds "
                          f"the {section} {'token' if field == 'token_env' else 'URL'})")
    register_secret(value)
    if "://" in value:                  # a webhook URL: its path holds the token
        register_secret(value.split("://", 1)[1].split("/", 1)[-1])
    return value


def build_channels(config: NotifyConfig, env: Mapping[str, str]) -> list[Any]:
    """The configured channels (Telegram, Discord, webhook), credentials read from ``env``."""
    out: list[Any] = []
    t, d, w = config.telegram, config.discord, config.webhook
    if t is not None:
        out.append(TelegramChannel(secret(env, "telegram", "token_env", t.token_env), t.base_url, t.chats,
                                   config.verbosity(t.events), config.timeout_seconds, t.poll_seconds))
    if d is not None:
        out.append(DiscordChannel(secret(env, "discord", "url_env", d.url_env), d.username,
                                  config.verbosity(d.events), config.timeout_seconds))
    if w is not None:
        out.append(WebhookChannel(secret(env, "webhook", "url_env", w.url_env), config.verbosity(w.events),
                                  config.timeout_seconds))
    return out


class Notifier:
    """The channels of ``config`` and their outboxes. ``commands``: Telegram's
    :class:`~mlcoord.notify.commands.Commands` (None: notifications only). ``clock`` (wall
    seconds) and ``wait`` (the retry sleeper) are injectable; ``threads = False`` starts no
    thread (tests send with :meth:`run_pending`)."""

    def __init__(self, config: NotifyConfig, *, env: Optional[Mapping[str, str]] = None, commands=None,
                 clock: Callable[[], float] = time.time, wait: Optional[Callable[[float], bool]] = None,
                 threads: bool = True):
        self.env = os.environ if env is None else env
        self.commands, self.clock, self.wait, self.threads = commands, clock, wait, threads
        self.config = config
        self.outboxes: tuple[Outbox, ...] = ()
        self._lock = threading.Lock()
        self._tap: Optional[Any] = None
        self._build(config, carry={})

    def _build(self, config: NotifyConfig, carry: dict[str, tuple[Outbox, list[Any]]]) -> None:
        outboxes = []
        for channel in build_channels(config, self.env):
            box = Outbox(channel, size=config.queue_size, max_attempts=config.max_attempts,
                         backoff=config.backoff_seconds, backoff_max=config.backoff_max_seconds, clock=self.clock,
                         wait=self.wait)
            old = carry.get(channel.name)
            if old is not None:         # a reload keeps the counters and what was waiting
                box.stats = old[0].stats
                if isinstance(channel, TelegramChannel) and isinstance(old[0].sender, TelegramChannel):
                    channel.offset = old[0].sender.offset       # no update handled twice
                for item in old[1][-config.queue_size:]:
                    box.put(item)
            outboxes.append(box)
        self.config, self.outboxes = config, tuple(outboxes)

    # -- the trading thread ----------------------------------------------------------------------
    def on_event(self, event: dict[str, Any]) -> None:
        """A ControlChannel sink: queue ``event`` on every channel that wants its kind."""
        kind = kind_of(event)
        if kind is None:
            return
        notification = None
        for box in self.outboxes:
            verbosity = box.sender.verbosity[kind]
            if verbosity == "off":
                continue
            if notification is None:
                notification = Notification(kind, self.clock(), self.config.bot, event)
            box.put(Message(notification, verbosity == "silent"))

    # -- commands --------------------------------------------------------------------------------
    def _telegram(self) -> Optional[Outbox]:
        return next((b for b in self.outboxes if b.name == "telegram"), None)

    def handle_command(self, chat: str, role: str, text: str) -> None:
        """A Telegram message of an allowed chat: answered through Telegram's outbox."""
        box = self._telegram()
        if box is None or self.commands is None:
            return
        try:
            answer = self.commands.answer(chat, role, text)
        except Exception as exc:    # a failing read never ends polling
            log.warning("notify_command_failed", chat_id=chat, error=f"{type(exc).__name__}: {exc}")
            answer = "sorry: that command failed (see the bot's log)"
        box.put(Reply(chat, answer))

    def on_result(self, control, result: str) -> None:
        """A ControlChannel result hook: tell the Telegram chat that queued ``control`` what the loop did."""
        box = self._telegram()
        found = self.commands.result_for(control, result) if self.commands is not None else None
        if box is not None and found is not None:
            box.put(Reply(*found))

    # -- life --------------------------------------------------------------------------------------
    def start(self) -> "Notifier":
        if self.threads:
            for box in self.outboxes:
                box.start()
                sender = box.sender
                if isinstance(sender, TelegramChannel) and self.commands is not None and \
                        self.config.telegram is not None and self.config.telegram.commands:
                    sender.start_polling(self.handle_command, box.wait, self.config.backoff_seconds,
                                         self.config.backoff_max_seconds)
        log.info("notify_started", channels=[b.name for b in self.outboxes])
        return self

    def tap_warnings(self) -> None:
        """Log records at warning and above become ``warning`` events, as the websocket's (the
        API's :class:`~mlcoord.server.logtail.LogTail`, here keeping no lines), until :meth:`close`."""
        from mlcoord.logs import add_tap
        from mlcoord.server.logtail import LogTail

        self._tap = LogTail(size=1, publish=self.on_event, min_level="warning")
        add_tap(self._tap)

    def close(self) -> None:
        """Stop for good: the log tap removed, the workers stopped."""
        from mlcoord.logs import remove_tap

        if self._tap is not None:
            remove_tap(self._tap)
            self._tap = None
        self.stop()

    def stop(self) -> None:
        for box in self.outboxes:
            if isinstance(box.sender, TelegramChannel):
                box.sender.stop()
            box.stop()

    def run_pending(self) -> None:
        for box in self.outboxes:
            box.run_pending()

    def reconfigure(self, config: NotifyConfig) -> None:
        """New ``[notify]`` settings (a reload): channels rebuilt, each one's counters and queued
        notifications kept; a ConfigError (an unset variable) leaves the running ones alone."""
        with self._lock:
            old = self.outboxes
            check = build_channels(config, self.env)       # fails before anything is stopped
            del check
            self.stop()
            self._build(config, carry={b.name: (b, b.take_pending()) for b in old})
            self.start()

    def health(self) -> dict[str, Any]:
        channels = {}
        for box in self.outboxes:
            row = box.health()
            if isinstance(box.sender, TelegramChannel):
                row.update(poll_errors=box.sender.poll_errors, unknown_chats=box.sender.unknown_chats)
            channels[box.name] = row
        failing = sorted(n for n, c in channels.items() if c["state"] != "ok")
        return {"status": "failing: " + ", ".join(failing) if failing else "ok", "channels": channels}


def start_notify(settings, options, store, channel, *, env: Optional[Mapping[str, str]] = None,
                 clock: Callable[[], float] = time.time, wait: Optional[Callable[[float], bool]] = None,
                 threads: bool = True) -> Notifier:
    """The notifier of the bot running in this process (``channel`` its ControlChannel, ``store``
    its store: Telegram's audit rows), subscribed to the channel's events and results, started."""
    from mlcoord.notify.commands import Commands
    from mlcoord.server.accounts import Accounts, record_results
    from mlcoord.server.readers import BotReader

    accounts = Accounts(store)
    commands = Commands(BotReader(store, options, channel), accounts, channel)
    notifier = Notifier(settings.notify, env=env, commands=commands, clock=clock, wait=wait, threads=threads)
    commands.health = notifier.health
    notifier.tap_warnings()
    record_results(channel, accounts)
    channel.events.append(notifier.on_event)
    channel.results.append(notifier.on_result)
    return notifier.start()
