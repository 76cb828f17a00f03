"""``Repo``: the porcelain. Import, label, commit, log, diff, branch, merge, over the plumbing.

Layout of a repository (every path, with its owner: ``datakiln.repo.layout``; docs/format.md)::

    <root>/.kiln/config.json      format version and repository id
    <root>/.kiln/HEAD             "ref: refs/heads/main" or a commit id
    <root>/.kiln/refs/heads/...   branches; refs/tags/... tags
    <root>/.kiln/objects/         loose objects and packs
    <root>/.kiln/stage.json       staged changes, a merge in progress, keep marks
    <root>/.kiln/lock             flock'ed by every writer
"""

from __future__ import annotations

import getpass
import json
import os
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypedDict, TypeVar

from ..errors import (
    CorruptObject,
    InputError,
    MergeInProgress,
    NothingToCommit,
    RepoExists,
    RepoNotFound,
    StateError,
    UnresolvedConflicts,
)
from ..sources.labels import check_label, read_label_file
from ..sources.scan import Candidate, scan_folder, scan_manifest
from ..store.fsutil import FileLock, fsync_dir
from ..store.objects import ObjectStore
from ..store.refs import Refs, check_name, valid_ref
from . import history, label_source
from . import merge as merging
from . import stage as staging
from .history import Commit, read_commit
from .importer import ImportReport, build_segment
from .index import StateIndexes
from .layout import KILN_DIR, Layout
from .revs import IdIndex, not_found
from .stage import KeptMarks, MergeState, Stage
from .state import Tables
from .table import Changes, Diff, Row, SegmentCache, Table, diff_tables

if TYPE_CHECKING:
    from .maintenance import FsckReport, GcReport

FORMAT = 1
DEFAULT_BRANCH = "main"
T = TypeVar("T")


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


class StagedEdit(TypedDict):
    """A staged label edit beside HEAD's label (a confirmed label has ``old == new``)."""

    id: str
    old: str | None
    old_source: str | None
    new: str | None
    source: str | None
    time: int


def find_root(start: Path) -> Path:
    start = start.resolve()
    for d in (start, *start.parents):
        if (d / KILN_DIR / "config.json").is_file():
            return d
    raise RepoNotFound(f"no kiln repository at {start} or any parent; run 'kiln init' to create one")


def _read_config(path: Path) -> dict[str, Any]:
    try:
        cfg = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError) as e:
        raise CorruptObject(f"{path} is damaged ({e}); restore it from a clone or a backup") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("repo_id"), str):
        raise CorruptObject(f"{path} is damaged (no repo_id); restore it from a clone or a backup")
    if cfg.get("format") != FORMAT:
        raise StateError(
            f"{path} has format {cfg.get('format')!r}; this datakiln reads format {FORMAT}; upgrade datakiln"
        )
    return cfg


