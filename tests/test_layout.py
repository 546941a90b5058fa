"""The package's layout rules, checked on its source with ``ast``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "psyphy_pp"
MODULES = sorted(PACKAGE.rglob("*.py"))


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_uses_another_modules_private_names(path):
    """Shared helpers live in private *modules* (``_linalg``, ``_nodes``, ...) under
    public names; no module reaches for a private name of another module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    aliases = {}  # local name -> psyphy_pp module it is bound to
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("psyphy_pp"):
            for alias in node.names:
                if node.module == "psyphy_pp":  # from psyphy_pp import field as _field
                    aliases[alias.asname or alias.name] = f"psyphy_pp.{alias.name}"
                elif _private(alias.name):
                    bad.append(f"line {node.lineno}: from {node.module} import {alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("psyphy_pp.") and alias.asname:
                    aliases[alias.asname] = alias.name
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in aliases and _private(node.attr)):
            bad.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
    assert not bad, f"{path.name} uses private names of other modules: {bad}"


@pytest.mark.parametrize("path", [p for p in MODULES if not p.name.startswith("_")],
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_public_module_opens_with_docstring_and_declares_all(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    assert ast.get_docstring(tree), f"{path.name} has no module docstring"
    names = {t.id for node in tree.body if isinstance(node, ast.Assign)
             for t in node.targets if isinstance(t, ast.Name)}
    assert "__all__" in names or path.name == "__init__.py", f"{path.name} has no __all__"
