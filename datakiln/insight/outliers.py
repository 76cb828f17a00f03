"""Outliers and duplicates from ``embeddings`` (N, D): examples unlike their class, and copies.

``outlier_scores``: distance of each (L2-normalised) embedding to its class's centroid, divided
by the class's median distance: **higher is more unusual**; around 1 is typical, above ~2 is worth
a look. O(N * D) time, no N x N matrix.

``near_duplicates``: pairs with cosine similarity at or above a threshold, found by sorting on
random-hyperplane signatures and comparing neighbours in that order, so N = 1,000,000 needs no
N x N comparison (it is approximate: a pair can be missed). Exact duplicates are found by blob id.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

TABLES = 4  # independent signatures: a pair split by one is very likely adjacent in another
BITS = 24  # long enough that unrelated rows rarely share a signature, so neighbours in order are candidates
WINDOW = 4  # neighbours compared after sorting by signature
CHUNK = 65_536  # rows gathered at a time: memory stays small at N = 1,000,000


def normalize(emb: np.ndarray, *, copy: bool = True) -> np.ndarray:
    """Rows scaled to unit length: a float32 copy, or ``emb`` itself when it is float32 and
    ``copy`` is False (a caller that owns a large array saves an N x D temporary)."""
    out = np.array(emb, dtype=np.float32, copy=copy or emb.dtype != np.float32)
    out /= np.maximum(np.sqrt(np.einsum("ij,ij->i", out, out)), 1e-12)[:, None]
    return out


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


def near_duplicates(
    embeddings: np.ndarray, threshold: float = 0.98, seed: int = 0, *, copy: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs with cosine >= ``threshold`` as arrays ``(i, j, cosine)``, i < j, most similar first.

    Each table sorts the rows by a random-hyperplane signature and compares every row with the
    ``WINDOW`` rows after it: near-duplicates share most signature bits, so they sort close. Fully
    vectorised, pairs included: O(TABLES * WINDOW * N * D), no Python loop over rows or pairs
    (a dataset of near-identical images has hundreds of thousands of them).
    """
    e = normalize(embeddings, copy=copy)
    n = len(e)
    rng = np.random.default_rng(seed)
    found_a, found_b, found_s = [], [], []
    for _ in range(TABLES):
        planes = rng.standard_normal((e.shape[1], BITS)).astype(np.float32)
        order = np.argsort(_signature((e @ planes) > 0), kind="stable")
        for start in range(0, n - 1, CHUNK):
            idx = order[start : start + CHUNK + WINDOW]  # a chunk plus the rows its last rows are compared with
            block = e[idx]
            for w in range(1, min(WINDOW, len(idx) - 1) + 1):
                m = min(CHUNK, len(idx) - w)
                sims = np.einsum("ij,ij->i", block[:m], block[w : w + m])
                hit = np.flatnonzero(sims >= threshold)
                found_a.append(idx[hit])
                found_b.append(idx[hit + w])
                found_s.append(sims[hit])
    return _unique_pairs(n, found_a, found_b, found_s)


def _signature(above: np.ndarray) -> np.ndarray:
    """(N,) uint32 from (N, BITS <= 32) bools, bit b from column b: packed in one pass, not one
    (N,) int64 temporary per bit."""
    packed = np.zeros((len(above), 4), dtype=np.uint8)
    packed[:, : (above.shape[1] + 7) // 8] = np.packbits(above, axis=1, bitorder="little")
    key: np.ndarray = packed.view("<u4").ravel()
    return key


def _unique_pairs(
    n: int, a: list[np.ndarray], b: list[np.ndarray], s: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs found in several tables, once each, most similar first."""
    if not a:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0, dtype=np.float32)
    aa, bb, ss = np.concatenate(a).astype(np.int64), np.concatenate(b).astype(np.int64), np.concatenate(s)
    lo, hi = np.minimum(aa, bb), np.maximum(aa, bb)
    _, first = np.unique(lo * n + hi, return_index=True)
    lo, hi, ss = lo[first], hi[first], ss[first]
    order = np.argsort(-ss, kind="stable")
    return lo[order], hi[order], ss[order]
