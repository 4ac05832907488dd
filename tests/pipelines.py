"""Test helper: a ``[pipeline]`` table naming exactly what some test plugins registered.

``[pipeline]`` is an allow-list (installing or registering a plugin runs nothing by itself), so a
test that plants its own sizer, exit manager... names them, as a user's config would."""

from __future__ import annotations

from typing import Any

from mlcoord.pipeline import ROLE_OF
from mlcoord.profile import LIST_ROLES, SINGLE_ROLES


def pipeline_of(plugins: Any, *owners: str) -> dict[str, Any]:
    """Every role filled by the components ``owners`` (default: every loaded plugin) registered;
    roles they leave empty are empty (no calibrator, no guard...)."""
    wanted = set(owners) or set(plugins.statuses)
    table: dict[str, Any] = {}
    for key in LIST_ROLES:
        table[key] = [c.name for c in plugins.by_role(ROLE_OF[key]) if c.owner in wanted]
    for key in SINGLE_ROLES:
        names = [c.name for c in plugins.by_role(ROLE_OF[key]) if c.owner in wanted]
        if len(names) > 1:
            raise ValueError(f"{key}: several candidates {names}; name one")
        table[key] = names[0] if names else ""
    return table


def enabled_extras(settings: Any, plugins: Any) -> Any:
    """``settings`` with ``[engine] enable`` naming every plugin a test registered directly
    (``load_plugins(extra_plugins=...)``: no distribution), so their list-role components run."""
    import attrs

    extras = tuple(n for n, st in sorted(plugins.statuses.items()) if st.enabled and not st.distribution
                   and n not in settings.engine.enable)
    return attrs.evolve(settings, engine=attrs.evolve(settings.engine, enable=settings.engine.enable + extras))
