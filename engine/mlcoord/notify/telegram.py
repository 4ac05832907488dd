"""Telegram: notifications with ``sendMessage``, commands by long polling ``getUpdates``.

Both go through the Bot API over HTTPS (``{base_url}/bot{token}/METHOD``, JSON bodies; see
https://core.telegram.org/bots/api). Polling asks with the ``offset`` of the last update seen plus
one, so an update is handled once. A chat not in ``[notify.telegram] chats`` is ignored and logged
by its id only (nothing of what it sent). Answers and notifications leave through the channel's
outbox, with its retries; a chat that blocked the bot (403) does not stop the others.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Optional, Union

import attrs
import structlog

from mlcoord.notify.events import Message, describe
from mlcoord.notify.http import post_json
from mlcoord.notify.outbox import Refused, SendError

log = structlog.get_logger("mlcoord.notify")

#: Telegram's longest message
MAX_TEXT = 4096


@attrs.frozen
class Reply:
    """A command's answer to one chat."""

    chat: str
    text: str


class TelegramChannel:
    name = "telegram"

    def __init__(self, token: str, base_url: str, chats: dict[str, str], verbosity: dict[str, str], timeout: float,
                 poll_seconds: int = 25):
        self._api = f"{base_url.rstrip('/')}/bot{token}/"
        self.chats, self.verbosity, self.timeout, self.poll_seconds = dict(chats), verbosity, timeout, poll_seconds
        self.offset = 0
        self.poll_errors = 0
        self.unknown_chats = 0
        self._stopping = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def call(self, method: str, body: dict[str, Any], timeout: Optional[float] = None) -> Any:
        found = post_json(self._api + method, body, self.timeout if timeout is None else timeout)
        if not isinstance(found, dict) or not found.get("ok"):
            raise SendError(f"{method}: the Bot API did not answer ok")
        return found.get("result")

    def send(self, item: Union[Message, Reply]) -> None:
        if isinstance(item, Reply):
            self._message(item.chat, item.text, silent=False)
            return
        title, text = describe(item.notification)
        refused: Optional[Refused] = None
        retry: Optional[SendError] = None
        for chat in self.chats:
            if chat in item.done:
                continue
            try:
                self._message(chat, f"{item.notification.bot}: {title}\n{text}", silent=item.silent)
            except Refused as exc:       # this chat blocked the bot or was deleted: not retried
                refused = exc
            except SendError as exc:
                retry = exc
                continue
            item.done.add(chat)
        if retry is not None:
            raise retry
        if refused is not None:
            raise refused

    def _message(self, chat: str, text: str, *, silent: bool) -> None:
        self.call("sendMessage", {"chat_id": int(chat), "text": text[:MAX_TEXT], "disable_notification": silent})

    # -- commands ------------------------------------------------------------------------------
    def poll_once(self, handle: Callable[[str, str, str], None]) -> int:
        """One ``getUpdates`` (long poll); each message of an allowed chat goes to
        ``handle(chat, role, text)``. Returns the number of updates."""
        updates = self.call("getUpdates", {"offset": self.offset, "timeout": self.poll_seconds,
                                           "allowed_updates": ["message"]}, timeout=self.poll_seconds + self.timeout)
        for update in updates or ():
            self.offset = max(self.offset, int(update.get("update_id", 0)) + 1)
            message = update.get("message") or {}
            chat = str((message.get("chat") or {}).get("id", ""))
            text = message.get("text")
            if not chat or not isinstance(text, str):
                continue
            role = self.chats.get(chat)
            if role is None:
                self.unknown_chats += 1
                log.info("notify_telegram_unknown_chat", chat_id=chat, note="ignored: not in [notify.telegram] chats")
                continue
            handle(chat, role, text)
        return len(updates or ())

    def start_polling(self, handle: Callable[[str, str, str], None], wait: Callable[[float], bool],
                      backoff: float, backoff_max: float) -> None:
        """Poll in a thread until :meth:`stop`; a failing poll waits ``backoff`` (doubled up to
        ``backoff_max``) through ``wait``."""
        def run() -> None:
            delay = backoff
            while not self._stopping.is_set():
                try:
                    self.poll_once(handle)
                    delay = backoff
                except Exception as exc:     # the Bot API down, a bad answer: keep polling, later
                    self.poll_errors += 1
                    if self.poll_errors == 1 or self.poll_errors % 100 == 0:
                        log.warning("notify_telegram_poll_failed", error=f"{type(exc).__name__}: {exc}",
                                    failures=self.poll_errors)
                    if wait(delay) or self._stopping.is_set():
                        return
                    delay = min(delay * 2, backoff_max)

        self._thread = threading.Thread(target=run, name="mlcoord-notify-telegram-poll", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
