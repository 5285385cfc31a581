"""batchor's parts depend on each other in one direction only.

Every import of a batchor module is counted, wherever it is written: at the top,
under ``if TYPE_CHECKING:``, or inside a function. Each part (a subpackage, or a
top-level module) sits on a layer and may import only parts on lower layers, so
the graph has no cycle and ``docs/architecture.md`` can draw it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import batchor
import batchor_dagster

LAYERS: dict[str, int] = {
    "errors": 0,
    "types": 1,
    "results": 1,
    "files": 1,
    "testing": 1,
    "prompts": 2,
    "providers": 2,
    "sources": 2,
    "artifacts": 2,
    "storage": 2,
    "job": 3,
    "results_table": 3,
    "engine": 4,
    "run": 5,
    "runner": 6,
    "worker": 7,
    "cli": 8,
}
"""The layer of each part of ``batchor``; ``batchor/__init__.py`` re-exports them all
and no part imports it."""

DAGSTER_MAY_IMPORT = {"batchor", "batchor.testing"}
"""What the Dagster package may import of the core: its public API (and the local
server, for the example code location)."""


def imports_of(path: Path) -> Iterator[str]:
    """Every module name ``path`` imports, at any depth of its syntax tree."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def part_of(module: str) -> str | None:
    """``engine`` for ``batchor.engine.driver``; ``None`` outside batchor; ``""`` for
    the package itself."""
    if module != "batchor" and not module.startswith("batchor."):
        return None
    return module.split(".")[1] if "." in module else ""


def core_edges() -> list[tuple[str, str, str]]:
    """(importing part, imported part, file) for every import between batchor's parts."""
    root = Path(batchor.__file__).parent
    edges = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if relative == Path("__init__.py"):
            continue
        source = relative.parts[0].removesuffix(".py")
        for module in imports_of(path):
            target = part_of(module)
            if target is not None and target != source:
                edges.append((source, target, str(relative)))
    return edges


def test_every_part_of_batchor_has_a_layer() -> None:
    root = Path(batchor.__file__).parent
    parts = {
        path.name.removesuffix(".py")
        for path in root.iterdir()
        if path.name != "__init__.py" and (path.suffix == ".py" or (path / "__init__.py").exists())
    }
    assert parts - {"py"} <= set(LAYERS), sorted(parts - set(LAYERS))


def test_parts_import_only_parts_on_lower_layers() -> None:
    upward = [
        f"{file}: {source} (layer {LAYERS[source]}) imports {target or 'batchor'} "
        f"(layer {LAYERS.get(target, 'top')})"
        for source, target, file in core_edges()
        if target == "" or LAYERS[target] >= LAYERS[source]
    ]
    assert upward == []


def test_there_is_no_import_cycle_between_parts() -> None:
    graph: dict[str, set[str]] = {}
    for source, target, _ in core_edges():
        graph.setdefault(source, set()).add(target)
    visiting: list[str] = []
    done: set[str] = set()

    def visit(part: str) -> list[str] | None:
        if part in visiting:
            return [*visiting[visiting.index(part) :], part]
        if part in done:
            return None
        visiting.append(part)
        for target in sorted(graph.get(part, ())):
            cycle = visit(target)
            if cycle:
                return cycle
        visiting.pop()
        done.add(part)
        return None

    cycles = [cycle for part in sorted(graph) if (cycle := visit(part))]
    assert cycles == []


def test_the_dagster_package_uses_only_the_public_api_of_batchor() -> None:
    root = Path(batchor_dagster.__file__).parent
    private = sorted(
        f"{path.relative_to(root)}: {module}"
        for path in root.rglob("*.py")
        for module in imports_of(path)
        if part_of(module) is not None and module not in DAGSTER_MAY_IMPORT
    )
    assert private == []
