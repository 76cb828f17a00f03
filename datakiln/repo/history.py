"""History: commit objects (writing and reading them), walking ancestry, and resolving revisions."""

from __future__ import annotations

import heapq
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypedDict

from ..errors import CorruptObject, ExampleNotFound, InputError, RevisionNotFound, StateError
from ..store.objects import ObjectStore, check_oid
from ..store.refs import Refs, valid_ref
from .label_source import check_person
from .revs import MIN_PREFIX, ambiguous, not_found, split_rev, walk_steps
from .state import Tables, delta_json, needs_snapshot, snapshot_json, snapshot_overrides, state_header
from .table import Changes, SegmentCache, Table


class CommitJSON(TypedDict):
    """The shape of one ``kiln log --json`` entry."""

    id: str
    parents: list[str]
    author: str
    time: int
    message: str
    stats: dict[str, int]


@dataclass(frozen=True)
class Commit:
    id: str
    parents: list[str]
    state: str
    author: str
    time: int
    message: str
    generation: int
    stats: dict[str, int]

    def to_json(self) -> CommitJSON:
        """The shape of one ``kiln log --json`` entry."""
        return {
            "id": self.id,
            "parents": self.parents,
            "author": self.author,
            "time": self.time,
            "message": self.message,
            "stats": self.stats,
        }


def parse_commit(cid: str, obj: Any) -> Commit:
    """A commit object, every field checked: ids are object ids, counts are counts."""
    kind = obj.get("type") if isinstance(obj, dict) else type(obj).__name__
    if kind != "commit":
        raise RevisionNotFound(f"object {cid[:12]} is a {kind}, not a commit")
    try:
        parents = [check_oid(p, f"a parent of commit {cid[:12]}") for p in obj["parents"]]
        stats = {str(k): v for k, v in obj.get("stats", {}).items()}
        if not all(type(v) is int for v in stats.values()):
            raise ValueError("stats must be counts")
        fields = (obj["author"], obj["message"])
        if not all(isinstance(f, str) for f in fields) or type(obj["time"]) is not int:
            raise TypeError("author and message must be text, time a number")
        return Commit(
            id=cid,
            parents=parents,
            state=check_oid(obj["state"], f"the state of commit {cid[:12]}"),
            author=obj["author"],
            time=obj["time"],
            message=obj["message"],
            generation=int(obj.get("generation", 0)),
            stats=stats,
        )
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as e:
        raise CorruptObject(f"commit {cid[:12]} is malformed ({e!r}); run 'kiln fsck'") from None


def read_commit(store: ObjectStore, cid: str) -> Commit:
    return parse_commit(cid, store.get_json(check_oid(cid, "commit id")))


MESSAGE_MAX = 10_000  # characters: a commit message is a paragraph, not a file


def check_message(message: str) -> str:
    """A commit message, stripped; empty, huge or with control characters (a terminal escape in
    ``kiln log``) is refused."""
    message = message.strip()
    if not message:
        raise StateError("the commit message is empty; say why the labels changed (kiln commit -m MESSAGE)")
    if len(message) > MESSAGE_MAX:
        raise InputError(f"the commit message has {len(message):,} characters; keep it under {MESSAGE_MAX:,}")
    bad = sorted(
        {f"U+{ord(ch):04X}" for ch in message if unicodedata.category(ch) in ("Cc", "Cs") and ch not in "\n\t"}
    )
    if bad:
        raise InputError(f"the commit message contains control characters ({', '.join(bad[:5])}); remove them")
    return message


def check_author(author: str) -> str:
    """An author name (``--author``, ``KILN_USER``): ``kiln log`` prints it, so no control characters."""
    return check_person(author.strip(), "the author name")


def write_commit(
    store: ObjectStore,
    tables: Tables,
    changes: Changes,
    parents: list[str],
    message: str,
    author: str,
    stats: dict[str, int] | None,
) -> str:
    """Store the state ``changes`` make of the first parent's, and a commit naming it; return its id.

    The state is a delta against the parent's unless the chain has grown long enough to need a
    snapshot (docs/format.md). Refs are not touched: the caller moves them.
    """
    parent = read_commit(store, parents[0]) if parents else None
    state: dict[str, Any] | None = None
    if parent is not None:
        state = delta_json(parent.state, state_header(store, parent.state), changes)
    if stats is None or state is None or needs_snapshot(state):
        table = tables.of_state(parent.state if parent else None)
        check_applies(table, changes, tables.segments)
        table.apply(changes, tables.segments)
        stats = table.stats()
        if state is None or needs_snapshot(state):
            state = snapshot_json(table, tables.segments)
    sid = store.put_json(state)
    gens = [read_commit(store, p).generation for p in parents]
    obj = {
        "type": "commit",
        "parents": parents,
        "state": sid,
        "author": author,
        "time": int(time.time()),
        "message": message,
        "generation": max(gens, default=0) + 1,
        "stats": stats,
    }
    return store.put_json(obj)


