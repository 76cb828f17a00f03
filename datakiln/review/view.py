"""A build's arrays beside the working table: the view every review command starts from.

A build's stored arrays (``pred_probs``, ``embeddings``) are aligned with the *working* table
(HEAD plus staged changes), so an example relabelled since the build is judged by its current
label, and a model's suggestion (label source ``model:<build>``) is never taken for a given label.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..compile.records import BuildRecord, find_build
from ..repo import Repo
from ..repo.label_source import is_suggestion
from ..repo.table import META_PREFIX, Table


@dataclass
class View:
    """A build's arrays for the examples of the working table that the build predicted."""

    build: BuildRecord
    ids: list[str]
    classes: list[str]
    pred_probs: np.ndarray  # (M, K) out-of-sample
    embeddings: np.ndarray  # (M, D)
    fold: np.ndarray  # (M,) cross-fitting fold of a train example, -1 if the final model predicted it
    built: np.ndarray  # (M,) class index of the label the build trained or scored on, -1 for none
    labels: list[str | None]  # current labels (suggestions included; see ``given``)
    sources: list[str | None]
    meta: dict[str, list[str | None]]
    splits: list[str]

    def given(self) -> np.ndarray:
        """(M,) class index of each decided label (human or import), -1 for none or a suggestion."""
        index = {c: i for i, c in enumerate(self.classes)}
        return np.array(
            [
                index.get(lab, -1) if lab is not None and not is_suggestion(src) else -1
                for lab, src in zip(self.labels, self.sources)
            ],
            dtype=np.int64,
        )


def view(repo: Repo, build: str | None = None, *, work: Table | None = None) -> View:
    """``build``'s arrays for the rows of ``work`` (default: the working table) it predicted."""
    b = find_build(repo, build)
    arrays, ex = b.arrays(), b.examples()
    work = repo.table() if work is None else work
    rows = [i for i, eid in enumerate(ex["ids"]) if eid in work]
    ids = [ex["ids"][i] for i in rows]
    c = work.cols
    at = [work.index[eid] for eid in ids]
    meta = {
        k[len(META_PREFIX) :]: [None if c[k][i] is None else str(c[k][i]) for i in at]
        for k in c
        if k.startswith(META_PREFIX)
    }
    return View(
        build=b,
        ids=ids,
        classes=list(b.record["classes"]),
        pred_probs=arrays["pred_probs"][rows],
        embeddings=arrays["embeddings"][rows],
        fold=arrays["fold"][rows],
        built=arrays["y"][rows],
        labels=[None if c["label"][i] is None else str(c["label"][i]) for i in at],
        sources=[None if c["source"][i] is None else str(c["source"][i]) for i in at],
        meta=meta,
        splits=[str(c["split"][i]) for i in at],
    )
