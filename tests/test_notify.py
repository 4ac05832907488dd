"""Notifications (issue 18) against loopback fakes: the Telegram Bot API, a Discord-shaped webhook
and a generic webhook receiver (``notify_fakes``). The outboxes run without threads here
(``threads=False``, :meth:`Notifier.run_pending`) and wait through a recording sleeper, so nothing
sleeps and every result is deterministic; ``test_notify_session.py`` runs them threaded next to a
paper bot."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from mlcoord.config import Settings, structure
from mlcoord.errors import ConfigError
from mlcoord.live.controls import Control, ControlChannel
from mlcoord.live.store import Store
from mlcoord.notify.events import Message, Notification, kind_of
from mlcoord.notify.outbox import Outbox, SendError
from mlcoord.notify.service import Notifier, start_notify
from notify_fakes import FakeTelegram, Receiver, refused_url

TOKEN = "123456:AAE-fake-telegram-token-0123456789"
TRADER, VIEWER, STRANGER = 111, -222, 333


class Waits(list):
    """The retry sleeper: records each wait, never sleeps."""

    def __call__(self, seconds: float) -> bool:
        self.append(seconds)
        return False


def settings(telegram_url: str = "", discord: bool = False, webhook: bool = False, **notify) -> Settings:
    table: dict = dict(notify)
    if telegram_url:
        table["telegram"] = {"base_url": telegram_url, "chats": {str(TRADER): "trader", str(VIEWER): "viewer"},
                             "poll_seconds": 0, **table.pop("telegram_extra", {})}
    if discord:
        table["discord"] = {"events": table.pop("discord_events", {})}
    if webhook:
        table["webhook"] = {}
    return structure({"notify": table}, Settings)


def env(telegram="", discord="", webhook="") -> dict:
    return {"MLCOORD_TELEGRAM_TOKEN": TOKEN, "MLCOORD_DISCORD_WEBHOOK_URL": discord, "MLCOORD_WEBHOOK_URL": webhook}


EVENTS = [
    {"type": "decision", "symbol": "BTC/USDT", "outcome": "entered", "signal": "BUY", "confidence": 0.71,
     "plan": {"side": "LONG", "legs": [{"price": 100.0}, {"price": 99.5}]}, "levels": {"stop": 95.0, "take_profit": 110.0},
     "sizing": {"quantity": 0.5}, "reasons": ["RSI oversold"]},
    {"type": "decision", "symbol": "BTC/USDT", "outcome": "below_threshold"},
    {"type": "fill", "symbol": "BTC/USDT", "side": 1, "price": 100.0, "quantity": 0.25, "tag": "entry0", "hedge": False},
    {"type": "order_cancelled", "symbol": "BTC/USDT", "order_id": "o-2"},
    {"type": "guard_action", "guard": "protections", "action": "lock", "symbol": "BTC/USDT", "reason": "cooldown"},
    {"type": "trade_closed", "symbol": "BTC/USDT", "side": 1, "pnl": 4.5, "exit_reason": "take_profit",
     "entry_price": 100.0, "exit_price": 110.0, "fees": 0.1},
    {"type": "warning", "level": "warning", "event": "candles_skipped", "line": "{}"},
    {"type": "warning", "level": "warning", "event": "notify_failed", "line": "{}"},       # the notifier's own: never
    {"type": "drift_alert", "state": "alert", "ece_live": 0.2, "ece_reference": 0.05, "difference": 0.15},
    {"type": "cycle", "status": "ok", "equity": 1.0, "seconds": 0.1},
]


def test_event_kinds_come_from_the_websocket_events():
    assert [kind_of(e) for e in EVENTS] == ["entry", None, "fill", "cancel", "guard_action", "exit", "warning", None,
                                            "drift_alert", None]


def test_config_errors_name_the_field_and_never_the_secret():
    with pytest.raises(ConfigError, match=r"events.fill must be one of on, silent, off, got 'loud' @ \$.notify.discord"):
        structure({"notify": {"discord": {"events": {"fill": "loud"}}}}, Settings)
    with pytest.raises(ConfigError, match=r"chats keys must be Telegram chat ids .* got 'me' @ \$.notify.telegram"):
        structure({"notify": {"telegram": {"chats": {"me": "trader"}}}}, Settings)
    with pytest.raises(ConfigError) as pasted:          # a URL pasted where the variable's name belongs
        structure({"notify": {"discord": {"url_env": "https://discord.com/api/webhooks/1/secret-part-xyz"}}}, Settings)
    assert "url_env must name an environment variable" in str(pasted.value) and "secret-part" not in str(pasted.value)
    with pytest.raises(ConfigError, match=r"\[notify.telegram\] token_env = 'MLCOORD_TELEGRAM_TOKEN': that "
                                          r"environment variable is not set"):
        Notifier(settings("http://127.0.0.1:9").notify, env={}, threads=False)


def test_verbosity_per_channel_and_event_and_payload_shapes():
    with FakeTelegram(TOKEN) as tg, Receiver() as discord, Receiver() as hook:
        s = settings(tg.url, discord=True, webhook=True, events={"cancel": "off"},
                     discord_events={"fill": "off", "exit": "silent"})
        n = Notifier(s.notify, env=env(discord=discord.url + "/api/webhooks/1/tok", webhook=hook.url), threads=False,
                     clock=lambda: 1_700_000_000.5, wait=Waits())
        for e in EVENTS:
            n.on_event(e)
        n.run_pending()
    kinds = ["entry", "fill", "guard_action", "exit", "warning", "drift_alert"]      # cancel: off everywhere
    # Telegram: every kind to both chats; fills silent by default
    assert [m["text"].split(":")[1].split()[0] for m in tg.sent if m["chat_id"] == TRADER] == \
        ["entry", "fill", "guard", "exit", "warning", "calibration"]
    assert {(m["text"].split(":")[1].split()[0], m["disable_notification"]) for m in tg.sent} >= {("fill", True),
                                                                                                   ("exit", False)}
    assert len(tg.texts(VIEWER)) == len(tg.texts(TRADER)) == 6
    # the webhook: its documented schema, the websocket event as payload
    assert [b["type"] for b in hook.bodies] == kinds
    first = hook.bodies[0]
    assert set(first) == {"schema_version", "type", "time", "time_unix", "bot", "silent", "title", "text", "payload"}
    assert first["time"] == "2023-11-14T22:13:20.500Z" and first["bot"] == "mlcoord" and first["payload"] == EVENTS[0]
    assert [b["silent"] for b in hook.bodies] == [False, True, False, False, False, False]
    # Discord: fills off, exits silent (SUPPRESS_NOTIFICATIONS), the documented shape and limits
    assert len(discord.bodies) == 5
    for body in discord.bodies:
        check_discord_shape(body)
    assert [b.get("flags", 0) for b in discord.bodies] == [0, 0, 1 << 12, 0, 0]


def check_discord_shape(body: dict) -> None:
    """Discord's Execute Webhook JSON params (discord.com/developers/docs/resources/webhook#execute-webhook)
    and embed limits (.../resources/message#embed-object-embed-limits)."""
    assert set(body) <= {"content", "username", "avatar_url", "tts", "embeds", "allowed_mentions", "flags"}
    assert isinstance(body["content"], str) and 0 < len(body["content"]) <= 2000
    assert len(body["username"]) <= 80 and isinstance(body["embeds"], list) and len(body["embeds"]) <= 10
    for embed in body["embeds"]:
        assert set(embed) <= {"title", "description", "color", "timestamp", "footer", "fields", "url", "author"}
        assert len(embed["title"]) <= 256 and len(embed["description"]) <= 4096
        assert isinstance(embed["color"], int) and 0 <= embed["color"] <= 0xFFFFFF
        assert embed["timestamp"].endswith("Z") and "T" in embed["timestamp"]
        assert len(embed["fields"]) <= 25 and all(len(f["name"]) <= 256 and len(f["value"]) <= 1024
                                                  for f in embed["fields"])
    assert body.get("flags", 0) & ~((1 << 2) | (1 << 12)) == 0      # only SUPPRESS_EMBEDS / SUPPRESS_NOTIFICATIONS


def test_retries_back_off_exponentially_and_honour_429_retry_after():
    waits = Waits()
    with Receiver([(500, {}), (500, {}), (500, {})]) as down, \
            Receiver([(429, {"message": "You are being rate limited.", "retry_after": 0.75, "global": False})]) as limited:
        s = settings(discord=True, backoff_seconds=1.0, backoff_max_seconds=3.0, max_attempts=5)
        n = Notifier(s.notify, env=env(discord=down.url), threads=False, wait=waits)
        n.on_event(EVENTS[0])
        n.run_pending()
        assert waits == [1.0, 2.0, 3.0] and len(down.bodies) == 4          # doubled, capped; then sent
        box = n.outboxes[0]
        assert (box.stats.sent, box.stats.retries, box.stats.failed) == (1, 3, 0)
        waits.clear()
        n = Notifier(s.notify, env=env(discord=limited.url), threads=False, wait=waits)
        n.on_event(EVENTS[0])
        n.run_pending()
        assert waits == [0.75] and len(limited.bodies) == 2


def test_a_dead_channel_gives_up_counts_and_shows_in_health():
    waits = Waits()
    s = settings(webhook=True, max_attempts=3)
    n = Notifier(s.notify, env=env(webhook=refused_url()), threads=False, wait=waits)
    with capture_logs() as logs:
        n.on_event(EVENTS[0])
        n.run_pending()
    assert waits == [1.0, 2.0]
    health = n.health()
    row = health["channels"]["webhook"]
    assert health["status"] == "failing: webhook" and (row["failed"], row["sent"], row["state"]) == (1, 0, "failing")
    assert "ConnectionRefusedError" in row["last_error"] and "127.0.0.1" not in row["last_error"]
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["notify_failed"]


def test_a_full_queue_drops_the_oldest_with_a_counted_warning():
    class Never:
        name, verbosity = "never", {}

        def send(self, item):
            raise AssertionError("not sent in this test")

    box = Outbox(Never(), size=3, max_attempts=1, backoff=1.0, backoff_max=1.0)
    with capture_logs() as logs:
        for i in range(5):
            box.put(i)
    assert box.take_pending() == [2, 3, 4] and box.stats.dropped == 2
    assert [(e["event"], e["dropped"]) for e in logs] == [("notify_dropped", 1)]     # then every 100th


def test_telegram_commands_by_role_through_the_control_channel_and_audit(tmp_path):
    store = Store.open(str(tmp_path / "live.db"))
    channel = ControlChannel()
    channel.snapshot = {"running": True, "status": "ok", "equity": 10_250.0, "cash": 9_000.0, "exposure": 1_250.0,
                        "positions": [{"symbol": "BTC/USDT", "side": 1, "hedge": False, "quantity": 0.01,
                                       "entry_price": 100_000.0, "price": 101_000.0, "unrealised_pnl": 10.0,
                                       "stop": 98_000.0, "take_profit": 105_000.0}],
                        "locks": {}, "guard_locks": {"protections": {"ETH/USDT": {"until_ns": 1, "why": "cooldown"}}}}
    channel.trades.append({"symbol": "BTC/USDT", "side": 1, "pnl": 12.5, "fees": 0.5, "exit_reason": "take_profit",
                           "entry_reason": "technical", "closed_at": 1_700_000_000 * 10**9})
    with FakeTelegram(TOKEN) as tg, capture_logs() as logs:
        s = settings(tg.url)
        n = start_notify(s, None, store, channel, env=env(), threads=False, wait=Waits())
        telegram = n.outboxes[0].sender
        for chat, text in [(TRADER, "/status"), (VIEWER, "/balance"), (VIEWER, "/profit"), (VIEWER, "/locks"),
                           (VIEWER, "/forceexit BTC/USDT"), (STRANGER, "/forceexit all"), (TRADER, "/forceexit BTC/USDT 0.5"),
                           (TRADER, "/stopentry@mlcoord_bot"), (TRADER, "/performance"), (TRADER, "/nonsense")]:
            tg.say(chat, text)
        assert telegram.poll_once(n.handle_command) == 10
        assert telegram.poll_once(n.handle_command) == 0 and tg.offsets == [0, 11]      # each update once
        n.run_pending()
        queued = []
        while channel.pending():
            queued.append(channel._queue.get_nowait())
        for control in queued:                   # what the loop does with them, reported back
            for hook in channel.results:
                hook(control, f"applied {control.kind}")
        n.run_pending()
    trader, viewer = tg.texts(TRADER), tg.texts(VIEWER)
    assert "BTC/USDT long 0.01 @ 100000" in trader[0] and "stop 98000" in trader[0]
    assert viewer[0] == "equity 10,250.00; cash 9,000.00; exposure 1,250.00"
    assert viewer[1].startswith("P&L +12.50 over 1 trades (1 won)")
    assert viewer[2] == "ETH/USDT: protections (cooldown)"
    assert viewer[3] == "refused: /forceexit needs the trader role (this chat is a viewer)"
    assert tg.texts(STRANGER) == []                                       # unknown chats: ignored
    assert trader[1].startswith("forceexit queued (control ") and trader[2].startswith("stopentry queued")
    assert trader[3] == "BTC/USDT: +12.50 over 1 trades, win rate 100%" and trader[4].startswith("unknown command")
    assert [(c.kind, c.symbol, c.fraction, c.user) for c in queued] == [
        ("force_exit", "BTC/USDT", 0.5, f"telegram:{TRADER}"), ("pause", None, 1.0, f"telegram:{TRADER}")]
    assert trader[5:] == [f"control {queued[0].audit_id} (force_exit): applied force_exit",
                          f"control {queued[1].audit_id} (pause): applied pause"]
    from mlcoord.server.accounts import Accounts

    audit = Accounts(store).audit_rows()
    assert [(r["username"], r["role"], r["action"], r["address"], r["result"]) for r in audit[::-1]] == [
        (f"telegram:{VIEWER}", "viewer", "force_exit", "telegram", "refused: the viewer role may not do this (needs trader)"),
        (f"telegram:{TRADER}", "trader", "force_exit", "telegram", "applied force_exit"),
        (f"telegram:{TRADER}", "trader", "pause", "telegram", "applied pause")]
    unknown = [e for e in logs if e["event"] == "notify_telegram_unknown_chat"]
    assert unknown == [{"event": "notify_telegram_unknown_chat", "chat_id": str(STRANGER), "log_level": "info",
                        "note": "ignored: not in [notify.telegram] chats"}]
    assert all(TOKEN not in repr(e) for e in logs) and TOKEN not in repr(n.health())
    n.close()
    store.close()


def test_log_warnings_are_notified_through_the_api_s_log_tail(tmp_path):
    store = Store.open(str(tmp_path / "live.db"))
    with Receiver() as hook:
        n = start_notify(settings(webhook=True), None, store, ControlChannel(), env=env(webhook=hook.url),
                         threads=False, wait=Waits())
        tap = n._tap
        tap("info", {"event": "cycle_done"})
        tap("warning", {"event": "candles_skipped", "symbol": "BTC/USDT", "token": TOKEN})
        tap("warning", {"event": "notify_failed", "channel": "webhook"})
        n.close()
        n.run_pending()
    assert [(b["type"], b["payload"]["event"]) for b in hook.bodies] == [("warning", "candles_skipped")]
    assert TOKEN not in repr(hook.bodies)
    from mlcoord.logs import _taps

    assert tap not in _taps
    store.close()


def test_drift_alert_is_an_event_when_the_rule_starts_or_stops_alerting():
    channel = ControlChannel()
    seen: list = []
    channel.events.append(seen.append)
    for state in ("insufficient data", "ok", "alert", "alert", "ok", "ok"):
        channel._drift_changed({"state": state, "ece_live": 0.1})
    assert [(e["type"], e["state"], e["previous"]) for e in seen] == [("drift_alert", "alert", "ok"),
                                                                       ("drift_alert", "ok", "alert")]


def test_reconfigure_keeps_counters_and_queue_and_refuses_an_unset_variable():
    with Receiver() as hook:
        s = settings(webhook=True)
        n = Notifier(s.notify, env=env(webhook=hook.url), threads=False, wait=Waits())
        n.on_event(EVENTS[0])
        n.run_pending()
        n.on_event(EVENTS[5])
        quiet = structure({"notify": {"webhook": {"events": {"exit": "off"}}}}, Settings).notify
        n.reconfigure(quiet)
        n.on_event(EVENTS[5])                              # now off
        n.run_pending()
        assert [b["type"] for b in hook.bodies] == ["entry", "exit"] and n.health()["channels"]["webhook"]["sent"] == 2
        with pytest.raises(ConfigError, match="MLCOORD_WEBHOOK_URL"):
            n.env = {}
            n.reconfigure(s.notify)
        assert n.config is quiet


def test_a_send_error_from_one_chat_retries_only_that_chat():
    class Flaky:
        def __init__(self):
            self.calls: list = []

        def __call__(self, chat, text, *, silent):
            self.calls.append(chat)
            if chat == str(VIEWER) and self.calls.count(chat) == 1:
                raise SendError("network: timeout")

    s = settings("http://127.0.0.1:9")
    n = Notifier(s.notify, env=env(), threads=False, wait=Waits())
    sender = n.outboxes[0].sender
    sender._message = Flaky()
    n.outboxes[0].deliver(Message(Notification("exit", 0.0, "bot", EVENTS[5])))
    assert sender._message.calls == [str(TRADER), str(VIEWER), str(VIEWER)]


def test_results_of_others_controls_are_not_sent_to_telegram():
    from mlcoord.notify.commands import Commands

    assert Commands.result_for(Control("pause", user="ada"), "done") is None
    assert Commands.result_for(Control("pause", user="telegram:-5", audit_id=3), "done") == ("-5", "control 3 (pause): done")
