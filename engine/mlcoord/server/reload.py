"""``POST /api/v1/reload``: which keys of the config file differ from the running bot's, and
whether they could be reloaded.

Reloadable (issue 17): the symbols and the scan settings (``data.symbols``, ``live.scan``,
``live.scanner.*``), the guards' and the exit manager's options (``plugins.NAME.*`` of the
components the pipeline uses in those roles, found through the pipeline's description, never by
plugin name), and notification settings (``notify.*``, applied at once by the notifier: they hold
no trading state). Any other difference needs a restart.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

#: config keys (dotted prefixes) that are reloadable whatever the plugins
RELOADABLE = ("data.symbols", "live.scan", "live.scanner", "notify")
#: the pipeline's roles whose components' options are reloadable
RELOADABLE_ROLES = ("entry_guards", "portfolio_watchers", "exit_manager")


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted leaf keys of nested dicts (lists are leaves)."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def differing(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    a, b = flatten(old), flatten(new)
    return sorted(k for k in a.keys() | b.keys() if a.get(k, _MISSING) != b.get(k, _MISSING))


_MISSING = object()


def reloadable_prefixes(described: Mapping[str, Any]) -> tuple[str, ...]:
    """:data:`RELOADABLE` plus ``plugins.NAME`` of each guard and exit component."""
    names: list[str] = []
    for role in RELOADABLE_ROLES:
        found = described.get(role)
        names += [found] if isinstance(found, str) else list(found or ())
    return RELOADABLE + tuple(f"plugins.{n}" for n in names)


def is_notify(key: str) -> bool:
    return key == "notify" or key.startswith("notify.")


def split(keys: Iterable[str], prefixes: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(reloadable keys, keys that need a restart)."""
    ok: list[str] = []
    restart: list[str] = []
    for k in keys:
        (ok if any(k == p or k.startswith(p + ".") for p in prefixes) else restart).append(k)
    return ok, restart
