"""The data path's layers import only downwards: events <- config <- streams, sinks <- privtrail."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# What each layer may import from the project; anything else is a layer climbing upwards.
ALLOWED = {
    "events": {"events"},
    "config": {"config", "events"},
    "streams": {"streams", "config", "events"},
    "sinks": {"sinks", "config", "events"},
}
PROJECT = {"events", "config", "streams", "sinks", "privtrail"}


def _imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return {name.split(".")[0] for name in names} & PROJECT


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_a_layer_imports_nothing_above_it(layer: str) -> None:
    climbing = {
        str(path.relative_to(ROOT)): sorted(_imported_packages(path) - ALLOWED[layer])
        for path in sorted((ROOT / layer).rglob("*.py"))
    }
    assert {path: found for path, found in climbing.items() if found} == {}
