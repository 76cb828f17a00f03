"""Classification metrics from arrays: ``labels`` (N,) class indices and ``pred_probs`` (N, K).

numpy in, plain Python out (JSON-ready). No models: callers pass stored predictions.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def accuracy(labels: np.ndarray, pred_probs: np.ndarray) -> float | None:
    """Share of examples whose most probable class is the given one; None for no examples."""
    if len(labels) == 0:
        return None
    return float((pred_probs.argmax(1) == labels).mean())


def confusion(labels: np.ndarray, pred_probs: np.ndarray, k: int) -> list[list[int]]:
    """``m[i][j]``: examples of given class i predicted as class j."""
    m = np.zeros((k, k), dtype=np.int64)
    np.add.at(m, (labels, pred_probs.argmax(1)), 1)
    return m.tolist()


def per_class(labels: np.ndarray, pred_probs: np.ndarray, classes: list[str]) -> list[dict[str, Any]]:
    """Precision, recall, F1 and support per class (None where undefined)."""
    m = np.array(confusion(labels, pred_probs, len(classes)))
    out = []
    for i, name in enumerate(classes):
        tp, support, predicted = int(m[i, i]), int(m[i].sum()), int(m[:, i].sum())
        p = tp / predicted if predicted else None
        r = tp / support if support else None
        f1 = 2 * p * r / (p + r) if p is not None and r is not None and p + r > 0 else None
        out.append({"class": name, "precision": p, "recall": r, "f1": f1, "support": support})
    return out


def wilson(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion: honest for small n and for 0 or 1."""
    if n == 0:
        return 0.0, 1.0
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def slice_metrics(
    labels: np.ndarray, pred_probs: np.ndarray, columns: dict[str, list[str | None]], *, min_n: int = 1
) -> list[dict[str, Any]]:
    """Accuracy of every ``column=value`` slice with its count and 95% interval, worst first."""
    correct = pred_probs.argmax(1) == labels
    out = []
    for col, values in columns.items():
        vals = np.array(["" if v is None else v for v in values], dtype=object)
        for v in sorted(set(vals.tolist()) - {""}):
            mask = vals == v
            n = int(mask.sum())
            if n < min_n:
                continue
            c = int(correct[mask].sum())
            low, high = wilson(c, n)
            out.append({"slice": f"{col}={v}", "n": n, "accuracy": c / n, "low": low, "high": high})
    return sorted(out, key=lambda s: (s["accuracy"], -s["n"], s["slice"]))
