"""Outliers and duplicates from ``embeddings`` (N, D): examples unlike their class, and copies.

``outlier_scores``: distance of each (L2-normalised) embedding to its class's centroid, divided
by the class's median distance: **higher is more unusual**; around 1 is typical, above ~2 is worth
a look. O(N * D) time, no N x N matrix.

``near_duplicates``: pairs with cosine similarity at or above a threshold, found with random
hyperplane hashing (several tables of 16-bit signatures) and exact checks inside each bucket, so
N = 1,000,000 needs no N x N comparison. Exact duplicates (same bytes) are found by blob id.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

TABLES = 6  # hash tables: a near-duplicate pair (cosine >= 0.97) shares a bucket in at least one with high probability
BITS = 12
BUCKET_MAX = 512  # a bucket bigger than this is checked against a sample (near-constant embeddings)


def normalize(emb: np.ndarray) -> np.ndarray:
    emb = emb.astype(np.float32, copy=False)
    return np.asarray(emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12))


def outlier_scores(embeddings: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """(N,) distance to the centroid of the row's group (its class), over the group's median distance."""
    e = normalize(embeddings)
    scores = np.zeros(len(e), dtype=np.float64)
    for g in np.unique(groups):
        rows = np.flatnonzero(groups == g)
        d = np.linalg.norm(e[rows] - e[rows].mean(axis=0), axis=1)
        scores[rows] = d / max(float(np.median(d)), 1e-6)
    return scores


def exact_duplicates(blobs: list[str]) -> list[list[int]]:
    """Groups (of two or more row indices) whose image bytes are identical."""
    by_blob: dict[str, list[int]] = defaultdict(list)
    for i, b in enumerate(blobs):
        by_blob[b].append(i)
    return [rows for rows in by_blob.values() if len(rows) > 1]


def near_duplicates(embeddings: np.ndarray, threshold: float = 0.98, seed: int = 0) -> list[tuple[int, int, float]]:
    """Pairs ``(i, j, cosine)`` with i < j and cosine >= ``threshold``, most similar first."""
    e = normalize(embeddings)
    rng = np.random.default_rng(seed)
    found: dict[tuple[int, int], float] = {}
    weights = 1 << np.arange(BITS)
    for _ in range(TABLES):
        planes = rng.standard_normal((e.shape[1], BITS)).astype(np.float32)
        keys = ((e @ planes) > 0).astype(np.int64) @ weights
        order = np.argsort(keys, kind="stable")
        bounds = np.flatnonzero(np.diff(keys[order])) + 1
        for rows in np.split(order, bounds):
            if len(rows) < 2:
                continue
            if len(rows) > BUCKET_MAX:
                rows = np.sort(rng.choice(rows, BUCKET_MAX, replace=False))
            sims = e[rows] @ e[rows].T
            a, b = np.nonzero(np.triu(sims >= threshold, k=1))
            for x, y in zip(a, b):
                i, j = int(min(rows[x], rows[y])), int(max(rows[x], rows[y]))
                found[(i, j)] = float(sims[x, y])
    return sorted(((i, j, s) for (i, j), s in found.items()), key=lambda t: -t[2])
