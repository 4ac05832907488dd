"""Notifications next to a paper bot on the loopback exchange simulator (issue 18), threaded as in
production (outbox workers, Telegram's long polling against the loopback fake).

* up: a trader forces an exit from Telegram; the loop closes the position (exit reason
  ``api:force_exit``), the audit log names ``telegram:<chat>``, the chat gets the result; entries,
  fills and the exit reach Telegram and the webhook receiver; ``/api/v1/health`` and ``/metrics``
  show the channels' counters; a reload of ``[notify]`` is applied at once.
* down: every channel refuses connections or hangs; the session trades exactly as one without
  notifications (same decisions, fills and trades), and the failures show in health.
"""

from __future__ import annotations

import time

import httpx
import pytest

from exchange_sim import spot_client
from exchange_sim.server import ExchangeServer
from live_helpers import BarClock, live_config
from mlcoord.live.controls import FORCE_EXIT_REASON, ControlChannel
from mlcoord.live.runner import load_live_settings, run_paper
from mlcoord.live.store import Store
from mlcoord.notify.service import start_notify
from mlcoord.registry import load_plugins
from notify_fakes import FakeTelegram, Hanging, Receiver, refused_url

pytest.importorskip("fastapi")

from mlcoord.server.accounts import Accounts  # noqa: E402
from mlcoord.server.run import start_api  # noqa: E402

TOKEN = "987654:AAH-session-token-abcdefghijklmnop"
CHAT = 4242
CYCLES = 80
NOTIFY = f"""
[api]
listen = "127.0.0.1:0"
[notify]
backoff_seconds = 0.05
backoff_max_seconds = 0.2
timeout_seconds = 0.5
[notify.telegram]
chats = {{ "{CHAT}" = "trader" }}
poll_seconds = 1
[notify.webhook]
"""


def _until(check, seconds: float = 10.0) -> bool:
    """Wait for a worker thread's effect (bounded; the assertion is on the effect, not on time)."""
    end = time.monotonic() + seconds
    while not check():
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True


def _session(tmp, telegram_url: str, webhook_url: str, notify: bool = True):
    tmp.mkdir(exist_ok=True)
    settings, options = load_live_settings(live_config(
        tmp, "spot", leverage=None, history_bars=300, poll_seconds=60,
        extra=NOTIFY.replace('chats', f'base_url = "{telegram_url}"\nchats') if notify else ""))
    store = Store.open(options.store)
    channel = ControlChannel()
    env = {"MLCOORD_TELEGRAM_TOKEN": TOKEN, "MLCOORD_WEBHOOK_URL": webhook_url}
    notifier = start_notify(settings, options, store, channel, env=env) if notify else None
    return settings, options, store, channel, notifier


def test_telegram_force_exit_and_notifications_with_a_paper_bot(tmp_path):
    with ExchangeServer() as exchange, FakeTelegram(TOKEN) as tg, Receiver() as hook:
        settings, options, store, channel, notifier = _session(tmp_path, tg.url, hook.url + "/hook")
        Accounts(store).add_user("ada", "admin-pass-0003", "admin")
        server = start_api(settings, options, store, channel, notifier=notifier,
                           load_config=lambda: reloaded or settings)
        reloaded = None
        forced: dict = {}

        def on_cycle(trader):
            held = [p for p in trader.portfolio.positions if not p.startswith("~")]
            if held and not forced:
                forced.update(symbol=held[0], trades=len(trader.engine.trades))
                tg.say(CHAT, f"/forceexit {held[0]}")
                assert _until(lambda: channel.pending() == 1)        # polled, audited, queued for the loop

        try:
            trader = run_paper(settings, options, spot_client(exchange), load_plugins(), clock=BarClock(exchange),
                               cycles=CYCLES, store=store, channel=channel, on_cycle=on_cycle)
            closed = trader.engine.trades[forced["trades"]]
            assert (closed.symbol, closed.exit_reason) == (forced["symbol"], FORCE_EXIT_REASON)
            [row] = [r for r in Accounts(store).audit_rows() if r["action"] == "force_exit"]
            assert (row["username"], row["role"], row["address"]) == (f"telegram:{CHAT}", "trader", "telegram")
            assert row["result"].startswith("intents submitted: close 1 of " + forced["symbol"])
            assert _until(lambda: any(t.startswith(f"control {row['id']} (force_exit): intents submitted")
                                      for t in tg.texts(CHAT)))
            kinds = {b["type"] for b in hook.bodies}
            assert _until(lambda: {"entry", "fill", "exit"} <= {b["type"] for b in hook.bodies}), kinds
            exits = [b for b in hook.bodies if b["type"] == "exit"]
            assert any(b["payload"]["exit_reason"] == FORCE_EXIT_REASON for b in exits)
            assert any(t.startswith("mlcoord: exit ") for t in tg.texts(CHAT))
            http = httpx.Client(base_url=server.url, timeout=10)
            health = http.get("/api/v1/health").json()["notify"]
            assert health["status"] == "ok" and health["channels"]["webhook"]["sent"] == len(hook.bodies)
            metrics = http.get("/metrics").text
            assert f'mlcoord_notify_sent_total{{channel="webhook"}} {float(len(hook.bodies))}' in metrics
            assert 'mlcoord_notify_queue_depth{channel="telegram"}' in metrics
            import attrs

            reloaded = attrs.evolve(settings, notify=attrs.evolve(settings.notify, events={"fill": "off"}))
            r = http.post("/api/v1/reload", auth=("ada", "admin-pass-0003"))
            assert (r.status_code, r.json()["detail"]) == (200, "reloaded: notification settings")
            assert notifier.config.events == {"fill": "off"} and notifier.outboxes[1].sender.verbosity["fill"] == "off"
            assert TOKEN not in http.get("/api/v1/health").text
        finally:
            server.stop()
            notifier.close()
            store.close()


def _fingerprint(trader) -> tuple:
    e = trader.engine
    return ([(d.symbol, d.time, d.outcome) for d in e.loop.journal.decisions],
            [(f.symbol, f.time, f.price, f.quantity) for f in e.fills],
            [(t.symbol, t.closed_at, t.pnl, t.exit_reason) for t in e.trades])


def test_trading_goes_on_unchanged_with_every_channel_down(tmp_path):
    with ExchangeServer() as exchange:
        settings, options, store, channel, _ = _session(tmp_path / "quiet", "", "", notify=False)
        quiet = run_paper(settings, options, spot_client(exchange), load_plugins(), clock=BarClock(exchange),
                          cycles=CYCLES, store=store, channel=channel)
        store.close()
    with ExchangeServer() as exchange, Hanging() as hanging:
        settings, options, store, channel, notifier = _session(tmp_path / "down", hanging.url, refused_url())
        try:
            down = run_paper(settings, options, spot_client(exchange), load_plugins(), clock=BarClock(exchange),
                             cycles=CYCLES, store=store, channel=channel)
            assert _fingerprint(down) == _fingerprint(quiet) and quiet.engine.trades
            assert _until(lambda: notifier.health()["channels"]["webhook"]["failed"] > 0)
            health = notifier.health()
            assert health["channels"]["webhook"]["state"] == "failing"
            assert health["channels"]["telegram"]["poll_errors"] > 0 or health["channels"]["telegram"]["queued"] > 0
        finally:
            notifier.close()
            store.close()
