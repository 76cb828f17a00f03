"""Debugging the data of a repository with a build: the porcelain over ``datakiln.insight``.

A build's stored arrays (``pred_probs``, ``embeddings``) are aligned with the *working* table
(HEAD plus staged changes), so an example relabelled since the build is judged by its current
label, and a model's suggestion (label source ``model:<build>``) is never taken for a given label.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from . import kept
from .build.records import BuildRecord
from .errors import ExampleNotFound, InputError
from .insight import active, labels, outliers, slices
from .revs import IdIndex
from .store.fsutil import atomic_write

if TYPE_CHECKING:
    from .repo import Repo
    from .table import Table

QUEUE_FILE = "queue.json"
_SOURCE = re.compile(r"import|human:[^\x00-\x1f\x7f]{1,100}|model:[0-9a-f]{4,64}")  # user names may have spaces
THUMB = [16, 16]  # pixel thumbnails: cold-start embeddings and near-duplicate checks


def is_suggestion(source: str | None) -> bool:
    return (source or "").startswith("model:")


def undecided(label: object, source: object) -> bool:
    """No label a person stands behind: none at all, or only a model's suggestion."""
    return label is None or is_suggestion(None if source is None else str(source))


@dataclass
class View:
    """A build's arrays for the examples of the working table that the build predicted."""

    build: BuildRecord
    ids: list[str]
    classes: list[str]
    pred_probs: np.ndarray  # (M, K) out-of-sample
    embeddings: np.ndarray  # (M, D)
    fold: np.ndarray  # (M,) cross-fitting fold of a train example, -1 if the final model predicted it
    built: np.ndarray  # (M,) class index of the label the build trained or scored on, -1 for none
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


def view(repo: Repo, build: str | None = None, *, work: Table | None = None) -> View:
    """``build``'s arrays for the rows of ``work`` (default: the working table) it predicted."""
    b = repo.find_build(build)
    arrays, ex = b.arrays(), b.examples()
    work = repo.table() if work is None else work
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
        fold=arrays["fold"][rows],
        built=arrays["y"][rows],
        labels=[None if c["label"][i] is None else str(c["label"][i]) for i in at],
        sources=[None if c["source"][i] is None else str(c["source"][i]) for i in at],
        meta=meta,
        splits=[str(c["split"][i]) for i in at],
    )


# ---- label issues ----------------------------------------------------------------------------


def label_issues(repo: Repo, build: str | None = None, *, include_kept: bool = False) -> list[dict[str, Any]]:
    """Suspected label errors, most suspect first: ``{id, given, suggested, score, rank}``.

    ``score`` is the model's probability for the given label (lower is more suspect). Examples a
    reviewer kept (``keep``) with the label they still have are left out unless ``include_kept``.
    """
    return issues_in(view(repo, build), {} if include_kept else kept.read(repo))


def issues_in(v: View, hide: dict[str, str] | None = None) -> list[dict[str, Any]]:
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


def keep(repo: Repo, ids: list[str], *, expect: dict[str, str | None] | None = None) -> list[dict[str, Any]]:
    """Confirm the current labels of ``ids`` as the user's: staged as human labels, and no longer
    flagged as suspected errors while they keep that label."""
    with repo.lock:  # the labels read are the labels kept: no writer in between
        return _keep(repo, ids, expect)


def _keep(repo: Repo, ids: list[str], expect: dict[str, str | None] | None) -> list[dict[str, Any]]:
    work = repo.table()
    index = IdIndex(work.ids)
    full = [index.find(e) for e in ids]
    unlabeled = [e for e in full if work.get(e, "label") is None]
    if unlabeled:
        raise InputError(f"example {unlabeled[0][:12]} has no label to keep; label it with 'kiln label ID LABEL'")
    pairs = [(e, str(work.get(e, "label"))) for e in full]
    repo.label_many(pairs, expect=expect)
    kept.save(repo, {**kept.read(repo), **dict(pairs)})
    return [{"id": e, "label": lab} for e, lab in pairs]


def restore(
    repo: Repo,
    example: str,
    label: str | None,
    source: str | None,
    *,
    was_kept: str | None = None,
    expect: dict[str, str | None] | None = None,
) -> None:
    """Put back an example's label and label source as they were (undo of a review decision).

    Restoring what HEAD has removes the staged edit instead of staging a copy. ``expect`` is the
    {id: label the undone decision set}: if someone changed it since, nothing is undone.
    """
    if source is not None and not _SOURCE.fullmatch(source):
        raise InputError(f"label source {source!r} is not import, human:NAME or model:BUILD")
    with repo.lock:
        repo.label_many([(example, label)], by=source if label is not None else None, expect=expect)
        marks = kept.read(repo)
        eid = IdIndex(repo.table().ids).find(example)
        if was_kept is None:
            marks.pop(eid, None)
        else:
            marks[eid] = was_kept
        kept.save(repo, marks)


