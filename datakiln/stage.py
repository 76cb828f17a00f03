"""The stage: changes waiting for the next commit, kept in ``.kiln/stage.json``.

The stage records the commit it was computed against (``base``) and the working table's stats,
so that committing an unchanged HEAD needs no table reads. Before a commit moves a ref it writes
``committing`` into the stage; if a crash stops it after the ref moved but before the stage was
cleared, the next writer sees that the stage is already committed and drops it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import BadManifest, CorruptObject, LabelChanged
from .revs import IdIndex
from .store.fsutil import atomic_write
from .table import Changes, Table


@dataclass
class Stage:
    base: str | None = None
    changes: Changes = field(default_factory=Changes)
    stats: dict[str, int] | None = None
    committing: dict[str, str] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "version": 1,
            "base": self.base,
            "changes": self.changes.to_json(),
            "stats": self.stats,
            "committing": self.committing,
        }

    @classmethod
    def load(cls, path: Path) -> Stage:
        try:
            obj = json.loads(path.read_bytes())
        except FileNotFoundError:
            return cls()
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CorruptObject(f"{path} is damaged ({e}); 'kiln reset' discards the staged changes") from None
        return cls(
            base=obj.get("base"),
            changes=Changes.from_json(obj["changes"]),
            stats=obj.get("stats"),
            committing=obj.get("committing"),
        )

    def save(self, path: Path, tmp_dir: Path) -> None:
        if self.changes.is_empty() and self.committing is None:
            path.unlink(missing_ok=True)
            return
        atomic_write(path, json.dumps(self.to_json()).encode(), tmp_dir)


# ---- edits: each changes the stage and the working table (``work``) together ----------------------


def set_labels(
    stage: Stage,
    base: Table,
    work: Table,
    checked: list[tuple[str, str | None]],
    source: str,
    now: int,
    expect: Mapping[str, str | None] | None,
) -> list[str]:
    """Stage ``checked`` (id or prefix, label) pairs as ``source``; returns the full ids.

    A label equal to HEAD's (``base``) removes the staged edit instead: nothing to commit.
    """
    index = IdIndex(work.ids)
    full = [index.find(eid) for eid, _ in checked]
    for raw, seen_label in (expect or {}).items():
        eid = index.find(raw)
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
    work.set_labels(sets)
    return full


def _shown(label: str | None) -> str:
    return "unlabeled" if label is None else f"labeled {label!r}"


def remove(stage: Stage, work: Table, wanted: Iterable[str]) -> list[str]:
    """Stage the removal of examples (ids or prefixes); returns the full ids."""
    index = IdIndex(work.ids)
    full = list(dict.fromkeys(index.find(e) for e in wanted))
    for eid in full:
        stage.changes.set.pop(eid, None)
        if eid not in stage.changes.remove:
            stage.changes.remove.append(eid)
    work.remove(full)
    return full


def unstage(stage: Stage, base: Table, work: Table, ids: Iterable[str]) -> list[str]:
    """Drop the staged label edits of ``ids``: back to HEAD's labels. Returns the full ids."""
    full = [IdIndex(work.ids).find(e) for e in ids]
    for eid in full:
        if stage.changes.set.pop(eid, None) is not None and eid in base:
            work.set_labels({eid: base.label_of(eid)})
    return full
