"""The gallery: every example of the working table beside what a build says of it, as numpy
columns, so filtering, sorting and paging 100,000 examples takes milliseconds.

A ``Gallery`` is made once per state of the repository (HEAD, stage, newest build) and then
only read; ``kiln ui`` keeps the latest one (see ``datakiln.workspace``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError
from ..insight import active, labels
from ..repo import label_source
from ..repo.revs import IdIndex
from ..repo.table import SPLITS, Row

if TYPE_CHECKING:
    from ..repo.table import Table
    from ..review import LabelIssue, View

SOURCE_KINDS = ("none", *label_source.KINDS, "other")
SORTS = ("added", "id", "issue", "uncertainty", "confidence")
PAGE_MAX = 500  # items a page may ask for: a screenful is 100; more is a bulk export, use kiln ls


def source_kind(source: str | None) -> int:
    """Index into ``SOURCE_KINDS`` of a label source (``human:ana`` is ``human``)."""
    return SOURCE_KINDS.index(label_source.kind(source) or "none")


def _codes(values: list[Any]) -> tuple[list[str], np.ndarray]:
    """Dictionary-encode: sorted distinct non-None values, and per row its index (-1 for None)."""
    vocab = sorted({str(v) for v in values if v is not None})
    at = {v: i for i, v in enumerate(vocab)}
    return vocab, np.array([-1 if v is None else at[str(v)] for v in values], dtype=np.int32)


@dataclass
class Query:
    """What the gallery shows: filters (None = any), a sort and a page."""

    label: str | None = None
    split: str | None = None
    source: str | None = None  # a SOURCE_KINDS name
    meta: str | None = None  # "name=value"
    issue: bool = False  # suspected label errors only
    unlabeled: bool = False
    given: str | None = None  # the label a build saw (confusion matrix rows)
    predicted: str | None = None
    wrong: bool = False  # predicted differs from the label the build saw
    search: str | None = None  # id prefix or substring of the file name
    sort: str = "added"
    offset: int = 0
    limit: int = 100

    def check(self) -> None:
        if self.sort not in SORTS:
            raise InputError(f"sort {self.sort!r} is not one of {', '.join(SORTS)}")
        if self.split is not None and self.split not in SPLITS:
            raise InputError(f"split {self.split!r} is not one of {', '.join(SPLITS)}")
        if self.source is not None and self.source not in SOURCE_KINDS:
            raise InputError(f"label source {self.source!r} is not one of {', '.join(SOURCE_KINDS)}")
        if self.meta is not None and "=" not in self.meta:
            raise InputError(f"metadata filter {self.meta!r} must look like name=value")
        if not (0 <= self.offset and 1 <= self.limit <= PAGE_MAX):
            raise InputError(f"page offset {self.offset}, limit {self.limit}: limit must be 1..{PAGE_MAX}")


@dataclass
class Gallery:
    ids: list[str]
    blobs: list[str]
    names: list[str | None]
    formats: list[str | None]
    labels: list[str | None]
    sources: list[str | None]
    split: np.ndarray  # (N,) index into SPLITS
    kind: np.ndarray  # (N,) index into SOURCE_KINDS
    label_vocab: list[str]
    label: np.ndarray  # (N,) index into label_vocab, -1 unlabeled
    meta: dict[str, tuple[list[str], np.ndarray]]
    build: str | None = None
    classes: list[str] = field(default_factory=list)  # the build's classes
    pred: np.ndarray | None = None  # (N,) predicted class index, -1 where the build has no prediction
    probs: np.ndarray | None = None  # (N, K) pred_probs, zero rows where none
    built_label: np.ndarray | None = None  # (N,) class index of the label the build saw, -1 none
    uncertainty: np.ndarray | None = None  # (N,) margin uncertainty, nan where no prediction
    given_prob: np.ndarray | None = None  # (N,) probability of the current label, nan where none
    issue_rank: np.ndarray | None = None  # (N,) rank among suspected label errors, 0 if not suspected
    suggested: dict[int, str] = field(default_factory=dict)  # row -> suggested label of a suspect
    index: dict[str, int] = field(default_factory=dict)
    table: Table | None = None  # the working table it was made from: a row's every column
    _by_id: np.ndarray | None = None
    _prefixes: IdIndex | None = None

    @classmethod
    def of(cls, work: Table, v: View | None = None, issues: Sequence[LabelIssue] | None = None) -> Gallery:
        c = work.cols
        vocab, lab = _codes(c["label"])
        metas = {name: _codes(c["meta:" + name]) for name in work.meta_names()}
        at = {s: i for i, s in enumerate(SPLITS)}
        g = cls(
            ids=list(work.ids),
            blobs=list(work.blobs),
            names=[None if x is None else str(x) for x in c["name"]],
            formats=[None if x is None else str(x) for x in c["format"]],
            labels=[None if x is None else str(x) for x in c["label"]],
            sources=[None if x is None else str(x) for x in c["source"]],
            split=np.array([at.get(str(s), 0) for s in c["split"]], dtype=np.int8),
            kind=np.array([source_kind(None if s is None else str(s)) for s in c["source"]], dtype=np.int8),
            label_vocab=vocab,
            label=lab,
            meta=metas,
            index=dict(work.index),
            table=work,
        )
        if v is not None:
            g._add_build(v, issues or [])
        return g

    def row_of(self, example: str) -> tuple[int, Row]:
        """(row, the table's row) of an example by id or unique prefix: a dict lookup for a full
        id, a bisect for a prefix (the sorted ids are made once per gallery, not per request)."""
        assert self.table is not None
        i = self.index.get(example)
        if i is None:
            if self._prefixes is None:
                self._prefixes = IdIndex(self.ids)
            i = self.index[self._prefixes.find(example)]
        return i, self.table.row(i)

    def _add_build(self, v: View, issues: Sequence[LabelIssue]) -> None:
        n, k = len(self.ids), len(v.classes)
        rows = np.array([self.index[e] for e in v.ids], dtype=np.int64)
        self.build, self.classes = v.build.id, v.classes
        self.probs = np.zeros((n, k), dtype=np.float32)
        self.probs[rows] = v.pred_probs
        self.pred = np.full(n, -1, dtype=np.int32)
        self.pred[rows] = v.pred_probs.argmax(axis=1)
        self.uncertainty = np.full(n, np.nan)
        self.uncertainty[rows] = active.margin(v.pred_probs)
        self.built_label = np.full(n, -1, dtype=np.int32)
        self.built_label[rows] = v.built
        given = v.given()
        self.given_prob = np.full(n, np.nan)
        ok = given >= 0
        self.given_prob[rows[ok]] = labels.self_confidence(given[ok], v.pred_probs[ok])
        self.issue_rank = np.zeros(n, dtype=np.int32)
        for x in issues:
            i = self.index[x["id"]]
            self.issue_rank[i] = x["rank"]
            self.suggested[i] = x["suggested"]

    # ---- reading ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.ids)

    def mask(self, q: Query) -> np.ndarray:
        """(N,) bool: the rows the query's filters keep."""
        q.check()
        m = np.ones(len(self.ids), dtype=bool)
        if q.label is not None:
            m &= self.label == self._code(self.label_vocab, q.label)
        if q.unlabeled:
            m &= self.label < 0
        if q.split is not None:
            m &= self.split == SPLITS.index(q.split)
        if q.source is not None:
            m &= self.kind == SOURCE_KINDS.index(q.source)
        if q.meta is not None:
            name, _, value = q.meta.partition("=")
            if name not in self.meta:
                raise InputError(f"no metadata column {name!r}; columns: {', '.join(self.meta) or 'none'}")
            vocab, codes = self.meta[name]
            m &= codes == self._code(vocab, value)
        if q.issue or q.given is not None or q.predicted is not None or q.wrong:
            m &= self._build_mask(q)
        if q.search:
            m &= self._search(q.search.strip().lower())
        return m

    def _build_mask(self, q: Query) -> np.ndarray:
        if self.pred is None or self.issue_rank is None or self.built_label is None:
            raise InputError("this filter needs a build; start one on the Builds page or run 'kiln build'")
        m = np.ones(len(self.ids), dtype=bool)
        if q.issue:
            m &= self.issue_rank > 0
        if q.given is not None:
            m &= self.built_label == self._code(self.classes, q.given, sort=False)
        if q.predicted is not None:
            m &= self.pred == self._code(self.classes, q.predicted, sort=False)
        if q.wrong:
            m &= (self.pred >= 0) & (self.built_label >= 0) & (self.pred != self.built_label)
        return m

    def _search(self, text: str) -> np.ndarray:
        return np.array(
            [
                eid.startswith(text) or (name is not None and text in name.lower())
                for eid, name in zip(self.ids, self.names)
            ]
        )

    @staticmethod
    def _code(vocab: list[str], value: str, *, sort: bool = True) -> int:
        if sort:
            i = int(np.searchsorted(np.array(vocab), value)) if vocab else 0
            return i if i < len(vocab) and vocab[i] == value else -2  # -2 matches nothing
        return vocab.index(value) if value in vocab else -2

    def order(self, rows: np.ndarray, sort: str) -> np.ndarray:
        """``rows`` in the order of ``sort``; rows without the sort's value go last, in the order added."""
        if sort == "added":
            return rows
        if sort == "id":
            if self._by_id is None:
                self._by_id = np.argsort(np.array(self.ids), kind="stable")
            keep = np.zeros(len(self.ids), dtype=bool)
            keep[rows] = True
            return self._by_id[keep[self._by_id]]
        if self.uncertainty is None or self.issue_rank is None or self.given_prob is None or self.probs is None:
            raise InputError(f"sorting by {sort} needs a build; start one on the Builds page or run 'kiln build'")
        if sort == "issue":
            # Suspects by rank first, then everything else from the least to the most likely label.
            rank = self.issue_rank[rows].astype(np.float64)
            rank[rank == 0] = np.inf
            keys: tuple[np.ndarray, ...] = (np.nan_to_num(self.given_prob[rows], nan=2.0), rank)
        elif sort == "uncertainty":
            keys = (np.nan_to_num(-self.uncertainty[rows], nan=1.0),)
        else:  # confidence: the model's top probability, most confident first
            keys = (-self.probs[rows].max(axis=1),)
        return rows[np.lexsort(keys)]

    def query(self, q: Query) -> dict[str, Any]:
        """``{total, offset, items: [...]}``: one page of the filtered, sorted gallery."""
        rows = self.order(np.flatnonzero(self.mask(q)), q.sort)
        page = rows[q.offset : q.offset + q.limit]
        return {
            "total": int(len(rows)),
            "offset": q.offset,
            "build": self.build,
            "items": [self.item(int(i)) for i in page],
        }

    def item(self, i: int) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.ids[i],
            "name": self.names[i],
            "label": self.labels[i],
            "source": self.sources[i],
            "split": SPLITS[int(self.split[i])],
            "blob": self.blobs[i],
            "format": self.formats[i],
            "predicted": None,
            "confidence": None,
            "issue": None,
            "suggested": None,
        }
        if self.pred is not None and self.probs is not None and self.pred[i] >= 0:
            out["predicted"] = self.classes[int(self.pred[i])]
            out["confidence"] = float(self.probs[i].max())
        if self.issue_rank is not None and self.issue_rank[i] > 0:
            out["issue"] = int(self.issue_rank[i])
            out["suggested"] = self.suggested.get(i)
        return out

    def probabilities(self, i: int) -> dict[str, float] | None:
        """The build's ``pred_probs`` row of example ``i`` by class, or None."""
        if self.pred is None or self.probs is None or self.pred[i] < 0:
            return None
        return {c: float(p) for c, p in zip(self.classes, self.probs[i])}

    def facets(self) -> dict[str, Any]:
        """What the filters can choose from: labels, classes, splits, sources, metadata values."""
        return {
            "labels": self.label_vocab,
            "classes": self.classes or self.label_vocab,
            "splits": list(SPLITS),
            "sources": list(SOURCE_KINDS),
            # Metadata with many distinct values (file names, ids) is not a slice worth a menu.
            "meta": {k: vocab for k, (vocab, _) in self.meta.items() if len(vocab) <= 200},
            "build": self.build,
            "total": len(self.ids),
        }