# ---- outliers and duplicates ---------------------------------------------------------------


def find_outliers(repo: Repo, build: str | None = None, *, top: int = 20, min_score: float = 2.0) -> dict[str, Any]:
    """Examples unlike their class (by embedding), and exact and near-duplicate images."""
    v = view(repo, build)
    given = v.given()
    groups = np.where(given >= 0, given, v.pred_probs.argmax(axis=1))  # unlabeled: by predicted class
    score = outliers.outlier_scores(v.embeddings, groups)
    unusual = [int(i) for i in np.argsort(-score, kind="stable") if score[i] >= min_score]
    work = repo.table()
    labels_now = [None if x is None else str(x) for x in work.cols["label"]]
    exact = outliers.exact_duplicates(list(work.blobs))
    thumbs = _thumbnails(repo, work, channels=3)
    # Centred on each image's mean: a brighter copy still matches, a recoloured shape does not.
    near = outliers.near_duplicates(thumbs - thumbs.mean(axis=1, keepdims=True), threshold=0.98)
    exact_pairs = {(min(a, b), max(a, b)) for g in exact for a in g for b in g if a != b}
    kept = [(i, j, sim) for i, j, sim in near if (i, j) not in exact_pairs]
    kept.sort(key=lambda t: (not _conflict(labels_now[t[0]], labels_now[t[1]]), -t[2]))  # conflicting labels first
    pairs = [
        {"a": work.ids[i], "b": work.ids[j], "similarity": sim, "conflict": _conflict(labels_now[i], labels_now[j])}
        for i, j, sim in kept
    ]
    return {
        "outliers_total": len(unusual),
        "outliers": [
            {"id": v.ids[i], "label": v.labels[i], "class": v.classes[int(groups[i])], "score": float(score[i])}
            for i in unusual[:top]
        ],
        "exact_duplicates": [
            {"ids": [work.ids[i] for i in g], "conflict": len({labels_now[i] for i in g} - {None}) > 1} for g in exact
        ],
        "near_duplicates_total": len(pairs),
        "near_duplicates": pairs[:top],
    }