def check_applies(
    table: Table, changes: Changes, segments: SegmentCache, *, hint: str = "run 'kiln reset' to drop them"
) -> None:
    """Raise if staged labels or removals name examples missing from ``table`` plus its adds."""
    present = set(table.index)
    for oid in changes.add:
        present.update(segments.get(oid).ids)
    missing = [e for e in [*changes.set, *changes.remove] if e not in present]
    if missing:
        raise ExampleNotFound(
            f"{len(missing)} staged change(s) name examples that are not in the target commit "
            f"(e.g. {missing[0][:12]}, removed by a commit since they were staged?); {hint}"
        )


def walk(store: ObjectStore, starts: list[str], n: int | None) -> Iterator[Commit]:
    """Commits reachable from ``starts``, children before parents (by generation, then time)."""
    seen = set(starts)
    heap: list[tuple[int, int, str, Commit]] = []
    for s in starts:
        c = read_commit(store, s)
        heapq.heappush(heap, (-c.generation, -c.time, s, c))
    count = 0
    while heap and (n is None or count < n):
        _, _, _, c = heapq.heappop(heap)
        yield c
        count += 1
        for p in c.parents:
            if p not in seen:
                seen.add(p)
                pc = read_commit(store, p)
                heapq.heappush(heap, (-pc.generation, -pc.time, p, pc))


def is_ancestor(store: ObjectStore, a: str, b: str, *, limit: int | None = None) -> bool:
    """True if commit ``a`` is reachable from ``b`` (or equal)."""
    target_gen = read_commit(store, a).generation
    for i, c in enumerate(walk(store, [b], None)):
        if c.id == a:
            return True
        # Generations only shrink along parents: once below a's, a cannot come.
        if c.generation < target_gen or (limit is not None and i > limit):
            return False
    return False


def merge_base(store: ObjectStore, a: str, b: str) -> str | None:
    """The newest commit both ``a`` and ``b`` descend from."""
    ancestors = {c.id for c in walk(store, [a], None)}
    for c in walk(store, [b], None):
        if c.id in ancestors:
            return c.id
    return None


def resolve(store: ObjectStore, refs: Refs, rev: str) -> str:
    """The commit id a revision names: HEAD, a branch, a tag, an id prefix, with ~N and ^N."""
    base, steps = split_rev(rev.strip())
    cid = _resolve_base(store, refs, base)
    return walk_steps(rev, cid, steps, lambda c: read_commit(store, c).parents)


def _resolve_base(store: ObjectStore, refs: Refs, base: str) -> str:
    if base in ("HEAD", "@"):
        ref, cid = refs.head()
        if cid is None:
            raise RevisionNotFound(f"HEAD ({ref}) has no commits yet; run 'kiln commit' first")
        return cid
    # Like git: a ref name wins over an id prefix that happens to match it.
    for prefix in ("refs/heads/", "refs/tags/", "refs/remotes/", ""):
        name = prefix + base
        if valid_ref(name):
            found = refs.read(name)
            if found:
                return found
    low = base.lower()
    if len(low) >= MIN_PREFIX and all(c in "0123456789abcdef" for c in low):
        hits = _commits_with_prefix(store, low)
        if len(hits) == 1:
            return hits[0]
        if hits:
            raise ambiguous(base, hits)
    names = [*refs.list("refs/heads/"), *refs.list("refs/tags/"), *refs.list("refs/remotes/")]
    raise not_found(base, names)


def _commits_with_prefix(store: ObjectStore, prefix: str) -> list[str]:
    if len(prefix) == 64:
        return [prefix] if store.has(prefix) and _is_commit(store, prefix) else []
    return [h for h in store.with_prefix(prefix) if _is_commit(store, h)]


def _is_commit(store: ObjectStore, oid: str) -> bool:
    try:
        obj = store.get_json(oid)
    except CorruptObject:
        return False
    return isinstance(obj, dict) and obj.get("type") == "commit"


