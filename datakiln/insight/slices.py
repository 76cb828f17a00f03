"""Weak slices: ``column=value`` groups whose accuracy is significantly below the rest's.

For each slice (at least ``min_n`` labeled examples), a one-sided two-proportion z-test of
"the slice is less accurate than everything else", Bonferroni-corrected for the number of
slices tested. Reported with the slice's count, accuracy and 95% Wilson interval, worst first.
Accuracy comes from out-of-sample predictions: ``labels`` (N,), ``pred_probs`` (N, K).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .metrics import slice_metrics


def _p_lower(c1: int, n1: int, c2: int, n2: int) -> float:
    """One-sided p-value that proportion 1 is below proportion 2 (pooled z-test)."""
    if n1 == 0 or n2 == 0:
        return 1.0
    pooled = (c1 + c2) / (n1 + n2)
    se = math.sqrt(max(pooled * (1 - pooled) * (1 / n1 + 1 / n2), 1e-18))
    z = (c1 / n1 - c2 / n2) / se
    return 0.5 * math.erfc(-z / math.sqrt(2))


def weak_slices(
    labels: np.ndarray,
    pred_probs: np.ndarray,
    columns: dict[str, list[str | None]],
    *,
    alpha: float = 0.05,
    min_n: int = 10,
) -> list[dict[str, Any]]:
    """Slices significantly less accurate than the rest; each ``{slice, n, accuracy, low, high,
    rest_accuracy, p_value}`` (``p_value`` Bonferroni-corrected)."""
    correct = pred_probs.argmax(axis=1) == labels
    total_c, total_n = int(correct.sum()), len(correct)
    # Every slice's count, accuracy and interval come from metrics.slice_metrics; this adds the test.
    tested = [s for s in slice_metrics(labels, pred_probs, columns, min_n=min_n) if s["n"] < total_n]
    out = []
    for s in tested:
        n, c = s["n"], round(s["accuracy"] * s["n"])
        p_adj = min(1.0, _p_lower(c, n, total_c - c, total_n - n) * len(tested))
        if p_adj < alpha:
            out.append({**s, "rest_accuracy": (total_c - c) / (total_n - n), "p_value": p_adj})
    return sorted(out, key=lambda s: (s["accuracy"] - s["rest_accuracy"], s["slice"]))
