"""Weak slices: metadata, class and predicted-class slices significantly less accurate than the rest."""

from __future__ import annotations

from typing import Any

from ..insight import slices
from ..repo import Repo
from .view import view


def weak_slices(repo: Repo, build: str | None = None, *, alpha: float = 0.05, min_n: int = 10) -> list[dict[str, Any]]:
    """Metadata, class and predicted-class slices significantly less accurate than the rest."""
    v = view(repo, build)
    given = v.given()
    # Out-of-sample rows only: train rows count when a fold model predicted them.
    rows = [i for i in range(len(v.ids)) if given[i] >= 0 and (v.splits[i] != "train" or v.fold[i] >= 0)]
    lab, pp = given[rows], v.pred_probs[rows]
    columns: dict[str, list[str | None]] = {k: [vals[i] for i in rows] for k, vals in v.meta.items()}
    columns["label"] = [v.classes[int(c)] for c in lab]
    columns["predicted"] = [v.classes[int(c)] for c in pp.argmax(axis=1)]
    return slices.weak_slices(lab, pp, columns, alpha=alpha, min_n=min_n)