# ---- one example's history ---------------------------------------------------------------------

Labeling = tuple[str | None, str | None, int] | None  # (label, source, time), None if absent


class HistoryEvent(TypedDict):
    """One commit that changed an example's label (``example_history``)."""

    commit: str | None
    message: str
    author: str | None
    time: int
    event: str  # imported | labeled | removed
    label: str | None
    source: str | None
    label_time: int | None


def example_history(tables: Tables, head: str | None, eid: str, *, limit: int = 1000) -> list[HistoryEvent]:
    """The commits on HEAD's first-parent line that changed example ``eid``'s label, newest first:
    ``{commit, message, author, time, event (imported|labeled|removed), label, source, label_time}``.

    Read from the states alone: a delta names the rows it sets, and a snapshot is searched for
    the one row (never materialized as a table), so the cost grows with the commits walked (at
    most ``limit``), not with the table. A snapshot commit is compared with the next older known
    value. Merged labels appear at the merge commit, with the source of whoever made them.
    """
    store = tables.store
    events: list[HistoryEvent] = []
    pending: tuple[Commit, Labeling] | None = None  # a snapshot commit waiting for its parent's value
    c = read_commit(store, head) if head else None
    for _ in range(limit):
        if c is None:
            break
        parent = read_commit(store, c.parents[0]) if c.parents else None
        obj = state_header(store, c.state)
        if obj["type"] == "snapshot" or parent is None or obj.get("base") != parent.state:
            now = _in_snapshot(tables.segments, obj, eid) if obj["type"] == "snapshot" else _at(tables, c, eid)
            _settle(events, pending, now)
            pending = (c, now)
            if parent is None and now is not None:
                events.append(_event(c, "imported", now))
                pending = None
        else:
            event, now = _in_delta(tables.segments, obj, eid)
            if event is not None:
                _settle(events, pending, now)
                pending = None
                events.append(_event(c, event, now))
        c = parent
    return events


def _in_delta(segments: SegmentCache, obj: dict[str, Any], eid: str) -> tuple[str | None, Labeling]:
    """What a delta did to the example: (event or None, its labeling after the commit)."""
    changes = Changes.from_json(obj)
    for oid in changes.add:
        seg = segments.get(oid)
        if eid in seg.ids:
            now = changes.set.get(eid) or _row(seg, seg.ids.index(eid))
            return "imported", now
    if eid in changes.set:
        return "labeled", changes.set[eid]
    if eid in changes.remove:
        return "removed", None
    return None, None


def _row(seg: Any, j: int) -> tuple[str | None, str | None, int]:
    c = seg.cols
    t = c["time"][j]
    return _s(c["label"][j]), _s(c["source"][j]), int(t) if t is not None else 0


def _in_snapshot(segments: SegmentCache, obj: dict[str, Any], eid: str) -> Labeling:
    """The example's labeling in a snapshot: its live row, with the snapshot's override if any."""
    dead = set(obj["dead"])
    pos = 0
    for oid in obj["segments"]:
        seg = segments.get(oid)
        if eid in seg.ids:
            j = seg.ids.index(eid)
            if pos + j not in dead:
                over = snapshot_overrides(obj).get(pos + j)
                if over is not None:
                    lab, src, t = over
                    return _s(lab), _s(src), int(t or 0)
                return _row(seg, j)
        pos += len(seg)
    return None


def _at(tables: Tables, c: Commit, eid: str) -> Labeling:
    """The example's labeling in a commit's whole table (a delta on an unexpected base)."""
    table = tables.of_state(c.state)
    return table.label_of(eid) if eid in table else None


def _settle(events: list[HistoryEvent], pending: tuple[Commit, Labeling] | None, older: Labeling) -> None:
    """A snapshot commit changed the label if its value differs from the next older known one."""
    if pending is not None and pending[1] != older:
        event = "removed" if pending[1] is None else "imported" if older is None else "labeled"
        events.append(_event(pending[0], event, pending[1]))


def _event(c: Commit, event: str, lab: Labeling) -> HistoryEvent:
    return {
        "commit": c.id,
        "message": c.message,
        "author": c.author,
        "time": c.time,
        "event": event,
        "label": lab[0] if lab else None,
        "source": lab[1] if lab else None,
        "label_time": lab[2] if lab else None,
    }


def _s(v: Any) -> str | None:
    return None if v is None else str(v)
