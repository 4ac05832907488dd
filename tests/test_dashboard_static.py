"""The dashboard's files and headers (issue 18), without a browser: what is public is the
dashboard's own HTML, JS and CSS (and the report's plotly.js), nothing else; every answer carries
the Content-Security-Policy; the equity curve route's numbers."""

from __future__ import annotations

import re

import pytest

from live_helpers import live_config
from mlcoord.config import load_settings
from mlcoord.errors import ConfigError
from mlcoord.live.runner import load_live_settings
from mlcoord.live.store import Store

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from fastapi import HTTPException  # noqa: E402

from mlcoord.server.readers import BotReader, equity_curve  # noqa: E402
from mlcoord.server.run import start_api  # noqa: E402
from mlcoord.server.static import DASHBOARD, TYPES, asset, plotly_style_ids  # noqa: E402

OTHER_BOT = "https://bot2.example:8443"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("static")
    settings, options = load_live_settings(live_config(
        tmp, "spot", leverage=None, extra=f'[api]\nlisten = "127.0.0.1:0"\ndashboard_origins = ["{OTHER_BOT}"]'))
    with Store.open(options.store) as store:
        api = start_api(settings, options, store)       # attached to the store: read-only, no user
        try:
            with httpx.Client(base_url=api.url, timeout=10) as http:
                yield http
        finally:
            api.stop()


def test_the_page_loads_only_files_of_this_server_and_runs_no_inline_script(server):
    r = server.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", r.text, re.S)
    assert scripts == [(' type="module" src="dashboard/app.js"', "")]
    assert not re.search(r"\son[a-z]+=", r.text), "no inline event handler"
    assert not re.search(r'(src|href)="(https?:)?//', r.text), "nothing from another origin"
    for ident in plotly_style_ids():        # plotly.js then injects no inline stylesheet the CSP refuses
        assert f'id="{ident}"' in r.text


def test_every_answer_carries_the_content_security_policy(server):
    for path in ("/", "/dashboard/app.js", "/api/v1/ping", "/api/v1/status"):
        r = server.get(path)
        csp = r.headers["content-security-policy"]
        assert "script-src 'self';" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp, path
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert f"connect-src 'self' {OTHER_BOT} wss://bot2.example:8443;" in csp
        assert r.headers["x-content-type-options"] == "nosniff" and r.headers["x-frame-options"] == "DENY"


def test_every_dashboard_file_is_served_and_data_still_needs_a_user(server):
    files = [p for p in DASHBOARD.rglob("*") if p.is_file()]
    assert len(files) >= 10
    for path in files:
        name = path.relative_to(DASHBOARD).as_posix()
        r = server.get(f"/dashboard/{name}")
        assert r.status_code == 200 and r.headers["content-type"] == TYPES[path.suffix], name
    plotly = server.get("/dashboard/vendor/plotly.min.js")
    assert plotly.status_code == 200 and plotly.text.lstrip().startswith("/**\n* plotly.js")
    assert server.get("/api/v1/status").status_code == 401          # the page is public, the data is not
    assert server.get("/dashboard/pages").status_code == 404
    assert server.get("/dashboard/nothing.js").status_code == 404


@pytest.mark.parametrize("name", ["../static.py", "../accounts.py", "pages/../../app.py", "/etc/passwd",
                                  "../../config.py", "pages", "vendor", "index.htm", "app.js.map",
                                  "../dashboard/app.js/../../run.py", "app\x00.js", "x" * 5000 + ".js"])
def test_nothing_outside_the_dashboards_files_is_served(name):
    with pytest.raises(HTTPException) as info:
        asset(name)
    assert info.value.status_code == 404


def test_the_dashboard_builds_its_pages_without_markup_from_data():
    """Values reach the page as text nodes (dom.js), so a symbol or a reason cannot run as HTML."""
    for path in DASHBOARD.rglob("*.js"):
        text = path.read_text(encoding="utf-8")
        for banned in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
            assert banned not in text, (path.name, banned)


def test_dashboard_origins_must_be_origins():
    with pytest.raises(ConfigError, match=r"dashboard_origins must list origins .* got 'bot2.example/x' @ \$\.api"):
        load_settings(None, {"api": {"dashboard_origins": ["bot2.example/x"]}})
    ok = load_settings(None, {"api": {"dashboard_origins": [OTHER_BOT, "http://[::1]:8080"]}})
    assert ok.api.dashboard_origins == (OTHER_BOT, "http://[::1]:8080")


class _Reader(BotReader):
    """A store-attached reader with planted trades and equity (no store needed)."""

    def __init__(self, trades, equity):
        super().__init__(store=None, options=None)
        self._trades, self._equity = trades, equity

    def trades(self):
        return self._trades

    def snapshot(self):
        return {"equity": self._equity}


def test_the_equity_curve_of_a_store_is_its_realised_pnl_with_drawdowns_from_the_peak():
    trades = [{"closed_at": 3, "pnl": -50.0}, {"closed_at": 1, "pnl": 100.0}, {"closed_at": 2, "pnl": -110.0}]
    curve = equity_curve(_Reader(trades, equity=940.0))
    assert curve["source"] == "closed trades" and curve["points"] == 3
    assert curve["equity"] == {"time_ns": [1, 2, 3], "value": [1100.0, 990.0, 940.0]}   # started at 1000
    assert curve["drawdown"]["value"] == pytest.approx([0.0, 0.1, 160 / 1100])
    assert curve["max_drawdown"] == pytest.approx(160 / 1100)


def test_a_long_equity_curve_is_thinned_keeping_the_deepest_drawdown():
    values = [1000.0 + (k % 50) for k in range(10_000)]
    values[7_777] = 500.0
    reader = _Reader([], 0.0)
    reader.channel = type("Channel", (), {"equity": [(k, v) for k, v in enumerate(values)]})()
    curve = equity_curve(reader, max_points=400)
    assert curve["source"] == "cycles" and curve["points"] == 10_000
    assert len(curve["equity"]["value"]) <= 400 and 500.0 in curve["equity"]["value"]
    assert curve["max_drawdown"] == pytest.approx(1 - 500 / 1049) == max(curve["drawdown"]["value"])
