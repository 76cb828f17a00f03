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

from ..errors import BuildNotFound

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
    try:
        return BuildRecord(d, json.loads((d / BUILD_JSON).read_text()))
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return None


def list_builds(repo: Repo) -> list[BuildRecord]:
    """Every finished build, oldest first."""
    root = repo.layout.builds
    if not root.is_dir():
        return []
    found = [r for d in root.iterdir() if (r := read_build(d)) is not None]
    return sorted(found, key=lambda r: (r.record.get("created", 0), r.id))


def find_build(repo: Repo, ref: str | None = None) -> BuildRecord:
    """The build a full id or unique prefix names; the newest build for None or ``latest``."""
    builds = list_builds(repo)
    if not builds:
        raise BuildNotFound(f"no builds in {repo.root} yet; run 'kiln build'")
    if ref in (None, "latest"):
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


def load_model(path_or_build: str | os.PathLike[str], *, repo: str | os.PathLike[str] | Repo = ".") -> Model:
    """A package directory or archive, a build directory, or a build id (or unique prefix) in the
    repository at ``repo``: verified and ready to ``predict``. A path that exists wins."""
    from ..package import load
    from ..repo import Repo

    if Path(path_or_build).exists():
        return load(path_or_build)
    r = repo if isinstance(repo, Repo) else Repo(repo)
    return load(find_build(r, str(path_or_build)).package)
