"""Three-way, row-level merge of label tables.

For each example the merge compares base, ours and theirs. Changes to different examples never
conflict. An example conflicts only when both sides changed it differently: relabelled to
different labels, added on both sides with different labels, or removed on one side and
relabelled on the other. Conflicts are settled with ``--ours``, ``--theirs``, or by labelling
(or removing) the example and committing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypedDict

from ..errors import StateError
from .stage import Conflict, MergeState, Side
from .table import Changes, SegmentCache, Table

SIDES = ("ours", "theirs")


class MergeResult(TypedDict):
    """The shape of ``kiln merge --json``."""

    result: str  # fast-forward | up-to-date | merged | conflicts
    commit: str | None
    conflicts: list[Conflict]


def check_side(side: str | None) -> None:
    if side not in (None, *SIDES):
        raise StateError(f"side {side!r} is not one of: ours, theirs")


def _side(t: Table, eid: str) -> Side | None:
    if eid not in t:
        return None
    label, source, time = t.label_of(eid)
    return {"label": label, "source": source, "time": time}


def three_way(
    base: Table, ours: Table, theirs: Table, segments: SegmentCache, prefer: dict[str, str] | None = None
) -> tuple[Changes, list[Conflict]]:
    """Changes that turn ``ours`` into the merge result, and the conflicts left in it.

    ``prefer`` maps conflicting example ids to "ours" or "theirs"; those are settled, not listed.
    A conflict not settled keeps our side in the result until the user decides.
    """
    prefer = prefer or {}
    changes = Changes()
    conflicts: list[Conflict] = []
    live_theirs: set[str] = set()  # rows only theirs has that the result keeps

    def conflict(eid: str) -> bool:
        side = prefer.get(eid)
        if side is None:
            conflicts.append(
                {"id": eid, "base": _side(base, eid), "ours": _side(ours, eid), "theirs": _side(theirs, eid)}
            )
        return side == "theirs"

    for eid in ours.ids:
        in_b, in_t = eid in base, eid in theirs
        if in_t:
            # Who labelled counts as a change (a human confirming a model label), but only
            # different labels conflict.
            o, t = ours.label_of(eid)[:2], theirs.label_of(eid)[:2]
            b = base.label_of(eid)[:2] if in_b else None
            if o == t or t == b or (o != b and o[0] == t[0]):
                continue
            if o == b or conflict(eid):
                changes.set[eid] = theirs.label_of(eid)
        elif in_b:  # theirs removed it
            if ours.label_of(eid)[:2] == base.label_of(eid)[:2] or conflict(eid):
                changes.remove.append(eid)
    for eid in theirs.ids:
        if eid in ours:
            continue
        if eid in base:  # ours removed it
            if theirs.label_of(eid)[:2] != base.label_of(eid)[:2] and conflict(eid):
                live_theirs.add(eid)
        else:
            live_theirs.add(eid)
    _add_rows(changes, theirs, live_theirs, ours, segments)
    return changes, conflicts


def _add_rows(changes: Changes, theirs: Table, rows: set[str], ours: Table, segments: SegmentCache) -> None:
    """Bring in rows only theirs has: add their segments, then drop the segments' other rows."""
    segs = list(dict.fromkeys(theirs.segments[theirs.seg[theirs.index[e]]] for e in theirs.ids if e in rows))
    changes.add.extend(segs)
    removed = set(changes.remove)
    for oid in segs:
        seg = segments.get(oid)
        for j, eid in enumerate(seg.ids):
            if eid in rows:
                now = theirs.label_of(eid)
                if now != (seg.cols["label"][j], seg.cols["source"][j], seg.cols["time"][j]):
                    changes.set[eid] = now
            elif eid not in ours and eid not in removed:
                # Removed on theirs (or on ours): adding the segment must not bring it back.
                removed.add(eid)
                changes.remove.append(eid)


def conflict_message(ids: list[str]) -> str:
    shown = ", ".join(i[:12] for i in ids[:10])
    more = f" and {len(ids) - 10} more" if len(ids) > 10 else ""
    return (
        f"{len(ids)} example(s) conflict: {shown}{more}. Settle them with 'kiln merge --ours' or "
        "'kiln merge --theirs', or 'kiln label ID LABEL' each, then 'kiln commit'"
    )


def settle(
    state: MergeState,
    tables: tuple[Table, Table, Table],
    segments: SegmentCache,
    staged: Changes,
    side: str,
    ids: Iterable[str] | None,
) -> tuple[Changes, list[str]]:
    """Settle open conflicts (all, or those whose id starts with one of ``ids``) by taking
    ``side``: the merge's new staged changes and the ids settled. ``tables`` are base, ours and
    theirs; what the user staged by hand (manual resolutions, other edits) is kept."""
    check_side(side)
    open_ = state.open()
    wanted = list(ids) if ids is not None else None
    chosen = open_ if wanted is None else [i for i in open_ if any(i.startswith(p) for p in wanted)]
    prefer = {i: side for i in chosen}
    prefer.update({i: "ours" for i in state.resolved})
    changes, _ = three_way(*tables, segments, prefer)
    # Keep what the user staged by hand (manual resolutions, other edits, imports) and what
    # earlier settlements decided: only the conflicts settled now are recomputed.
    for eid, val in staged.set.items():
        if eid not in prefer or eid in state.resolved:
            changes.set[eid] = val
    changes.remove.extend(
        e for e in staged.remove if e not in changes.remove and (e not in prefer or e in state.resolved)
    )
    changes.add.extend(oid for oid in staged.add if oid not in changes.add)
    state.settle(chosen)
    return changes, chosen
