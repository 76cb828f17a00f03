"""datakiln: version-controlled image datasets, the source code of Software 2.0.

    >>> import datakiln
    >>> repo = datakiln.Repo.init("animals")
    >>> repo.import_folder("photos/animals")
    >>> repo.label("3f2a9c", "cat")
    >>> repo.commit("fix cats labelled dog")

Importing datakiln is cheap: it loads no web framework, CLI framework, numpy or torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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
from .history import Commit
from .importer import ImportReport
from .repo import Repo
from .table import Table

__version__ = "0.1.0"


if TYPE_CHECKING:
    from .package import Model


def load(path_or_build: str, *, repo: str = ".") -> Model:
    """A model package (directory or archive), a build directory, or a build id in ``repo``,
    verified and ready to ``predict``. Runs on onnxruntime; does not import torch."""
    from .package import load as _load

    return _load(path_or_build, repo=repo)


__all__ = [
    "__version__",
    "Repo",
    "load",
    "Commit",
    "Table",
    "ImportReport",
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
