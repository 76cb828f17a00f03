"""``Repo``: the porcelain. Import, label, commit, log, diff, branch, merge, over the plumbing.

Layout of a repository (see docs/format.md)::

    <root>/.kiln/config.json      format version and repository id
    <root>/.kiln/HEAD             "ref: refs/heads/main" or a commit id
    <root>/.kiln/refs/heads/...   branches; refs/tags/... tags
    <root>/.kiln/objects/         loose objects and packs
    <root>/.kiln/stage.json       staged changes; MERGE.json while a merge is under way
    <root>/.kiln/lock             flock'ed by every writer
"""

from __future__ import annotations

import getpass
import json
import os
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import history
from . import merge as merging
from . import stage as staging
from .errors import (
    InputError,
    MergeInProgress,
    NothingToCommit,
    RepoExists,
    RepoNotFound,
    StateError,
    UnresolvedConflicts,
)
from .history import Commit, parse_commit
from .importer import ImportReport, build_segment
from .revs import IdIndex, not_found
from .sources.images import check_label
from .sources.scan import Candidate, scan_folder, scan_manifest
from .stage import Stage
from .store.fsutil import FileLock, atomic_write, fsync_dir
from .store.objects import ObjectStore
from .store.refs import Refs, check_name
from .table import (
    SPLITS,
    Changes,
    SegmentCache,
    Table,
    diff_tables,
    load_table,
)

KILN_DIR = ".kiln"
FORMAT = 1
DEFAULT_BRANCH = "main"


def find_root(start: Path) -> Path:
    start = start.resolve()
    for d in (start, *start.parents):
        if (d / KILN_DIR / "config.json").is_file():
            return d
    raise RepoNotFound(f"no kiln repository at {start} or any parent; run 'kiln init' to create one")


if TYPE_CHECKING:
    from .build.builder import BuildResult
    from .build.records import BuildRecord
    from .build.spec import Spec


