"""The report in a real browser: headless Chromium (Debian's ``chromium`` package) loads the file
offline, every chart renders to SVG, no script error is logged, and a screenshot is saved.

Skipped only when ``chromium`` is not installed (CI installs it, see ``.ci/run``).
"""

from __future__ import annotations

import html as html_text
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from mlcoord.backtest.run import run_backtest
from mlcoord.config import load_settings
from mlcoord.registry import discover_entry_points, load_plugins
from mlcoord.report import write_report

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")

# Captures what the console would show, into the DOM that --dump-dom prints.
CAPTURE = """<script>(function(){var seen=[];function keep(m){seen.push(String(m));
document.documentElement.setAttribute('data-errors',JSON.stringify(seen));}
window.addEventListener('error',function(e){keep(e.message);});
window.addEventListener('unhandledrejection',function(e){keep('Unhandled '+e.reason);});
var error=console.error;console.error=function(){keep(Array.prototype.join.call(arguments,' '));
return error.apply(console,arguments);};})();</script>"""


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
         f"--user-data-dir={profile}", "--virtual-time-budget=20000", *args],
        capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """The default backtest (ML coordinator included) on a short range, written as a report."""
    folder = tmp_path_factory.mktemp("browser")
    plugins = load_plugins({}, entry_points={n: ep for n, ep in discover_entry_points().items()
                                             if getattr(ep.dist, "name", "") == "mlcoord"})
    result = run_backtest(load_settings(None, {"data": {"timerange": "20250101-20250301"}}), plugins=plugins)
    return write_report(result.to_json(), folder / "report.html")


def test_every_chart_renders_without_console_errors_and_a_screenshot_is_saved(report, tmp_path):
    html = report.read_text(encoding="utf-8")
    charts = re.findall(r'<div id="(fig\d+)" class="plotly-graph-div"', html)
    assert len(charts) >= 7
    probe = tmp_path / "report.html"
    probe.write_text(html.replace("<head>", "<head>" + CAPTURE, 1), encoding="utf-8")
    shot = tmp_path / "report.png"
    run = chromium("--enable-logging=stderr", "--v=0", "--hide-scrollbars", "--window-size=1400,3000",
                   f"--screenshot={shot}", "--dump-dom", probe.as_uri(), profile=tmp_path / "profile")
    assert run.returncode == 0, run.stderr[-2000:]
    dom = run.stdout
    console = [line for line in run.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, "console messages:\n" + "\n".join(console)
    root = re.search(r"<html[^>]*>", dom).group(0)   # where the capture script stores what it saw
    assert "data-errors" not in root, html_text.unescape(root)
    for div in charts:   # plotly marks a drawn chart js-plotly-plot and fills it with its SVG layers
        drawn = re.search(rf'<div id="{div}" class="plotly-graph-div js-plotly-plot"[^>]*>(.*?)</div>\s*<script',
                          dom, re.S)
        assert drawn, f"{div} was not drawn"
        assert drawn.group(1).count('class="main-svg"') >= 2, f"{div} has no SVG"
    assert 'class="trace ohlc"' in dom or "candlestick" in dom, "the candles are drawn"

    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1400, 3000)
    assert len(data) > 100_000, "a blank page compresses to a few kB; charts and tables do not"
    print(f"screenshot: {shot}")
