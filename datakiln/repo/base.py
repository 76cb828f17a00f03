"""``RepoBase``: a repository's pieces (store, refs, tables, indexes, stage) and the small
operations every part of the porcelain builds on: HEAD, revisions, tables, the stage under the
lock, the user's name, keep marks."""

from __future__ import annotations

import getpass
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import (
    CorruptObject,
    RepoNotFound,
    StateError,
)
from ..store.fsutil import FileLock
from ..store.objects import ObjectStore
from ..store.refs import Refs
from . import history, label_source
from .history import Commit, read_commit
from .layout import KILN_DIR, Layout
from .stage import KeptMarks, Stage
from .state import Tables
from .table import SegmentCache, Table

if TYPE_CHECKING:
    from .index import StateIndexes

FORMAT = 1
DEFAULT_BRANCH = "main"
T = TypeVar("T")


def find_root(start: Path) -> Path:
    start = start.resolve()
    for d in (start, *start.parents):
        if (d / KILN_DIR / "config.json").is_file():
            return d
    raise RepoNotFound(f"no kiln repository at {start} or any parent; run 'kiln init' to create one")


def read_config(path: Path) -> dict[str, Any]:
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


class RepoBase:
    """What every part of ``Repo`` shares; ``Repo`` is the one to use."""

    def __init__(self, path: str | os.PathLike[str] = ".") -> None:
        self.root = find_root(Path(path))
        self.dir = self.root / KILN_DIR
        self.layout = Layout(self.dir)
        self.config = read_config(self.layout.config)
        self.id: str = self.config["repo_id"]
        self.tmp_dir = self.layout.tmp
        self.lock = FileLock(self.layout.lock)
        self.store = ObjectStore(self.layout.objects, self.tmp_dir)
        self.refs = Refs(self.dir, self.lock)
        self.segments = SegmentCache(self.store)
        self.tables = Tables(self.store, self.segments)
        self._indexes: StateIndexes | None = None
        self.kept_marks = KeptMarks(self.layout.kept, self.tmp_dir)

    # ---- commits and revisions -----------------------------------------------------------
    @property
    def indexes(self) -> StateIndexes:
        """State indexes (``datakiln.repo.index``), made when a label edit first needs one."""
        if self._indexes is None:
            from .index import StateIndexes

            self._indexes = StateIndexes(self.store, self.segments, self.layout.index_cache, self.tmp_dir)
        return self._indexes

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

    @property
    def partial(self) -> str | None:
        """The remote that promised the images this partial clone lacks; None in a full repository."""
        value = self.config.get("partial")
        return value if isinstance(value, str) else None

    def user(self) -> str:
        """Who labels and commits: $KILN_USER, else config.json's ``user``, else the login name."""
        name = os.environ.get("KILN_USER") or self.config.get("user") or getpass.getuser()
        return label_source.check_person(str(name), "the user name (KILN_USER)")

    def kept(self) -> dict[str, str]:
        """Example id -> the label a reviewer confirmed (``keep``), committed or staged."""
        return {**self.kept_marks.read(), **self._stage().kept}

    def _forget_keeps(self, staged: Mapping[str, str]) -> None:
        """Drop committed marks equal to discarded staged ones: a crash between writing kept.json
        and moving the branch (``commit``) leaves them there for a commit that never landed."""
        if not staged:
            return
        committed = self.kept_marks.read()
        left = {e: lab for e, lab in committed.items() if staged.get(e) != lab}
        if len(left) != len(committed):
            self.kept_marks.write(left)

    def _move_head(self, ref: str | None, new: str, expected: str | None) -> None:
        if ref is not None:
            self.refs.update(ref, new, expected)
        else:
            self.refs.set_head(commit=new)

    def _is_ancestor(self, a: str, b: str, *, limit: int | None = None) -> bool:
        return history.is_ancestor(self.store, a, b, limit=limit)
