"""Branches, tags, checkout and merge (part of ``Repo``)."""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import (
    MergeInProgress,
    StateError,
)
from ..store.refs import check_name, valid_ref
from . import history
from . import merge as merging
from .editing import Editing
from .revs import not_found
from .stage import MergeState, Stage
from .table import Changes, Table


class Branching(Editing):
    """Branches, tags, checkout, merge (part of ``Repo``); a merge commits through ``Editing``."""

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
            return self._merge(rev, (base, head, theirs), strategy, message, stage.kept)

    def merge_into(self, branch: str, rev: str, *, message: str, author: str) -> merging.MergeResult:
        """Merge ``rev`` into ``branch`` without a working copy: HEAD and the stage are not
        touched (a hub's merge button). Conflicts are returned, not staged; nothing is written then."""
        check_name(branch, "branch")
        ref = f"refs/heads/{branch}"
        message, author = history.check_message(message), history.check_author(author)
        with self.lock:
            ours = self.refs.read(ref)
            if ours is None:
                raise not_found(branch, self.branches())
            theirs = self.resolve(rev)
            base = history.merge_base(self.store, ours, theirs)
            if theirs == ours or base == theirs:
                return {"result": "up-to-date", "commit": ours, "conflicts": []}
            if base == ours:
                self.refs.update(ref, theirs, ours)
                return {"result": "fast-forward", "commit": theirs, "conflicts": []}
            if base is None:
                raise StateError(f"{rev} shares no history with {branch}; there is nothing to merge it against")
            tables = self.table_at(base), self.table_at(ours), self.table_at(theirs)
            changes, conflicts = merging.three_way(*tables, self.segments)
            if conflicts:
                return {"result": "conflicts", "commit": None, "conflicts": conflicts}
            cid = history.write_commit(self.store, self.tables, changes, [ours, theirs], message, author, None)
            self.refs.update(ref, cid, ours)
            return {"result": "merged", "commit": cid, "conflicts": []}

    def _merge(
        self, rev: str, commits: tuple[str, str, str], strategy: str | None, message: str | None, kept: dict[str, str]
    ) -> merging.MergeResult:
        base, head, theirs = commits
        tb, to, tt = self.table_at(base), self.table_at(head), self.table_at(theirs)
        changes, conflicts = merging.three_way(tb, to, tt, self.segments)
        if strategy and conflicts:
            changes, _ = merging.three_way(tb, to, tt, self.segments, {c["id"]: strategy for c in conflicts})
        state = MergeState(theirs=theirs, name=rev, base=base, conflicts=conflicts)
        if strategy:
            state.settle(c["id"] for c in conflicts)
        self._stage_merge(head, to, changes, state, kept)
        if conflicts and not strategy:
            return {"result": "conflicts", "commit": None, "conflicts": conflicts}
        name = self.branch_name() or head[:12]
        cid = self.commit(message or f"merge {rev} into {name}")
        return {"result": "merged", "commit": cid, "conflicts": conflicts}

    def _stage_merge(self, head: str, ours: Table, changes: Changes, state: MergeState, kept: dict[str, str]) -> None:
        """The merge's changes, its state and the keep marks staged with them, in one atomic write."""
        work = ours.copy()
        work.apply(changes, self.segments)
        self._save_stage(Stage(base=head, changes=changes, stats=work.stats(), merge=state, kept=kept))

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
            self._stage_merge(head, tables[1], changes, state, stage.kept)
            return chosen

    def abort_merge(self) -> None:
        with self.lock:
            if self._stage().merge is None:
                raise StateError("no merge is in progress")
            self.reset()
