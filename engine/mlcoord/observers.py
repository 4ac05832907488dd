"""The observer hooks (``on_startup``, ``on_trade_closed``) called plugin by plugin.

A pluggy hook call runs every implementation and raises the first error without saying whose it
was: a plugin whose ``on_startup`` raised ended the run in a bare traceback. Calling each plugin's
implementation on its own names the plugin that failed, and the others still run. Each call goes
through pluggy (a subset hook caller), so argument subsets and ``--trace``'s hook monitoring work
as for a plain hook call.
"""

from __future__ import annotations

from typing import Any, Callable

import pluggy


def observers(manager: pluggy.PluginManager, hook: str) -> list[tuple[str, Callable[..., Any]]]:
    """(plugin name, a caller of that plugin's implementation of ``hook``), in pluggy's call order."""
    names: list[str] = []
    for impl in reversed(getattr(manager.hook, hook).get_hookimpls()):
        if impl.plugin_name not in names:
            names.append(impl.plugin_name)
    every = manager.list_name_plugin()
    return [(name, manager.subset_hook_caller(hook, remove_plugins=[p for n, p in every if n != name]))
            for name in names]


def call_observers(callers: list[tuple[str, Callable[..., Any]]], **kwargs: Any) -> list[tuple[str, Exception]]:
    """Call each of ``callers``; returns (plugin name, error) for each that raised."""
    failed = []
    for name, call in callers:
        try:
            call(**kwargs)
        except Exception as exc:
            failed.append((name, exc))
    return failed


__all__ = ["observers", "call_observers"]
