"""Every ``mlcoord.x.Name`` the hook specs and the plugin docs point an author to exists there
(the hook specs once sent authors to ``mlcoord.registry.Components``, which lives in
``mlcoord.pipeline``)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [ROOT / "engine" / "mlcoord" / "hookspecs.py", ROOT / "docs" / "hooks.md", ROOT / "docs" / "plugins.md",
           ROOT / "plugin-template" / "README.md", ROOT / "README.md"]
DOTTED = re.compile(r"`?\b(mlcoord(?:\.[A-Za-z_][A-Za-z0-9_]*)+)")


def references() -> list[tuple[str, str]]:
    found = set()
    for path in SOURCES:
        for name in DOTTED.findall(path.read_text(encoding="utf-8")):
            found.add((path.name, name.rstrip(".")))
    return sorted(found)


def resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def test_there_are_references_to_check():
    assert len(references()) > 20


@pytest.mark.parametrize("where,dotted", references(), ids=lambda x: x)
def test_each_reference_resolves(where, dotted):
    assert resolves(dotted), f"{where} mentions {dotted}, which does not exist"


def test_the_check_would_catch_the_old_mistake():
    assert not resolves("mlcoord.registry.Components") and resolves("mlcoord.pipeline.Components")
