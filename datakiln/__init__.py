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
from typing import TYPE_CHECKING, Any

from .errors import (
    AmbiguousExample,
    AmbiguousRevision,
    AuthRequired,
    BadImage,
    BadLabel,
    BadManifest,
    BadName,
    BadPackage,
    BadSpec,
    BuildFailed,
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
    PackageNotFound,
    PermissionDenied,
    PushRejected,
    RefMoved,
    RemoteError,
    RepoExists,
    RepoNotFound,
    RevisionError,
    RevisionNotFound,
    SignatureError,
    StateError,
    UnresolvedConflicts,
)
from .version import __version__

if TYPE_CHECKING:
    from .compile.builder import BuildResult, build
    from .compile.data import dataset
    from .compile.records import BuildRecord, find_build
    from .compile.records import list_builds as builds
    from .compile.records import load_model as load
    from .compile.spec import Spec
    from .package import Model, Predictions
    from .repo import Commit, ImportReport, Repo, Table

# The public surface loads on first use, so `kiln --help` (which imports this package) pays for
# none of it, and `import datakiln` loads no numpy: the compiler's types and functions pull it in.
# Name -> (module, attribute).
_LAZY = {
    "Repo": ("datakiln.repo", "Repo"),
    "Commit": ("datakiln.repo", "Commit"),
    "Table": ("datakiln.repo", "Table"),
    "ImportReport": ("datakiln.repo", "ImportReport"),
    "Spec": ("datakiln.compile.spec", "Spec"),
    "BuildResult": ("datakiln.compile.builder", "BuildResult"),
    "BuildRecord": ("datakiln.compile.records", "BuildRecord"),
    "Model": ("datakiln.package", "Model"),
    "Predictions": ("datakiln.package", "Predictions"),
    "build": ("datakiln.compile.builder", "build"),  # train (or find cached) the model of a commit
    "builds": ("datakiln.compile.records", "list_builds"),  # every finished build, oldest first
    "find_build": ("datakiln.compile.records", "find_build"),  # a build by id prefix; None: the newest
    "dataset": ("datakiln.compile.data", "dataset"),  # a torch Dataset of one split of a commit
    "load": ("datakiln.compile.records", "load_model"),  # a package path or a build id, verified
}
_SUBPACKAGES = {"review", "insight", "compile", "package", "sources", "store"}


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:  # `datakiln.review.label_issues(repo)` without an import of its own
        return importlib.import_module(f"datakiln.{name}")
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value  # once: later lookups are plain attribute reads
        return value
    raise AttributeError(f"module 'datakiln' has no attribute {name!r}")


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
    "BuildFailed",
    "BadPackage",
    "SignatureError",
    "PackageNotFound",
    "RemoteError",
    "AuthRequired",
    "PermissionDenied",
    "PushRejected",
]
