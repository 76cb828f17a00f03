"""datakiln: version-controlled image datasets, the source code of Software 2.0.

    >>> import datakiln
    >>> repo = datakiln.Repo.init("animals")
    >>> repo.import_folder("photos/animals")
    >>> repo.commit("import the photos")
    >>> result = datakiln.build(repo)
    >>> model = datakiln.load(result.build.id, repo=repo)

Importing datakiln is cheap: it loads no web framework, CLI framework, numpy or torch. The
compiler (``datakiln.compile``), packages (``datakiln.package``) and the types they return are
loaded when first used.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

from .errors import (
    AmbiguousExample,
    AmbiguousRevision,
    BadImage,
    BadLabel,
    BadManifest,
    BadName,
    BadPackage,
    BadSpec,
    BuildNotFound,
    ConcurrencyError,
    CorruptObject,
    ExampleError,
    ExampleNotFound,
    InputError,
    IntegrityError,
    KilnError,
    LabelChanged,
    LockTimeout,
    MergeInProgress,
    MissingObject,
    NotBuildable,
    NothingToCommit,
    RefMoved,
    RepoExists,
    RepoNotFound,
    RevisionError,
    RevisionNotFound,
    StateError,
    UnresolvedConflicts,
)
from .version import __version__

if TYPE_CHECKING:
    from .compile.builder import BuildResult
    from .compile.records import BuildRecord
    from .compile.spec import Spec
    from .package import Model, Predictions
    from .repo import Commit, ImportReport, Repo, Table

# The public surface loads on first use, so `kiln --help` (which imports this package) pays for
# none of it, and `import datakiln` loads no numpy: Model and BuildResult pull in numpy.
_LAZY = {
    "Repo": "datakiln.repo",
    "Commit": "datakiln.repo",
    "Table": "datakiln.repo",
    "ImportReport": "datakiln.repo",
    "Spec": "datakiln.compile.spec",
    "BuildResult": "datakiln.compile.builder",
    "BuildRecord": "datakiln.compile.records",
    "Model": "datakiln.package",
    "Predictions": "datakiln.package",
}


_SUBPACKAGES = {"review", "insight", "compile", "package", "sources", "store"}


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:  # `datakiln.review.label_issues(repo)` without an import of its own
        return importlib.import_module(f"datakiln.{name}")
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # once: later lookups are plain attribute reads
        return value
    raise AttributeError(f"module 'datakiln' has no attribute {name!r}")


def load(path_or_build: str | os.PathLike[str], *, repo: str | os.PathLike[str] | Repo = ".") -> Model:
    """A model package (directory or archive), a build directory, or a build id in ``repo``,
    verified and ready to ``predict``. Runs on onnxruntime; does not import torch."""
    from .compile.records import load_model

    return load_model(path_or_build, repo=repo)


def build(
    repo: Repo,
    rev: str = "HEAD",
    spec: Spec | None = None,
    *,
    no_cache: bool = False,
    progress: bool | None = None,
    **overrides: Any,
) -> BuildResult:
    """Train (or find in the cache) the model of ``rev`` under ``spec`` (default: kiln.toml);
    ``overrides`` replace single keys: ``datakiln.build(repo, width=0.5, epochs=10)``."""
    from .compile.builder import build as _build

    return _build(repo, rev, spec, no_cache=no_cache, progress=progress, **overrides)


def builds(repo: Repo) -> list[BuildRecord]:
    """Every finished build of ``repo``, oldest first."""
    from .compile.records import list_builds

    return list_builds(repo)


def find_build(repo: Repo, ref: str | None = None) -> BuildRecord:
    """The build a full id or unique prefix names; the newest for None or ``latest``."""
    from .compile.records import find_build as _find

    return _find(repo, ref)


def dataset(
    repo: Repo, split: str = "train", commit: str = "HEAD", *, spec: Spec | None = None, labeled: bool = True
) -> Any:
    """A PyTorch ``Dataset`` of ``(pixels, class index)`` for one split of a commit."""
    from .compile.data import dataset as _dataset

    return _dataset(repo, split, commit, spec=spec, labeled=labeled)


__all__ = [
    "__version__",
    "Repo",
    "load",
    "build",
    "builds",
    "find_build",
    "dataset",
    "Commit",
    "Table",
    "ImportReport",
    "Spec",
    "Model",
    "Predictions",
    "BuildResult",
    "BuildRecord",
    "KilnError",
    "LabelChanged",
    "RepoNotFound",
    "RepoExists",
    "RevisionError",
    "RevisionNotFound",
    "AmbiguousRevision",
    "ExampleError",
    "ExampleNotFound",
    "AmbiguousExample",
    "InputError",
    "BadImage",
    "BadManifest",
    "BadLabel",
    "BadName",
    "StateError",
    "NothingToCommit",
    "MergeInProgress",
    "UnresolvedConflicts",
    "ConcurrencyError",
    "LockTimeout",
    "RefMoved",
    "IntegrityError",
    "CorruptObject",
    "MissingObject",
    "BuildNotFound",
    "BadSpec",
    "NotBuildable",
    "BadPackage",
]
