"""Profiles: the defaults of a pipeline, as data the engine's code never spells out.

A profile names the components that fill each role when ``[pipeline]`` leaves it unset, the
ensemble's starting weights, the roles a run cannot do without and the names decision blocks
show. The package ships ``profiles/default.toml`` (the product's pipeline of built-ins); a config
picks another with ``[engine] profile = "NAME"`` (a shipped profile) or a path to a TOML file.

``[pipeline]`` is an allow-list: only components a profile or the config names run, so installing
a package never changes a result; ``[engine] enable`` (``--enable``) adds a plugin's components.
"""

from __future__ import annotations

import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import attrs

from mlcoord.errors import ConfigError

SHIPPED = Path(__file__).with_name("profiles")
DEFAULT_PROFILE = "default"

#: ``[pipeline]`` keys that name a list of components, and those that name one (or none: "")
LIST_ROLES = ("signal_sources", "ml_components", "entry_guards", "portfolio_watchers")
SINGLE_ROLES = ("calibrator", "entry_planner", "sizer", "exit_manager")
#: what each ``[pipeline]`` key is called in messages
ROLE_LABELS = {
    "signal_sources": "signal source", "ml_components": "ML component", "entry_guards": "entry guard",
    "portfolio_watchers": "portfolio watcher", "calibrator": "calibrator", "entry_planner": "entry planner",
    "sizer": "risk manager", "exit_manager": "exit manager",
}


@attrs.frozen
class Profile:
    """A pipeline's defaults: components per role, starting weights, essential roles, labels."""

    name: str
    lists: Mapping[str, tuple[str, ...]]
    singles: Mapping[str, str]
    weights: Mapping[str, float]
    essential: tuple[str, ...]
    display_names: Mapping[str, str]

    def names(self) -> set[str]:
        """Every component name the profile mentions."""
        out = {n for names in self.lists.values() for n in names}
        out.update(n for n in self.singles.values() if n)
        return out | set(self.weights) | set(self.display_names)

    def display_name(self, name: str, registered: str = "") -> str:
        """The profile's label, else the plugin's own, else the registered name."""
        return self.display_names.get(name) or registered or name


def load_profile(which: Optional[str] = None, base: Optional[Path] = None) -> Profile:
    """A shipped profile by name, or a TOML file by path (relative to ``base``, a config's folder)."""
    which = which or DEFAULT_PROFILE
    shipped = SHIPPED / f"{which}.toml"
    if "/" not in which and "\\" not in which and not which.endswith(".toml"):
        if not shipped.is_file():
            known = sorted(p.stem for p in SHIPPED.glob("*.toml"))
            raise ConfigError(f"[engine] profile {which!r} is not a shipped profile ({', '.join(known)}) "
                              "nor a path to a .toml file")
        return _read(str(shipped))
    path = Path(which)
    if not path.is_absolute() and base is not None:
        path = base / path
    if not path.is_file():
        raise ConfigError(f"[engine] profile {which!r}: no such file {str(path)!r}")
    return _read(str(path.resolve()))


@lru_cache(maxsize=16)
def _read(path: str) -> Profile:
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"profile {path}: invalid TOML: {exc}") from None
    return parse_profile(raw, Path(path).stem, where=path)


def parse_profile(raw: Mapping[str, Any], name: str, where: str = "profile") -> Profile:
    """Check a profile's tables; every error names the key and the value."""
    unknown = set(raw) - {"pipeline", "weights", "essential", "display_names"}
    if unknown:
        raise ConfigError(f"{where}: unknown table(s) {sorted(unknown)} (known: pipeline, weights, essential, "
                          "display_names)")
    pipeline = _table(raw, "pipeline", where)
    bad = set(pipeline) - set(LIST_ROLES) - set(SINGLE_ROLES)
    if bad:
        raise ConfigError(f"{where}: unknown [pipeline] key(s) {sorted(bad)} "
                          f"(known: {', '.join(LIST_ROLES + SINGLE_ROLES)})")
    lists: dict[str, tuple[str, ...]] = {}
    for key in LIST_ROLES:
        value = pipeline.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v.isidentifier() for v in value):
            raise ConfigError(f"{where}: [pipeline] {key} must be a list of component names, got {value!r}")
        lists[key] = tuple(value)
    singles: dict[str, str] = {}
    for key in SINGLE_ROLES:
        value = pipeline.get(key, "")
        if not isinstance(value, str) or (value and not value.isidentifier()):
            raise ConfigError(f"{where}: [pipeline] {key} must be a component name or \"\", got {value!r}")
        singles[key] = value
    weights = {}
    for key, value in _table(raw, "weights", where).items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
            raise ConfigError(f"{where}: [weights] {key} must be a finite number >= 0, got {value!r}")
        weights[key] = float(value)
    essential = _table(raw, "essential", where).get("roles", [])
    if not isinstance(essential, list) or not all(r in SINGLE_ROLES for r in essential):
        raise ConfigError(f"{where}: [essential] roles must list single roles ({', '.join(SINGLE_ROLES)}), "
                          f"got {essential!r}")
    labels = _table(raw, "display_names", where)
    for key, value in labels.items():
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{where}: [display_names] {key} must be a non-empty string, got {value!r}")
    return Profile(name, lists, singles, weights, tuple(essential), dict(labels))


def _table(raw: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: [{key}] must be a table, got {value!r}")
    return value


def profile_path_base(config_path: Optional[Union[str, Path]]) -> Optional[Path]:
    return Path(config_path).resolve().parent if config_path else None
