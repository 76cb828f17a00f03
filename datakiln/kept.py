"""Kept labels: the labels a reviewer confirmed (``kiln keep``), in ``.kiln/kept.json``.

A kept example is not flagged as a suspected label error again while it keeps that label. The
marks are not versioned: they belong to the working copy, like the labelling queue. A keep that
staged an edit is forgotten when that edit is discarded (``Repo.unstage``, ``Repo.reset``).
No numpy here: ``kiln reset`` imports this.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from .store.fsutil import atomic_write

if TYPE_CHECKING:
    from .repo import Repo

KEPT_FILE = "kept.json"


def read(repo: Repo) -> dict[str, str]:
    """Example id -> the label a reviewer confirmed with ``keep``."""
    path = repo.dir / KEPT_FILE
    if not path.exists():
        return {}
    data: dict[str, str] = json.loads(path.read_text()).get("kept", {})
    return data


def forget(repo: Repo, ids: list[str] | None = None) -> None:
    """Drop the kept marks of ``ids`` (all with None): their keep was discarded with the stage."""
    with repo.lock:
        marks = read(repo)
        if not marks:
            return
        drop = set(marks) if ids is None else set(ids)
        if drop & set(marks):
            save(repo, {e: lab for e, lab in marks.items() if e not in drop})


def save(repo: Repo, marks: dict[str, str]) -> None:
    with repo.lock:
        atomic_write(repo.dir / KEPT_FILE, json.dumps({"version": 1, "kept": marks}).encode(), repo.tmp_dir)
