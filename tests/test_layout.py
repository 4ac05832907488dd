"""The repository keeps its promises about layout: every built-in is a plugin like any other."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = ROOT / "plugins"
#: what a plugin may import from the engine: its public face, never the machinery
ENGINE_INTERNALS = ("mlcoord.backtest", "mlcoord.cli", "mlcoord.live", "mlcoord.pipeline", "mlcoord.registry")


def entry_points() -> dict[str, str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return data["project"]["entry-points"]["mlcoord"]


def test_every_plugin_package_has_its_own_short_named_entry_point():
    packages = sorted(p.name for p in PLUGINS.iterdir() if (p / "__init__.py").exists())
    eps = entry_points()
    assert sorted(eps.values()) == packages
    for name, module in eps.items():
        assert module == f"mlcoord_{name}", f"entry point {name} -> {module} breaks the naming rule"


def test_no_top_level_package_is_called_engine_or_plugins():
    assert not (ROOT / "engine" / "__init__.py").exists()
    assert not (ROOT / "plugins" / "__init__.py").exists()


def test_plugins_use_only_the_public_engine_api():
    offenders = []
    for path in PLUGINS.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.relative_to(ROOT)} imports {n}" for n in names
                          if n.startswith(ENGINE_INTERNALS)]
    assert not offenders, offenders


def test_no_plugin_imports_torch_at_module_level():
    """torch is optional: a plugin may import it only inside functions (training)."""
    offenders = []
    for path in PLUGINS.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in tree.body:
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.relative_to(ROOT)}" for n in names if n.split(".")[0] == "torch"]
    assert not offenders, offenders
