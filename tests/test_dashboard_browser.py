"""The dashboard (issue 18) in a real browser: Debian's chromium driven by Playwright (never a
browser download), against a paper bot on the loopback exchange simulator with its API server.

The paper session runs in the test's thread and the browser is driven between its cycles
(``on_cycle``), as ``test_api_server`` drives its HTTP client: a trader logs in, sees the open
position, cancels a forced exit at the confirmation, then confirms one; the loop closes the
position at its next cycles and the trader sees the closed trade and the control's result, an
admin the audit row, a viewer every page without a single control. No page logs a console error;
screenshots are saved (``MLCOORD_ARTIFACTS``, else the test's tmp folder).

Skipped only when chromium is not installed (``.ci/run`` installs it with apt) or Playwright is
missing (``pip install -e '.[test]'``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from exchange_sim import spot_client
from exchange_sim.server import ExchangeServer
from live_helpers import BarClock, live_config
from mlcoord.live.controls import FORCE_EXIT_REASON, ControlChannel
from mlcoord.live.runner import load_live_settings, run_paper
from mlcoord.live.store import Store
from mlcoord.registry import load_plugins

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason=f"chromium is not installed ({CHROMIUM}; .ci/run installs it with apt)")
pytest.importorskip("fastapi")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the test extra has it)")
httpx = pytest.importorskip("httpx")

from mlcoord.server.accounts import Accounts  # noqa: E402
from mlcoord.server.run import start_api  # noqa: E402

USERS = {"tom": ("trader", "trader-pass-0002"), "vera": ("viewer", "viewer-pass-0001"),
         "ada": ("admin", "admin-pass-0003")}
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WAIT = 15_000           # ms a page may take to show what the test waits for
SYMBOL = "BTC/USDT"
PAGES = ("overview", "positions", "trades", "equity", "ml", "dca", "journal")


class Browser:
    """One chromium; a fresh context (own localStorage) per user; every console error kept."""

    def __init__(self, playwright, url: str, shots: Path):
        self.browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        self.url, self.shots = url, shots
        self.errors: list[str] = []
        self.requests: list[str] = []

    def page_for(self, user: str):
        context = self.browser.new_context(viewport={"width": 1280, "height": 800})
        page = context.new_page()
        page.set_default_timeout(WAIT)
        page.on("console", lambda m: self.errors.append(f"{user}: {m.text} ({m.location['url']})") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"{user}: {e}"))
        page.on("request", lambda r: self.requests.append(r.url))
        page.goto(self.url + "/")
        page.fill("#login input[name=username]", user)
        page.fill("#login input[name=password]", USERS[user][1])
        page.click("#login button[type=submit]")
        sync_api.expect(page.locator("#whoami")).to_have_text(f"{user} ({USERS[user][0]})")
        sync_api.expect(page.locator("#botbar .live.on")).to_be_visible()      # the event stream is connected
        return page

    def open(self, page, name: str) -> None:
        page.click(f"nav a[data-page={name}]")
        sync_api.expect(page.locator(f"main[data-page={name}]")).to_be_attached()

    def shot(self, page, name: str) -> Path:
        path = self.shots / f"dashboard-{name}.png"
        page.screenshot(path=str(path))
        return path


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dashboard")
    shots = Path(os.environ.get("MLCOORD_ARTIFACTS") or tmp / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    seen: dict = {"steps": []}
    with ExchangeServer() as exchange, sync_api.sync_playwright() as playwright:
        settings, options = load_live_settings(live_config(
            tmp, "spot", leverage=None, history_bars=300, poll_seconds=60,
            extra='[api]\nlisten = "127.0.0.1:0"\nallow_force_enter = true'))
        store = Store.open(options.store)
        accounts = Accounts(store)
        for name, (role, password) in USERS.items():
            accounts.add_user(name, password, role)
        channel = ControlChannel()
        server = start_api(settings, options, store, channel)
        http = httpx.Client(base_url=server.url, timeout=30)
        browser = Browser(playwright, server.url, shots)
        try:
            def on_cycle(trader):
                _step(seen, trader, browser, http, channel)

            run_paper(settings, options, spot_client(exchange), load_plugins(), clock=BarClock(exchange),
                      cycles=30, store=store, channel=channel, on_cycle=on_cycle)
            seen["errors"], seen["requests"] = browser.errors, browser.requests
            seen["shots"] = sorted(shots.glob("dashboard-*.png"))
            print(f"screenshots: {shots}")
            yield seen
        finally:
            browser.browser.close()
            http.close()
            server.stop()
            store.close()


def _step(seen: dict, trader, browser: Browser, http, channel: ControlChannel) -> None:
    """The scenario, one step per cycle once its condition holds."""
    steps = seen["steps"]
    held = SYMBOL in trader.engine.ledger.positions
    if not steps:                                     # a position to look at: the trader enters one
        token = http.post("/api/v1/auth/login", json={"username": "tom", "password": USERS["tom"][1]}).json()
        r = http.post("/api/v1/force-enter", json={"symbol": SYMBOL},
                      headers={"Authorization": f"Bearer {token['access_token']}"})
        assert r.status_code == 202, r.text
        steps.append("entered")
    elif steps[-1] == "entered" and held:
        seen["trades_before"] = len(trader.engine.ledger.trades)
        seen["trader"] = page = browser.page_for("tom")
        browser.open(page, "positions")
        row = page.locator(f"tr.position[data-symbol='{SYMBOL}']")
        sync_api.expect(row).to_be_visible()
        seen["row"] = row.inner_text()
        position = trader.engine.ledger.positions[SYMBOL]
        seen["levels"] = trader.engine.loop.levels.get(SYMBOL)
        seen["quantity"] = position.quantity
        browser.shot(page, "positions")
        button = page.locator(f"button[data-symbol='{SYMBOL}']")
        button.click()                                 # the confirmation step: cancelled first
        dialog = page.locator("dialog#confirm")
        sync_api.expect(dialog).to_be_visible()
        seen["dialog"] = dialog.inner_text()
        page.click("#confirm-cancel")
        sync_api.expect(dialog).to_be_hidden()
        seen["pending_after_cancel"] = channel.pending()
        button.click()
        page.click("#confirm-ok")
        sync_api.expect(page.locator(".notice.ok").first).to_contain_text("queued")
        seen["pending_after_confirm"] = channel.pending()
        steps.append("force_exit")
    elif steps[-1] == "force_exit" and len(trader.engine.ledger.trades) > seen["trades_before"]:
        seen["closed"] = [t for t in trader.engine.ledger.trades[seen["trades_before"]:] if t.symbol == SYMBOL]
        page = seen["trader"]
        browser.open(page, "trades")
        closed = page.locator(f"tr.trade[data-symbol='{SYMBOL}']", has_text=FORCE_EXIT_REASON)
        sync_api.expect(closed).to_be_visible()
        seen["trade_row"] = closed.first.inner_text()
        browser.open(page, "positions")
        sync_api.expect(page.locator("main")).to_contain_text("no open position")
        browser.open(page, "controls")
        activity = page.locator("tr.activity", has_text="force_exit")
        sync_api.expect(activity).to_be_visible()
        seen["activity"] = activity.first.inner_text()
        seen["trader_links"] = page.locator("nav a").all_inner_texts()
        page.context.close()
        _admin(seen, browser)
        _viewer(seen, browser)
        steps.append("done")


def _admin(seen: dict, browser: Browser) -> None:
    page = browser.page_for("ada")
    browser.open(page, "audit")
    row = page.locator("tr.audit[data-action=force_exit]")
    sync_api.expect(row).to_be_visible()
    seen["audit_row"] = row.first.inner_text()
    page.context.close()


def _viewer(seen: dict, browser: Browser) -> None:
    page = browser.page_for("vera")
    seen["viewer_links"] = page.locator("nav a").all_inner_texts()
    seen["viewer_controls"] = {}
    for name in PAGES:
        browser.open(page, name)
        page.wait_for_load_state("networkidle")
        seen["viewer_controls"][name] = page.locator("button.control, .control").count()
        if name == "equity":
            sync_api.expect(page.locator("#equity-chart[data-drawn='1'] .main-svg").first).to_be_attached()
            seen["equity_points"] = int(page.locator(".card", has_text="points").locator(".value").inner_text())
            browser.shot(page, "equity")
        if name == "overview":
            browser.shot(page, "overview")
    page.goto(browser.url + "/#/controls")            # typed in by hand: the viewer lands on the overview
    sync_api.expect(page.locator("main[data-page=overview]")).to_be_attached()
    seen["viewer_at_controls"] = page.url
    page.context.close()


def test_a_trader_force_exits_an_open_position_with_confirmation_and_sees_the_closed_trade(session):
    assert session["steps"] == ["entered", "force_exit", "done"], session["steps"]
    levels = session["levels"]
    assert levels is not None and levels.stop > 0 and levels.take_profit > 0
    row = session["row"]
    assert SYMBOL in row and "long" in row and "1/1" in row, row          # one market leg, filled
    assert f"{levels.stop:.6g}" in row and f"{levels.take_profit:.6g}" in row, (levels, row)
    assert "Force-exit BTC/USDT" in session["dialog"]
    assert session["pending_after_cancel"] == 0 and session["pending_after_confirm"] == 1
    [trade] = session["closed"]
    assert trade.exit_reason == FORCE_EXIT_REASON and trade.quantity == pytest.approx(session["quantity"])
    assert FORCE_EXIT_REASON in session["trade_row"]
    assert "tom" in session["activity"] and f"intents submitted: close 1 of {SYMBOL}" in session["activity"]
    assert "Controls" in session["trader_links"] and "Audit" not in session["trader_links"]
    audit = session["audit_row"]
    for text in ("tom", "trader", "force_exit", "127.0.0.1", f"intents submitted: close 1 of {SYMBOL}"):
        assert text in audit, (text, audit)


def test_a_viewer_finds_no_control_on_any_page(session):
    assert session["viewer_controls"] == {name: 0 for name in PAGES}
    assert "Controls" not in session["viewer_links"] and "Audit" not in session["viewer_links"]
    assert session["equity_points"] >= 3          # one per cycle with a new bar
    assert session["viewer_at_controls"].endswith("#/overview")


def test_no_console_error_no_token_in_a_url_and_screenshots_are_saved(session):
    assert session["errors"] == [], "\n".join(session["errors"])
    in_urls = [u for u in session["requests"] if "token=" in u and "/api/v1/ws?token=" not in u]
    assert not in_urls                    # only the websocket's own short-lived token travels in a URL
    assert not [u for u in session["requests"] if not u.startswith(("http://127.0.0.1", "ws://127.0.0.1", "data:"))]
    names = [p.name for p in session["shots"]]
    assert names == ["dashboard-equity.png", "dashboard-overview.png", "dashboard-positions.png"]
    for path in session["shots"]:
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, path     # a blank page is a few kB