def _conflict(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and a != b


def _thumbnails(repo: Repo, work: Table, channels: int = 1) -> np.ndarray:
    """(N, 256 * channels) 16x16 pixels in [0, 1] of every row of ``work``, in its order (cached)."""
    from .build.data import gather, pixels

    x = pixels(repo.store, repo.dir / "cache", gather(work), THUMB, channels)
    return x.reshape(len(x), -1).astype(np.float32) / 255.0


# ---- slices ----------------------------------------------------------------------------------


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
    are not already in the queue. ``score`` is the strategy's uncertainty (margin for auto,
    coreset, badge and random). With no build yet (a cold start) the batch is chosen for
    diversity by pixel thumbnails, away from everything labeled or queued, and has no score.
    """
    if n < 1:
        raise InputError(f"--n {n}: ask for at least one example")
    if strategy not in active.STRATEGIES:
        raise InputError(f"strategy {strategy!r} is not one of {', '.join(active.STRATEGIES)}")
    queued = pending(repo)
    if not repo.builds():
        return _cold_queue(repo, n, queued, strategy, seed)
    v = view(repo, build)
    given = v.given()
    skip = set(queued)
    # Undecided: no label, or only a model's suggestion. (given < 0 also holds for a human label
    # of a class the build never saw, which is decided all the same.)
    cand = np.array(
        [i for i in range(len(v.ids)) if undecided(v.labels[i], v.sources[i]) and v.ids[i] not in skip], dtype=np.int64
    )
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
    uncertainty = active.UNCERTAINTY.get(strategy, active.margin)
    score = uncertainty(v.pred_probs[cand[order]])
    picked = [{"id": v.ids[int(cand[o])], "score": float(s)} for o, s in zip(order, score)]
    _save_queue(repo, [*queued, *(str(p["id"]) for p in picked)])
    return picked


def unpredicted(repo: Repo, build: str | None = None) -> int:
    """Unlabeled examples the build has no predictions for (imported after it)."""
    if not repo.builds():
        return 0
    known = set(repo.find_build(build).examples()["ids"])
    work = repo.table()
    return sum(1 for e in work.ids if e not in known and work.get(e, "label") is None)


def _cold_queue(repo: Repo, n: int, queued: list[str], strategy: str, seed: int) -> list[dict[str, Any]]:
    work = repo.table()
    ids = list(work.ids)
    skip = set(queued)
    decided = [i for i, e in enumerate(ids) if work.get(e, "label") is not None or e in skip]
    cand = [i for i, e in enumerate(ids) if work.get(e, "label") is None and e not in skip]
    if not cand:
        return []
    if strategy == "random":
        picks = np.random.default_rng(seed).permutation(len(cand))[:n]
    else:
        picks = _representatives(_thumbnails(repo, work, channels=3), np.array(cand), decided, n, seed)
    picked: list[dict[str, Any]] = [{"id": ids[cand[int(i)]], "score": None} for i in picks]
    _save_queue(repo, [*queued, *(str(p["id"]) for p in picked)])
    return picked


COLD_POOL = 4000  # candidates the cold start clusters (k-means is O(pool * n) per step)


def _representatives(thumbs: np.ndarray, cand: np.ndarray, decided: list[int], n: int, seed: int) -> np.ndarray:
    """``n`` positions into ``cand``: centres of weighted k-means over colour thumbnails, weighted
    by distance to what is already labeled or queued. Representative *and* spread: k-center
    (coreset) alone picks the most unusual images, which at a cold start are one busy class."""
    rng = np.random.default_rng(seed)
    pool = np.sort(rng.choice(len(cand), min(len(cand), max(COLD_POOL, 10 * n)), replace=False))
    x = thumbs[cand[pool]]
    weights = np.ones(len(pool))
    if decided:
        ref = thumbs[np.array(decided)[rng.permutation(len(decided))[: active.REFERENCE_MAX]]]
        weights = np.sqrt(active.sq_dist(x, ref).min(axis=1)) + 1e-6
    return np.asarray(pool[active.cluster_picks(x, weights, n, seed=seed)])


def pending(repo: Repo) -> list[str]:
    """The queue: ids chosen earlier and still without a decided label (labelling one takes it off), in order."""
    path = repo.dir / QUEUE_FILE
    if not path.exists():
        return []
    ids: list[str] = json.loads(path.read_text()).get("ids", [])
    work = repo.table()
    return [e for e in ids if e in work and undecided(work.get(e, "label"), work.get(e, "source"))]


def _save_queue(repo: Repo, ids: list[str]) -> None:
    with repo.lock:
        atomic_write(repo.dir / QUEUE_FILE, json.dumps({"version": 1, "ids": ids}).encode(), repo.tmp_dir)


def clear_queue(repo: Repo) -> None:
    (repo.dir / QUEUE_FILE).unlink(missing_ok=True)


def accept(
    repo: Repo,
    ids: list[str],
    build: str | None = None,
    *,
    suggested: dict[str, str] | None = None,
    expect: dict[str, str | None] | None = None,
) -> list[dict[str, Any]]:
    """Turn suggestions into decisions: a seeded label (``model:``) is confirmed as the user's; a
    suspected label error takes the model's suggested label. Staged, for the next commit.

    ``suggested`` (example id -> label) saves recomputing the suspects when the caller has them;
    ``expect`` is ``Repo.label_many``'s: the labels the caller saw.
    """
    with repo.lock:  # the suggestions are judged against the labels they replace
        return _accept(repo, ids, build, suggested, expect)


def _accept(
    repo: Repo,
    ids: list[str],
    build: str | None,
    suggested: dict[str, str] | None,
    expect: dict[str, str | None] | None,
) -> list[dict[str, Any]]:
    work = repo.table()
    index = IdIndex(work.ids)
    full = [index.find(e) for e in ids]
    need_issues = [e for e in full if not is_suggestion(_source(work, e))]
    if suggested is not None:
        need_issues = [e for e in need_issues if e not in suggested]
    suggested = dict(suggested or {})
    if need_issues and not repo.builds():
        raise ExampleNotFound(
            f"example {need_issues[0][:12]} has no suggestion to accept: there are no builds yet, so no suspected "
            "label errors; run 'kiln build' and 'kiln issues', or label it with 'kiln label ID LABEL'"
        )
    if need_issues:
        suggested.update({i["id"]: i["suggested"] for i in label_issues(repo, build)})
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
    repo.label_many(pairs, expect=expect)
    return [{"id": e, "label": lab} for e, lab in pairs]


def _source(work: Table, eid: str) -> str | None:
    v = work.get(eid, "source")
    return None if v is None else str(v)
