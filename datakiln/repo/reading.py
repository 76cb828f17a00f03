"""Reading a repository: status, staged edits, history, diffs, rows, images, checks (part of ``Repo``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from . import history
from . import stage as staging
from .base import RepoBase
from .history import Commit
from .revs import IdIndex
from .state import Tables
from .table import Diff, Row, SegmentCache, Table, diff_tables

if TYPE_CHECKING:
    from .maintenance import FsckReport, GcReport


class Staged(TypedDict):
    added: int
    removed: int
    relabeled: int


class MergeStatus(TypedDict):
    theirs: str
    name: str
    conflicts: list[staging.Conflict]


class Status(TypedDict, total=False):
    """The shape of ``kiln status --json``."""

    branch: str | None
    head: str | None
    staged: Staged
    stats: dict[str, int]
    merge: MergeStatus | None
    upstream: dict[str, Any] | None  # the branch against its remote-tracking ref (``Repo.ahead_behind``)


class StagedEdit(TypedDict):
    """A staged label edit beside HEAD's label (a confirmed label has ``old == new``)."""

    id: str
    old: str | None
    old_source: str | None
    new: str | None
    source: str | None
    time: int


class Reading(RepoBase):
    """Status, log, diff, show, ls, find, read an image, export, fsck, gc (part of ``Repo``)."""

    # ---- status and commit ---------------------------------------------------------------
    def status(self) -> Status:
        """Branch, HEAD, counts, staged changes and merge conflicts (the ``kiln status --json`` shape)."""
        ref, head = self.head()
        stage = self._stage()
        staged: Staged = {"added": 0, "removed": len(stage.changes.remove), "relabeled": len(stage.changes.set)}
        if stage.changes.add:
            staged["added"] = sum(len(self.segments.get(s)) for s in stage.changes.add)
        if stage.stats is not None and stage.base == head:
            stats = stage.stats
        elif head is not None:
            stats = self.read_commit(head).stats
        else:
            stats = {"examples": 0, "labeled": 0}
        merge: MergeStatus | None = None
        if stage.merge is not None:
            m = stage.merge
            still = set(m.open())
            merge = {"theirs": m.theirs, "name": m.name, "conflicts": [c for c in m.conflicts if c["id"] in still]}
        branch = ref[len("refs/heads/") :] if ref else None
        return {"branch": branch, "head": head, "staged": staged, "merge": merge, "stats": stats}

    def staged_edits(self) -> list[StagedEdit]:
        """Each staged label edit beside what HEAD has (a confirmed label has ``old == new``)."""
        _, head = self.head()
        base = self.table_at(head)
        out: list[StagedEdit] = []
        for eid, (lab, src, t) in self._stage().changes.set.items():
            old = base.label_of(eid) if eid in base else (None, None, 0)
            out.append({"id": eid, "old": old[0], "old_source": old[1], "new": lab, "source": src, "time": t})
        return out

    def staged_diff(self) -> Diff:
        """The staged changes as a diff from HEAD (the shape of ``kiln diff --json``)."""
        _, head = self.head()
        return diff_tables(self.table_at(head), self.table())

    # ---- history -------------------------------------------------------------------------
    def log(self, rev: str = "HEAD", *, n: int | None = None) -> list[Commit]:
        """Commits reachable from ``rev``, newest first (by generation, then time)."""
        _, head = self.head()
        if rev == "HEAD" and head is None:
            return []
        return list(history.walk(self.store, [self.resolve(rev)], n))

    def diff(self, a: str | None = None, b: str | None = None) -> Diff:
        """Row-level diff between two revisions; ``b=None`` is the working table, ``a=None`` HEAD."""
        ta = self.table(a or "HEAD") if (a or self.head()[1]) else Table()
        tb = self.table(b) if b else self.table()
        return diff_tables(ta, tb)

    def show(self, rev: str = "HEAD") -> tuple[Commit, Diff]:
        c = self.read_commit(self.resolve(rev))
        before = self.table_at(c.parents[0]) if c.parents else Table()
        return c, diff_tables(before, self.table_at(c.id))

    def example_history(self, example: str) -> list[history.HistoryEvent]:
        """The commits on HEAD's first-parent line that changed an example's label, newest first."""
        return history.example_history(self.tables, self.head()[1], example)

    # ---- reading examples ----------------------------------------------------------------
    def ls(
        self,
        *,
        rev: str | None = None,
        label: str | None = None,
        split: str | None = None,
        source: str | None = None,
        unlabeled: bool = False,
    ) -> list[Row]:
        """Rows of the working table (or ``rev``), filtered; the ``kiln ls --json`` shape."""
        t = self.table(rev)
        c = t.cols
        metas = t.meta_names()
        out = []
        for i in range(len(t)):
            if label is not None and c["label"][i] != label:
                continue
            if unlabeled and c["label"][i] is not None:
                continue
            if split is not None and c["split"][i] != split:
                continue
            if source is not None and not str(c["source"][i] or "").startswith(source):
                continue
            out.append(t.row(i, metas))
        return out

    def find(self, example: str, *, rev: str | None = None) -> Row:
        """One example's row by id or unique prefix."""
        t = self.table(rev)
        return t.row(t.index[IdIndex(t.ids).find(example)])

    def read_image(self, example: str, *, rev: str | None = None) -> tuple[bytes, str]:
        """(image bytes, format) of an example."""
        row = self.find(example, rev=rev)
        return self.store.get(row["blob"]), str(row["format"])

    def export(self, out: str | os.PathLike[str], *, format: str = "parquet", rev: str | None = None) -> Path:
        from .export import export

        table = self.table(rev)
        self.store.ensure(table.blobs)  # a partial clone fetches the images in batches first
        return export(self.store, table, Path(out), format=format)

    def fsck(self) -> FsckReport:
        from .maintenance import fsck

        tables = Tables(self.store, SegmentCache(self.store))
        return fsck(self.store, self.refs, self.layout.stage, tables, promised=self.partial is not None)

    def gc(self, *, prune_seconds: float = 14 * 86400) -> GcReport:
        from .maintenance import gc

        with self.lock:
            return gc(self.store, self.refs, self._stage(), prune_seconds=prune_seconds)
