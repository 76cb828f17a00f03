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

from ..errors import CorruptObject, KilnError, MissingObject
from ..store.objects import ObjectStore
from ..store.wire import Incoming
from .history import Commit, parse_commit, read_commit
from .state import check_state, state_header, state_refs
from .table import BLOB_HEX, Segment, split_hex


def new_commits(store: ObjectStore, want: Iterable[str], have: Iterable[str]) -> tuple[list[str], set[str]]:
    """(commits reachable from ``want`` but not from ``have``, newest first; the boundary: commits
    of ``have``'s history that new commits have as parents). Ids of ``have`` not in ``store``
    are ignored: the other side may have commits this side never saw."""
    flags: dict[str, bool] = {}  # commit -> interesting (True: new; False: the receiver has it)
    heap: list[tuple[int, str]] = []
    commits: dict[str, Commit] = {}

    def push(cid: str, interesting: bool) -> None:
        if cid in flags:
            if not interesting:
                flags[cid] = False  # one path from HAVE makes a commit old, whatever else reaches it
            return
        flags[cid] = interesting
        c = commits[cid] = read_commit(store, cid)
        heapq.heappush(heap, (-c.generation, cid))

    for cid in have:
        if store.has(cid):
            push(cid, False)
    for cid in want:
        push(cid, True)
    new: list[str] = []
    # Children have larger generations than their parents, so by the time a commit is popped
    # every child in the walk has been seen and its flag is final.
    while heap and any(flags[c] for _, c in heap):
        _, cid = heapq.heappop(heap)
        interesting = flags[cid]
        if interesting:
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
    out: set[str] = set()
    todo, seen = list(states), set()
    while todo:
        sid = todo.pop()
        if sid in seen:
            continue
        seen.add(sid)
        obj = state_header(store, sid)
        refs = state_refs(obj)
        if obj["type"] == "delta":
            todo.append(refs[0])
            refs = refs[1:]
        out.update(refs)
    return out


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
    """Raise ``MissingObject`` naming what is missing unless every object the commits ``tips``
    need is in ``store`` or ``incoming``; malformed objects raise ``CorruptObject``. Without
    ``images`` (a partial clone receiving) images are not required."""
    view = _View(store, incoming)
    missing: list[str] = []
    states = _walk_commits(store, view, list(tips), missing)
    segments = _walk_states(store, view, states, missing)
    blobs = _walk_segments(store, view, segments, missing)
    if images:
        missing += [b for b in dict.fromkeys(blobs) if not incoming.has(b) and not store.has(b)]
    if missing:
        shown = ", ".join(m[:12] for m in missing[:5])
        raise MissingObject(
            f"the transfer lacks {len(missing)} object(s) its commits need ({shown}); nothing was changed. "
            "The sender's repository may be damaged: run 'kiln fsck' there"
        )


def _present(store: ObjectStore, incoming: Incoming, oid: str, missing: list[str]) -> bool:
    """True if ``oid`` must be walked (it came in this transfer); False if the store has it
    (complete by the invariant) or nobody does (noted in ``missing``)."""
    if incoming.has(oid):
        return not store.has(oid)
    if not store.has(oid):
        missing.append(oid)
    return False


def _walk_commits(store: ObjectStore, view: _View, todo: list[str], missing: list[str]) -> list[str]:
    states: list[str] = []
    seen: set[str] = set()
    while todo:
        cid = todo.pop()
        if cid in seen or not _present(store, view.incoming, cid, missing):
            continue
        seen.add(cid)
        c = parse_commit(cid, view.json(cid))
        todo.extend(c.parents)
        states.append(c.state)
    return states


def _walk_states(store: ObjectStore, view: _View, todo: list[str], missing: list[str]) -> list[str]:
    segments: list[str] = []
    seen: set[str] = set()
    while todo:
        sid = todo.pop()
        if sid in seen or not _present(store, view.incoming, sid, missing):
            continue
        seen.add(sid)
        obj = check_state(view.json(sid), sid)
        refs = state_refs(obj)
        if obj["type"] == "delta":
            todo.append(refs[0])
            refs = refs[1:]
        segments.extend(refs)
    return segments


def _walk_segments(store: ObjectStore, view: _View, todo: list[str], missing: list[str]) -> list[str]:
    blobs: list[str] = []
    for oid in dict.fromkeys(todo):
        if not _present(store, view.incoming, oid, missing):
            continue
        obj = view.json(oid)
        if not isinstance(obj, dict) or obj.get("type") != "segment":
            raise CorruptObject(f"object {oid} is named as a segment but is not one")
        blobs.extend(Segment.from_json(obj, oid, strict=True).blobs)
    return blobs


def receive_checked(store: ObjectStore, incoming: Incoming, tips: Iterable[str], *, images: bool = True) -> int:
    """Check ``incoming`` is complete for ``tips``, then publish it; on any error discard it.
    Returns the number of objects received."""
    try:
        check_complete(store, incoming, tips, images=images)
    except KilnError:
        incoming.abort()
        raise
    incoming.publish()
    return len(incoming.ids)
