"""``[notify]``: which channels send which notifications, and how hard they try.

Tokens and webhook URLs are credentials (a Discord webhook URL alone lets anyone post): they are
read from the environment variables the config names (``token_env``, ``url_env``), never from the
config file, and registered for log redaction when read (:func:`mlcoord.notify.service.secret`).
Verbosity per event kind: ``on`` (sent), ``silent`` (sent without a sound: Telegram's
``disable_notification``, Discord's SUPPRESS_NOTIFICATIONS flag, ``"silent": true`` in a
webhook's JSON) or ``off``; ``[notify] events`` sets it for every channel, a channel's own
``events`` table overrides it kind by kind.
"""

from __future__ import annotations

from typing import Any, Optional

import attrs

from mlcoord.option_checks import env_name, integer, number

#: notification kinds, in the order the README lists them
KINDS = ("entry", "fill", "exit", "cancel", "guard_action", "warning", "drift_alert")
VERBOSITY = ("on", "silent", "off")
#: a fill and a cancelled order are frequent and follow an entry: sent, but silently
DEFAULT_EVENTS = {"entry": "on", "fill": "silent", "exit": "on", "cancel": "silent", "guard_action": "on",
                  "warning": "on", "drift_alert": "on"}
#: roles a Telegram chat may have (the API's; admin's extra rights have no command)
CHAT_ROLES = ("viewer", "trader")


def _events(instance: Any, attribute: Any, value: Any) -> None:
    for kind, verbosity in value.items():
        if kind not in KINDS:
            raise ValueError(f"{attribute.name} has an unknown event kind {kind!r} (known: {', '.join(KINDS)})",
                             attribute)
        if verbosity not in VERBOSITY:
            raise ValueError(f"{attribute.name}.{kind} must be one of {', '.join(VERBOSITY)}, got {verbosity!r}",
                             attribute)


def _chats(instance: Any, attribute: Any, value: Any) -> None:
    for chat, role in value.items():
        if not chat.lstrip("-").isdigit():
            raise ValueError(f"{attribute.name} keys must be Telegram chat ids (integers), got {chat!r}", attribute)
        if role not in CHAT_ROLES:
            raise ValueError(f"{attribute.name}.{chat} must be one of {', '.join(CHAT_ROLES)}, got {role!r}",
                             attribute)


def _http_url(instance: Any, attribute: Any, value: Any) -> None:
    if not value.startswith(("http://", "https://")):
        raise ValueError(f"{attribute.name} must be an http:// or https:// URL, got {value[:40]!r}", attribute)


@attrs.frozen
class TelegramConfig:
    """``[notify.telegram]``: the bot's token in ``token_env``; ``chats`` maps each chat id allowed
    to talk to the bot to its role (``viewer``: reads; ``trader``: also /stopentry /start /stop
    /forceexit); notifications go to every chat listed. ``base_url``: the Bot API's address (a
    test points it at a loopback fake). ``poll_seconds`` [0, 50]: getUpdates' long-polling time;
    ``commands = false`` sends notifications only (no polling)."""

    chats: dict[str, str] = attrs.field(factory=dict, validator=_chats)
    token_env: str = attrs.field(default="MLCOORD_TELEGRAM_TOKEN", validator=env_name)
    base_url: str = attrs.field(default="https://api.telegram.org", validator=_http_url)
    poll_seconds: int = attrs.field(default=25, validator=integer(0, 50))
    commands: bool = True
    events: dict[str, str] = attrs.field(factory=dict, validator=_events)


@attrs.frozen
class DiscordConfig:
    """``[notify.discord]``: a channel webhook's URL in ``url_env``; ``username`` shown as the sender."""

    url_env: str = attrs.field(default="MLCOORD_DISCORD_WEBHOOK_URL", validator=env_name)
    username: str = "mlcoord"
    events: dict[str, str] = attrs.field(factory=dict, validator=_events)


@attrs.frozen
class WebhookConfig:
    """``[notify.webhook]``: any HTTP endpoint taking the JSON of :mod:`mlcoord.notify.webhook`."""

    url_env: str = attrs.field(default="MLCOORD_WEBHOOK_URL", validator=env_name)
    events: dict[str, str] = attrs.field(factory=dict, validator=_events)


@attrs.frozen
class NotifyConfig:
    """``[notify]``. ``bot``: the name messages carry ("mlcoord"). ``queue_size`` [1, 100000]:
    notifications a channel may have waiting (a full queue drops its oldest). ``max_attempts``
    [1, 20] per notification, waiting ``backoff_seconds`` [0.01, 600] after the first failure,
    doubled each time up to ``backoff_max_seconds`` [0.01, 3600] (a 429's retry-after wins).
    ``timeout_seconds`` [0.1, 120]: per HTTP request."""

    bot: str = "mlcoord"
    events: dict[str, str] = attrs.field(factory=dict, validator=_events)
    queue_size: int = attrs.field(default=1000, validator=integer(1, 100_000))
    max_attempts: int = attrs.field(default=5, validator=integer(1, 20))
    backoff_seconds: float = attrs.field(default=1.0, validator=number(0.01, 600.0))
    backoff_max_seconds: float = attrs.field(default=60.0, validator=number(0.01, 3600.0))
    timeout_seconds: float = attrs.field(default=10.0, validator=number(0.1, 120.0))
    telegram: Optional[TelegramConfig] = None
    discord: Optional[DiscordConfig] = None
    webhook: Optional[WebhookConfig] = None

    @property
    def enabled(self) -> bool:
        return any(c is not None for c in (self.telegram, self.discord, self.webhook))

    def verbosity(self, own: dict[str, str]) -> dict[str, str]:
        """Each kind's verbosity for a channel whose ``events`` table is ``own``."""
        return {k: own.get(k, self.events.get(k, DEFAULT_EVENTS[k])) for k in KINDS}
