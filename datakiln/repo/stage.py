"""The stage: changes waiting for the next commit, kept in ``.kiln/stage.json``.

The stage records the commit it was computed against (``base``) and the working table's stats,
so that committing an unchanged HEAD needs no table reads. Everything that must change together
with the staged changes lives in the same file, written in one atomic step:

* ``merge``: a merge in progress (the other side, the merge base, the conflicts and which are
  settled). A kill at any instant leaves the merge and its staged result together, or neither;
* ``kept``: keep marks made since HEAD (``kiln keep``): a discarded stage takes its keeps with it.
  A commit moves them to ``.kiln/kept.json`` (``KeptMarks``) before it moves the branch.

Before a commit moves a ref it writes ``committing`` into the stage; if a crash stops it after the
ref moved but before the stage was cleared, the next writer sees that the stage is already
committed and drops it.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypedDict

from ..errors import BadLabel, BadManifest, CorruptObject, LabelChanged
from ..store.fsutil import atomic_write
from ..store.objects import check_oid
from ..store.refs import check_ref
from .revs import IdIndex
from .table import Changes, LabelSet, Table

if TYPE_CHECKING:
    from .index import StateIndex

STAGE_VERSION = 1


class Side(TypedDict):
    """One side's row of a conflicting example."""

    label: str | None
    source: str | None
    time: int


class Conflict(TypedDict):
    """An example both sides of a merge changed differently (None: absent on that side)."""

    id: str
    base: Side | None
    ours: Side | None
    theirs: Side | None


@dataclass
class MergeState:
    """A merge in progress: the commit merged in, its name, the merge base, and the conflicts."""

    theirs: str
    name: str
    base: str
    conflicts: list[Conflict]
    resolved: list[str] = field(default_factory=list)

    def open(self) -> list[str]:
        """Ids of the conflicts not yet settled."""
        done = set(self.resolved)
        return [c["id"] for c in self.conflicts if c["id"] not in done]

    def settle(self, ids: Iterable[str]) -> None:
        """Mark those of ``ids`` that conflict as settled."""
        conflicted = {c["id"] for c in self.conflicts}
        self.resolved = sorted(set(self.resolved) | (conflicted & set(ids)))

    def to_json(self) -> dict[str, Any]:
        return {
            "theirs": self.theirs,
            "name": self.name,
            "base": self.base,
            "conflicts": self.conflicts,
            "resolved": self.resolved,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> MergeState:
        conflicts = obj["conflicts"]
        if not isinstance(conflicts, list) or not all(isinstance(c, dict) and "id" in c for c in conflicts):
            raise TypeError("conflicts must be a list of {id, base, ours, theirs}")
        return cls(
            theirs=check_oid(obj["theirs"], "the merged commit"),
            name=str(obj["name"]),
            base=check_oid(obj["base"], "the merge base"),
            conflicts=conflicts,
            resolved=[str(i) for i in obj["resolved"]],
        )


@dataclass
class Stage:
    base: str | None = None
    changes: Changes = field(default_factory=Changes)
    stats: dict[str, int] | None = None
    committing: dict[str, str] | None = None
    merge: MergeState | None = None
    kept: dict[str, str] = field(default_factory=dict)  # example id -> label confirmed since HEAD

    def is_empty(self) -> bool:
        """Nothing to keep on disk."""
        return self.changes.is_empty() and self.committing is None and self.merge is None and not self.kept

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "version": STAGE_VERSION,
            "base": self.base,
            "changes": self.changes.to_json(),
            "stats": self.stats,
            "committing": self.committing,
        }
        if self.merge is not None:
            out["merge"] = self.merge.to_json()
        if self.kept:
            out["kept"] = self.kept
        return out

    @classmethod
    def load(cls, path: Path) -> Stage:
        try:
            obj = json.loads(path.read_bytes())
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError, RecursionError) as e:  # ValueError: bad JSON or UTF-8
            raise CorruptObject(f"{path} is damaged ({e}); 'kiln reset' discards the staged changes") from None
        try:
            return cls._from_json(obj)
        except (KeyError, TypeError, ValueError, AttributeError, CorruptObject) as e:
            raise CorruptObject(
                f"{path} is damaged ({e}); 'kiln reset' discards the staged changes (and a merge in progress)"
            ) from None

    @classmethod
    def _from_json(cls, obj: dict[str, Any]) -> Stage:
        if obj.get("version") != STAGE_VERSION:
            raise ValueError(f"version {obj.get('version')!r}, expected {STAGE_VERSION}")
        base = obj.get("base")
        stats = obj.get("stats")
        committing = obj.get("committing")
        if committing is not None:
            check_oid(committing["commit"], "the commit being made")
            if committing["ref"] != "HEAD":
                check_ref(committing["ref"], "the ref being moved")
        kept = obj.get("kept", {})
        if not isinstance(kept, dict) or not all(isinstance(v, str) for v in kept.values()):
            raise TypeError("kept must map example ids to labels")
        if stats is not None and not (isinstance(stats, dict) and all(type(v) is int for v in stats.values())):
            raise TypeError("stats must be counts")
        return cls(
            base=None if base is None else check_oid(base, "the stage's base commit"),
            changes=Changes.from_json(obj["changes"]),
            stats=stats,
            committing=committing,
            merge=MergeState.from_json(obj["merge"]) if obj.get("merge") is not None else None,
            kept=dict(kept),
        )

    def save(self, path: Path, tmp_dir: Path) -> None:
        if self.is_empty():
            path.unlink(missing_ok=True)
            return
        atomic_write(path, json.dumps(self.to_json()).encode(), tmp_dir)


