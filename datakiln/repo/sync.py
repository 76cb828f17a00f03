"""Remotes, fetch, push, pull and clone (part of ``Repo``): a repository talking to a hub.

A remote is a name for a hosted repository's URL, kept in ``config.json``. ``fetch`` brings
every branch of the remote as a remote-tracking ref ``refs/remotes/REMOTE/BRANCH`` with exactly
the objects this repository lacks (one request; ``datakiln.repo.transfer`` decides what); ``push``
sends a branch with the objects the hub lacks and moves the hub's branch by compare-and-swap
against the value this side saw (two requests; none to send when nothing changed: one);
``pull`` is fetch then the row-level merge of ``REMOTE/BRANCH``. A branch tracks the remote's
branch of the same name.

A **partial clone** (``clone(..., labels_only=True)``) has commits, states and segments but not
the images: ``config.json`` names the remote that promised them, and the object store fetches
missing images from it in batches when something needs their bytes.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypedDict

from ..errors import CorruptObject, InputError, PermissionDenied, PushRejected, StateError
from ..store.codec import is_oid
from ..store.fsutil import atomic_write
from ..store.refs import check_name
from . import history
from . import merge as merging
from .branching import Branching

if TYPE_CHECKING:  # the network side loads when a command talks to a hub (http.client, ssl: 40 ms)
    from ..store.remote import Remote

FETCH_MAX = 1 << 40  # bytes: a fetch is limited by the disk, not by us
OBJECTS_BATCH = 50_000  # images asked for in one request by a partial clone
HAVE_SENT = 2_000  # tips sent as 'have': every branch and tracking ref, newest first
_URL = re.compile(r"^https?://[^\s/]+(/[A-Za-z0-9._-]+){2}/?$")
Progress = Callable[[int, int], None]


class FetchResult(TypedDict):
    remote: str
    head: str | None  # the remote's default branch
    updated: dict[str, list[str | None]]  # branch -> [old, new] of its tracking ref
    objects: int
    bytes: int
    requests: int


class PushResult(TypedDict):
    remote: str
    branch: str
    status: str  # ok | up-to-date
    old: str | None
    new: str
    objects: int
    bytes: int
    requests: int


def check_url(url: str) -> str:
    if not _URL.match(url):
        raise InputError(f"{url!r} is not a hosted repository's URL; expected http://HOST:PORT/OWNER/NAME")
    return url.rstrip("/")


class Syncing(Branching):
    """Remotes, fetch, push, pull (part of ``Repo``)."""

    def __init__(self, path: str | os.PathLike[str] = ".") -> None:
        super().__init__(path)
        if self.partial is not None:
            self.store.promisor = self._promised

    def _promised(self, ids: list[str]) -> None:
        self.fetch_objects(ids)

    # ---- remotes ------------------------------------------------------------------------
    def remotes(self) -> dict[str, str]:
        raw = self.config.get("remotes") or {}
        return {k: v["url"] for k, v in raw.items() if isinstance(v, dict) and isinstance(v.get("url"), str)}

    def add_remote(self, name: str, url: str) -> None:
        check_name(name, "remote")
        if "/" in name:
            raise InputError(f"remote name {name!r} may not contain '/'")
        url = check_url(url)
        with self.lock:
            cfg = self._fresh_config()
            if name in (cfg.get("remotes") or {}):
                raise StateError(f"remote {name!r} already exists; 'kiln remote remove {name}' first")
            cfg.setdefault("remotes", {})[name] = {"url": url}
            self._write_config(cfg)

    def remove_remote(self, name: str) -> None:
        with self.lock:
            cfg = self._fresh_config()
            if name not in (cfg.get("remotes") or {}):
                raise InputError(f"no remote named {name!r}; 'kiln remote' lists them")
            del cfg["remotes"][name]
            self._write_config(cfg)
            for branch, cid in self.refs.list(f"refs/remotes/{name}/").items():
                self.refs.delete(f"refs/remotes/{name}/{branch}", cid)

    def set_partial(self, remote: str) -> None:
        """Make this a partial clone whose missing images ``remote`` promised (``clone --labels-only``)."""
        with self.lock:
            self._write_config({**self._fresh_config(), "partial": remote})
        self.store.promisor = self._promised

    def _fresh_config(self) -> dict[str, Any]:
        from .base import read_config

        return read_config(self.layout.config)

    def _write_config(self, cfg: dict[str, Any]) -> None:
        atomic_write(self.layout.config, (json.dumps(cfg, indent=2) + "\n").encode(), self.tmp_dir)
        self.config = cfg

    def remote(self, name: str = "origin") -> Remote:
        from ..store.remote import Remote

        urls = self.remotes()
        if name not in urls:
            if re.match(r"^https?://", name):
                return Remote(check_url(name))
            known = ", ".join(urls) or "none yet"
            raise InputError(f"no remote named {name!r} (remotes: {known}); add one with 'kiln remote add {name} URL'")
        return Remote(urls[name])

    def default_remote(self) -> str:
        urls = self.remotes()
        if "origin" in urls or not urls:
            return "origin"
        return next(iter(urls))

    def tracking(self, remote: str) -> dict[str, str]:
        return self.refs.list(f"refs/remotes/{remote}/")

    # ---- fetch --------------------------------------------------------------------------
    def _have(self) -> list[str]:
        """Commits to tell the hub we have: every branch, tag and tracking ref (newest first)."""
        tips = [*self.branches().values(), *self.tags().values(), *self.refs.list("refs/remotes/").values()]
        _, head = self.head()
        tips = list(dict.fromkeys(([head] if head else []) + tips))
        if len(tips) > HAVE_SENT:
            tips.sort(key=lambda c: -history.read_commit(self.store, c).generation)
        return tips[:HAVE_SENT]

    def fetch(self, remote: str = "origin", *, progress: Progress | None = None) -> FetchResult:
        """Bring the remote's branches (as ``REMOTE/BRANCH``) and tags with the objects they need."""
        from ..store import wire
        from .transfer import receive_checked

        conn = self.remote(remote)
        try:
            header, stream = conn.fetch(None, self._have(), images=self.partial is None)
            refs = _checked_refs(header.get("refs"), conn.url)
            incoming = wire.receive(
                self.store, stream, limit=FETCH_MAX, where=f"the fetch from {conn.url}", progress=progress
            )
            count = receive_checked(self.store, incoming, list(refs.values()), images=self.partial is None)
        finally:
            conn.close()
        updated = self._track(remote, refs) if remote in self.remotes() else {}
        head = header.get("head") if isinstance(header.get("head"), str) else None
        return {
            "remote": remote, "head": head, "updated": updated, "objects": count,
            "bytes": conn.received, "requests": conn.requests,
        }  # fmt: skip

    def _track(self, remote: str, refs: dict[str, str]) -> dict[str, list[str | None]]:
        """Point ``refs/remotes/REMOTE/*`` at the remote's branches (dropping gone ones); add new tags."""
        updated: dict[str, list[str | None]] = {}
        with self.lock:
            old = self.tracking(remote)
            for ref, cid in refs.items():
                if ref.startswith("refs/heads/"):
                    branch = ref[len("refs/heads/") :]
                    if old.get(branch) != cid:
                        self.refs.update(f"refs/remotes/{remote}/{branch}", cid, old.get(branch))
                        updated[branch] = [old.get(branch), cid]
                elif ref.startswith("refs/tags/") and self.refs.read(ref) is None:
                    self.refs.update(ref, cid, None)
            for branch, cid in old.items():
                if f"refs/heads/{branch}" not in refs:
                    self.refs.delete(f"refs/remotes/{remote}/{branch}", cid)
                    updated[branch] = [cid, None]
        return updated

    def fetch_objects(self, ids: list[str], remote: str | None = None) -> int:
        """Fetch objects by id (a partial clone's images), in batches; returns how many arrived."""
        from ..store import wire

        conn = self.remote(remote or self.partial or self.default_remote())
        got = 0
        try:
            for i in range(0, len(ids), OBJECTS_BATCH):
                batch = ids[i : i + OBJECTS_BATCH]
                incoming = wire.receive(
                    self.store, conn.objects(batch), limit=FETCH_MAX, where=f"objects from {conn.url}"
                )
                if incoming.structured or not incoming.ids <= set(batch):
                    incoming.abort()  # only the images asked for: anything else would be trusted as complete
                    raise CorruptObject(f"{conn.url} sent objects that were not asked for; nothing was kept")
                got += len(incoming.ids)
                incoming.publish()  # images name nothing: each was hash-checked as it arrived
        finally:
            conn.close()
        return got

    # ---- push ---------------------------------------------------------------------------
    def push(self, remote: str = "origin", branch: str | None = None, *, force: bool = False) -> PushResult:
        """Send ``branch`` (default: the current one) to the remote's branch of the same name."""
        branch = branch or self.branch_name()
        if branch is None:
            raise StateError("HEAD is detached; name the branch to push: 'kiln push REMOTE BRANCH'")
        check_name(branch, "branch")
        local = self.refs.read(f"refs/heads/{branch}")
        if local is None:
            raise InputError(f"no branch {branch!r} here to push; 'kiln branch' lists them")
        conn = self.remote(remote)
        try:
            return self._push(conn, remote, branch, local, force)
        finally:
            conn.close()

    def _push(self, conn: Remote, remote: str, branch: str, local: str, force: bool) -> PushResult:
        from ..store import wire
        from .transfer import objects_to_send

        ref = f"refs/heads/{branch}"
        advertised = conn.refs()
        theirs = _checked_refs(advertised.get("refs"), conn.url)
        if advertised.get("role") == "read":
            raise PermissionDenied(
                f"{conn.url}: you have read access only; pushing needs write (ask an admin: 'kiln hub grant')"
            )
        old = theirs.get(ref)
        result: PushResult = {
            "remote": remote, "branch": branch, "status": "up-to-date", "old": old, "new": local,
            "objects": 0, "bytes": 0, "requests": 0,
        }  # fmt: skip
        if old != local:
            if old is not None and not force:
                self._check_fast_forward(conn, branch, old, local)
            have = [c for c in theirs.values() if self.store.has(c)]
            objects, _ = objects_to_send(self.store, [local], have)
            if self.partial is not None:
                objects = [o for o in objects if self.store.has(o)]  # images the hub promised us
            results = conn.push(
                [{"ref": ref, "old": old, "new": local, "force": force}], wire.encode_stream(self.store, objects)
            )
            r = results[0] if results else {"status": "rejected", "reason": "the hub sent no result"}
            if r.get("status") == "rejected":
                raise PushRejected(f"{conn.url} refused {branch}: {r.get('reason')}")
            result["status"], result["objects"] = "ok", len(objects)
        if remote in self.remotes():
            with self.lock:
                current = self.refs.read(f"refs/remotes/{remote}/{branch}")
                if current != local:
                    self.refs.update(f"refs/remotes/{remote}/{branch}", local, current)
        result["bytes"], result["requests"] = conn.sent, conn.requests
        return result

    def _check_fast_forward(self, conn: Remote, branch: str, old: str, local: str) -> None:
        if not self.store.has(old) or not history.is_ancestor(self.store, old, local):
            raise PushRejected(
                f"{conn.url} has commits on {branch} that this branch does not (not a fast-forward); "
                f"'kiln pull' to merge them first, or push with --force to overwrite them"
            )

    # ---- pull ---------------------------------------------------------------------------
    def pull(self, remote: str = "origin", branch: str | None = None) -> tuple[FetchResult, merging.MergeResult]:
        """Fetch, then merge ``REMOTE/BRANCH`` (the current branch's name) into HEAD, row by row."""
        branch = branch or self.branch_name()
        if branch is None:
            raise StateError("HEAD is detached; name the branch to pull: 'kiln pull REMOTE BRANCH'")
        fetched = self.fetch(remote)
        if branch not in self.tracking(remote):
            raise InputError(f"{remote} has no branch {branch!r}; 'kiln branch -r' lists the branches fetched")
        merged = self.merge(f"refs/remotes/{remote}/{branch}", message=f"merge {remote}/{branch} into {branch}")
        return fetched, merged

    # ---- where a branch stands ----------------------------------------------------------
    def ahead_behind(self, branch: str | None = None, remote: str | None = None) -> dict[str, Any] | None:
        """How many commits ``branch`` has that its tracking ref lacks, and the reverse; None if untracked."""
        branch = branch or self.branch_name()
        remote = remote or self.default_remote()
        if branch is None or remote not in self.remotes():
            return None
        local = self.refs.read(f"refs/heads/{branch}")
        upstream = self.refs.read(f"refs/remotes/{remote}/{branch}")
        if upstream is None:
            return None
        from .transfer import new_commits

        ahead = len(new_commits(self.store, [local], [upstream])[0]) if local else 0
        behind = len(new_commits(self.store, [upstream], [local] if local else [])[0])
        return {"upstream": f"{remote}/{branch}", "ahead": ahead, "behind": behind}


def _checked_refs(refs: object, url: str) -> dict[str, str]:
    """The refs a hub advertised, each name and id checked before it becomes a path here."""
    if not isinstance(refs, dict):
        raise InputError(f"{url} sent no refs; is it a kiln hub?")
    out: dict[str, str] = {}
    for ref, cid in refs.items():
        if not isinstance(ref, str) or not ref.startswith(("refs/heads/", "refs/tags/")) or not is_oid(cid):
            raise InputError(f"{url} advertised a bad ref {str(ref)[:80]!r}; nothing was changed")
        check_name(ref.split("/", 2)[2], "ref")
        out[ref] = cid
    return out


def default_branch(tracking: dict[str, str], head: str | None) -> tuple[str, str] | None:
    """(name, commit) of the branch a clone checks out: the remote's default, else main, else the first."""
    if not tracking:
        return None
    name: str = head if head is not None and head in tracking else ("main" if "main" in tracking else min(tracking))
    return name, tracking[name]
