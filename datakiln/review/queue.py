"""The labelling queue: what to label next (uncertain and diverse), kept in ``.kiln/queue.json``.

Candidates are undecided examples (no label, or only a model's suggestion); the queue is working-
copy state, not versioned, and labelling an example takes it off.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from ..compile.records import find_build, list_builds
from ..errors import CorruptObject, InputError
from ..insight import active
from ..repo import Repo
from ..repo.label_source import undecided
from ..store.fsutil import atomic_write
from .outliers import thumbnails
from .view import view


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
    if not list_builds(repo):
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
    if not list_builds(repo):
        return 0
    known = set(find_build(repo, build).examples()["ids"])
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
        picks = _representatives(thumbnails(repo, work, channels=3), np.array(cand), decided, n, seed)
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
    ids = _read_queue(repo)
    work = repo.table()
    return [e for e in ids if e in work and undecided(work.get(e, "label"), work.get(e, "source"))]


def _read_queue(repo: Repo) -> list[str]:
    path = repo.layout.queue
    try:
        obj = json.loads(path.read_bytes())
    except FileNotFoundError:
        return []
    except (OSError, ValueError, RecursionError) as e:
        raise CorruptObject(f"{path} is damaged ({e}); 'kiln queue --clear' empties the queue") from None
    ids = obj.get("ids") if isinstance(obj, dict) else None
    if not isinstance(ids, list) or not all(isinstance(e, str) for e in ids):
        raise CorruptObject(f"{path} is damaged (no list of ids); 'kiln queue --clear' empties the queue")
    return ids


def _save_queue(repo: Repo, ids: list[str]) -> None:
    with repo.lock:
        atomic_write(repo.layout.queue, json.dumps({"version": 1, "ids": ids}).encode(), repo.tmp_dir)


def clear_queue(repo: Repo) -> None:
    repo.layout.queue.unlink(missing_ok=True)
