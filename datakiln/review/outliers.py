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
    v = view(repo, build)
    given = v.given()
    groups = np.where(given >= 0, given, v.pred_probs.argmax(axis=1))  # unlabeled: by predicted class
    score = outliers.outlier_scores(v.embeddings, groups)
    unusual = [int(i) for i in np.argsort(-score, kind="stable") if score[i] >= min_score]
    work = repo.table()
    labels_now = [None if x is None else str(x) for x in work.cols["label"]]
    exact = outliers.exact_duplicates(list(work.blobs))
    thumbs = thumbnails(repo, work, channels=3)
    # Centred on each image's mean: a brighter copy still matches, a recoloured shape does not.
    near = outliers.near_duplicates(thumbs - thumbs.mean(axis=1, keepdims=True), threshold=0.98)
    exact_pairs = {(min(a, b), max(a, b)) for g in exact for a in g for b in g if a != b}
    near_kept = [(i, j, sim) for i, j, sim in near if (i, j) not in exact_pairs]
    near_kept.sort(key=lambda t: (not _conflict(labels_now[t[0]], labels_now[t[1]]), -t[2]))  # conflicting labels first
    pairs = [
        {"a": work.ids[i], "b": work.ids[j], "similarity": sim, "conflict": _conflict(labels_now[i], labels_now[j])}
        for i, j, sim in near_kept
    ]
    return {
        "outliers_total": len(unusual),
        "outliers": [
            {"id": v.ids[i], "label": v.labels[i], "class": v.classes[int(groups[i])], "score": float(score[i])}
            for i in unusual[:top]
        ],
        "exact_duplicates": [
            {"ids": [work.ids[i] for i in g], "conflict": len({labels_now[i] for i in g} - {None}) > 1} for g in exact
        ],
        "near_duplicates_total": len(pairs),
        "near_duplicates": pairs[:top],
    }


def _conflict(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and a != b


def thumbnails(repo: Repo, work: Table, channels: int = 1) -> np.ndarray:
    """(N, 256 * channels) 16x16 pixels in [0, 1] of every row of ``work``, in its order (cached)."""
    x = pixels(repo.store, repo.layout.cache, gather(work), THUMB, channels)
    return x.reshape(len(x), -1).astype(np.float32) / 255.0
