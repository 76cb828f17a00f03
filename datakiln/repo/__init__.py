"""The versioned dataset: ``Repo`` (the porcelain) over tables, states, commits and the stage.

Plumbing modules take what they need (an object store, refs, a state), not a ``Repo``:
``table`` (rows as columns, segments), ``state`` (snapshots and deltas), ``history`` (commits,
walks, revisions), ``stage`` (staged changes, merges in progress, keep marks), ``merge``
(three-way merge of tables), ``importer``, ``export``, ``reachability`` (the object walk),
``maintenance`` (fsck, gc), ``layout`` (every path under .kiln), ``label_source``.
"""

from typing import TYPE_CHECKING, Any

from .history import Commit
from .repo import Repo
from .table import Table

if TYPE_CHECKING:
    from .importer import ImportReport

__all__ = ["Commit", "ImportReport", "Repo", "Table"]


def __getattr__(name: str) -> Any:
    if name == "ImportReport":  # the importer loads only when something imports
        from .importer import ImportReport

        return ImportReport
    raise AttributeError(f"module 'datakiln.repo' has no attribute {name!r}")
