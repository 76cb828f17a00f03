"""Debugging the data of a repository with a build: the porcelain over ``datakiln.insight``.

A build's stored arrays (``pred_probs``, ``embeddings``) are aligned with the *working* table
(HEAD plus staged changes), so an example relabelled since the build is judged by its current
label, and a model's suggestion (label source ``model:<build>``) is never taken for a given label.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .build.records import BuildRecord
from .errors import ExampleNotFound, InputError
from .insight import active, labels, outliers, slices
from .store.fsutil import atomic_write

if TYPE_CHECKING:
    from .repo import Repo

QUEUE_FILE = "queue.json"
THUMB = [16, 16]  # pixel thumbnails: cold-start embeddings and near-duplicate checks


def is_suggestion(source: str | None) -> bool:
    return (source or "").startswith("model:")


@dataclass
class View:
    """A build's arrays for the examples of the working table that the build predicted."""

    build: BuildRecord
    ids: list[str]
    classes: list[str]
    pred_probs: np.ndarray  # (M, K) out-of-sample
    embeddings: np.ndarray  # (M, D)
    labels: list[str | None]  # current labels (suggestions included; see ``given``)
    sources: list[str | None]
    meta: dict[str, list[str | None]]
    splits: list[str]

    def given(self) -> np.ndarray:
        """(M,) class index of each decided label (human or import), -1 for none or a suggestion."""
        index = {c: i for i, c in enumerate(self.classes)}
        return np.array(
            [
                index.get(lab, -1) if lab is not None and not is_suggestion(src) else -1
                for lab, src in zip(self.labels, self.sources)
            ],
            dtype=np.int64,
        )


def view(repo: Repo, build: str | None = None) -> View:
    b = repo.find_build(build)
    arrays, ex = b.arrays(), b.examples()
    work = repo.table()
    rows = [i for i, eid in enumerate(ex["ids"]) if eid in work]
    ids = [ex["ids"][i] for i in rows]
    c = work.cols
    at = [work.index[eid] for eid in ids]
    meta = {
        k[len("meta:") :]: [None if c[k][i] is None else str(c[k][i]) for i in at] for k in c if k.startswith("meta:")
    }
    return View(
        build=b,
        ids=ids,
        classes=list(b.record["classes"]),
        pred_probs=arrays["pred_probs"][rows],
        embeddings=arrays["embeddings"][rows],
        labels=[None if c["label"][i] is None else str(c["label"][i]) for i in at],
        sources=[None if c["source"][i] is None else str(c["source"][i]) for i in at],
        meta=meta,
        splits=[str(c["split"][i]) for i in at],
    )


# ---- label issues ----------------------------------------------------------------------------


def label_issues(repo: Repo, build: str | None = None) -> list[dict[str, Any]]:
    """Suspected label errors, most suspect first: ``{id, given, suggested, score, rank}``.

    ``score`` is the model's probability for the given label (lower is more suspect).
    """
    v = view(repo, build)
    given = v.given()
    rows = np.flatnonzero(given >= 0)
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


# ---- outliers and duplicates ---------------------------------------------------------------


def find_outliers(repo: Repo, build: str | None = None, *, top: int = 20, min_score: float = 2.0) -> dict[str, Any]:
    """Examples unlike their class (by embedding), and exact and near-duplicate images."""
    v = view(repo, build)
    given = v.given()
    groups = np.where(given >= 0, given, v.pred_probs.argmax(axis=1))  # unlabeled: by predicted class
    score = outliers.outlier_scores(v.embeddings, groups)
    order = [int(i) for i in np.argsort(-score, kind="stable")[:top] if score[i] >= min_score]
    work = repo.table()
    exact = outliers.exact_duplicates(list(work.blobs))
    thumbs = _thumbnails(repo, list(work.ids))
    near = outliers.near_duplicates(thumbs - thumbs.mean(axis=1, keepdims=True), threshold=0.98)
    exact_pairs = {(min(a, b), max(a, b)) for g in exact for a in g for b in g if a != b}
    return {
        "outliers": [
            {"id": v.ids[i], "label": v.labels[i], "class": v.classes[int(groups[i])], "score": float(score[i])}
            for i in order
        ],
        "exact_duplicates": [[work.ids[i] for i in g] for g in exact],
        "near_duplicates": [
            {"a": work.ids[i], "b": work.ids[j], "similarity": s} for i, j, s in near if (i, j) not in exact_pairs
        ][: top * 5],
    }


def _thumbnails(repo: Repo, ids: list[str]) -> np.ndarray:
    """(N, 256) grayscale 16x16 pixels in [0, 1] of the working table's examples (cached)."""
    from .build.data import gather, pixels

    ex = gather(repo.table())
    x = pixels(repo.store, repo.dir / "cache", ex, THUMB, 1)
    pos = {eid: i for i, eid in enumerate(ex.ids)}
    return x[[pos[e] for e in ids]].reshape(len(ids), -1).astype(np.float32) / 255.0


# ---- slices ----------------------------------------------------------------------------------


