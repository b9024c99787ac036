"""Layout rules of the Python package that no single behaviour test sees: the manifest package's
modules import each other without cycles (also not through imports inside functions), and the
benchmark scripts use only public gradatim names."""

from __future__ import annotations

import ast
from pathlib import Path

import gradatim

PACKAGE = Path(gradatim.__file__).parent


def _imports(path: Path) -> set[str]:
    """Every ``gradatim...`` module ``path`` imports, at any depth of its code (the package uses
    absolute imports only)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{path}: relative import"
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in found if m.startswith("gradatim.")}


def _graph(subpackage: str) -> dict[str, set[str]]:
    folder = PACKAGE.joinpath(*subpackage.split(".")[1:])
    modules = {
        f"{subpackage}.{p.stem}": p for p in sorted(folder.glob("*.py")) if p.stem != "__init__"
    }
    return {name: _imports(path) & set(modules) for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (as the list of modules round it), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_manifest_modules_import_without_cycles() -> None:
    graph = _graph("gradatim.manifest")
    assert "gradatim.manifest.common" in graph["gradatim.manifest.label_csv"]  # edges are seen
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


BENCHES = Path(__file__).resolve().parent.parent / "benches"


def _private_uses(source: str) -> list[str]:
    """Private (underscore) names a script takes from gradatim: imported ones, and attributes
    read from a gradatim module it imported under some name."""
    tree = ast.parse(source)
    modules: set[str] = set()
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "gradatim":
                    modules.add(a.asname or a.name.split(".")[0])
                    found += [p for p in a.name.split(".") if p.startswith("_")]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("gradatim"):
            found += [p for p in (node.module or "").split(".") if p.startswith("_")]
            for a in node.names:
                modules.add(a.asname or a.name)
                if a.name.startswith("_"):
                    found.append(a.name)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            base = node.value
            while isinstance(base, ast.Attribute):
                base = base.value
            if isinstance(base, ast.Name) and base.id in modules:
                found.append(node.attr)
    return found


def test_private_use_finder_sees_imports_and_attributes() -> None:
    src = "from gradatim import bench\nimport gradatim as ga\nbench._fmt(1)\nga.image._x\n"
    assert sorted(_private_uses(src)) == ["_fmt", "_x"]
    assert _private_uses("from gradatim.bench import _version\n") == ["_version"]
    assert _private_uses("from gradatim import _core\n") == ["_core"]
    assert _private_uses("import numpy as np\nnp._x\nfrom gradatim import image\n") == []


def test_benches_use_only_public_gradatim_names() -> None:
    scripts = sorted(BENCHES.glob("*.py"))
    assert scripts
    for script in scripts:
        assert _private_uses(script.read_text(encoding="utf-8")) == [], script.name
