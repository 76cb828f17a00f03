"""Builds on disk: ``.kiln/builds/<build id>/`` holds ``build.json``, ``package/`` and the
out-of-sample predictions. numpy only, so listing and reporting never import torch.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import BuildNotFound, KilnError

if TYPE_CHECKING:
    from ..package import Model
    from ..repo import Repo

BUILD_JSON = "build.json"
PREDICTIONS = "predictions.safetensors"
EXAMPLES = "examples.json"


@dataclass
class BuildRecord:
    dir: Path
    record: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.record["id"])

    @property
    def package(self) -> Path:
        return self.dir / "package"

    def arrays(self) -> dict[str, np.ndarray]:
        """``pred_probs`` (N, K) out-of-sample, ``embeddings`` (N, D), ``y`` (N,) given class or -1,
        ``fold`` (N,) cross-fitting fold or -1."""
        from safetensors.numpy import load_file

        return dict(load_file(str(self.dir / PREDICTIONS)))

    def examples(self) -> dict[str, Any]:
        """``ids``, ``splits`` and metadata columns, aligned with ``arrays()``."""
        data: dict[str, Any] = json.loads((self.dir / EXAMPLES).read_text())
        return data


def read_build(d: Path) -> BuildRecord | None:
    """The build in folder ``d``, or None: no build there, or one whose record is not a build's
    (a damaged or foreign file), or a folder not named by its build id (a leftover ``.old`` copy
    of a crash during a rebuild, which ``kiln gc`` removes)."""
    try:
        record = json.loads((d / BUILD_JSON).read_text())
    except (OSError, ValueError, RecursionError):
        return None
    return BuildRecord(d, record) if _is_record(record, d.name) else None


def _is_record(r: Any, name: str) -> bool:
    """The keys every reader of a build record relies on, with their types."""
    if not isinstance(r, dict) or r.get("id") != name:
        return False
    shapes = {"lineage": dict, "spec": dict, "metrics": dict, "training": dict, "seconds": dict, "classes": list}
    if not all(isinstance(r.get(k), t) for k, t in shapes.items()) or not isinstance(r.get("created"), int | float):
        return False
    splits = ("valid", "test", "train_oos")
    return isinstance(r["lineage"].get("commit"), str) and all(isinstance(r["metrics"].get(s), dict) for s in splits)


def list_builds(repo: Repo) -> list[BuildRecord]:
    """Every finished build, oldest first."""
    root = repo.layout.builds
    if not root.is_dir():
        return []
    found = [r for d in root.iterdir() if (r := read_build(d)) is not None]
    return sorted(found, key=lambda r: (r.record.get("created", 0), r.id))


def prune_leftovers(repo: Repo) -> int:
    """Remove what crashed builds left in the builds folder (``<id>.old.<pid>`` from a rebuild
    that replaced a build): ``kiln gc`` asks for it. Returns how many were removed."""
    import shutil

    root = repo.layout.builds
    gone = 0
    for d in root.iterdir() if root.is_dir() else []:
        if ".old." in d.name and d.is_dir():
            shutil.rmtree(d, ignore_errors=True)
            gone += 1
    return gone


def default_build(repo: Repo, builds: list[BuildRecord] | None = None) -> tuple[BuildRecord, str] | None:
    """The build that ``kiln report``, ``kiln issues`` and ``kiln ui`` use when none is named, and
    why: the one ``kiln build`` would give now (HEAD under kiln.toml), else the newest build of
    HEAD (with out-of-sample predictions first), else the newest build (the same way). Not
    simply the newest: a ``--no-cache`` rebuild of an old spec used to take over silently."""
    from .builder import default_spec
    from .plan import resolve_device
    from .warm import same_build

    builds = list_builds(repo) if builds is None else builds
    if not builds:
        return None
    head = repo.head()[1]
    if head is not None:
        try:
            spec = default_spec(repo)
            state = repo.read_commit(head).state
            hit = same_build(repo, state, spec.hash(), resolve_device(spec), builds=builds)
        except KilnError:
            hit = None  # a broken kiln.toml: fall back to the newest build of HEAD
        if hit is not None:
            return hit, "the build of HEAD under kiln.toml, as 'kiln build' gives it"
        of_head = [b for b in builds if b.record["lineage"]["commit"] == head]
        if of_head:
            return _newest_oos(of_head), "the newest build of HEAD (none under kiln.toml's spec)"
    return _newest_oos(builds), "the newest build (none is of HEAD)"


def _newest_oos(builds: list[BuildRecord]) -> BuildRecord:
    """The newest with out-of-sample predictions (a quick ``folds = 0`` build judges train rows
    in-sample and finds almost no suspects), else the newest."""
    oos = [b for b in builds if b.record.get("training", {}).get("oos")]
    return (oos or builds)[-1]


def find_build(repo: Repo, ref: str | None = None) -> BuildRecord:
    """The build a full id or unique prefix names; for None the default build (``default_build``),
    for ``latest`` the newest."""
    builds = list_builds(repo)
    if not builds:
        raise BuildNotFound(f"no builds in {repo.root} yet; run 'kiln build'")
    if ref is None:
        found = default_build(repo, builds)
        assert found is not None
        return found[0]
    if ref == "latest":
        return builds[-1]
    assert ref is not None
    if len(ref) < 4:
        raise BuildNotFound(f"build {ref!r} is too short to name a build; give at least 4 characters of its id")
    hits = [b for b in builds if b.id.startswith(ref.lower())]
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise BuildNotFound(f"no build {ref!r}; 'kiln builds' lists them")
    raise BuildNotFound(
        f"build prefix {ref!r} matches {len(hits)} builds ({', '.join(b.id[:12] for b in hits[:5])}); give more characters"
    )


def load_model(
    path_or_build: str | os.PathLike[str], *, repo: str | os.PathLike[str] | Repo = ".", trust: bool = False
) -> Model:
    """A package directory or archive, a build directory, a build id (or unique prefix) in the
    repository at ``repo``, or a published package ``OWNER/NAME@RANGE`` (through kiln.lock, the
    cache, then the hub; ``trust``: trust its publisher's key on first use): verified and ready to
    ``predict``. A path that exists wins."""
    from ..package import load
    from ..registry.ref import looks_like_ref

    if Path(path_or_build).exists():
        return load(path_or_build)
    if looks_like_ref(str(path_or_build)):  # before importing Repo: a published package needs none
        from ..registry.install import load as load_published

        root = getattr(repo, "root", None)  # a Repo, or a path to one
        start = Path(root) if root is not None else Path(str(repo))
        return load_published(str(path_or_build), project=start, trust=trust)
    from ..repo import Repo

    r = repo if isinstance(repo, Repo) else Repo(repo)
    return load(find_build(r, str(path_or_build)).package)
