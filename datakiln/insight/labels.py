"""Finding label errors with confident learning: arrays in, arrays out.

Glossary: ``labels`` (N,) given class indices, ``pred_probs`` (N, K) out-of-sample predicted
probabilities (a model that never trained on row i predicted it). Our own implementation of
Northcutt, Jiang and Chuang, "Confident Learning" (JAIR 2021):

1. per-class thresholds ``t[j]``: the mean ``pred_probs[:, j]`` over examples labeled j (how
   confident the model is in class j when j is right);
2. the confident joint ``C[i, j]``: examples labeled i whose most probable class among those
   above their threshold is j (an estimate of "given i, truly j");
3. calibrated so row i sums to the number of examples labeled i;
4. the number of issues in each off-diagonal cell; prune by noise rate: in each cell (i, j),
   flag that many examples labeled i with the largest margin ``p_j - p_i``;
5. never flag an example whose given label is also the model's prediction.

Scores are in [0, 1], **lower is more suspect**: ``self_confidence`` is ``p[label]``;
``normalized_margin`` is ``(p[label] - max other p + 1) / 2``.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError


def check_probs(pred_probs: np.ndarray) -> None:
    """Refuse what is not an (N, K) array of probabilities (logits, NaN, rows not summing to 1)."""
    if pred_probs.ndim != 2:
        raise InputError(f"pred_probs must be (N, K), not {pred_probs.shape}")
    if len(pred_probs) == 0:
        return
    if not np.isfinite(pred_probs).all() or pred_probs.min() < 0 or np.abs(pred_probs.sum(axis=1) - 1).max() > 1e-3:
        raise InputError(
            "pred_probs must be finite probabilities, each row summing to 1; apply a softmax to logits "
            "and drop rows with NaN"
        )


def check_arrays(labels: np.ndarray, pred_probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validated int64 ``labels`` (N,) and float ``pred_probs`` (N, K); raises ``InputError``."""
    labels = np.asarray(labels)
    pred_probs = np.asarray(pred_probs)
    if pred_probs.ndim != 2 or labels.shape != (len(pred_probs),):
        raise InputError(f"labels {labels.shape} and pred_probs {pred_probs.shape} must be (N,) and (N, K)")
    if len(labels) and not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"labels must be integer class indices, not {labels.dtype}; map class names to 0..K-1")
    check_probs(pred_probs)
    if len(labels) and (labels.min() < 0 or labels.max() >= pred_probs.shape[1]):
        raise InputError(
            f"labels must be class indices in 0..{pred_probs.shape[1] - 1}; drop unlabeled rows (-1) first"
        )
    return labels.astype(np.int64, copy=False), pred_probs


def per_class_thresholds(labels: np.ndarray, pred_probs: np.ndarray) -> np.ndarray:
    """(K,) mean predicted probability of class j over the examples labeled j (1.0 if none)."""
    k = pred_probs.shape[1]
    sums = np.zeros(k)
    np.add.at(sums, labels, pred_probs[np.arange(len(labels)), labels])
    counts = np.bincount(labels, minlength=k)
    return np.where(counts > 0, sums / np.maximum(counts, 1), 1.0)


def confident_joint(labels: np.ndarray, pred_probs: np.ndarray, *, calibrate: bool = True) -> np.ndarray:
    """(K, K) counts: row = given label, column = confidently predicted class."""
    return _confident_joint(*check_arrays(labels, pred_probs), calibrate=calibrate)


def _confident_joint(labels: np.ndarray, pred_probs: np.ndarray, *, calibrate: bool = True) -> np.ndarray:
    k = pred_probs.shape[1]
    t = per_class_thresholds(labels, pred_probs)
    above = pred_probs >= t - 1e-6  # (N, K); the tolerance keeps exact-threshold rows, as float noise would not
    masked = np.where(above, pred_probs, -1.0)
    confident = above.any(axis=1)
    j = masked.argmax(axis=1)
    cj = np.zeros((k, k), dtype=np.int64)
    np.add.at(cj, (labels[confident], j[confident]), 1)
    if not calibrate:
        return cj
    counts = np.bincount(labels, minlength=k)
    row = cj.sum(axis=1, keepdims=True)
    calibrated = np.where(row > 0, cj / np.maximum(row, 1) * counts[:, None], 0.0)
    return calibrated


def find_label_issues(labels: np.ndarray, pred_probs: np.ndarray) -> np.ndarray:
    """(N,) bool mask of suspected label errors (see the module docstring for the method)."""
    labels, pred_probs = check_arrays(labels, pred_probs)
    n, k = pred_probs.shape
    cj = _confident_joint(labels, pred_probs)
    to_flag = np.rint(cj).astype(np.int64)
    np.fill_diagonal(to_flag, 0)
    issues = np.zeros(n, dtype=bool)
    by_label = _rows_by_label(labels, k)
    for i, j in zip(*np.nonzero(to_flag)):
        rows = by_label[i]
        m = min(int(to_flag[i, j]), len(rows))
        margin = pred_probs[rows, j] - pred_probs[rows, i]
        top = rows[np.argpartition(-margin, m - 1)[:m]] if m < len(rows) else rows
        issues[top] = True
    issues &= pred_probs.argmax(axis=1) != labels
    return issues


def _rows_by_label(labels: np.ndarray, k: int) -> list[np.ndarray]:
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(k + 1))
    return [order[bounds[c] : bounds[c + 1]] for c in range(k)]


def self_confidence(labels: np.ndarray, pred_probs: np.ndarray) -> np.ndarray:
    """(N,) probability the model gives the given label; lower is more suspect."""
    labels, pred_probs = check_arrays(labels, pred_probs)
    return np.asarray(pred_probs[np.arange(len(labels)), labels])


def normalized_margin(labels: np.ndarray, pred_probs: np.ndarray) -> np.ndarray:
    """(N,) ``(p[label] - max other p + 1) / 2`` in [0, 1]; below 0.5 the model prefers another class."""
    labels, pred_probs = check_arrays(labels, pred_probs)
    idx = np.arange(len(labels))
    given = pred_probs[idx, labels]
    other = pred_probs.copy()
    other[idx, labels] = -np.inf
    return np.asarray((given - other.max(axis=1) + 1) / 2)


def rank_issues(labels: np.ndarray, pred_probs: np.ndarray, issues: np.ndarray) -> np.ndarray:
    """Indices of the flagged rows, most suspect (lowest self-confidence) first."""
    flagged = np.flatnonzero(issues)
    score = np.asarray(pred_probs)[flagged, np.asarray(labels)[flagged]]  # self-confidence of the flagged rows
    return flagged[np.argsort(score, kind="stable")]
