"""Warm, incremental rebuilds: start each fit from the matching fit of an earlier build.

A build of the same spec for an ancestor commit is the *warm parent*. Fold i starts from the
parent's fold i (folds are assigned by a hash of the example id, so fold i holds the same
examples as before, plus new ones that no model has seen): its held-out rows stay out of
sample. The final model starts from the parent's final model. Each fit then trains a short
schedule over every example that is new or relabeled since the parent, topped up with others
(see ``plan.WARM_FRACTION``). The parent's input normalisation is kept, so its weights mean
what they meant. numpy only.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .data import Examples
from .plan import Resolved
from .records import BuildRecord, list_builds

if TYPE_CHECKING:
    from ..repo import Repo

MAX_ANCESTORS = 1000  # commits searched back for a warm parent


def fit_weights(b: BuildRecord, name: str) -> Path:
    """The weights of fit ``name`` ("fold-1", ..., "final") of build ``b``."""
    return b.package / "weights.safetensors" if name == "final" else b.dir / "fits" / f"{name}.safetensors"


def same_build(
    repo: Repo,
    state: str | None,
    spec_hash: str,
    device: str,
    world: int = 1,
    builds: list[BuildRecord] | None = None,
) -> BuildRecord | None:
    """The newest build (cold or warm) of this dataset state under this spec, if any (among
    ``builds`` when the caller has read them already)."""
    found = list_builds(repo) if builds is None else builds
    hits = [b for b in found if _lineage(b) == (state, spec_hash, device, world)]
    return hits[-1] if hits else None


def _lineage(b: BuildRecord) -> tuple[object, ...]:
    r = b.record
    got = r.get("resolved", {})
    return r["lineage"].get("state"), r["lineage"].get("spec_hash"), got.get("device", "cpu"), got.get("world", 1)


def find_parent(
    repo: Repo, cid: str, state: str | None, spec_hash: str, resolved: Resolved, ex: Examples, folds: int
) -> BuildRecord | None:
    """The build of the nearest ancestor commit (breadth first) that a warm start can use: same
    spec and device, same input and architecture as resolved now, same classes, and every
    fit's weights on disk. None when there is none (then the build is cold)."""
    by_commit: dict[str, list[BuildRecord]] = {}
    for b in list_builds(repo):
        if _usable(b, state, spec_hash, resolved, ex.classes, folds):
            by_commit.setdefault(b.record["lineage"]["commit"], []).append(b)
    if not by_commit:
        return None
    seen, todo = {cid}, deque([cid])
    while todo and len(seen) <= MAX_ANCESTORS:
        c = todo.popleft()
        if c != cid and c in by_commit:
            return by_commit[c][-1]  # the newest build of that commit
        for p in repo.read_commit(c).parents:
            if p not in seen:
                seen.add(p)
                todo.append(p)
    return None


def _usable(
    b: BuildRecord, state: str | None, spec_hash: str, resolved: Resolved, classes: list[str], folds: int
) -> bool:
    r = b.record
    got = r.get("resolved", {})
    if r["lineage"].get("spec_hash") != spec_hash or r["lineage"].get("state") == state or r["classes"] != classes:
        return False
    if any(got.get(k, 1) != getattr(resolved, k) for k in ("size", "channels", "stem", "device", "world")):
        return False
    names = ["final", *(f"fold-{i + 1}" for i in range(folds if folds >= 2 else 0))]
    return all(fit_weights(b, n).is_file() for n in names)


def trained_on(parent: BuildRecord) -> set[tuple[str, str]]:
    """(example id, label) of every train example the parent build trained on."""
    pex = parent.examples()
    classes = parent.record["classes"]
    py = parent.arrays()["y"]
    return {
        (eid, classes[int(v)]) for eid, split, v in zip(pex["ids"], pex["splits"], py) if split == "train" and v >= 0
    }


def fresh_positions(known: set[tuple[str, str]], ex: Examples, rows: np.ndarray) -> np.ndarray:
    """Positions in ``rows`` whose example the parent did not train on with the label it has now
    (``known``, from ``trained_on``): new examples, relabeled ones, and ones moved into the train split."""
    return np.array([k for k, i in enumerate(rows) if (ex.ids[i], ex.classes[ex.y[i]]) not in known], dtype=np.int64)
