"""Hook trace: which plugin answered which call for a decision, for debugging.

With ``[engine] trace_hooks = true`` (CLI ``--trace``), every component object is wrapped in a
:class:`Traced` proxy that records each call (component, owner plugin, role, method, a short
summary of the answer, microseconds). The pipeline starts a fresh record before each decision
and the journal emits it as one ``hook_trace`` event with the decision; pluggy's own observer
hooks (``on_startup``, ``on_trade_closed``) are traced with pluggy's hook-call monitoring.
Tracing is off by default: the proxies cost time on the hot path.
"""

from __future__ import annotations

import time
from typing import Any, Optional

#: calls of the current decision (None: not recording)
_record: Optional[list[dict[str, Any]]] = None


def start() -> None:
    global _record
    _record = []


def stop() -> list[dict[str, Any]]:
    global _record
    out, _record = _record or [], None
    return out


def _summary(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 160 else text[:157] + "..."


class Traced:
    """Forwards attribute access to ``target``; calls of its methods are recorded."""

    def __init__(self, target: Any, component: str, owner: str, role: str):
        object.__setattr__(self, "_t", (target, component, owner, role))

    def __getattr__(self, name: str) -> Any:
        target, component, owner, role = object.__getattribute__(self, "_t")
        value = getattr(target, name)
        if not callable(value) or name.startswith("__"):
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            result = value(*args, **kwargs)
            if name == "prepare" and role in ("ml_components", "exit_managers"):  # per-symbol objects too
                result = Traced(result, component, owner, role)
            if _record is not None:
                _record.append({"component": component, "plugin": owner, "role": role, "call": name,
                                "answer": _summary(result),
                                "us": round((time.perf_counter() - started) * 1e6, 1)})
            return result
        return call

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(object.__getattribute__(self, "_t")[0], name, value)

    def __repr__(self) -> str:
        target, component, owner, _ = object.__getattribute__(self, "_t")
        return f"Traced({component} of {owner}: {target!r})"
