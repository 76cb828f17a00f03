"""Choosing what to label next: query strategies over ``pred_probs`` and ``embeddings``.

Every strategy takes the candidates' arrays (rows the user has not labeled, and has not already
queued) and returns candidate row indices in the order to label them.

- ``least-confidence``, ``margin``, ``entropy``: uncertainty alone. Cheap, but a batch of the most
  uncertain examples is often a batch of near-duplicates.
- ``coreset``: k-center greedy over embeddings: each pick is the candidate farthest from
  everything labeled or picked. Diversity alone; also the cold start.
- ``badge``: k-means++ seeding over gradient embeddings ``(onehot(pred) - p) x embedding``
  (Ash et al., 2020): uncertain and diverse at once.
- ``auto`` (the default): cold start (no labels yet) is ``coreset``; otherwise the ``10 n`` most
  uncertain candidates by margin, clustered by uncertainty-weighted k-means into ``n`` clusters,
  and from each the candidate nearest its centre (Zhdanov, "Diverse mini-batch active learning",
  2019): uncertain, spread out, and typical rather than the outliers k-center favours.
- ``random``: the baseline.

Uncertainty scores are in [0, 1], **higher means pick sooner**.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from .labels import check_probs

STRATEGIES = ("auto", "margin", "entropy", "least-confidence", "badge", "coreset", "random")
POOL_PER_PICK = (
    10  # auto: uncertain candidates per pick (the paper's beta); enough to spread, few enough to stay uncertain
)
REFERENCE_MAX = 1024  # labeled rows a diversity pick measures distance to (a sample beyond this)
# coreset and badge look at a random sample of this many candidates: k-center over 1,000,000 rows
# costs seconds per pick, and a 50,000 sample covers the space as well for a batch of 50.
CANDIDATES_MAX = 50_000


def least_confidence(pred_probs: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 - pred_probs.max(axis=1))


def margin(pred_probs: np.ndarray) -> np.ndarray:
    """1 - (p_top1 - p_top2): 1 when the two best classes tie."""
    if pred_probs.shape[1] < 2:
        return np.zeros(len(pred_probs))
    top2 = np.partition(pred_probs, -2, axis=1)[:, -2:]
    return 1.0 - (top2[:, 1] - top2[:, 0])


def entropy(pred_probs: np.ndarray) -> np.ndarray:
    """Shannon entropy divided by log K, in [0, 1]."""
    p = np.clip(pred_probs, 1e-12, 1.0)
    return np.asarray(-(p * np.log(p)).sum(axis=1) / np.log(max(pred_probs.shape[1], 2)))


UNCERTAINTY = {"least-confidence": least_confidence, "margin": margin, "entropy": entropy}


def k_center(emb: np.ndarray, n: int, reference: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """Greedy k-center: ``n`` row indices of ``emb``, each farthest from the reference and earlier picks.

    O(n * len(emb) * D) time and O(len(emb)) extra memory: distances are updated, never stored N x N.
    """
    n = min(n, len(emb))
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    emb = emb.astype(np.float32, copy=False)
    sq = (emb * emb).sum(axis=1)
    if reference is not None and len(reference):
        dist = np.full(len(emb), np.inf, dtype=np.float32)
        for start in range(0, len(reference), 1024):
            ref = reference[start : start + 1024].astype(np.float32)
            d = sq[:, None] - 2 * emb @ ref.T + (ref * ref).sum(axis=1)[None, :]
            np.minimum(dist, d.min(axis=1), out=dist)
        first = int(dist.argmax())
    else:
        first = int(np.random.default_rng(seed).integers(len(emb)))
        dist = np.full(len(emb), np.inf, dtype=np.float32)
    picks = [first]
    for _ in range(n - 1):
        c = emb[picks[-1]]
        np.minimum(dist, sq - 2 * emb @ c + c @ c, out=dist)
        dist[picks] = -np.inf
        picks.append(int(dist.argmax()))
    return np.array(picks, dtype=np.int64)


def sq_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) squared Euclidean distances, through one matrix product."""
    d = (a * a).sum(axis=1)[:, None] - 2 * a @ b.T + (b * b).sum(axis=1)[None, :]
    return np.asarray(np.maximum(d, 0.0))