def weak_slices(repo: Repo, build: str | None = None, *, alpha: float = 0.05, min_n: int = 10) -> list[dict[str, Any]]:
    """Metadata, class and predicted-class slices significantly less accurate than the rest."""
    v = view(repo, build)
    given = v.given()
    arrays = v.build.arrays()
    ex_ids = v.build.examples()["ids"]
    fold = dict(zip(ex_ids, arrays["fold"].tolist()))
    # Out-of-sample rows only: train rows count when a fold model predicted them.
    rows = [i for i in range(len(v.ids)) if given[i] >= 0 and (v.splits[i] != "train" or fold[v.ids[i]] >= 0)]
    lab, pp = given[rows], v.pred_probs[rows]
    columns: dict[str, list[str | None]] = {k: [vals[i] for i in rows] for k, vals in v.meta.items()}
    columns["label"] = [v.classes[int(c)] for c in lab]
    columns["predicted"] = [v.classes[int(c)] for c in pp.argmax(axis=1)]
    return slices.weak_slices(lab, pp, columns, alpha=alpha, min_n=min_n)


# ---- seeding, queueing, accepting --------------------------------------------------------------


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
        repo.label_many(pairs, by=f"model:{v.build.id}")
    return [{"id": eid, "label": lab, "confidence": float(conf[i])} for (eid, lab), i in zip(pairs, pick)]


def queue(
    repo: Repo, build: str | None = None, *, n: int = 50, strategy: str = "auto", seed: int = 0
) -> list[dict[str, Any]]:
    """The next ``n`` examples to label (``{id, score}``, in order), added to the queue.

    Candidates: examples without a decided label (unlabeled, or only a model's suggestion) that
    are not already in the queue. With no build yet (no labels: a cold start), a diverse batch by
    pixel thumbnails.
    """
    if n < 1:
        raise InputError(f"--n {n}: ask for at least one example")
    pending = _pending(repo)
    if not repo.builds():
        return _cold_queue(repo, n, pending, seed)
    v = view(repo, build)
    given = v.given()
    cand = np.array([i for i in range(len(v.ids)) if given[i] < 0 and v.ids[i] not in pending], dtype=np.int64)
    if len(cand) == 0:
        return []
    order = active.query(
        v.pred_probs[cand],
        v.embeddings[cand],
        n,
        strategy=strategy,
        labeled_embeddings=v.embeddings[given >= 0],
        seed=seed,
    )
    score = active.margin(v.pred_probs[cand[order]])
    picked = [{"id": v.ids[int(cand[o])], "score": float(s)} for o, s in zip(order, score)]
    _save_queue(repo, [*pending, *(str(p["id"]) for p in picked)])
    return picked


def _cold_queue(repo: Repo, n: int, pending: list[str], seed: int) -> list[dict[str, Any]]:
    work = repo.table()
    ids = [e for e in work.ids if work.get(e, "label") is None and e not in pending]
    if not ids:
        return []
    picks = active.k_center(_thumbnails(repo, ids), n, None, seed)
    picked = [{"id": ids[int(i)], "score": 1.0} for i in picks]
    _save_queue(repo, [*pending, *(str(p["id"]) for p in picked)])
    return picked


def _pending(repo: Repo) -> list[str]:
    """Queued ids still without a decided label (labelling one takes it off the queue)."""
    path = repo.dir / QUEUE_FILE
    if not path.exists():
        return []
    ids: list[str] = json.loads(path.read_text()).get("ids", [])
    work = repo.table()
    return [e for e in ids if e in work and (work.get(e, "label") is None or is_suggestion(str(work.get(e, "source"))))]


def _save_queue(repo: Repo, ids: list[str]) -> None:
    with repo.lock:
        atomic_write(repo.dir / QUEUE_FILE, json.dumps({"version": 1, "ids": ids}).encode(), repo.tmp_dir)


def clear_queue(repo: Repo) -> None:
    (repo.dir / QUEUE_FILE).unlink(missing_ok=True)


def accept(repo: Repo, ids: list[str], build: str | None = None) -> list[dict[str, Any]]:
    """Turn suggestions into decisions: a seeded label (``model:``) is confirmed as the user's; a
    suspected label error takes the model's suggested label. Staged, for the next commit."""
    work = repo.table()
    from .revs import IdIndex

    index = IdIndex(work.ids)
    full = [index.find(e) for e in ids]
    suggested: dict[str, str] = {}
    need_issues = [e for e in full if not is_suggestion(_source(work, e))]
    if need_issues and repo.builds():
        suggested = {i["id"]: i["suggested"] for i in label_issues(repo, build)}
    pairs = []
    for e in full:
        if is_suggestion(_source(work, e)):
            pairs.append((e, str(work.get(e, "label"))))
        elif e in suggested:
            pairs.append((e, suggested[e]))
        else:
            raise ExampleNotFound(
                f"example {e[:12]} has no suggestion to accept (not seeded, not a suspected label error); "
                "label it with 'kiln label ID LABEL'"
            )
    repo.label_many(pairs)
    return [{"id": e, "label": lab} for e, lab in pairs]


def _source(work: Any, eid: str) -> str | None:
    v = work.get(eid, "source")
    return None if v is None else str(v)
