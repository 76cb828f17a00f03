"""2-D maps of embeddings: numpy in, numpy out."""

from __future__ import annotations

import numpy as np

from ..errors import InputError


def project_2d(embeddings: np.ndarray) -> np.ndarray:
    """(N, 2) principal-component projection of (N, D) embeddings, each axis scaled to [-1, 1].

    PCA rather than t-SNE or UMAP: deterministic, O(N·D²), and distances along the axes mean
    something; it is a map for finding clusters and stray points, not a clustering.
    """
    if embeddings.ndim != 2 or len(embeddings) == 0:
        raise InputError(f"embeddings must be a non-empty (N, D) array, got shape {embeddings.shape}")
    x = embeddings.astype(np.float64) - embeddings.mean(axis=0)
    if x.shape[1] < 2:
        x = np.hstack([x, np.zeros((len(x), 2 - x.shape[1]))])
    _, vecs = np.linalg.eigh(x.T @ x)  # eigenvalues ascending: the last two columns span the most variance
    xy = x @ vecs[:, [-1, -2]]
    xy *= np.where((xy**3).sum(axis=0) < 0, -1.0, 1.0)  # orient by skew, so the map does not flip at random
    scale = np.abs(xy).max(axis=0)
    return np.asarray(xy / np.where(scale > 0, scale, 1.0), dtype=np.float32)