def cluster_picks(emb: np.ndarray, weights: np.ndarray, n: int, seed: int = 0, iters: int = 10) -> np.ndarray:
    """``n`` rows: weighted k-means (k-means++ start, ``iters`` Lloyd steps), then per cluster the
    row nearest its centre. Meant for a pool of hundreds to a few thousand rows."""
    n = min(n, len(emb))
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng(seed)
    e = emb.astype(np.float64)
    w = weights / weights.sum()
    centers = [int(rng.choice(len(e), p=w))]
    d2 = sq_dist(e, e[centers])[:, 0]
    for _ in range(n - 1):
        p = d2 * w
        centers.append(int(rng.choice(len(e), p=p / p.sum())) if p.sum() > 0 else int(rng.integers(len(e))))
        d2 = np.minimum(d2, sq_dist(e, e[centers[-1:]])[:, 0])
    c = e[centers]
    for _ in range(iters):
        assign = sq_dist(e, c).argmin(axis=1)
        for k in range(n):
            members = assign == k
            if members.any():
                c[k] = (e[members] * w[members, None]).sum(axis=0) / w[members].sum()
    dist = sq_dist(e, c)
    picks: list[int] = []
    taken = np.zeros(len(e), dtype=bool)
    for k in range(n):
        for row in np.argsort(dist[:, k], kind="stable"):
            if not taken[row]:
                picks.append(int(row))
                taken[row] = True
                break
    return np.array(picks, dtype=np.int64)


def badge(pred_probs: np.ndarray, emb: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """k-means++ seeding over gradient embeddings; the gradient is never materialised as N x (K*D):
    ||g_a - g_b||^2 = ||r_a||^2 ||e_a||^2 + ||r_b||^2 ||e_b||^2 - 2 (r_a . r_b)(e_a . e_b)."""
    n = min(n, len(emb))
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng(seed)
    r = -pred_probs.astype(np.float32)
    r[np.arange(len(r)), pred_probs.argmax(axis=1)] += 1.0  # onehot(pred) - p
    e = emb.astype(np.float32)
    norm = (r * r).sum(1) * (e * e).sum(1)
    first = int(norm.argmax())
    picks = [first]
    dist = np.full(len(e), np.inf, dtype=np.float32)
    for _ in range(n - 1):
        c = picks[-1]
        d = norm + norm[c] - 2 * (r @ r[c]) * (e @ e[c])
        np.minimum(dist, np.maximum(d, 0), out=dist)
        dist[picks] = 0
        total = float(dist.sum())
        nxt = int(rng.choice(len(e), p=dist / total)) if total > 0 else int(rng.integers(len(e)))
        picks.append(nxt)
    return np.array(picks, dtype=np.int64)


def query(
    pred_probs: np.ndarray | None,
    embeddings: np.ndarray,
    n: int,
    *,
    strategy: str = "auto",
    labeled_embeddings: np.ndarray | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Up to ``n`` candidate row indices, in labelling order.

    ``pred_probs`` (M, K) and ``embeddings`` (M, D) describe the candidates; ``labeled_embeddings``
    the examples already labeled, which diversity keeps away from (None: nothing labeled yet).
    ``pred_probs`` may be None when no model exists yet (a cold start); then every strategy but
    ``random`` is ``coreset``.
    """
    if strategy not in STRATEGIES:
        raise InputError(f"unknown strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
    _check(pred_probs, embeddings, labeled_embeddings, n)
    m = len(embeddings)
    n = min(n, m)
    rng = np.random.default_rng(seed)
    ref = _reference(labeled_embeddings, rng)
    if strategy == "random":
        return rng.permutation(m)[:n]
    sample = rng.permutation(m)[:CANDIDATES_MAX] if m > CANDIDATES_MAX else np.arange(m)
    if strategy == "coreset" or pred_probs is None:
        return np.asarray(sample[k_center(embeddings[sample], n, ref, seed)])
    assert pred_probs is not None
    if strategy in UNCERTAINTY:
        score = UNCERTAINTY[strategy](pred_probs)
        return np.argsort(-score, kind="stable")[:n]
    if strategy == "badge":
        return np.asarray(sample[badge(pred_probs[sample], embeddings[sample], n, seed)])
    u = margin(pred_probs)
    pool = np.argsort(-u, kind="stable")[: max(n * POOL_PER_PICK, n)]
    return np.asarray(pool[cluster_picks(embeddings[pool], u[pool] + 1e-6, n, seed)])


def _check(pred_probs: np.ndarray | None, emb: np.ndarray, labeled: np.ndarray | None, n: int) -> None:
    if n < 1:
        raise InputError(f"n = {n}: ask for at least one example")
    if emb.ndim != 2:
        raise InputError(f"embeddings must be (M, D), not {emb.shape}")
    if pred_probs is not None:
        check_probs(pred_probs)
        if len(pred_probs) != len(emb):
            raise InputError(
                f"pred_probs has {len(pred_probs)} rows and embeddings {len(emb)}; give one row per candidate"
            )
    if labeled is not None and len(labeled) and (labeled.ndim != 2 or labeled.shape[1] != emb.shape[1]):
        raise InputError(f"labeled_embeddings {labeled.shape} must have the candidates' width {emb.shape[1]}")


def _reference(labeled: np.ndarray | None, rng: np.random.Generator) -> np.ndarray | None:
    if labeled is None or len(labeled) == 0:
        return None
    if len(labeled) > REFERENCE_MAX:
        return labeled[rng.choice(len(labeled), REFERENCE_MAX, replace=False)]
    return labeled
