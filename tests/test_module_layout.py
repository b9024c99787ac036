"""Layout rules of the Python package that no single behaviour test sees: the manifest package's
modules import each other without cycles (also not through imports inside functions), and the
benchmark scripts use only public gradatim names."""

from __future__ import annotations

import ast
import re
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


ROOT = Path(__file__).resolve().parent.parent


def _map_paths(readme: str) -> list[tuple[str, str]]:
    """``(column, path)`` for every file or folder named in the README's map ("Where things
    live"): the Rust column under ``rust/core/src/``, the Python one under ``python/gradatim/``.
    A bare name (``jpeg.rs``, ``resize/``) lies in the folder of the path before it in its cell;
    names in parentheses right after a folder (``resize/`` (``area.rs``)) lie in that folder."""
    section = readme.split("## Where things live", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line]
    found: list[tuple[str, str]] = []
    for row in rows[1:]:  # the header row names the columns
        cells = [c.strip() for c in row.strip("|").split("|")]
        for column, cell in (("rust/core/src", cells[1]), ("python/gradatim", cells[2])):
            folder, last, outer = "", "", []
            for token in re.findall(r"`[^`]+`|[()]", cell):
                if token == "(":
                    outer.append(folder)
                    folder = last if last.endswith("/") else folder
                    continue
                if token == ")":
                    folder = outer.pop() if outer else folder
                    continue
                name = token.strip("`")
                if not re.fullmatch(r"[\w/]+(\.(rs|py|md|toml))?/?", name):
                    continue  # a function, option or value, not a path
                if not (name.endswith(("/", ".rs", ".py", ".md", ".toml"))):
                    continue
                path = name if "/" in name.rstrip("/") else folder + name
                found.append((column, path))
                if not path.endswith("/"):
                    folder = path.rsplit("/", 1)[0] + "/" if "/" in path else ""
                last = path
    return found


def test_every_path_in_the_readme_map_exists() -> None:
    paths = _map_paths((ROOT / "README.md").read_text(encoding="utf-8"))
    assert ("rust/core/src", "image/jpeg.rs") in paths  # a bare name inherits its folder
    assert ("rust/core/src", "difficulty/gap_sums.rs") in paths  # VNS-Gap's kernel is mapped
    assert ("python/gradatim", "difficulty/itas.py") in paths
    assert ("rust/core/src", "image/resize/area.rs") in paths  # inside the folder before it
    assert ("rust/core/src", "image/flip.rs") in paths  # and out of it after the parentheses
    missing = [f"{c}/{p}" for c, p in paths if not (ROOT / c / p).exists()]
    assert not missing, f"README's map names paths that do not exist: {missing}"


def test_design_layout_names_every_core_module() -> None:
    text = (ROOT / "docs" / "design.md").read_text(encoding="utf-8")
    layout = text.split("## Layout", 1)[1].split("\n## ", 1)[0]
    core = ROOT / "rust" / "core" / "src"
    modules = sorted(p.name if p.is_dir() else p.stem for p in core.iterdir())
    modules = [m for m in modules if m not in ("lib", "mod", "error", "rng")]
    unnamed = [m for m in modules if m not in layout]
    assert not unnamed, f"docs/design.md's layout leaves out the core's {unnamed}"
