"""Unusual examples (by embedding) and exact and near-duplicate images of a repository."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..compile.data import gather, pixels
from ..insight import outliers
from ..repo import Repo
from ..repo.table import Table
from .view import view

THUMB = [16, 16]  # pixel thumbnails: cold-start embeddings and near-duplicate checks


def find_outliers(repo: Repo, build: str | None = None, *, top: int = 20, min_score: float = 2.0) -> dict[str, Any]:
    """Examples unlike their class (by embedding), and exact and near-duplicate images."""
    work = repo.table()
    v = view(repo, build, work=work)
    given = v.given()
    groups = np.where(given >= 0, given, v.pred_probs.argmax(axis=1))  # unlabeled: by predicted class
    score = outliers.outlier_scores(v.embeddings, groups)
    order = np.argsort(-score, kind="stable")
    unusual = order[score[order] >= min_score]
    label_codes = _codes(work.cols["label"])
    exact = outliers.exact_duplicates(list(work.blobs))
    return {
        "outliers_total": int(len(unusual)),
        "outliers": [
            {"id": v.ids[i], "label": v.labels[i], "class": v.classes[int(groups[i])], "score": float(score[i])}
            for i in unusual[:top]
        ],
        "exact_duplicates": [
            {"ids": [work.ids[i] for i in g], "conflict": len({int(label_codes[i]) for i in g} - {-1}) > 1}
            for g in exact
        ],
        **_near(repo, work, label_codes, top),
    }


def _near(repo: Repo, work: Table, label_codes: np.ndarray, top: int) -> dict[str, Any]:
    """Near-duplicate pairs (not exact copies), conflicting labels first, then by similarity."""
    thumbs = thumbnails(repo, work, channels=3)
    # Centred on each image's mean: a brighter copy still matches, a recoloured shape does not.
    thumbs -= thumbs.mean(axis=1, keepdims=True)
    i, j, sim = outliers.near_duplicates(thumbs, threshold=0.98, copy=False)
    blobs = _codes(work.blobs)
    keep = blobs[i] != blobs[j]  # identical bytes are listed as exact duplicates instead
    i, j, sim = i[keep], j[keep], sim[keep]
    conflict = (label_codes[i] >= 0) & (label_codes[j] >= 0) & (label_codes[i] != label_codes[j])
    order = np.lexsort((-sim, ~conflict))[:top]
    pairs = [
        {"a": work.ids[i[k]], "b": work.ids[j[k]], "similarity": float(sim[k]), "conflict": bool(conflict[k])}
        for k in order
    ]
    return {"near_duplicates_total": int(len(i)), "near_duplicates": pairs}


def _codes(values: list[Any]) -> np.ndarray:
    """(N,) int: equal values share a code; None is -1."""
    at: dict[Any, int] = {}
    return np.array([-1 if x is None else at.setdefault(x, len(at)) for x in values], dtype=np.int64)


def thumbnails(repo: Repo, work: Table, channels: int = 1) -> np.ndarray:
    """(N, 256 * channels) 16x16 pixels in [0, 1] of every row of ``work``, in its order (cached)."""
    x = pixels(repo.store, repo.layout.cache, gather(work), THUMB, channels)
    out: np.ndarray = np.multiply(x.reshape(len(x), -1), np.float32(1 / 255), dtype=np.float32)
    return out