class Repo:
    """A dataset repository on disk."""

    def __init__(self, path: str | os.PathLike[str] = ".") -> None:
        self.root = find_root(Path(path))
        self.dir = self.root / KILN_DIR
        cfg = json.loads((self.dir / "config.json").read_text())
        if cfg.get("format") != FORMAT:
            raise StateError(
                f"{self.dir} has format {cfg.get('format')}; this datakiln reads format {FORMAT}; upgrade datakiln"
            )
        self.id: str = cfg["repo_id"]
        self.tmp_dir = self.dir / "tmp"
        self.lock = FileLock(self.dir / "lock")
        self.store = ObjectStore(self.dir / "objects", self.tmp_dir)
        self.refs = Refs(self.dir, self.lock)
        self.segments = SegmentCache(self.store)
        self._tables: dict[str | None, Table] = {}

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
        _write_default_spec(root)
        fsync_dir(root)
        return cls(root)

    # ---- commits and revisions -----------------------------------------------------------
    def read_commit(self, cid: str) -> Commit:
        return parse_commit(cid, self.store.get_json(cid))

    def head(self) -> tuple[str | None, str | None]:
        """(branch ref or None if detached, commit id or None before the first commit)."""
        return self.refs.head()

    def branch_name(self) -> str | None:
        ref, _ = self.head()
        return ref[len("refs/heads/") :] if ref else None

    def resolve(self, rev: str) -> str:
        """The commit id a revision names: HEAD, a branch, a tag, an id prefix, with ~N and ^N."""
        return history.resolve(self, rev)

    # ---- tables --------------------------------------------------------------------------
    def table_at(self, cid: str | None) -> Table:
        """The table of a commit (empty for None). Cached per Repo: commits are immutable."""
        if cid not in self._tables:
            state = self.read_commit(cid).state if cid else None
            if len(self._tables) > 4:
                self._tables.clear()
            self._tables[cid] = load_table(self.store, state, self.segments)
        return self._tables[cid].copy()

    def table(self, rev: str | None = None) -> Table:
        """The table at ``rev``; with no ``rev``, the working table (HEAD plus staged changes)."""
        if rev is not None:
            return self.table_at(self.resolve(rev))
        _, head = self.head()
        table = self.table_at(head)
        table.apply(self._stage().changes, self.segments)
        return table

    # ---- the stage ------------------------------------------------------------------------
    @property
    def _stage_path(self) -> Path:
        return self.dir / "stage.json"

    def _stage(self) -> Stage:
        stage = Stage.load(self._stage_path)
        if stage.committing and self._stage_already_committed(stage.committing):
            return Stage()
        return stage

    def _stage_already_committed(self, marker: dict[str, str]) -> bool:
        """True if the commit recorded before a crash reached its ref (or an ancestor did)."""
        ref, target = marker.get("ref", ""), marker.get("commit", "")
        current = self.head()[1] if ref == "HEAD" else self.refs.read(ref)
        return current is not None and (current == target or self._is_ancestor(target, current, limit=1000))

    def _update_stage(self, fn: Any) -> Any:
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
            stage.save(self._stage_path, self.tmp_dir)
            return result

    def user(self) -> str:
        return os.environ.get("KILN_USER") or _config_user(self.dir) or getpass.getuser()

    # ---- import --------------------------------------------------------------------------
    def import_folder(self, path: str | os.PathLike[str], **kw: Any) -> ImportReport:
        """Import a class-per-subfolder image folder (files at the top level are unlabeled)."""
        return self.import_candidates(scan_folder(Path(path)), **kw)

    def import_manifest(self, path: str | os.PathLike[str], **kw: Any) -> ImportReport:
        """Import a CSV or JSONL manifest: path,label[,split][,metadata...]."""
        return self.import_candidates(scan_manifest(Path(path)), **kw)

    def import_sample(self, name: str = "digits", **kw: Any) -> ImportReport:
        """Import a sample bundled with datakiln (``digits``)."""
        from .sources.sample import sample

        return self.import_candidates(sample(name), **kw)

    def import_candidates(
        self, cands: list[Candidate], *, skip_bad: bool = False, jobs: int | None = None
    ) -> ImportReport:
        jobs = jobs or int(os.environ.get("KILN_JOBS") or os.cpu_count() or 1)
        present = set(self.table().ids)
        seg, report = build_segment(self.store, cands, present, skip_bad=skip_bad, jobs=jobs)
        if seg is None:
            return report
        oid = self.store.put_json(seg.to_json())
        report.segment = oid

        def add(stage: Stage, base: Table, work: Table) -> None:
            work.add_segment(oid, seg)
            stage.changes.add.append(oid)
            # Importing an example whose removal is staged brings it back: the removal is dropped
            # (a stage applies removals after adds, so keeping it would remove the import again).
            back = set(seg.ids)
            stage.changes.remove = [e for e in stage.changes.remove if e not in back]

        self._update_stage(add)
        return report

    # ---- label and remove ----------------------------------------------------------------
    def label(self, example: str, label: str | None, *, by: str | None = None) -> str:
        """Stage one label (``None`` makes the example unlabeled); returns the full example id."""
        return self.label_many([(example, label)], by=by)[0]

    def label_many(
        self,
        pairs: Iterable[tuple[str, str | None]],
        *,
        by: str | None = None,
        expect: Mapping[str, str | None] | None = None,
    ) -> list[str]:
        """Stage many labels at once; ids may be unique prefixes. All or nothing.

        ``expect`` maps example ids to the label the caller last saw: if any has changed since
        (another tab, person or command got there first), nothing is staged and ``LabelChanged``
        says which, instead of silently overwriting their label.
        """
        pairs = list(pairs)
        source = by or f"human:{self.user()}"
        now = int(time.time())
        checked = [(eid, None if lab is None else check_label(lab, f"label for {eid}")) for eid, lab in pairs]

        def apply(stage: Stage, base: Table, work: Table) -> list[str]:
            full = staging.set_labels(stage, base, work, checked, source, now, expect)
            self._mark_resolved(full)
            return full

        return list(self._update_stage(apply))

    def label_file(self, path: str | os.PathLike[str], *, by: str | None = None) -> list[str]:
        """Stage labels from a CSV with columns ``id,label`` (an empty label unlabels)."""
        return self.label_many(merging.read_label_file(Path(path)), by=by)

    def rm(self, examples: Iterable[str]) -> list[str]:
        """Stage the removal of examples (ids or unique prefixes)."""
        wanted = list(examples)

        def apply(stage: Stage, base: Table, work: Table) -> list[str]:
            full = staging.remove(stage, work, wanted)
            self._mark_resolved(full)
            return full

        return list(self._update_stage(apply))

    def reset(self) -> None:
        """Discard every staged change (and an unfinished merge), with the keeps staged among them."""
        from . import kept

        with self.lock:
            kept.forget(self, list(self._stage().changes.set))
            self._stage_path.unlink(missing_ok=True)
            self._merge_path.unlink(missing_ok=True)

    # ---- status and commit ---------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """Branch, HEAD, counts, staged changes and merge conflicts (the ``kiln status --json`` shape)."""
        ref, head = self.head()
        stage = self._stage()
        merge = self._merge_state()
        out: dict[str, Any] = {
            "branch": ref[len("refs/heads/") :] if ref else None,
            "head": head,
            "staged": {"added": 0, "removed": len(stage.changes.remove), "relabeled": len(stage.changes.set)},
            "merge": None,
        }
        if stage.changes.add:
            out["staged"]["added"] = sum(len(self.segments.get(s)) for s in stage.changes.add)
        if stage.stats is not None and stage.base == head:
            out["stats"] = stage.stats
        elif head is not None:
            out["stats"] = self.read_commit(head).stats
        else:
            out["stats"] = {"examples": 0, "labeled": 0}
        if merge:
            out["merge"] = {
                "theirs": merge["theirs"],
                "name": merge["name"],
                "conflicts": [c for c in merge["conflicts"] if c["id"] not in merge["resolved"]],
            }
        return out

    def staged_edits(self) -> list[dict[str, Any]]:
        """Each staged label edit beside what HEAD has: ``{id, old, old_source, new, source, time}``
        (a confirmed label has ``old == new`` and a new source)."""
        _, head = self.head()
        base = self.table_at(head)
        out = []
        for eid, (lab, src, t) in self._stage().changes.set.items():
            old = base.label_of(eid) if eid in base else (None, None, 0)
            out.append({"id": eid, "old": old[0], "old_source": old[1], "new": lab, "source": src, "time": t})
        return out

    def unstage(self, ids: Iterable[str]) -> list[str]:
        """Drop the staged label edits of ``ids`` (back to HEAD's labels); returns the full ids.
        A reviewer's keep of those examples (``kiln keep``) goes with them."""
        from . import kept

        def drop(stage: Stage, base: Table, work: Table) -> list[str]:
            return staging.unstage(stage, base, work, ids)

        with self.lock:
            full = list(self._update_stage(drop))
            kept.forget(self, full)
        return full

    def staged_diff(self) -> dict[str, Any]:
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
        author = author or self.user()
        with self.lock:
            ref, head = self.head()
            merge = self._merge_state()
            if edits is not None:
                if merge:
                    raise MergeInProgress("a merge is in progress; commit it (without edits) or 'kiln merge --abort'")
                cid = history.write_commit(
                    self, self._edits(edits, head, author), [head] if head else [], message, author, None
                )
                self._move_head(ref, cid, head)
                return cid
            stage = self._stage()
            if merge:
                open_ = [c["id"] for c in merge["conflicts"] if c["id"] not in merge["resolved"]]
                if open_:
                    raise UnresolvedConflicts(merging.conflict_message(open_))
            elif stage.changes.is_empty():
                raise NothingToCommit("nothing to commit; stage changes with 'kiln import', 'kiln label' or 'kiln rm'")
            parents = [head] if head else []
            if merge:
                parents.append(merge["theirs"])
            stats = stage.stats if stage.base == head else None
            cid = history.write_commit(self, stage.changes, parents, message, author, stats)
            stage.committing = {"commit": cid, "ref": ref or "HEAD"}
            stage.save(self._stage_path, self.tmp_dir)
            self._move_head(ref, cid, head)
            self._stage_path.unlink(missing_ok=True)
            self._merge_path.unlink(missing_ok=True)
            return cid

    def _edits(self, edits: Mapping[str, str | None], head: str | None, author: str) -> Changes:
        """``commit(edits=...)``: label changes by id prefix, checked, as human edits by the author."""
        index = IdIndex(self.table_at(head).ids)
        now = int(time.time())
        source = f"human:{author}"
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
        return list(self._walk([self.resolve(rev)], n))

    def _walk(self, starts: list[str], n: int | None) -> Iterator[Commit]:
        return history.walk(self, starts, n)

    def _is_ancestor(self, a: str, b: str, *, limit: int | None = None) -> bool:
        return history.is_ancestor(self, a, b, limit=limit)

    def diff(self, a: str | None = None, b: str | None = None) -> dict[str, Any]:
        """Row-level diff between two revisions; ``b=None`` is the working table, ``a=None`` HEAD."""
        ta = self.table(a or "HEAD") if (a or self.head()[1]) else Table()
        tb = self.table(b) if b else self.table()
        return diff_tables(ta, tb)

    def show(self, rev: str = "HEAD") -> tuple[Commit, dict[str, Any]]:
        c = self.read_commit(self.resolve(rev))
        before = self.table_at(c.parents[0]) if c.parents else Table()
        return c, diff_tables(before, self.table_at(c.id))

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
            if self._merge_state():
                raise MergeInProgress("a merge is in progress; commit it or 'kiln merge --abort' first")
            if create:
                self.create_branch(target)
            ref = f"refs/heads/{target}"
            cid = self.refs.read(ref)
            if cid is None and not self.refs.list("refs/heads/") and target == self.branch_name():
                return None  # unborn branch: nothing to switch
            if cid is None:
                cid = self.resolve(target)
                ref = ""
            stage = self._stage()
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
                stage.save(self._stage_path, self.tmp_dir)
            return cid

    # ---- merge ---------------------------------------------------------------------------
    @property
    def _merge_path(self) -> Path:
        return self.dir / "MERGE.json"

    def _merge_state(self) -> dict[str, Any] | None:
        try:
            return json.loads(self._merge_path.read_bytes())  # type: ignore[no-any-return]
        except FileNotFoundError:
            return None

    def _save_merge(self, state: dict[str, Any]) -> None:
        atomic_write(self._merge_path, json.dumps(state).encode(), self.tmp_dir)

    def _mark_resolved(self, ids: list[str]) -> None:
        merge = self._merge_state()
        if merge:
            conflicted = {c["id"] for c in merge["conflicts"]}
            merge["resolved"] = sorted(set(merge["resolved"]) | (conflicted & set(ids)))
            self._save_merge(merge)

    def merge(self, rev: str, *, strategy: str | None = None, message: str | None = None) -> dict[str, Any]:
        """Three-way, row-level merge of ``rev`` into HEAD. See ``datakiln.merge``."""
        return merging.merge(self, rev, strategy=strategy, message=message)

    def resolve_conflicts(self, side: str, ids: Iterable[str] | None = None) -> list[str]:
        """During a merge, settle conflicts (all, or ``ids``) by taking ``ours`` or ``theirs``."""
        return merging.resolve(self, side, ids)

    def abort_merge(self) -> None:
        with self.lock:
            if not self._merge_state():
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
    ) -> list[dict[str, Any]]:
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

    def find(self, example: str, *, rev: str | None = None) -> dict[str, Any]:
        """One example's row by id or unique prefix."""
        t = self.table(rev)
        return t.row(t.index[IdIndex(t.ids).find(example)])

    def read_image(self, example: str, *, rev: str | None = None) -> tuple[bytes, str]:
        """(image bytes, format) of an example."""
        row = self.find(example, rev=rev)
        return self.store.get(row["blob"]), row["format"]

    def export(self, out: str | os.PathLike[str], *, format: str = "parquet", rev: str | None = None) -> Path:
        from .export import export

        return export(self, Path(out), format=format, rev=rev)

    def fsck(self) -> Any:
        from .maintenance import fsck

        return fsck(self)

    def gc(self, *, prune_seconds: float = 14 * 86400) -> Any:
        from .maintenance import gc

        return gc(self, prune_seconds=prune_seconds)

    # ---- builds: the compiler lives in datakiln.build and loads torch only to train -------
    def build(
        self,
        rev: str = "HEAD",
        spec: Spec | None = None,
        *,
        no_cache: bool = False,
        progress: bool | None = None,
        **overrides: Any,
    ) -> BuildResult:
        """Train (or find in the cache) the model of ``rev`` under ``spec`` (default: kiln.toml).

        ``overrides`` replace single keys: ``repo.build(width=0.5, epochs=10)``, or dotted
        ``**{"augment.flip": True}``.
        """
        from .build.builder import build, default_spec

        if overrides:
            spec = (spec or default_spec(self)).with_overrides(**overrides)
        return build(self, rev, spec, no_cache=no_cache, progress=progress)

    def builds(self) -> list[BuildRecord]:
        from .build.records import list_builds

        return list_builds(self)

    def find_build(self, ref: str | None = None) -> BuildRecord:
        from .build.records import find_build

        return find_build(self, ref)

    def dataset(
        self, split: str = "train", commit: str = "HEAD", *, spec: Spec | None = None, labeled: bool = True
    ) -> Any:
        """A PyTorch ``Dataset`` of ``(pixels, class index)`` for one split of a commit."""
        from .build.builder import default_spec
        from .build.data import gather, pixels, resolve_input
        from .build.torchdata import ExampleDataset

        if split not in SPLITS:
            raise InputError(f"split {split!r} is not one of {', '.join(SPLITS)}")
        spec = spec or default_spec(self)
        ex = gather(self.table(commit), use_model_labels=spec.train.use_model_labels)
        size, channels = resolve_input(spec.input, ex)
        x = pixels(self.store, self.dir / "cache", ex, size, channels)
        idx = ex.where(split, labeled=labeled)
        return ExampleDataset(x[idx], ex.y[idx], [ex.ids[i] for i in idx], ex.classes)


def _config_user(kdir: Path) -> str | None:
    try:
        return json.loads((kdir / "config.json").read_text()).get("user")  # type: ignore[no-any-return]
    except (OSError, json.JSONDecodeError):
        return None


def _write_default_spec(root: Path) -> None:
    """A commented kiln.toml next to .kiln, unless the folder already has one."""
    from .build.spec import DEFAULT_TOML

    path = root / "kiln.toml"
    if not path.exists():
        path.write_text(DEFAULT_TOML)
