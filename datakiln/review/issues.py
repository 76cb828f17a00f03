"""Suspected label errors: confident learning (``datakiln.insight.labels``) on a build's
out-of-sample predictions, judged against the current labels, minus what reviewers kept."""

from __future__ import annotations

from typing import TypedDict

import numpy as np

from ..insight import labels
from ..repo import Repo
from .view import View, view


class LabelIssue(TypedDict):
    """One suspected label error: the shape of ``kiln issues --json``."""

    id: str
    given: str
    suggested: str
    score: float  # the model's probability for the given label: lower is more suspect
    rank: int


def label_issues(repo: Repo, build: str | None = None, *, include_kept: bool = False) -> list[LabelIssue]:
    """Suspected label errors, most suspect first: ``{id, given, suggested, score, rank}``.

    ``score`` is the model's probability for the given label (lower is more suspect). Examples a
    reviewer kept (``keep``) with the label they still have are left out unless ``include_kept``.
    """
    return issues_in(view(repo, build), {} if include_kept else repo.kept())


def issues_in(v: View, hide: dict[str, str] | None = None) -> list[LabelIssue]:
    """``label_issues`` of a view; ``hide`` maps example id to a label a reviewer confirmed."""
    given = v.given()
    hide = hide or {}
    rows = np.array(
        [i for i in range(len(v.ids)) if given[i] >= 0 and hide.get(v.ids[i]) != v.labels[i]], dtype=np.int64
    )
    if len(rows) == 0:
        return []
    lab, pp = given[rows], v.pred_probs[rows]
    flagged = labels.find_label_issues(lab, pp)
    order = labels.rank_issues(lab, pp, flagged)
    conf = labels.self_confidence(lab, pp)
    return [
        {
            "id": v.ids[rows[i]],
            "given": v.classes[lab[i]],
            "suggested": v.classes[int(pp[i].argmax())],
            "score": float(conf[i]),
            "rank": r + 1,
        }
        for r, i in enumerate(order)
    ]
