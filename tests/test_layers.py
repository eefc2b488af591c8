"""The package's layers are what ``mmsearch/README.md`` says: a module imports only its own layer and
the layers below it, Ray is imported only in ``orchestration/`` (and ``jobs/``), and every module
belongs to a layer of the table. Imports inside functions count: a lazy import is still a
dependency."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mmsearch"
README = PACKAGE / "README.md"


def table_layers() -> list[set[str]]:
    """The layer table of mmsearch/README.md, bottom up: per row, the modules and packages it names."""
    rows = [line for line in README.read_text().splitlines() if line.startswith("| `")]
    layers = []
    for row in rows:
        first_cell = row.split("|")[1]
        layers.append({name.removesuffix("/").removesuffix(".py") for name in re.findall(r"`([^`]+)`", first_cell)})
    return layers


def unit_of(path: Path) -> str:
    """``mmsearch/nas/supernet.py`` -> ``nas``; ``mmsearch/storage.py`` -> ``storage``."""
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "mmsearch":  # from mmsearch import storage
                found.update(f"mmsearch.{alias.name}" for alias in node.names)
            else:
                found.add(node.module)
    return found


SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


def test_every_module_belongs_to_a_layer_of_the_table():
    layers = table_layers()
    named = set().union(*layers)
    assert len(layers) >= 10, "the layer table of mmsearch/README.md was not found"
    missing = sorted({unit_of(p) for p in SOURCES} - named)
    assert not missing, f"mmsearch/README.md's layer table does not list {missing}"


def higher_layer_imports(unit: str, modules: set[str], rank: dict[str, int]) -> list[str]:
    """The modules of ``modules`` in a layer above ``unit``'s (``mmsearch.orchestration.jobs.run``: ``orchestration``)."""
    return sorted(m for m in modules if m.startswith("mmsearch.") and rank.get(m.split(".")[1], -1) > rank[unit])


def test_no_module_imports_a_higher_layer():
    rank = {unit: i for i, layer in enumerate(table_layers()) for unit in layer}
    upward = {
        f"{path.relative_to(ROOT)} ({unit_of(path)})": higher_layer_imports(unit_of(path), imported_modules(path), rank)
        for path in SOURCES
    }
    assert not {k: v for k, v in upward.items() if v}, "imports of higher layers (mmsearch/README.md's table)"


def test_ray_is_imported_only_in_orchestration():
    found = {
        str(path.relative_to(ROOT)): sorted(m for m in imported_modules(path) if m == "ray" or m.startswith("ray."))
        for path in SOURCES if unit_of(path) != "orchestration"
    }
    assert not {k: v for k, v in found.items() if v}, "Ray belongs in mmsearch/orchestration/"


def test_the_check_catches_an_upward_import(tmp_path):
    """The checker itself: a module of a low layer importing a high one is reported."""
    rank = {unit: i for i, layer in enumerate(table_layers()) for unit in layer}
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from mmsearch.orchestration.jobs.run import run_job\n    from mmsearch import storage\n")
    imported = imported_modules(bad)
    assert imported == {"mmsearch.orchestration.jobs.run", "mmsearch.storage"}
    assert rank["orchestration"] > rank["ops"] and rank["storage"] < rank["ops"]
    # A module of a subpackage belongs to its top package's layer: data/precompute/ is data.
    assert unit_of(PACKAGE / "data" / "precompute" / "bad.py") == "data"
    assert higher_layer_imports("data", imported, rank) == ["mmsearch.orchestration.jobs.run"]
    assert higher_layer_imports("orchestration", imported, rank) == []