class Repo:
    """A dataset repository on disk."""

    def __init__(self, path: str | os.PathLike[str] = ".") -> None:
        self.root = find_root(Path(path))
        self.dir = self.root / KILN_DIR
        self.layout = Layout(self.dir)
        self.config = _read_config(self.layout.config)
        self.id: str = self.config["repo_id"]
        self.tmp_dir = self.layout.tmp
        self.lock = FileLock(self.layout.lock)
        self.store = ObjectStore(self.layout.objects, self.tmp_dir)
        self.refs = Refs(self.dir, self.lock)
        self.segments = SegmentCache(self.store)
        self.tables = Tables(self.store, self.segments)
        self.indexes = StateIndexes(self.store, self.segments, self.layout.index_cache, self.tmp_dir)
        self.kept_marks = KeptMarks(self.layout.kept, self.tmp_dir)

    # ---- creation ------------------------------------------------------------------------
    @classmethod
    def init(cls, path: str | os.PathLike[str] = ".", *, branch: str = DEFAULT_BRANCH) -> Repo:
        root = Path(path)
        kdir = root / KILN_DIR
        if (kdir / "config.json").exists():
            raise RepoExists(f"{root.resolve()} is already a kiln repository")
        check_name(branch, "branch")
        root.mkdir(parents=True, exist_ok=True)
        # Build everything in a temp dir and rename it into place: init is all-or-nothing.
        tmp = root / f".kiln-init-{os.getpid()}"
        for sub in ("objects/pack", "refs/heads", "refs/tags", "tmp"):
            (tmp / sub).mkdir(parents=True, exist_ok=True)
        # All 256 fan-out directories up front: a commit then only adds files, never directories.
        for i in range(256):
            (tmp / "objects" / f"{i:02x}").mkdir()
        cfg = {"format": FORMAT, "repo_id": uuid.uuid4().hex}
        (tmp / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
        (tmp / "HEAD").write_text(f"ref: refs/heads/{branch}\n")
        fsync_dir(tmp)
        os.rename(tmp, kdir)
        fsync_dir(root)
        return cls(root)

    # ---- commits and revisions -----------------------------------------------------------
    def read_commit(self, cid: str) -> Commit:
        return read_commit(self.store, cid)

    def head(self) -> tuple[str | None, str | None]:
        """(branch ref or None if detached, commit id or None before the first commit)."""
        return self.refs.head()

    def branch_name(self) -> str | None:
        ref, _ = self.head()
        return ref[len("refs/heads/") :] if ref else None

    def resolve(self, rev: str) -> str:
        """The commit id a revision names: HEAD, a branch, a tag, an id prefix, with ~N and ^N."""
        return history.resolve(self.store, self.refs, rev)

    # ---- tables --------------------------------------------------------------------------
    def table_at(self, cid: str | None) -> Table:
        """The table of a commit (empty for None); a copy the caller may change."""
        return self.tables.of_state(self.read_commit(cid).state if cid else None)

    def table(self, rev: str | None = None) -> Table:
        """The table at ``rev``; with no ``rev``, the working table (HEAD plus staged changes)."""
        if rev is not None:
            return self.table_at(self.resolve(rev))
        _, head = self.head()
        table = self.table_at(head)
        table.apply(self._stage().changes, self.segments)
        return table

    # ---- the stage ------------------------------------------------------------------------
    def _stage(self) -> Stage:
        stage = Stage.load(self.layout.stage)
        if stage.committing and self._already_committed(stage.committing):
            return Stage()
        return stage

    def _already_committed(self, marker: dict[str, str]) -> bool:
        """True if the commit recorded before a crash reached its ref (or an ancestor did)."""
        ref, target = marker.get("ref", ""), marker.get("commit", "")
        current = self.head()[1] if ref == "HEAD" else self.refs.read(ref)
        return current is not None and (current == target or self._is_ancestor(target, current, limit=1000))

    def _save_stage(self, stage: Stage) -> None:
        stage.save(self.layout.stage, self.tmp_dir)

    def _update_stage(self, fn: Callable[[Stage, Table, Table], T]) -> T:
        """Run ``fn(stage, base_table, work_table)`` under the lock and save the stage it leaves.

        ``base_table`` is HEAD's table, ``work_table`` HEAD plus the stage; ``fn`` changes both
        the stage and ``work_table``. If ``fn`` raises, nothing is written.
        """
        with self.lock:
            _, head = self.head()
            stage = self._stage()
            base = self.table_at(head)
            work = base.copy()
            work.apply(stage.changes, self.segments)
            result = fn(stage, base, work)
            stage.base, stage.stats, stage.committing = head, work.stats(), None
            self._save_stage(stage)
            return result

    def user(self) -> str:
        """Who labels and commits: $KILN_USER, else config.json's ``user``, else the login name."""
        name = os.environ.get("KILN_USER") or self.config.get("user") or getpass.getuser()
        return label_source.check_person(str(name), "the user name (KILN_USER)")

    # ---- import --------------------------------------------------------------------------
    def import_folder(self, path: str | os.PathLike[str], **kw: Any) -> ImportReport:
        """Import a class-per-subfolder image folder (files at the top level are unlabeled)."""
        return self.import_candidates(scan_folder(Path(path)), **kw)

    def import_manifest(self, path: str | os.PathLike[str], **kw: Any) -> ImportReport:
        """Import a CSV or JSONL manifest: path,label[,split][,metadata...]."""
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

    def kept(self) -> dict[str, str]:
        """Example id -> the label a reviewer confirmed (``keep``), committed or staged."""
        return {**self.kept_marks.read(), **self._stage().kept}

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

    def _forget_keeps(self, staged: Mapping[str, str]) -> None:
        """Drop committed marks equal to discarded staged ones: a crash between writing kept.json
        and moving the branch (``commit``) leaves them there for a commit that never landed."""
        if not staged:
            return
        committed = self.kept_marks.read()
        left = {e: lab for e, lab in committed.items() if staged.get(e) != lab}
        if len(left) != len(committed):
            self.kept_marks.write(left)

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

    def unstage(self, ids: Iterable[str]) -> list[str]:
        """Drop the staged label edits of ``ids`` (back to HEAD's labels); returns the full ids.
        A reviewer's keep of those examples (``kiln keep``) goes with them."""
        wanted = list(ids)

        def drop(stage: Stage, base: Table, work: Table) -> list[str]:
            self._forget_keeps({e: stage.kept[e] for e in wanted if e in stage.kept})
            return staging.unstage(stage, base, work, wanted)

        return self._update_stage(drop)

    def staged_diff(self) -> Diff:
        """The staged changes as a diff from HEAD (the shape of ``kiln diff --json``)."""
        _, head = self.head()
        return diff_tables(self.table_at(head), self.table())

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

    def _move_head(self, ref: str | None, new: str, expected: str | None) -> None:
        if ref is not None:
            self.refs.update(ref, new, expected)
        else:
            self.refs.set_head(commit=new)

    # ---- history -------------------------------------------------------------------------
    def log(self, rev: str = "HEAD", *, n: int | None = None) -> list[Commit]:
        """Commits reachable from ``rev``, newest first (by generation, then time)."""
        _, head = self.head()
        if rev == "HEAD" and head is None:
            return []
        return list(history.walk(self.store, [self.resolve(rev)], n))

    def _is_ancestor(self, a: str, b: str, *, limit: int | None = None) -> bool:
        return history.is_ancestor(self.store, a, b, limit=limit)

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

    # ---- branches, tags, checkout --------------------------------------------------------
    def branches(self) -> dict[str, str]:
        return self.refs.list("refs/heads/")

    def tags(self) -> dict[str, str]:
        return self.refs.list("refs/tags/")

    def create_branch(self, name: str, rev: str = "HEAD") -> str:
        check_name(name, "branch")
        cid = self.resolve(rev)
        if self.refs.read(f"refs/heads/{name}"):
            raise StateError(f"branch {name!r} already exists; pick another name or 'kiln checkout {name}'")
        self.refs.update(f"refs/heads/{name}", cid, None)
        return cid

    def delete_branch(self, name: str, *, force: bool = False) -> None:
        check_name(name, "branch")
        ref = f"refs/heads/{name}"
        cid = self.refs.read(ref)
        if cid is None:
            raise not_found(name, self.branches())
        if self.branch_name() == name:
            raise StateError(f"cannot delete branch {name!r}: it is checked out; 'kiln checkout' another first")
        _, head = self.head()
        if not force and head and not self._is_ancestor(cid, head):
            raise StateError(f"branch {name!r} is not merged into HEAD; merge it, or delete with --force")
        self.refs.delete(ref, cid)

    def tag(self, name: str, rev: str = "HEAD") -> str:
        check_name(name, "tag")
        cid = self.resolve(rev)
        if self.refs.read(f"refs/tags/{name}"):
            raise StateError(f"tag {name!r} already exists; tags do not move, pick another name")
        self.refs.update(f"refs/tags/{name}", cid, None)
        return cid

    def checkout(self, target: str, *, create: bool = False) -> str | None:
        """Switch HEAD to a branch (or detach it at a commit). Staged changes come along when
        every example they touch exists in the target; otherwise checkout refuses."""
        with self.lock:
            stage = self._stage()
            if stage.merge is not None:
                raise MergeInProgress("a merge is in progress; commit it or 'kiln merge --abort' first")
            if create:
                self.create_branch(target)
            ref = f"refs/heads/{target}" if valid_ref(f"refs/heads/{target}") else ""
            cid = self.refs.read(ref) if ref else None
            if cid is None and ref and not self.refs.list("refs/heads/") and target == self.branch_name():
                return None  # unborn branch: nothing to switch
            if cid is None:
                cid = self.resolve(target)
                ref = ""
            if not stage.changes.is_empty():
                history.check_applies(
                    self.table_at(cid),
                    stage.changes,
                    self.segments,
                    hint="commit or 'kiln reset' them before switching",
                )
            if ref:
                self.refs.set_head(ref=ref)
            else:
                self.refs.set_head(commit=cid)
            if not stage.changes.is_empty():
                stage.base = None  # recomputed at the next commit
                self._save_stage(stage)
            return cid

    # ---- merge ---------------------------------------------------------------------------
    def merge(self, rev: str, *, strategy: str | None = None, message: str | None = None) -> merging.MergeResult:
        """Three-way, row-level merge of ``rev`` into HEAD (``datakiln.repo.merge``). Conflicts
        are left staged for the user unless ``strategy`` (ours or theirs) settles them."""
        merging.check_side(strategy)
        with self.lock:
            stage = self._stage()
            if stage.merge is not None:
                raise MergeInProgress("a merge is already in progress; commit it, or 'kiln merge --abort'")
            if not stage.changes.is_empty():
                raise StateError("you have staged changes; commit them or 'kiln reset' before merging")
            ref, head = self.head()
            theirs = self.resolve(rev)
            if head is None:
                self._move_head(ref, theirs, None)
                return {"result": "fast-forward", "commit": theirs, "conflicts": []}
            base = history.merge_base(self.store, head, theirs)
            if theirs == head or base == theirs:
                return {"result": "up-to-date", "commit": head, "conflicts": []}
            if base == head:
                self._move_head(ref, theirs, head)
                return {"result": "fast-forward", "commit": theirs, "conflicts": []}
            if base is None:
                raise StateError(f"{rev} shares no history with HEAD; there is nothing to merge it against")
            return self._merge(rev, base, head, theirs, strategy, message)

    def _merge(
        self, rev: str, base: str, head: str, theirs: str, strategy: str | None, message: str | None
    ) -> merging.MergeResult:
        tb, to, tt = self.table_at(base), self.table_at(head), self.table_at(theirs)
        changes, conflicts = merging.three_way(tb, to, tt, self.segments)
        if strategy and conflicts:
            changes, _ = merging.three_way(tb, to, tt, self.segments, {c["id"]: strategy for c in conflicts})
        state = MergeState(theirs=theirs, name=rev, base=base, conflicts=conflicts)
        if strategy:
            state.settle(c["id"] for c in conflicts)
        self._stage_merge(head, to, changes, state)
        if conflicts and not strategy:
            return {"result": "conflicts", "commit": None, "conflicts": conflicts}
        name = self.branch_name() or head[:12]
        cid = self.commit(message or f"merge {rev} into {name}")
        return {"result": "merged", "commit": cid, "conflicts": conflicts}

    def _stage_merge(self, head: str, ours: Table, changes: Changes, state: MergeState) -> None:
        """The merge's changes and its state, in one atomic write of the stage."""
        work = ours.copy()
        work.apply(changes, self.segments)
        self._save_stage(Stage(base=head, changes=changes, stats=work.stats(), merge=state))

    def resolve_conflicts(self, side: str, ids: Iterable[str] | None = None) -> list[str]:
        """During a merge, settle conflicts (all, or ``ids``) by taking ``ours`` or ``theirs``."""
        with self.lock:
            stage = self._stage()
            state = stage.merge
            if state is None:
                raise StateError(
                    "no merge is in progress; 'kiln merge BRANCH --ours|--theirs' settles conflicts as it merges"
                )
            _, head = self.head()
            assert head is not None
            tables = (self.table_at(state.base), self.table_at(head), self.table_at(state.theirs))
            changes, chosen = merging.settle(state, tables, self.segments, stage.changes, side, ids)
            self._stage_merge(head, tables[1], changes, state)
            return chosen

    def abort_merge(self) -> None:
        with self.lock:
            if self._stage().merge is None:
                raise StateError("no merge is in progress")
            self.reset()

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

        return export(self.store, self.table(rev), Path(out), format=format)

    def fsck(self) -> FsckReport:
        from .maintenance import fsck

        return fsck(self.store, self.refs, self.layout.stage, Tables(self.store, SegmentCache(self.store)))

    def gc(self, *, prune_seconds: float = 14 * 86400) -> GcReport:
        from .maintenance import gc

        with self.lock:
            return gc(self.store, self.refs, self._stage(), prune_seconds=prune_seconds)


class _Finder(Protocol):
    def find(self, prefix: str) -> str: ...


def _full(expect: Mapping[str, str | None] | None, ids: _Finder) -> dict[str, str | None] | None:
    """``expect`` keyed by full ids (callers may give prefixes)."""
    return None if expect is None else {ids.find(e): lab for e, lab in expect.items()}
