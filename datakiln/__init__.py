"""datakiln: version-controlled image datasets, the source code of Software 2.0.

    >>> import datakiln
    >>> repo = datakiln.Repo.init("animals")
    >>> repo.import_folder("photos/animals")
    >>> repo.label("3f2a9c", "cat")
    >>> repo.commit("fix cats labelled dog")

Importing datakiln is cheap: it loads no web framework, CLI framework, numpy or torch.
"""

from __future__ import annotations

from .errors import (
    AmbiguousExample,
    AmbiguousRevision,
    BadImage,
    BadLabel,
    BadManifest,
    BadName,
    ConcurrencyError,
    CorruptObject,
    ExampleError,
    ExampleNotFound,
    InputError,
    IntegrityError,
    KilnError,
    LockTimeout,
    MergeInProgress,
    MissingObject,
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

__all__ = [
    "__version__",
    "Repo",
    "Commit",
    "Table",
    "ImportReport",
    "KilnError",
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
]
