"""``Workspace``: a repository held open for an interactive client (``kiln ui``).

Everything here is the library's porcelain (``Repo``, ``datakiln.review``, build records) put in
the shapes a client shows, with the expensive reads cached per *repository state*: HEAD, the
stage file, the kept-labels file and the builds directory. Any writer (this process, another
tab, ``kiln label`` in a terminal) changes one of those, so a cached read is never stale.

Writes go through ``Repo`` and ``datakiln.review``, which lock the repository and write
atomically; a write has reached the disk when the method returns. ``Repo`` is not thread-safe
(its lock counts re-entry per process), so one ``RLock`` serialises this process's threads.
"""

from __future__ import annotations

import os
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import wraps
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from .. import review
from ..compile import jobs
from ..compile.records import BuildRecord, default_build, find_build, list_builds
from ..errors import InputError, RemoteError
from ..repo import Repo
from ..repo.history import CommitJSON, HistoryEvent
from ..repo.label_source import is_suggestion
from ..repo.label_source import model as model_source
from ..repo.table import Table, confirmed_rows, diff_tables
from ..store.objects import ObjectStore
from . import thumbs
from .gallery import SOURCE_KINDS, Gallery, Query

P = ParamSpec("P")
R = TypeVar("R")
UNDO_MAX = 10_000  # undo tokens per server: a day of fast labelling, ~2 MB
MAP_POINTS = 20_000  # map points sent: ~1 MB of JSON, and a canvas still draws them in a frame
LIST_MAX = 1000  # review items, diff rows: more than anyone reads in one sitting, cheap to send
LOG_MAX = 500  # commits a page of history asks for


def locked(fn: Callable[P, R]) -> Callable[P, R]:
    @wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        with args[0].lock:  # type: ignore[attr-defined]
            return fn(*args, **kwargs)

    return run


