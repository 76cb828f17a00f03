"""Three-way, row-level merge of label tables.

For each example the merge compares base, ours and theirs. Changes to different examples never
conflict. An example conflicts only when both sides changed it differently: relabelled to
different labels, added on both sides with different labels, or removed on one side and
relabelled on the other. Conflicts are settled with ``--ours``, ``--theirs``, or by labelling
(or removing) the example and committing.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import history
from .errors import BadManifest, MergeInProgress, StateError
from .sources.images import check_label
from .stage import Stage
from .table import Changes, LabelSet, SegmentCache, Table

if TYPE_CHECKING:
    from .repo import Repo

SIDES = ("ours", "theirs")


def _side(t: Table, eid: str) -> dict[str, Any] | None:
    if eid not in t:
        return None
    label, source, time = t.label_of(eid)
    return {"label": label, "source": source, "time": time}


def three_way(
    base: Table, ours: Table, theirs: Table, segments: SegmentCache, prefer: dict[str, str] | None = None
) -> tuple[Changes, list[dict[str, Any]]]:
    """Changes that turn ``ours`` into the merge result, and the conflicts left in it.

    ``prefer`` maps conflicting example ids to "ours" or "theirs"; those are settled, not listed.
    A conflict not settled keeps our side in the result until the user decides.
    """
    prefer = prefer or {}
    changes = Changes()
    conflicts: list[dict[str, Any]] = []
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


def merge(repo: Repo, rev: str, *, strategy: str | None = None, message: str | None = None) -> dict[str, Any]:
    if strategy not in (None, *SIDES):
        raise StateError(f"merge strategy {strategy!r} is not one of: ours, theirs")
    with repo.lock:
        if repo._merge_state():
            raise MergeInProgress("a merge is already in progress; commit it, or 'kiln merge --abort'")
        if not repo._stage().changes.is_empty():
            raise StateError("you have staged changes; commit them or 'kiln reset' before merging")
        ref, head = repo.head()
        theirs = repo.resolve(rev)
        if head is None or theirs == head:
            if head is None:
                repo._move_head(ref, theirs, None)
                return {"result": "fast-forward", "commit": theirs, "conflicts": []}
            return {"result": "up-to-date", "commit": head, "conflicts": []}
        base = history.merge_base(repo, head, theirs)
        if base == theirs:
            return {"result": "up-to-date", "commit": head, "conflicts": []}
        if base == head:
            repo._move_head(ref, theirs, head)
            return {"result": "fast-forward", "commit": theirs, "conflicts": []}
        tb, to, tt = repo.table_at(base), repo.table_at(head), repo.table_at(theirs)
        changes, conflicts = three_way(tb, to, tt, repo.segments)
        if strategy and conflicts:
            changes, _ = three_way(tb, to, tt, repo.segments, {c["id"]: strategy for c in conflicts})
        state = {"theirs": theirs, "name": rev, "base": base, "conflicts": conflicts, "resolved": []}
        if strategy:
            state["resolved"] = [c["id"] for c in conflicts]
        _stage_merge(repo, head, to, changes)
        repo._save_merge(state)
        if conflicts and not strategy:
            return {"result": "conflicts", "commit": None, "conflicts": conflicts}
        name = repo.branch_name() or head[:12]
        cid = repo.commit(message or f"merge {rev} into {name}")
        return {"result": "merged", "commit": cid, "conflicts": conflicts}


def _stage_merge(repo: Repo, head: str, ours: Table, changes: Changes) -> None:
    work = ours.copy()
    work.apply(changes, repo.segments)
    stage = Stage(base=head, changes=changes, stats=work.stats())
    stage.save(repo._stage_path, repo.tmp_dir)


def resolve(repo: Repo, side: str, ids: Any = None) -> list[str]:
    """Settle conflicts of the merge in progress by taking one side; returns the ids settled."""
    if side not in SIDES:
        raise StateError(f"side {side!r} is not one of: ours, theirs")
    with repo.lock:
        state = repo._merge_state()
        if not state:
            raise StateError(
                "no merge is in progress; 'kiln merge BRANCH --ours|--theirs' settles conflicts as it merges"
            )
        open_ = [c["id"] for c in state["conflicts"] if c["id"] not in state["resolved"]]
        chosen = open_ if ids is None else [i for i in open_ if any(i.startswith(p) for p in ids)]
        _, head = repo.head()
        assert head is not None
        tb, to, tt = repo.table_at(state["base"]), repo.table_at(head), repo.table_at(state["theirs"])
        prefer = {i: side for i in chosen}
        prefer.update({i: "ours" for i in state["resolved"]})
        changes, _ = three_way(tb, to, tt, repo.segments, prefer)
        # Keep what the user staged by hand (manual resolutions and other edits).
        staged = repo._stage().changes
        for eid, val in staged.set.items():
            if eid not in prefer or eid in state["resolved"]:
                changes.set[eid] = val
        changes.remove.extend(e for e in staged.remove if e not in changes.remove and e not in prefer)
        _stage_merge(repo, head, to, changes)
        state["resolved"] = sorted(set(state["resolved"]) | set(chosen))
        repo._save_merge(state)
        return chosen


def read_label_file(path: Path) -> list[tuple[str, str | None]]:
    """Rows of a CSV with header ``id,label``; duplicate ids and malformed rows are errors."""
    if not path.is_file():
        raise BadManifest(f"{path}: no such file; pass a CSV with columns id,label")
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as e:
        raise BadManifest(f"{path}: not UTF-8 text ({e}); save it as UTF-8") from None
    rows = list(csv.reader(lines))
    if not rows or [h.strip() for h in rows[0]] != ["id", "label"]:
        raise BadManifest(
            f"{path}: the first line must be the header 'id,label' (found {','.join(rows[0]) if rows else 'nothing'!r})"
        )
    out: list[tuple[str, str | None]] = []
    seen: dict[str, int] = {}
    for lineno, fields in enumerate(rows[1:], start=2):
        if not fields:
            continue
        if len(fields) != 2:
            raise BadManifest(
                f"{path} line {lineno}: {len(fields)} fields; expected 2 (id,label); quote labels that contain commas"
            )
        eid, label = fields[0].strip(), fields[1]
        if eid in seen:
            raise BadManifest(
                f"{path} line {lineno}: id {eid!r} already appears on line {seen[eid]}; keep one line per example"
            )
        seen[eid] = lineno
        out.append((eid, check_label(label, f"{path} line {lineno}") if label != "" else None))
    return out


__all__ = ["three_way", "merge", "resolve", "read_label_file", "LabelSet"]
