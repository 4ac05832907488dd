"""The dashboard's files (issue 18) and the security headers of every answer.

The dashboard is static: HTML, JavaScript modules and CSS shipped in ``dashboard/`` (package data,
no build step), plus plotly.js, served from the plotly package the reports already use (one copy
on disk, not a second one here). Only these files are public: :func:`asset` answers a name from
a fixed list of suffixes inside that folder, never anything else, and every byte of data the
dashboard shows comes from the API with a user's token.

The Content-Security-Policy allows scripts and styles from this server only (no inline script, no
``eval``), and connections to this server and the origins in ``[api] dashboard_origins`` (other
bots the dashboard may watch); frames, plugins and forms elsewhere are refused.
"""

from __future__ import annotations

import functools
import html
import re
from pathlib import Path
from typing import Iterable, Union

from fastapi import HTTPException
from fastapi.responses import FileResponse, HTMLResponse

DASHBOARD = Path(__file__).with_name("dashboard")
#: what a dashboard file may be, and its content type
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8", ".png": "image/png", ".svg": "image/svg+xml",
         ".txt": "text/plain; charset=utf-8"}
#: files served from another package: the report's plotly.js
BORROWED = {"vendor/plotly.min.js": ("plotly", "package_data/plotly.min.js")}


def _borrowed(name: str) -> Path:
    import importlib.util

    package, inside = BORROWED[name]
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:       # pragma: no cover - plotly is a core dependency
        raise HTTPException(404, f"{package} is not installed")
    return Path(spec.origin).parent / inside


#: a stylesheet plotly.js adds with content at load unless an element of its id exists (maplibre's
#: map CSS: the dashboard draws no map)
_INJECTED_STYLE = re.compile(rb'getElementById\("([A-Za-z0-9_-]{8,128})"\)\)\{var [A-Za-z_$][\w$]*='
                             rb'document\.createElement\("style"\)')
#: where index.html takes the placeholders
PLACEHOLDERS = "<!-- plotly style placeholders -->"


@functools.cache
def plotly_style_ids() -> tuple[str, ...]:
    """The ids of the stylesheets plotly.js would inject (read from the installed plotly.js, so a
    new plotly version is followed): an element with each id keeps plotly from adding an inline
    style the CSP refuses."""
    return tuple(m.decode() for m in _INJECTED_STYLE.findall(_borrowed("vendor/plotly.min.js").read_bytes()))


def _index() -> HTMLResponse:
    page = (DASHBOARD / "index.html").read_text(encoding="utf-8")
    marks = "".join(f'<meta name="plotly-style-placeholder" id="{html.escape(i)}">' for i in plotly_style_ids())
    return HTMLResponse(page.replace(PLACEHOLDERS, marks), headers={"Cache-Control": "no-cache"})


def asset(name: str) -> Union[FileResponse, HTMLResponse]:
    """The dashboard file ``name`` (relative to ``dashboard/``); 404 for anything else (another
    suffix, a folder, a path leaving the folder)."""
    if name == "index.html":
        return _index()
    try:
        path = _borrowed(name) if name in BORROWED else (DASHBOARD / name).resolve()
        inside = name in BORROWED or DASHBOARD.resolve() in path.parents
        found = inside and path.suffix.lower() in TYPES and path.is_file()
    except (ValueError, OSError):       # a NUL byte, a name too long
        found = False
    if not found:
        raise HTTPException(404, "no such dashboard file")
    suffix = path.suffix.lower()
    cache = "no-cache" if suffix in (".html", ".js", ".css") else "max-age=86400"   # revalidated: a new version shows
    return FileResponse(path, media_type=TYPES[suffix], headers={"Cache-Control": cache})


#: plotly.js adds its rules to ``<style>`` elements it creates empty and fills through the CSSOM
#: (which CSP does not govern); this hash is the empty text's, so no inline style with any content runs
EMPTY_STYLE = "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='"


def content_security_policy(origins: Iterable[str]) -> str:
    extra = " ".join(sorted(set(origins)))
    connect = f"'self' {extra}".strip()
    # websockets of the listed origins too (their API's event stream)
    ws = " ".join(o.replace("https://", "wss://", 1).replace("http://", "ws://", 1) for o in sorted(set(origins)))
    return (f"default-src 'none'; script-src 'self'; style-src 'self' {EMPTY_STYLE}; img-src 'self' data:; "
            "font-src 'self'; "
            f"connect-src {connect}{' ' + ws if ws else ''}; base-uri 'none'; form-action 'self'; "
            "frame-ancestors 'none'")


class SecurityHeaders:
    """ASGI middleware: the CSP and its companions on every HTTP answer (API answers too: a JSON
    body opened in a browser runs nothing either)."""

    def __init__(self, app, origins: Iterable[str] = ()):
        self.app = app
        self.headers = [(b"content-security-policy", content_security_policy(origins).encode()),
                        (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
                        (b"x-frame-options", b"DENY")]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def with_headers(message):
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + self.headers
            await send(message)

        return await self.app(scope, receive, with_headers)
