"""Editing the working table: imports, labels, keeps, removals, and committing them."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import (
    CorruptObject,
    InputError,
    MergeInProgress,
    NothingToCommit,
    UnresolvedConflicts,
)
from ..sources.labels import check_label, read_label_file
from . import history, label_source
from . import merge as merging
from . import stage as staging
from .base import RepoBase
from .revs import IdIndex
from .stage import Stage
from .table import Changes, Table

if TYPE_CHECKING:  # the importer and the scanners load when an import runs: 10 ms off every start-up
    from ..sources.scan import Candidate
    from .importer import ImportReport


class Editing(RepoBase):
    """Import, label, keep, remove, unstage, reset, commit (part of ``Repo``)."""

    # ---- import --------------------------------------------------------------------------
    def import_folder(self, path: str | os.PathLike[str], **kw: Any) -> ImportReport:
        """Import a class-per-subfolder image folder (files at the top level are unlabeled)."""
        from ..sources.scan import scan_folder

        return self.import_candidates(scan_folder(Path(path)), **kw)

    def import_manifest(self, path: str | os.PathLike[str], **kw: Any) -> ImportReport:
        """Import a CSV or JSONL manifest: path,label[,split][,metadata...]."""
        from ..sources.scan import scan_manifest

        return self.import_candidates(scan_manifest(Path(path)), **kw)

    def import_sample(self, name: str = "digits", **kw: Any) -> ImportReport:
        """Import a sample bundled with datakiln (``digits``)."""
        from ..sources.sample import sample

        return self.import_candidates(sample(name), **kw)

    def import_candidates(
        self, cands: list[Candidate], *, skip_bad: bool = False, jobs: int | None = None
    ) -> ImportReport:
        jobs = jobs or int(os.environ.get("KILN_JOBS") or os.cpu_count() or 1)
        present = set(self.table().ids)
        from .importer import build_segment

        seg, report = build_segment(self.store, cands, present, skip_bad=skip_bad, jobs=jobs)
        if seg is None:
            return report

        def add(stage: Stage, base: Table, work: Table) -> None:
            # Another import may have staged some of these rows since ``present`` was read: stage
            # only the rest, so no example is counted (or stored in the stage) twice.
            new = [j for j, eid in enumerate(seg.ids) if eid not in work]
            report.present += len(seg) - len(new)
            report.added = len(new)
            if not new:
                report.segment = None
                return
            rows = seg if len(new) == len(seg) else seg.subset(new)
            oid = self.store.put_json(rows.to_json())
            report.segment = oid
            work.add_segment(oid, rows)
            stage.changes.add.append(oid)
            # Importing an example whose removal is staged brings it back: the removal is dropped
            # (a stage applies removals after adds, so keeping it would remove the import again).
            back = set(rows.ids)
            stage.changes.remove = [e for e in stage.changes.remove if e not in back]

        self._update_stage(add)
        return report

    # ---- label, keep, remove -------------------------------------------------------------
    def label(self, example: str, label: str | None, *, by: str | None = None, new_class: bool = True) -> str:
        """Stage one label (``None`` makes the example unlabeled); returns the full example id."""
        return self.label_many([(example, label)], by=by, new_class=new_class)[0]

    def label_many(
        self,
        pairs: Iterable[tuple[str, str | None]],
        *,
        by: str | None = None,
        expect: Mapping[str, str | None] | None = None,
        new_class: bool = True,
    ) -> list[str]:
        """Stage many labels at once; ids may be unique prefixes. All or nothing.

        ``by`` is the label source (default ``human:<user>``). ``expect`` maps example ids to the
        label the caller last saw: if any has changed since (another tab, person or command got
        there first), nothing is staged and ``LabelChanged`` says which, instead of silently
        overwriting their label. With ``new_class=False`` a label no example has yet is refused
        (a typo such as ``dgo`` would otherwise start a class of its own).
        """
        pairs = list(pairs)
        source = label_source.check(by) if by else label_source.human(self.user())
        now = int(time.time())
        checked = [(eid, None if lab is None else check_label(lab, f"label for {eid}")) for eid, lab in pairs]
        labels = [lab for _, lab in checked]

        def apply(stage: Stage, base: Table, work: Table) -> list[str]:
            if not new_class:
                staging.check_known_labels(work.label_vocab(), labels)
            index = IdIndex(work.ids)
            full = [index.find(e) for e, _ in checked]
            work.set_labels(staging.set_labels(stage, base, work, full, checked, source, now, _full(expect, index)))
            if stage.merge is not None:
                stage.merge.settle(full)
            return full

        with self.lock:
            stage, head = self._stage(), self.head()[1]
            if head is None or stage.changes.add:
                full = self._update_stage(apply)  # staged imports: rows the index does not have
            else:
                full = self._label_indexed(stage, head, checked, source, now, expect, new_class)
            return full

    def _label_indexed(
        self,
        stage: Stage,
        head: str,
        checked: list[tuple[str, str | None]],
        source: str,
        now: int,
        expect: Mapping[str, str | None] | None,
        new_class: bool,
    ) -> list[str]:
        """``label_many`` through HEAD's state index: no table is materialized (0.3 s at 100k)."""
        work = staging.WorkLabels(self.indexes.of_state(self.read_commit(head).state), stage.changes)
        if not new_class:
            staging.check_known_labels(work.label_names(), [lab for _, lab in checked])
        full = [work.find(e) for e, _ in checked]
        staging.set_labels(stage, work.head, work, full, checked, source, now, _full(expect, work))
        if stage.merge is not None:
            stage.merge.settle(full)
        stage.base, stage.stats, stage.committing = head, work.stats(), None
        self._save_stage(stage)
        return full

    def label_file(self, path: str | os.PathLike[str], *, by: str | None = None, new_class: bool = True) -> list[str]:
        """Stage labels from a CSV with columns ``id,label`` (an empty label unlabels)."""
        return self.label_many(read_label_file(Path(path)), by=by, new_class=new_class)

    def keep(self, examples: Iterable[str], *, expect: Mapping[str, str | None] | None = None) -> list[tuple[str, str]]:
        """Confirm the current labels of ``examples`` as the user's: staged as human labels, and
        marked kept, so they are not flagged as suspected label errors while they keep that label.
        Returns (full id, label) pairs."""
        wanted = list(examples)
        source = label_source.human(self.user())
        now = int(time.time())

        def apply(stage: Stage, base: Table, work: Table) -> list[tuple[str, str]]:
            index = IdIndex(work.ids)
            full = [index.find(e) for e in wanted]
            unlabeled = [e for e in full if work.get(e, "label") is None]
            if unlabeled:
                raise InputError(
                    f"example {unlabeled[0][:12]} has no label to keep; label it with 'kiln label ID LABEL'"
                )
            pairs = [(e, str(work.get(e, "label"))) for e in full]
            checked: list[tuple[str, str | None]] = list(pairs)
            work.set_labels(staging.set_labels(stage, base, work, full, checked, source, now, _full(expect, index)))
            committed = self.kept_marks.read()
            for e, lab in pairs:
                if committed.get(e) != lab:
                    stage.kept[e] = lab
            return pairs

        return self._update_stage(apply)

    def set_kept(self, example: str, label: str | None) -> None:
        """Put an example's keep mark back as it was (``label``, or none): undo of a review decision."""
        with self.lock:
            stage = self._stage()
            committed = self.kept_marks.read()
            if label is None:
                stage.kept.pop(example, None)
                if example in committed:
                    del committed[example]
                    self.kept_marks.write(committed)
            elif committed.get(example) != label:
                stage.kept[example] = label
            self._save_stage(stage)

    def rm(self, examples: Iterable[str]) -> list[str]:
        """Stage the removal of examples (ids or unique prefixes)."""
        wanted = list(examples)

        def apply(stage: Stage, base: Table, work: Table) -> list[str]:
            full = staging.remove(stage, work, wanted)
            if stage.merge is not None:
                stage.merge.settle(full)
            return full

        return self._update_stage(apply)

    def reset(self) -> None:
        """Discard every staged change, an unfinished merge, and the keeps staged with them.

        Works on a damaged stage file too: that is when it is needed most."""
        with self.lock:
            try:
                staged_keeps = self._stage().kept
            except CorruptObject:
                staged_keeps = {}
            self._forget_keeps(staged_keeps)
            self.layout.stage.unlink(missing_ok=True)

    def unstage(self, ids: Iterable[str]) -> list[str]:
        """Drop the staged label edits of ``ids`` (back to HEAD's labels); returns the full ids.
        A reviewer's keep of those examples (``kiln keep``) goes with them."""
        wanted = list(ids)
        dropped: dict[str, str] = {}

        def drop(stage: Stage, base: Table, work: Table) -> list[str]:
            full = staging.unstage(stage, base, work, wanted, dropped_keeps=dropped)
            return full

        with self.lock:
            full = self._update_stage(drop)
            self._forget_keeps(dropped)  # after the stage is saved: a refused unstage forgets nothing
        return full

    def commit(
        self,
        message: str,
        *,
        author: str | None = None,
        edits: Mapping[str, str | None] | None = None,
    ) -> str:
        """Commit the stage (or, with ``edits``, exactly those labels, leaving the stage alone).

        Returns the new commit id. Concurrent committers are serialized by the repository lock
        and the branch moves by compare-and-swap, so no commit is ever lost.
        """
        message = history.check_message(message)
        author = history.check_author(author) if author else self.user()
        with self.lock:
            ref, head = self.head()
            stage = self._stage()
            if edits is not None:
                if stage.merge is not None:
                    raise MergeInProgress("a merge is in progress; commit it (without edits) or 'kiln merge --abort'")
                changes = self._edits(edits, head, author)
                cid = history.write_commit(
                    self.store, self.tables, changes, [head] if head else [], message, author, None
                )
                self._move_head(ref, cid, head)
                return cid
            return self._commit_stage(stage, ref, head, message, author)

    def _commit_stage(self, stage: Stage, ref: str | None, head: str | None, message: str, author: str) -> str:
        if stage.merge is not None:
            open_ = stage.merge.open()
            if open_:
                raise UnresolvedConflicts(merging.conflict_message(open_))
        elif stage.changes.is_empty():
            raise NothingToCommit("nothing to commit; stage changes with 'kiln import', 'kiln label' or 'kiln rm'")
        parents = [head] if head else []
        if stage.merge is not None:
            parents.append(stage.merge.theirs)
        stats = stage.stats if stage.base == head else None
        cid = history.write_commit(self.store, self.tables, stage.changes, parents, message, author, stats)
        if stage.kept:
            # Before the branch moves: a commit that lands has its keeps on disk; one that does
            # not leaves them staged too, and 'kiln reset' forgets both copies.
            self.kept_marks.write({**self.kept_marks.read(), **stage.kept})
        stage.committing = {"commit": cid, "ref": ref or "HEAD"}
        self._save_stage(stage)
        self._move_head(ref, cid, head)
        self.layout.stage.unlink(missing_ok=True)
        return cid

    def _edits(self, edits: Mapping[str, str | None], head: str | None, author: str) -> Changes:
        """``commit(edits=...)``: label changes by id prefix, checked, as human edits by the author."""
        index = IdIndex(self.table_at(head).ids)
        now = int(time.time())
        source = label_source.human(author)
        changes = Changes()
        for raw, lab in edits.items():
            eid = index.find(raw)
            lab = None if lab is None else check_label(lab, f"label for {eid}")
            changes.set[eid] = (lab, source if lab is not None else None, now)
        if changes.is_empty():
            raise NothingToCommit("no edits given; pass a mapping of example id to label")
        return changes


class _Finder(Protocol):
    def find(self, prefix: str) -> str: ...


def _full(expect: Mapping[str, str | None] | None, ids: _Finder) -> dict[str, str | None] | None:
    """``expect`` keyed by full ids (callers may give prefixes)."""
    return None if expect is None else {ids.find(e): lab for e, lab in expect.items()}
