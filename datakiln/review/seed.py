"""Seeding: a build's confident predictions staged as suggestions for unlabeled examples."""

from __future__ import annotations

from typing import Any

from ..errors import InputError
from ..repo import Repo, label_source
from .view import view


def seed(repo: Repo, build: str | None = None, *, min_confidence: float = 0.9) -> list[dict[str, Any]]:
    """Stage the model's label for every unlabeled example it predicts with at least ``min_confidence``;
    the label source is ``model:<build id>``, so it stays a suggestion until a human accepts it."""
    if not 0 < min_confidence <= 1:
        raise InputError(f"--min-confidence {min_confidence} must be in (0, 1]")
    v = view(repo, build)
    conf = v.pred_probs.max(axis=1)
    pick = [i for i in range(len(v.ids)) if v.labels[i] is None and conf[i] >= min_confidence]
    pairs = [(v.ids[i], v.classes[int(v.pred_probs[i].argmax())]) for i in pick]
    if pairs:
        repo.label_many(pairs, by=label_source.model(v.build.id))
    return [{"id": eid, "label": lab, "confidence": float(conf[i])} for (eid, lab), i in zip(pairs, pick)]
