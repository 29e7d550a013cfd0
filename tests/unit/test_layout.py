"""The package map of docs/design.md holds: one-way imports, no module that shadows the standard library."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
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


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the modules of our packages it imports, lazily imported ones included (a cycle that only
    closes inside a function still ties the two modules together)."""
    names = {module_name(p): p for p in MODULES}
    graph: dict[str, set[str]] = {}
    for name, path in names.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        found: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
                found |= {f"{node.module}.{alias.name}" for alias in node.names}  # from pkg import module
        graph[name] = {m for m in found if m in names and m != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import cycle, each once (depth-first search, reported from where it closes)."""
    found, state = [], dict.fromkeys(graph, 0)  # 0 unseen, 1 on the path, 2 done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state[nxt] == 1:
                found.append(path[path.index(nxt) :] + [nxt])
            elif state[nxt] == 0:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if state[node] == 0:
            visit(node)
    return found


def test_no_import_cycle_inside_a_package():
    graph = import_graph()
    assert len(graph) > 30 and graph["pretrain.train"]  # the graph is really read
    found = cycles(graph)
    assert not found, " | ".join(" -> ".join(c) for c in found)


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


# The names users type (``python -m pretrain.report``, ...): each only runs its ``cli`` module.
SHIMS = {"data_prep.__main__", "pretrain.__main__", "pretrain.convert", "pretrain.demo", "pretrain.evaluate"}
SHIMS |= {"pretrain.fill_in", "pretrain.finetune", "pretrain.report", "pretrain.config_doc"}


def test_commands_live_in_cli_and_no_library_module_imports_one():
    graph = import_graph()
    library = [m for m in graph if ".cli" not in m and m not in SHIMS]
    assert not {
        m: sorted(d for d in graph[m] if ".cli." in d) for m in library if any(".cli." in d for d in graph[m])
    }
    for shim in SHIMS - {"data_prep.__main__"}:
        assert {d for d in graph[shim]} == {
            shim.replace("pretrain.", "pretrain.cli.").replace("__main__", "train")
        }
