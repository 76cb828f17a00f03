"""The object walk: every object reachable from a set of commits, by kind.

One walk serves ``fsck`` (which also decodes every object it meets), ``gc`` (which keeps what it
finds) and, next, push and pull (which send what the other side lacks: ``stop_at`` names commits
the other side has, so their history is not walked). Commit -> parents and state; state -> base
state (a delta) and segments; segment -> blobs. Problems are collected, not raised, so one
damaged object does not hide the next.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from ..errors import KilnError
from ..store.objects import ObjectStore
from ..store.refs import Refs
from .history import read_commit
from .stage import Stage
from .state import decode_state, state_header, state_refs
from .table import BLOB_HEX, Segment, split_hex


@dataclass
class Reached:
    """Ids found by a walk, by kind, and the problems met on the way."""

    commits: set[str] = field(default_factory=set)
    states: set[str] = field(default_factory=set)
    segments: set[str] = field(default_factory=set)
    blobs: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)

    def all(self) -> set[str]:
        return self.commits | self.states | self.segments | self.blobs


def roots(refs: Refs, stage: Stage) -> list[str]:
    """Every commit a user can name: branches, tags, remote-tracking refs, a detached HEAD, a
    merge in progress."""
    out = [*refs.list("refs/heads/").values(), *refs.list("refs/tags/").values(), *refs.list("refs/remotes/").values()]
    ref, head = refs.head()
    if head and ref is None:
        out.append(head)
    if stage.merge is not None:
        out += [stage.merge.theirs, stage.merge.base]
    return list(dict.fromkeys(out))


def walk(
    store: ObjectStore,
    commits: Iterable[str],
    *,
    segments: Iterable[str] = (),
    stop_at: Collection[str] = (),
    decode: bool = False,
) -> Reached:
    """Everything reachable from ``commits`` (and the staged ``segments``), except the history of
    ``stop_at``. With ``decode``, every object is decoded and checked, not only followed."""
    out = Reached()
    states = _commits(store, list(commits), set(stop_at), out)
    segs = _states(store, states, out, decode) + list(segments)
    _segments(store, segs, out, decode)
    return out


def _commits(store: ObjectStore, todo: list[str], stop: set[str], out: Reached) -> list[str]:
    states: list[str] = []
    while todo:
        cid = todo.pop()
        if cid in out.commits or cid in stop:
            continue
        out.commits.add(cid)
        try:
            c = read_commit(store, cid)
        except KilnError as e:
            out.errors.append(f"commit {cid}: {e}")
            continue
        todo.extend(c.parents)
        states.append(c.state)
    return states


def _states(store: ObjectStore, todo: list[str], out: Reached, decode: bool) -> list[str]:
    segments: list[str] = []
    while todo:
        sid = todo.pop()
        if sid in out.states:
            continue
        out.states.add(sid)
        try:
            obj = decode_state(store, sid) if decode else state_header(store, sid)
        except KilnError as e:
            out.errors.append(f"state {sid}: {e}")
            continue
        refs = state_refs(obj)
        if obj["type"] == "delta":
            todo.append(refs[0])
            segments.extend(refs[1:])
        else:
            segments.extend(refs)
    return segments


def _segments(store: ObjectStore, todo: list[str], out: Reached, decode: bool) -> None:
    for oid in todo:
        if oid in out.segments:
            continue
        out.segments.add(oid)
        try:
            obj = store.get_json(oid)
            if not isinstance(obj, dict) or obj.get("type") != "segment":
                raise KilnError(f"object {oid} is not a segment")
            blobs = Segment.from_json(obj, oid, strict=True).blobs if decode else split_hex(obj["blobs"], BLOB_HEX)
        except (KilnError, KeyError, TypeError) as e:
            out.errors.append(f"segment {oid}: {e}")
            continue
        out.blobs.update(blobs)
