"""Where cluster/ sits: beside the service, over index, encoders and linkage; Ray at the edges.

Read from the source (AST), so the rules hold for code no test happens to run.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.fixtures.source import parse

ROOT = Path(__file__).resolve().parents[2]
#: the modules of cluster/ that talk to Ray and may import it at module level
RAY_MODULES = {"ray_shards.py", "encoder_pool.py", "linkage_job.py"}


def _imports(path: Path, top_level_only: bool = False) -> list[str]:
    tree = parse(path)
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    names: list[str] = []
    for node in nodes:
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


def test_cluster_imports_only_the_libraries_under_it() -> None:
    banned = ("veclink.service", "veclink.cli", "veclink.training", "veclink.v1", "veclink.wire")
    offenders = [
        f"{p.name}: {n}"
        for p in (ROOT / "cluster").glob("*.py")
        for n in _imports(p)
        if n.startswith(banned)
    ]
    assert offenders == []


def test_the_libraries_never_import_cluster() -> None:
    offenders = [
        f"{p.relative_to(ROOT)}: {n}"
        for folder in ("index", "encoders", "linkage", "veclink")
        for p in (ROOT / folder).rglob("*.py")
        for n in _imports(p)
        if n.startswith("veclink.cluster")
    ]
    assert offenders == []


def test_ray_is_imported_at_module_level_only_by_the_ray_modules() -> None:
    offenders = [
        f"{p.relative_to(ROOT)}"
        for folder in ("cluster", "service", "cli", "veclink", "index", "encoders", "linkage")
        for p in (ROOT / folder).rglob("*.py")
        if p.name not in RAY_MODULES or folder != "cluster"
        if any(n == "ray" or n.startswith("ray.") for n in _imports(p, top_level_only=True))
    ]
    assert offenders == []
    # and the service reaches those modules only inside functions (cluster mode)
    lazy = {f"veclink.cluster.{m[:-3]}" for m in RAY_MODULES} | {"veclink.cluster.runtime"}
    eager = [
        f"{p.name}: {n}"
        for p in (ROOT / "service").glob("*.py")
        for n in _imports(p, top_level_only=True)
        if n in lazy
    ]
    assert eager == []
