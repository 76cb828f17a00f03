"""What one repository sends another, and how the receiver checks it got everything.

Both sides keep one invariant: **an object in a store has everything it names in that store**
(a commit its parents and state, a state its base and segments, a segment its images), except
the images a partial clone's remote promised. Local commits keep it by writing objects bottom
up; a transfer keeps it because received objects stay in a temp pack until ``check_complete``
has followed every new name to an object that is either in the store (so complete already) or
in the same transfer. So the walks here stop at the first object the store has.

The sender's side is git's ``rev-list WANT ^HAVE``: commits reachable from what the receiver
wants and not from what it says it has, in generation order; then the states, segments and
images only those commits name, stopping at the states and segments of the *boundary* (the
commits the receiver has that new commits build on). A one-label commit is then two objects.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterable
from typing import Any

from ..errors import CorruptObject, MissingObject
from ..store.objects import ObjectStore
from ..store.wire import Incoming
from .history import Commit, parse_commit, read_commit
from .state import check_state, snapshot_overrides, state_header, state_refs
from .table import BLOB_HEX, Changes, Segment, split_hex


def new_commits(store: ObjectStore, want: Iterable[str], have: Iterable[str]) -> tuple[list[str], set[str]]:
    """(commits reachable from ``want`` but not from ``have``, newest first; the boundary: commits
    of ``have``'s history that new commits have as parents). Ids of ``have`` not in ``store``
    are ignored: the other side may have commits this side never saw."""
    flags: dict[str, bool] = {}  # commit -> interesting (True: new; False: the receiver has it)
    heap: list[tuple[int, str]] = []
    commits: dict[str, Commit] = {}
    queued: set[str] = set()
    pending = 0  # interesting commits in the heap: counted, not searched (a client may send 10,000 'have')

    def push(cid: str, interesting: bool) -> None:
        nonlocal pending
        if cid in flags:
            if not interesting and flags[cid]:
                flags[cid] = False  # one path from HAVE makes a commit old, whatever else reaches it
                pending -= cid in queued
            return
        flags[cid] = interesting
        c = commits[cid] = read_commit(store, cid)
        heapq.heappush(heap, (-c.generation, cid))
        queued.add(cid)
        pending += interesting

    for cid in have:
        if store.has(cid):
            push(cid, False)
    for cid in want:
        push(cid, True)
    new: list[str] = []
    # Children have larger generations than their parents, so by the time a commit is popped
    # every child in the walk has been seen and its flag is final.
    while heap and pending > 0:
        _, cid = heapq.heappop(heap)
        queued.discard(cid)
        interesting = flags[cid]
        if interesting:
            pending -= 1
            new.append(cid)
        for p in commits[cid].parents:
            push(p, interesting)
    boundary = {p for c in new for p in commits[c].parents if not flags[p]}
    return new, boundary


def objects_to_send(
    store: ObjectStore, want: Iterable[str], have: Iterable[str], *, blobs: bool = True
) -> tuple[list[str], list[str]]:
    """(every object the receiver lacks for ``want``, given it has ``have``; the new commits).

    Without ``blobs`` (a labels-only clone) images are left out: the receiver fetches them later.
    """
    new, boundary = new_commits(store, want, have)
    old_states = {read_commit(store, b).state for b in boundary}
    states, segments = _new_states(store, [read_commit(store, c).state for c in new], old_states)
    if segments:
        known = _segments_of(store, old_states)
        segments = [s for s in segments if s not in known]
    images: list[str] = []
    if blobs:
        for sid in segments:
            images.extend(split_hex(store.get_json(sid)["blobs"], BLOB_HEX))
    objects = list(dict.fromkeys([*images, *segments, *states, *reversed(new)]))
    return objects, new


def _new_states(store: ObjectStore, todo: list[str], old: set[str]) -> tuple[list[str], list[str]]:
    """States reachable from ``todo`` down their base chains, stopping at ``old``; their segments."""
    states: list[str] = []
    segments: list[str] = []
    seen = set(old)
    while todo:
        sid = todo.pop()
        if sid in seen:
            continue
        seen.add(sid)
        states.append(sid)
        obj = state_header(store, sid)
        refs = state_refs(obj)
        if obj["type"] == "delta":
            todo.append(refs[0])
            refs = refs[1:]
        segments.extend(refs)
    return states, list(dict.fromkeys(segments))


def _segments_of(store: ObjectStore, states: Iterable[str]) -> set[str]:
    """Every segment the tables of ``states`` are built from (their whole base chains)."""
    return set(_new_states(store, list(states), set())[1])


# ---- the receiver ------------------------------------------------------------------------------


class _View:
    """Objects of a transfer, falling back to the store: what the completeness walk reads."""

    def __init__(self, store: ObjectStore, incoming: Incoming) -> None:
        self.store, self.incoming = store, incoming

    def json(self, oid: str) -> Any:
        raw = self.incoming.structured.get(oid)
        if raw is None:
            return self.store.get_json(oid)
        try:
            return json.loads(raw)
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            raise CorruptObject(f"object {oid} is not valid JSON ({e})") from None


def check_complete(store: ObjectStore, incoming: Incoming, tips: Iterable[str], *, images: bool = True) -> None:
    """Raise unless the transfer is exactly what the commits ``tips`` need: every object they
    name is in ``store`` or ``incoming`` (``MissingObject``), every object that came is named
    by them or already here, every incoming object is well formed (columns decoded, generations
    counted), and every object of the store they name is of the kind they name it as
    (``CorruptObject``). Without ``images`` (a partial clone receiving) images may be missing."""
    check = _Check(store, incoming)
    states = check.commits(list(tips))
    segments = check.states(states)
    blobs = check.segments(segments)
    check.named.update(blobs)
    if images:
        check.missing += [b for b in dict.fromkeys(blobs) if not incoming.has(b) and not store.has(b)]
    if check.missing:
        shown = ", ".join(m[:12] for m in check.missing[:5])
        raise MissingObject(
            f"the transfer lacks {len(check.missing)} object(s) its commits need ({shown}); nothing was changed. "
            "The sender's repository may be damaged: run 'kiln fsck' there"
        )
    stray = [o for o in incoming.ids if o not in check.named and not store.has(o)]
    if stray:
        raise CorruptObject(
            f"the transfer holds {len(stray)} object(s) no sent ref needs (e.g. {stray[0][:12]}); nothing was changed"
        )


class _Check:
    """The receiver's walk: new objects are decoded and followed; objects the store already has
    are complete (the invariant), so only their kind is checked, with one read."""

    def __init__(self, store: ObjectStore, incoming: Incoming) -> None:
        self.store, self.incoming = store, incoming
        self.view = _View(store, incoming)
        self.missing: list[str] = []
        self.named: set[str] = set()
        self.generations: dict[str, int] = {}

    def _new(self, oid: str, kind: str) -> bool:
        """True if ``oid`` came in this transfer and must be walked; else check the store has it,
        as a ``kind``, and note it missing if nobody has it."""
        self.named.add(oid)
        if self.incoming.has(oid) and not self.store.has(oid):
            return True
        if not self.store.has(oid):
            self.missing.append(oid)
        elif kind == "commit":
            self.generations[oid] = read_commit(self.store, oid).generation
        elif kind == "state":
            state_header(self.store, oid)
        return False

    def commits(self, tips: list[str]) -> list[str]:
        states: list[str] = []
        new: list[Commit] = []
        todo, seen = list(tips), set()
        while todo:
            cid = todo.pop()
            if cid in seen:
                continue
            seen.add(cid)
            if self._new(cid, "commit"):
                c = parse_commit(cid, self.view.json(cid))
                new.append(c)
                todo.extend(c.parents)
                states.append(c.state)
        self._generations(new)
        return states

    def _generations(self, new: list[Commit]) -> None:
        """Generations are what merge bases and walks trust: each must be 1 + its parents' max."""
        for c in sorted(new, key=lambda c: c.generation):
            self.generations[c.id] = c.generation
        for c in new:
            want = 1 + max((self.generations.get(p, 0) for p in c.parents), default=0)
            if c.generation != want:
                raise CorruptObject(
                    f"commit {c.id[:12]} says generation {c.generation}, but its parents make it {want}"
                )

    def states(self, todo: list[str]) -> list[str]:
        segments: list[str] = []
        seen: set[str] = set()
        while todo:
            sid = todo.pop()
            if sid in seen or not self._new(sid, "state"):
                continue
            seen.add(sid)
            obj = check_state(self.view.json(sid), sid)
            if obj["type"] == "delta":
                Changes.from_json(obj, strict=True)
            else:
                snapshot_overrides(obj)
            refs = state_refs(obj)
            if obj["type"] == "delta":
                todo.append(refs[0])
                refs = refs[1:]
            segments.extend(refs)
        return segments

    def segments(self, todo: list[str]) -> list[str]:
        blobs: list[str] = []
        for oid in dict.fromkeys(todo):
            if not self._new(oid, "segment"):
                continue
            obj = self.view.json(oid)
            if not isinstance(obj, dict) or obj.get("type") != "segment":
                raise CorruptObject(f"object {oid} is named as a segment but is not one")
            blobs.extend(Segment.from_json(obj, oid, strict=True).blobs)
        return blobs


def receive_checked(store: ObjectStore, incoming: Incoming, tips: Iterable[str], *, images: bool = True) -> int:
    """Check ``incoming`` is complete for ``tips``, then publish it; on any error discard it.
    Returns the number of objects received."""
    try:
        check_complete(store, incoming, tips, images=images)
    except BaseException:
        incoming.abort()
        raise
    incoming.publish()
    return len(incoming.ids)
