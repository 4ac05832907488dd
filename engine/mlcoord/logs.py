"""Logging, configured once (by the CLI): structlog and stdlib share one processor chain.

Console rendering on a terminal, JSON lines otherwise; secrets are redacted by a processor, so
an API key passed anywhere into an event never reaches the output.
"""

from __future__ import annotations

import dataclasses
import logging
import base64
import re
import sys
import urllib.parse
from typing import Any, Callable, Optional

import attrs
import structlog
from structlog.typing import EventDict, Processor

SECRET_KEYS = re.compile(r"(api[_-]?key|secret|password|passphrase|token|private[_-]?key|authorization|cookie"
                         r"|^ccxt$|^headers$|^(https?|socks|wss?)?_?prox(y|ies)$)", re.I)
_level = logging.WARNING
_secret_values: set[str] = set()
_ordered: list[str] = []          # longest first, so a variant containing another goes whole


def _variants(value: str) -> set[str]:
    """The spellings a secret takes on its way out: as given and stripped, escaped by ``repr``
    (a trailing newline in a header dict), URL-encoded (query strings, form bodies) and base64
    (Basic auth headers)."""
    found: set[str] = set()
    for text in {value, value.strip()}:
        if not text:
            continue
        found |= {text, repr(text)[1:-1], urllib.parse.quote(text), urllib.parse.quote(text, safe=""),
                  urllib.parse.quote_plus(text)}
        raw = text.encode()
        found |= {base64.b64encode(raw).decode().rstrip("="), base64.urlsafe_b64encode(raw).decode().rstrip("=")}
    return found


def register_secret(value: str) -> None:
    """Redact this value, in every spelling of :func:`_variants`, wherever it appears in any log
    text or printed error (API keys, passwords)."""
    global _ordered
    if value and len(value.strip()) >= 4:
        _secret_values.update(v for v in _variants(value) if len(v) >= 4)
        _ordered = sorted(_secret_values, key=len, reverse=True)


def redact(text: str) -> str:
    """``text`` with every registered secret replaced by ``***``."""
    for secret in _ordered:
        if secret in text:
            text = text.replace(secret, "***")
    return text


def current_level() -> int:
    return _level


def redact_secrets(_logger, _method, event: EventDict) -> dict[str, Any]:
    """Replace the value of any key that looks like a secret, at any depth, and every registered
    secret inside values. Values are redacted here, before rendering, because a renderer may
    escape a secret beyond recognition (JSON escapes quotes and backslashes, which ``repr`` does
    not); the renderer's pass over its finished text is for what no processor sees (a formatted
    traceback, a foreign logger's message). Both passes are needed, not one twice."""
    def clean(value, key=""):
        if key and SECRET_KEYS.search(key):
            return "***"
        if isinstance(value, str):
            return redact(value)
        if isinstance(value, BaseException):
            return redact(repr(value))
        if attrs.has(type(value)):
            value = attrs.asdict(value, recurse=True)
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = dataclasses.asdict(value)
        if isinstance(value, dict):
            return {k: clean(v, str(k)) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value
    return {k: clean(v, k) for k, v in event.items()}


def _render_decisions(_logger, _method, event: EventDict) -> EventDict:
    if event.get("event") == "decision" and "votes" in event:
        from mlcoord.journal import render_decision

        return {"event": render_decision(event), "level": event.get("level", "info")}
    if event.get("event") == "hook_trace" and "calls" in event:
        lines = [f"🔎 hook trace {event.get('symbol')} @ {event.get('time')} -> {event.get('outcome')}"]
        lines += [f"   {c['role']:<17} {c['component']:<12} (plugin {c['plugin']}).{c['call']} "
                  f"{c['us']:>7.1f} µs -> {c['answer']}" for c in event["calls"]]
        return {"event": "\n".join(lines), "level": event.get("level", "info")}
    return event


_last: dict[str, Any] = {}


#: callables given every log event that passes the level, redacted: ``fn(level, event)``
_taps: list[Callable[[str, dict[str, Any]], None]] = []


def add_tap(fn: Callable[[str, dict[str, Any]], None]) -> None:
    """Hand ``fn`` every event (structlog's and stdlib's) after redaction (the API's log tail)."""
    _taps.append(fn)


def remove_tap(fn: Callable[[str, dict[str, Any]], None]) -> None:
    if fn in _taps:
        _taps.remove(fn)


def _tap(_logger, method: str, event: EventDict) -> EventDict:
    for fn in list(_taps):
        try:
            fn(method, dict(event))
        except Exception:      # a broken tap never breaks logging
            pass
    return event


def set_level(level: str | int) -> None:
    """Change the level, keeping the output format and stream of the last :func:`configure`."""
    configure(level, **_last)


def configure(level: str | int = "warning", json: Optional[bool] = None, stream=None) -> None:
    """Set up structlog; ``json=None`` picks JSON when ``stream`` is not a terminal."""
    global _level
    _last.update(json=json, stream=stream)
    stream = stream or sys.stderr
    _level = level if isinstance(level, int) else logging.getLevelName(level.upper())
    if json is None:
        json = not stream.isatty()
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
        _tap,
    ]
    render = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(
        colors=stream.isatty())

    def renderer(logger, method, event):
        # last line of defence: a traceback or a value the processor could not see is rendered text here
        return redact(render(logger, method, event))
    processors: list[Processor] = shared + ([] if json else [_render_decisions]) + [renderer]
    # stdlib logging (ccxt, pluggy, third-party plugins) goes through the same chain
    handler = logging.StreamHandler(stream)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer]))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(_level)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_level),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
