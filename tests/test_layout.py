"""The package map of docs/design.md holds: one-way imports, no module that shadows the standard library."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(p for package in ("data_prep", "pretrain") for p in (ROOT / package).rglob("*.py"))


def imported(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    return names | {
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }


@pytest.mark.parametrize("path", [p for p in MODULES if p.is_relative_to(ROOT / "data_prep")], ids=str)
def test_data_prep_never_imports_pretrain(path):
    assert not {name for name in imported(path) if name.split(".")[0] == "pretrain"}


def test_no_module_is_named_like_a_standard_library_module():
    clashes = [p for p in MODULES if p.stem in sys.stdlib_module_names]
    assert not clashes and len(MODULES) > 30