class KeptMarks:
    """``.kiln/kept.json``: the labels reviewers confirmed (``kiln keep``) in commits. A kept
    example is not flagged as a suspected label error while it keeps that label. Not versioned:
    the marks belong to the working copy, like the labelling queue."""

    def __init__(self, path: Path, tmp_dir: Path) -> None:
        self.path, self.tmp_dir = path, tmp_dir

    def read(self) -> dict[str, str]:
        try:
            obj = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, RecursionError) as e:
            raise CorruptObject(f"{self.path} is damaged ({e}); delete it to forget every keep mark") from None
        marks = obj.get("kept") if isinstance(obj, dict) else None
        if not isinstance(marks, dict) or not all(isinstance(v, str) for v in marks.values()):
            raise CorruptObject(f"{self.path} is damaged (no 'kept' map); delete it to forget every keep mark")
        return marks

    def write(self, marks: dict[str, str]) -> None:
        atomic_write(self.path, json.dumps({"version": 1, "kept": marks}).encode(), self.tmp_dir)


# ---- edits: each changes the stage and the working table (``work``) together ----------------------


class Labels(Protocol):
    """What label edits read: a table, an id index, or the working view over one (``WorkLabels``)."""

    def __contains__(self, eid: object) -> bool: ...

    def label_of(self, eid: str) -> LabelSet: ...


def set_labels(
    stage: Stage,
    base: Labels,
    work: Labels,
    full: list[str],
    checked: list[tuple[str, str | None]],
    source: str,
    now: int,
    expect: Mapping[str, str | None] | None,
) -> dict[str, LabelSet]:
    """Stage the labels of ``checked`` (id or prefix, label) pairs, whose full ids are ``full``,
    as ``source``; returns the labels set (the caller updates its working table with them).

    ``expect`` maps full ids to the labels the caller saw: a label changed since is refused. A
    label equal to HEAD's (``base``) removes the staged edit instead: nothing to commit.
    """
    for eid, seen_label in (expect or {}).items():
        current, src, _ = work.label_of(eid)
        if current != seen_label:
            raise LabelChanged(
                f"example {eid[:12]} is now {_shown(current)} (by {src or 'nobody'}), not {_shown(seen_label)} "
                "as you saw it: someone else changed it; look again and decide"
            )
    seen: dict[str, str | None] = {}
    for eid, (_, lab) in zip(full, checked):
        if eid in seen and seen[eid] != lab:
            raise BadManifest(f"example {eid[:12]} is given two labels ({seen[eid]!r} and {lab!r}); keep one")
        seen[eid] = lab
    sets = {eid: (lab, source if lab is not None else None, now) for eid, lab in seen.items()}
    for eid, val in sets.items():
        if eid in base and base.label_of(eid)[:2] == val[:2]:
            stage.changes.set.pop(eid, None)
        else:
            stage.changes.set[eid] = val
    return sets


class WorkLabels:
    """The working table's labels as HEAD's id index plus the staged label edits and removals,
    without materializing either table (a stage with imports needs the table: see ``Repo``)."""

    def __init__(self, head: StateIndex, changes: Changes) -> None:
        self.head, self.changes = head, changes

    def find(self, prefix: str) -> str:
        return self.head.find(prefix, absent=self.changes.remove)

    def __contains__(self, eid: object) -> bool:
        return eid in self.head and eid not in self.changes.remove

    def label_of(self, eid: str) -> LabelSet:
        staged = self.changes.set.get(eid)
        return staged if staged is not None else self.head.label_of(eid)

    def label_names(self) -> set[str]:
        return self.head.label_names() | {lab for lab, _, _ in self.changes.set.values() if lab is not None}

    def stats(self) -> dict[str, int]:
        st = self.head.stats()
        examples, labeled = st["examples"], st["labeled"]
        for eid in self.changes.remove:
            examples -= 1
            labeled -= self.head.label_of(eid)[0] is not None
        for eid, (lab, _, _) in self.changes.set.items():
            labeled += (lab is not None) - (self.head.label_of(eid)[0] is not None)
        return {"examples": examples, "labeled": labeled}


def check_known_labels(names: set[str], labels: Iterable[str | None]) -> None:
    """Refuse a label no example has (``names``): a new class is a decision, not a typo."""
    new = sorted({lab for lab in labels if lab is not None} - names)
    if new:
        known = sorted(names)
        close = difflib.get_close_matches(new[0], known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise BadLabel(
            f"label {new[0]!r} is not a class yet ({', '.join(map(repr, known[:12])) or 'no labels yet'}); "
            f"{hint}pass --new-class to start a new class"
        )


def _shown(label: str | None) -> str:
    return "unlabeled" if label is None else f"labeled {label!r}"


def remove(stage: Stage, work: Table, wanted: Iterable[str]) -> list[str]:
    """Stage the removal of examples (ids or prefixes); returns the full ids."""
    index = IdIndex(work.ids)
    full = list(dict.fromkeys(index.find(e) for e in wanted))
    for eid in full:
        stage.changes.set.pop(eid, None)
        stage.kept.pop(eid, None)
        if eid not in stage.changes.remove:
            stage.changes.remove.append(eid)
    work.remove(full)
    return full


def unstage(
    stage: Stage, base: Table, work: Table, ids: Iterable[str], *, dropped_keeps: dict[str, str] | None = None
) -> list[str]:
    """Drop the staged label edits of ``ids``: back to HEAD's labels. Returns the full ids; the
    keep marks that went with them are added to ``dropped_keeps``."""
    index = IdIndex(work.ids)
    full = [index.find(e) for e in ids]
    for eid in full:
        mark = stage.kept.pop(eid, None)  # a keep goes with the edit it staged
        if mark is not None and dropped_keeps is not None:
            dropped_keeps[eid] = mark
        if stage.changes.set.pop(eid, None) is not None and eid in base:
            work.set_labels({eid: base.label_of(eid)})
    return full