def _stat(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


class Workspace:
    def __init__(self, path: str | os.PathLike[str] = ".") -> None:
        self.repo = Repo(path)
        self.lock = threading.RLock()
        self._galleries: OrderedDict[tuple[Any, ...], Gallery] = OrderedDict()
        self._builds: tuple[Any, list[BuildRecord]] | None = None
        self._undo: OrderedDict[str, dict[str, Any]] = OrderedDict()
        # Images are read through a store of their own under a lock of their own: an ObjectStore
        # is not thread-safe (a miss re-reads the packs), and thumbnails must not wait for the
        # 0.5 s gallery rebuild that holds the main lock.
        self._images = ObjectStore(self.repo.layout.objects, self.repo.tmp_dir)
        self._images_lock = threading.Lock()

    # ---- state -----------------------------------------------------------------------------
    def _key(self) -> tuple[Any, ...]:
        layout = self.repo.layout
        return (self.repo.head(), _stat(layout.stage), _stat(layout.kept), self._builds_key())

    def _builds_key(self) -> Any:
        return _stat(self.repo.layout.builds)

    @locked
    def builds(self) -> list[BuildRecord]:
        """Finished builds, oldest first (cached until the builds directory changes)."""
        key = self._builds_key()
        if self._builds is None or self._builds[0] != key:
            self._builds = (key, list_builds(self.repo))
        return self._builds[1]

    def _build(self, ref: str | None) -> BuildRecord | None:
        """The build ``ref`` names; by default the one ``kiln report`` uses (``default_build``)."""
        all_ = self.builds()
        if not all_:
            return None
        if ref in (None, ""):
            found = default_build(self.repo, all_)
            return found[0] if found else None
        return find_build(self.repo, ref)

    @locked
    def gallery_of(self, build: str | None = None) -> Gallery:
        """The gallery of the working table with ``build``'s predictions (default: the newest)."""
        b = self._build(build)
        key = (*self._key(), b.id if b else None)
        g = self._galleries.get(key)
        if g is None:
            work = self.repo.table()  # read once: the gallery and the build's view must agree
            v = review.view(self.repo, b.id, work=work) if b else None
            issues = review.issues_in(v, self.repo.kept()) if v else None
            g = Gallery.of(work, v, issues)
            self._galleries[key] = g
            while len(self._galleries) > 2:
                self._galleries.popitem(last=False)
        return g

    @locked
    def status(self) -> dict[str, Any]:
        """The header of every page: branch, HEAD, counts, staged edits, newest build."""
        s: dict[str, Any] = dict(self.repo.status())
        b = self._build(None)
        s["build"] = None if b is None else _build_summary(b)
        s["stale_build"] = b is not None and b.record["lineage"]["commit"] != s["head"]
        s["root"] = str(self.repo.root)
        s["name"] = self.repo.root.name
        s["branches"] = sorted(self.repo.branches())
        s["builds"] = len(self.builds())
        return s

    # ---- gallery and examples -------------------------------------------------------------
    def gallery(self, q: Query, build: str | None = None) -> dict[str, Any]:
        page = self.gallery_of(build).query(q)
        # A labels-only clone: the page's thumbnails will need these images; one request, not 100.
        # If the hub is unreachable the page still lists its examples (the thumbnails fail alone).
        try:
            self.repo.store.ensure(item["blob"] for item in page["items"])
        except RemoteError:
            pass
        return page

    def facets(self, build: str | None = None) -> dict[str, Any]:
        return self.gallery_of(build).facets()

    @locked
    def example(self, eid: str) -> dict[str, Any]:
        """One example: its gallery item, metadata, label history and the newest build's probabilities."""
        g = self.gallery_of()
        i, full = g.row_of(eid)  # not repo.find: that copied the table and sorted 70k ids per request
        return {
            **g.item(i),
            "meta": full["meta"],
            "width": full["width"],
            "height": full["height"],
            "probs": g.probabilities(i),
            "build": g.build,
            "kept": self.repo.kept().get(full["id"]),
            "history": self._history(full["id"]),
        }

    def _history(self, eid: str) -> list[HistoryEvent]:
        staged = [e for e in self.repo.staged_edits() if e["id"] == eid]
        events: list[HistoryEvent] = [
            {
                "commit": None,
                "message": "staged, not committed",
                "author": None,
                "time": e["time"],
                "event": "labeled",
                "label": e["new"],
                "source": e["source"],
                "label_time": e["time"],
            }
            for e in staged
        ]
        return events + self.repo.example_history(eid)

    # ---- review queue: suspected label errors ------------------------------------------------
    @locked
    def review_items(self, build: str | None = None) -> dict[str, Any]:
        """Suspected label errors still standing, most suspect first, with what the build says."""
        g = self.gallery_of(build)
        if g.build is None or g.issue_rank is None:
            return {"build": None, "total": 0, "items": [], "classes": g.facets()["classes"]}
        rows = sorted((int(r), i) for i, r in enumerate(g.issue_rank) if r > 0)
        items = [{**g.item(i), "score": _given_prob(g, i)} for _, i in rows[:LIST_MAX]]
        return {"build": g.build, "total": len(rows), "items": items, "classes": g.classes}

    @locked
    def accept(
        self, ids: list[str], expect: dict[str, str | None] | None = None, build: str | None = None
    ) -> list[dict[str, Any]]:
        """Take the suggestions ``build`` (default: the review queue's build) makes for ``ids``."""
        # A suspect's suggestion is the build's argmax, whatever the labels are now, so the newest
        # cached gallery of that build serves: no 0.4 s rebuild (at 100k) after every decision.
        b = self._build(build)
        cached = [g for g in reversed(self._galleries.values()) if b is not None and g.build == b.id]
        g = cached[0] if cached else self.gallery_of()
        suggested = {g.ids[i]: lab for i, lab in g.suggested.items()}
        return self._undoable(lambda: review.accept(self.repo, ids, g.build, suggested=suggested, expect=expect), ids)

    @locked
    def keep(self, ids: list[str], expect: dict[str, str | None] | None = None) -> list[dict[str, Any]]:
        return self._undoable(lambda: review.keep(self.repo, ids, expect=expect), ids)

    @locked
    def label(
        self, pairs: Iterable[tuple[str, str | None]], expect: dict[str, str | None] | None = None
    ) -> list[dict[str, Any]]:
        pairs = list(pairs)

        def run() -> list[dict[str, Any]]:
            full = self.repo.label_many(pairs, expect=expect)
            return [{"id": e, "label": lab} for e, (_, lab) in zip(full, pairs)]

        return self._undoable(run, [e for e, _ in pairs])

    def _undoable(self, run: Callable[[], Sequence[Mapping[str, Any]]], ids: list[str]) -> list[dict[str, Any]]:
        """Run a labelling decision; each result row gets an ``undo`` token that ``restore`` takes.

        The server keeps what each example had before, so a client cannot undo into a label or
        label source it made up; tokens last as long as the server (the newest UNDO_MAX).
        """
        work = self.repo.table()
        marks = self.repo.kept()
        before = {}
        for raw in ids:
            eid = raw if raw in work else str(self.repo.find(raw)["id"])
            lab, src, _ = work.label_of(eid)
            before[eid] = {"label": lab, "source": src, "kept": marks.get(eid)}
        rows = [dict(r) for r in run()]
        for row in rows:
            token = secrets.token_hex(8)
            self._undo[token] = {"id": row["id"], **before[row["id"]], "set": row["label"]}
            row["undo"] = token
        while len(self._undo) > UNDO_MAX:
            self._undo.popitem(last=False)
        return rows

    @locked
    def restore(self, token: str) -> dict[str, Any]:
        """Undo one decision by its token: the label, label source and kept mark go back, unless
        someone changed the label since (``LabelChanged``)."""
        u = self._undo.pop(token, None)
        if u is None:
            raise InputError("this undo is no longer available (the server restarted?); set the label again instead")
        try:
            review.restore(self.repo, u["id"], u["label"], u["source"], was_kept=u["kept"], expect={u["id"]: u["set"]})
        except Exception:
            self._undo[token] = u
            raise
        return {"id": u["id"], "label": u["label"]}

    # ---- labelling queue ----------------------------------------------------------------------
    @locked
    def label_queue(self) -> dict[str, Any]:
        """The queue (``kiln queue``) with each example's suggestion: a seeded label, else the
        newest build's prediction."""
        g = self.gallery_of()
        items = []
        for eid in review.pending(self.repo)[:LIST_MAX]:
            i = g.index[eid]
            it = g.item(i)
            seeded = is_suggestion(it["source"])
            it["suggestion"] = it["label"] if seeded else it["predicted"]
            predicted = it["predicted"] and g.build is not None
            it["suggestion_from"] = it["source"] if seeded else (model_source(str(g.build)) if predicted else None)
            items.append(it)
        classes = sorted(set(g.classes) | set(g.label_vocab))
        undecided = int(((g.label < 0) | (g.kind == SOURCE_KINDS.index("model"))).sum())  # review.undecided, vectorized
        return {"items": items, "classes": classes, "build": g.build, "undecided": undecided}

    @locked
    def fill_queue(self, n: int = 20, strategy: str = "auto") -> list[dict[str, Any]]:
        return review.queue(self.repo, n=n, strategy=strategy)

    # ---- changes and commits ------------------------------------------------------------------
    @locked
    def changes(self) -> dict[str, Any]:
        """Staged label edits with their images, and counts of staged imports and removals."""
        work = self.repo.table()
        edits: list[dict[str, Any]] = [dict(e) for e in self.repo.staged_edits()]
        for e in edits[:LIST_MAX]:
            e["blob"] = work.blobs[work.index[e["id"]]] if e["id"] in work else None
        st = self.repo.status()
        return {"edits": edits[:LIST_MAX], "total": len(edits), "staged": st["staged"], "merge": st["merge"]}

    @locked
    def commit(self, message: str) -> str:
        return self.repo.commit(message)

    @locked
    def discard(self, ids: list[str] | None = None) -> None:
        """Drop staged edits: those of ``ids``, or every staged change (``kiln reset``)."""
        if ids is None:
            self.repo.reset()
        else:
            self.repo.unstage(ids)

    @locked
    def import_files(self, files: list[tuple[str, str | None, bytes]], *, folder: str = "upload") -> dict[str, Any]:
        """Import images sent by a client: ``(file name, label or None, bytes)``, staged.

        They go through the importer like ``kiln import``: every file is decoded and checked, and
        one bad file refuses the whole batch, naming it. Names become ``upload/<file name>``.
        """
        from ..sources.labels import check_label, check_text
        from ..sources.scan import Candidate

        if not files:
            raise InputError("no files to import")
        cands = []
        for name, label, data in files:
            base = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
            if base in ("", ".", ".."):
                raise InputError(f"file name {name[:80]!r} is not a file name")
            check_text(base, f"file name {base!r}")
            lab = None if label in (None, "") else check_label(str(label), f"label for {base}")
            cands.append(Candidate(name=f"{folder}/{base}", path=None, label=lab, data=data))
        report = self.repo.import_candidates(cands, jobs=1)
        return {"added": report.added, "present": report.present, "bad": report.bad}

    # ---- history -------------------------------------------------------------------------------
    @locked
    def log(self, n: int = 50, offset: int = 0, rev: str = "HEAD") -> list[CommitJSON]:
        if not (1 <= n <= LOG_MAX and offset >= 0):
            raise InputError(f"n={n}, offset={offset}: n must be 1..{LOG_MAX} and offset at least 0")
        return [c.to_json() for c in self.repo.log(rev, n=offset + n)[offset:]]

    @locked
    def show(self, rev: str) -> dict[str, Any]:
        """A commit and its diff from its first parent, each row with the image's blob."""
        c = self.repo.read_commit(self.repo.resolve(rev))
        before = self.repo.table_at(c.parents[0]) if c.parents else Table()
        after = self.repo.table_at(c.id)
        commit = {"id": c.id, "parents": c.parents, "author": c.author, "time": c.time, "message": c.message}
        return {"commit": commit, **_diff_with_blobs(before, after)}

    @locked
    def compare(self, a: str, b: str) -> dict[str, Any]:
        ca, cb = self.repo.resolve(a), self.repo.resolve(b)
        return {"a": ca, "b": cb, **_diff_with_blobs(self.repo.table_at(ca), self.repo.table_at(cb))}

    # ---- builds --------------------------------------------------------------------------------
    @locked
    def build_list(self) -> dict[str, Any]:
        return {"builds": [_build_summary(b) for b in reversed(self.builds())], "jobs": jobs.list_jobs(self.repo)}

    @locked
    def report(self, build: str) -> dict[str, Any]:
        from ..compile.report import report

        b = find_build(self.repo, build)
        out = report(b)
        out["history"] = b.record["training"].get("history", [])
        return out

    @locked
    def embedding_map(self, build: str, *, max_points: int = MAP_POINTS) -> dict[str, Any]:
        """2-D projection of a build's embeddings: ``{ids, x, y, label, pred, classes, total}`` as
        parallel lists (``label``: class index the build saw, -1 none; ``pred``: argmax)."""
        import numpy as np

        from ..insight.embed import project_2d

        b = find_build(self.repo, build)
        arr, ids = b.arrays(), b.examples()["ids"]
        xy = project_2d(arr["embeddings"])
        pick = np.arange(len(ids))
        if len(ids) > max_points:
            pick = np.sort(np.random.default_rng(0).choice(len(ids), max_points, replace=False))
        return {
            "build": b.id,
            "classes": b.record["classes"],
            "total": len(ids),
            "ids": [ids[i] for i in pick],
            "x": np.round(xy[pick, 0], 4).tolist(),
            "y": np.round(xy[pick, 1], 4).tolist(),
            "label": arr["y"][pick].tolist(),
            "pred": arr["pred_probs"][pick].argmax(axis=1).tolist(),
        }

    @locked
    def compare_builds(self, a: str, b: str) -> dict[str, Any]:
        from ..compile.report import compare

        out = compare(find_build(self.repo, a), find_build(self.repo, b))
        work = self.repo.table()
        for row in (*out["newly_wrong"], *out["newly_right"]):
            row["blob"] = work.blobs[work.index[row["id"]]] if row["id"] in work else None
        return out

    @locked
    def start_build(self, rev: str = "HEAD", overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        return jobs.start(self.repo, rev, overrides)

    @locked
    def job(self, jid: str) -> dict[str, Any]:
        return jobs.status(self.repo, jid)

    @locked
    def cancel_job(self, jid: str) -> dict[str, Any]:
        return jobs.cancel(self.repo, jid)

    # ---- images ------------------------------------------------------------------------------
    def image(self, blob: str) -> tuple[bytes, str]:
        with self._images_lock:
            return thumbs.image(self._images, blob)

    @locked
    def blob_of(self, eid: str) -> str:
        """The blob id of an example (an example's image never changes: ids name content)."""
        g = self.gallery_of()
        i = g.index.get(eid)
        return g.blobs[i] if i is not None else str(self.repo.find(eid)["blob"])

    def thumbnail(self, blob: str) -> tuple[bytes, str]:
        with self._images_lock:
            return thumbs.thumbnail(self._images, self.repo.layout.cache, self.repo.tmp_dir, blob)


def _given_prob(g: Gallery, i: int) -> float | None:
    if g.given_prob is None or g.given_prob[i] != g.given_prob[i]:  # nan: no prediction
        return None
    return float(g.given_prob[i])


def _build_summary(b: BuildRecord) -> dict[str, Any]:
    r = b.record
    return {
        "id": b.id,
        "created": r.get("created"),
        "commit": r["lineage"]["commit"],
        "spec": r["spec"],
        "resolved": r.get("resolved", {}),
        "warm_from": (r.get("warm") or {}).get("parent"),
        "metrics": {s: r["metrics"][s] for s in ("valid", "test", "train_oos")},
        "seconds": r["seconds"]["total"],
        "classes": r["classes"],
    }


def _diff_with_blobs(a: Table, b: Table) -> dict[str, Any]:
    """``diff_tables`` with each row's blob (from the side that has it), lists capped at LIST_MAX."""
    d: dict[str, Any] = dict(diff_tables(a, b))

    def rows(ids: list[str], t: Table) -> list[dict[str, Any]]:
        return [{"id": e, "blob": t.blobs[t.index[e]], "label": t.cols["label"][t.index[e]]} for e in ids[:LIST_MAX]]

    relabeled = [{**r, "blob": b.blobs[b.index[r["id"]]]} for r in d["relabeled"][:LIST_MAX]]
    d["confirmed"] = confirmed_rows(a, b)
    return {
        "counts": {
            **{k: len(d[k]) for k in ("added", "removed", "relabeled", "confirmed")},
            # of the relabeled: examples that had no label before, and ones left without one
            "newly_labeled": sum(1 for r in d["relabeled"] if r["old"] is None),
            "unlabeled": sum(1 for r in d["relabeled"] if r["new"] is None),
        },
        "confirmed": rows(d["confirmed"], b),
        "added": rows(d["added"], b),
        "removed": rows(d["removed"], a),
        "relabeled": relabeled,
    }
