"""The versioned dataset: ``Repo`` (the porcelain) over tables, states, commits and the stage.

Plumbing modules take what they need (an object store, refs, a state), not a ``Repo``:
``table`` (rows as columns, segments), ``state`` (snapshots and deltas), ``history`` (commits,
walks, revisions), ``stage`` (staged changes, merges in progress, keep marks), ``merge``
(three-way merge of tables), ``importer``, ``export``, ``reachability`` (the object walk),
``maintenance`` (fsck, gc), ``layout`` (every path under .kiln), ``label_source``.
"""

from .history import Commit
from .importer import ImportReport
from .repo import Repo
from .table import Table

__all__ = ["Commit", "ImportReport", "Repo", "Table"]
