"""The house rules of the package tree, checked from the source: imports point down the layers,
no cycle between packages, plumbing takes pieces and not a ``Repo``, heavy libraries stay where
they belong. Every import counts: at module level, inside functions, and under TYPE_CHECKING."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "datakiln"

# Low to high. A package may import its own tier and the ones below, never one above.
TIERS = {
    "errors": 0,
    "progress": 0,
    "interrupt": 0,
    "version": 0,
    "store": 1,
    "insight": 1,
    "repo": 2,
    "sources": 2,
    "package": 2,
    "registry": 2,
    "compile": 3,
    "review": 4,
    "server": 5,
    "hub": 5,
    "serve": 5,
    "cli": 6,
}
# What a leaf may import besides the shared pieces (tier 0).
LEAVES = {"package": {"store"}, "insight": set(), "store": set(), "sources": set()}
# Third-party modules and the only packages that may import them.
CONFINED = {
    "torch": {"compile"},
    "fastapi": {"server", "hub", "serve"},
    "uvicorn": {"server", "hub", "serve"},
    "starlette": {"server", "hub", "serve"},
    "argparse": {"cli"},
}


def modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def package_of(module: str) -> str:
    """``datakiln.repo.table`` -> ``repo``; ``datakiln.errors`` -> ``errors``; ``datakiln`` -> ``datakiln``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "datakiln"


def imports(module: str, path: Path) -> list[str]:
    """Absolute names of everything ``module`` imports (the module, or module.name for from-imports)."""
    is_pkg = path.name == "__init__.py"
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - node.level + 1]
                prefix = ".".join(anchor + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            out += [f"{prefix}.{a.name}" for a in node.names]
    return out


def internal_edges() -> dict[tuple[str, str], list[str]]:
    """(importing package, imported package) -> the modules where it happens."""
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    mods = modules()
    for mod, path in mods.items():
        src = package_of(mod)
        for name in imports(mod, path):
            if not name.startswith("datakiln"):
                continue
            # "datakiln.repo.Repo" names a module "datakiln.repo"; find the longest module prefix.
            parts = name.split(".")
            while ".".join(parts) not in mods and len(parts) > 1:
                parts.pop()
            dst = package_of(".".join(parts))
            if dst != src:
                edges[(src, dst)].append(mod)
    return edges


def test_every_package_has_a_tier() -> None:
    found = {package_of(m) for m in modules()} - {"datakiln", "__main__"}
    assert found == set(TIERS), f"packages without a tier, or tiers without a package: {found ^ set(TIERS)}"


def test_imports_point_down() -> None:
    upward = []
    for (src, dst), where in internal_edges().items():
        if src in ("datakiln", "__main__"):
            continue  # the public surface and `python -m datakiln` sit above everything
        if dst == "datakiln":
            upward.append(f"{where[0]} imports the top-level package")
        elif TIERS[dst] > TIERS[src]:
            upward.append(f"{src} -> {dst} (in {', '.join(sorted(set(where)))})")
    assert not upward, "imports that point up:\n  " + "\n  ".join(upward)


def test_no_cycle_between_packages() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for src, dst in internal_edges():
        graph[src].add(dst)

    def reaches(a: str, b: str, seen: set[str]) -> bool:
        return any(n == b or (n not in seen and reaches(n, b, seen | {n})) for n in graph[a])

    cycles = sorted(f"{a} <-> {b}" for a in list(graph) for b in graph[a] if reaches(b, a, {b}))
    assert not cycles, f"package cycles: {cycles}"


def test_leaves_stay_leaves() -> None:
    shared = {p for p, t in TIERS.items() if t == 0}
    for (src, dst), where in internal_edges().items():
        if src in LEAVES:
            assert dst in shared | LEAVES[src], f"{src} is a leaf but imports {dst} (in {where[0]})"


def test_heavy_libraries_stay_in_their_package() -> None:
    for mod, path in modules().items():
        pkg = package_of(mod)
        for name in imports(mod, path):
            top = name.split(".")[0]
            if top in CONFINED:
                assert pkg in CONFINED[top], f"{mod} imports {top}, which belongs in {CONFINED[top]}"


def test_plumbing_takes_pieces_not_a_repo() -> None:
    """Inside repo/, only the porcelain (repo.py) and the package's __init__ know ``Repo``; and
    nothing anywhere reaches into a Repo's private members."""
    for mod, path in modules().items():
        if mod.startswith("datakiln.repo.") and mod != "datakiln.repo.repo":
            names = imports(mod, path)
            assert not any(n.startswith("datakiln.repo.repo") for n in names), f"{mod} imports Repo"
        src = path.read_text()
        if mod != "datakiln.repo.repo":
            private = re.findall(r"\b(?:repo|self\.repo|r)\._[a-z]\w*", src)
            assert not private, f"{mod} uses private members of a Repo: {sorted(set(private))}"
