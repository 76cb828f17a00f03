"""The versioned label table: one row per example, as columns, built from segments.

* A **segment** holds the rows one import added (ids, blob ids, names, splits, labels, label
  sources and times, image facts, metadata). Segments are immutable and shared by every commit
  that contains their rows, so an import is stored once.
* ``Changes`` is what a delta (or the stage) does to a table: segments added, ids removed,
  labels set. How a commit's table is stored (snapshots and deltas) is ``datakiln.repo.state``.

Columns are dictionary-encoded (``{"values": [...], "codes": [...]}``) and id columns are hex
strings concatenated, which keeps them small after zlib and fast to parse. See docs/format.md.
"""

from __future__ import annotations

import contextlib
import re
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

from ..errors import CorruptObject
from ..store.objects import ObjectStore, check_oid

ID_HEX = 32  # example ids: 128 bits as hex
BLOB_HEX = 64  # blob ids: sha256 as hex
SPLITS = ("train", "valid", "test")
# Columns a commit can change; everything else is fixed when the example is imported.
MUTABLE = ("label", "source", "time")
# Columns every segment has; user metadata columns are stored as "meta:<name>".
CORE = ("name", "split", "label", "source", "time", "format", "width", "height", "mode")
META_PREFIX = "meta:"
_LOWER_HEX = re.compile(r"[0-9a-f]*")

Value = str | int | None
LabelSet = tuple[str | None, str | None, int]  # (label, source, time)


def encode_col(values: Iterable[Value]) -> dict[str, list[Any]]:
    """Dictionary-encode a column: distinct values once, then one small int per row."""
    table: dict[Value, int] = {}
    codes = [table.setdefault(v, len(table)) for v in values]
    return {"values": list(table), "codes": codes}


def decode_col(col: dict[str, list[Any]]) -> list[Value]:
    """The column's values, row by row; a code outside the dictionary is damage, not a value."""
    try:
        values, codes = col["values"], col["codes"]
        if not isinstance(values, list) or not isinstance(codes, list):
            raise TypeError("values and codes must be lists")
        if codes and (min(codes) < 0 or max(codes) >= len(values)):
            raise ValueError(f"codes run from {min(codes)} to {max(codes)} for {len(values)} values")
        return [values[c] for c in codes]
    except (KeyError, TypeError, ValueError) as e:
        raise CorruptObject(f"a dictionary-encoded column is malformed ({e}); run 'kiln fsck'") from None


def _str(v: Value) -> str | None:
    return None if v is None else str(v)


def join_hex(ids: Iterable[str]) -> str:
    return "".join(ids)


def split_hex(s: str, width: int, *, strict: bool = False) -> list[str]:
    """Ids from a concatenated hex column. ``strict`` also checks every character (fsck does;
    readers rely on ``check_oid`` where an id meets the filesystem)."""
    if not isinstance(s, str) or len(s) % width:
        raise CorruptObject(f"an id column of length {len(s)} is not a multiple of {width}; run 'kiln fsck'")
    if strict and not _LOWER_HEX.fullmatch(s):
        raise CorruptObject("an id column holds characters other than lowercase hex digits; run 'kiln fsck'")
    return [s[i : i + width] for i in range(0, len(s), width)]


@dataclass
class Changes:
    """What a delta (or the stage) does to a table, applied in this order: add, remove, set."""

    add: list[str] = field(default_factory=list)  # segment ids
    remove: list[str] = field(default_factory=list)  # example ids
    set: dict[str, LabelSet] = field(default_factory=dict)  # example id -> (label, source, time)

    def is_empty(self) -> bool:
        return not (self.add or self.remove or self.set)

    def to_json(self) -> dict[str, Any]:
        ids = list(self.set)
        return {
            "add": list(self.add),
            "remove": join_hex(self.remove),
            "set": {
                "ids": join_hex(ids),
                "label": encode_col(self.set[i][0] for i in ids),
                "source": encode_col(self.set[i][1] for i in ids),
                "time": encode_col(self.set[i][2] for i in ids),
            },
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any], *, strict: bool = False) -> Changes:
        """Decode a delta or the stage's changes; malformed input is ``CorruptObject``."""
        try:
            s = obj["set"]
            ids = split_hex(s["ids"], ID_HEX, strict=strict)
            labels, sources, times = decode_col(s["label"]), decode_col(s["source"]), decode_col(s["time"])
            if not (len(ids) == len(labels) == len(sources) == len(times)):
                raise ValueError("the label set's columns have different lengths")
            add = [check_oid(oid, "segment id") for oid in obj["add"]]
            sets = {i: (_str(lab), _str(src), int(t or 0)) for i, lab, src, t in zip(ids, labels, sources, times)}
            return cls(add=add, remove=split_hex(obj["remove"], ID_HEX, strict=strict), set=sets)
        except (KeyError, TypeError, ValueError, OverflowError) as e:
            raise CorruptObject(f"a change set is malformed ({e!r}); run 'kiln fsck'") from None


class Segment:
    """The decoded rows of one segment object."""

    def __init__(self, ids: list[str], blobs: list[str], cols: dict[str, list[Value]]) -> None:
        self.ids, self.blobs, self.cols = ids, blobs, cols

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, rows: Sequence[int]) -> Segment:
        """A segment of the rows numbered in ``rows``, in that order."""
        cols = {k: [v[j] for j in rows] for k, v in self.cols.items()}
        return Segment([self.ids[j] for j in rows], [self.blobs[j] for j in rows], cols)

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "segment",
            "ids": join_hex(self.ids),
            "blobs": join_hex(self.blobs),
            "columns": {k: encode_col(v) for k, v in sorted(self.cols.items())},
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any], oid: str, *, strict: bool = False) -> Segment:
        """Decode a segment object; ``strict`` (fsck) also checks every id character."""
        try:
            ids = split_hex(obj["ids"], ID_HEX, strict=strict)
            blobs = split_hex(obj["blobs"], BLOB_HEX, strict=strict)
            cols = {k: decode_col(v) for k, v in obj["columns"].items()}
        except (KeyError, TypeError, IndexError, AttributeError, CorruptObject) as e:
            raise CorruptObject(f"segment {oid} is malformed ({e}); run 'kiln fsck'") from None
        if len(blobs) != len(ids) or any(len(c) != len(ids) for c in cols.values()):
            raise CorruptObject(f"segment {oid} has columns of different lengths; run 'kiln fsck'")
        if strict and len(set(ids)) != len(ids):
            raise CorruptObject(f"segment {oid} lists an example id twice; run 'kiln fsck'")
        for k in CORE:
            cols.setdefault(k, [None] * len(ids))
        return cls(ids, blobs, cols)


class SegmentCache:
    """Decoded segments by id; segments are immutable, so entries never go stale."""

    def __init__(self, store: ObjectStore, capacity: int = 64) -> None:
        self.store = store
        self.capacity = capacity
        self._items: OrderedDict[str, Segment] = OrderedDict()

    def get(self, oid: str) -> Segment:
        seg = self._items.get(oid)
        if seg is None:
            obj = self.store.get_json(oid)
            kind = obj.get("type") if isinstance(obj, dict) else type(obj).__name__
            if kind != "segment":
                raise CorruptObject(f"object {oid} is a {kind!r}, expected a segment")
            seg = Segment.from_json(obj, oid)
            self._items[oid] = seg
            if len(self._items) > self.capacity:
                with contextlib.suppress(KeyError):  # another thread (a server's) evicted it first
                    self._items.popitem(last=False)
        else:
            with contextlib.suppress(KeyError):
                self._items.move_to_end(oid)
        return seg


class Table:
    """The rows of a table as columns, in insertion order, with an id index.

    ``cols`` holds every column by name (core columns plus ``meta:<name>``); ``seg`` holds, per
    row, the index into ``segments`` of the segment the row came from (merges and snapshots
    need it).
    """

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.blobs: list[str] = []
        self.cols: dict[str, list[Value]] = {k: [] for k in CORE}
        self.segments: list[str] = []
        self.seg: list[int] = []
        self.index: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, example_id: object) -> bool:
        return example_id in self.index

    # ---- reading -------------------------------------------------------------------------
    def get(self, example_id: str, col: str) -> Value:
        return self.cols[col][self.index[example_id]]

    def label_of(self, example_id: str) -> LabelSet:
        i = self.index[example_id]
        c = self.cols
        return _str(c["label"][i]), _str(c["source"][i]), int(c["time"][i] or 0)

    def meta_names(self) -> list[str]:
        return sorted(k[len(META_PREFIX) :] for k in self.cols if k.startswith(META_PREFIX))

    def row(self, i: int, metas: list[str] | None = None) -> Row:
        """One row as a plain dict (the shape of ``kiln ls --json``)."""
        c = self.cols
        metas = self.meta_names() if metas is None else metas
        return {
            "id": self.ids[i],
            "label": c["label"][i],
            "split": c["split"][i],
            "source": c["source"][i],
            "time": c["time"][i],
            "name": c["name"][i],
            "blob": self.blobs[i],
            "format": c["format"][i],
            "width": c["width"][i],
            "height": c["height"][i],
            "meta": {m: c[META_PREFIX + m][i] for m in metas if c[META_PREFIX + m][i] is not None} if metas else {},
        }

    def stats(self) -> dict[str, int]:
        labels = self.cols["label"]
        return {"examples": len(self.ids), "labeled": sum(1 for v in labels if v is not None)}

    def label_vocab(self) -> set[str]:
        """Every distinct label of the table."""
        return {str(v) for v in set(self.cols["label"]) if v is not None}

    # ---- building ------------------------------------------------------------------------
    def add_segment(self, oid: str, seg: Segment, rows: Sequence[int] | None = None) -> list[int]:
        """Append the segment's rows (all, or those numbered in ``rows``) whose ids are absent.

        Returns the segment row numbers that were appended.
        """
        si = len(self.segments)
        self.segments.append(oid)
        for name in seg.cols:
            if name not in self.cols:
                self.cols[name] = [None] * len(self.ids)
        index, ids = self.index, self.ids
        kept: list[int] = []
        for j in range(len(seg)) if rows is None else rows:
            eid = seg.ids[j]
            if eid not in index:
                index[eid] = len(ids)
                ids.append(eid)
                kept.append(j)
        whole = len(kept) == len(seg)
        self.blobs.extend(seg.blobs if whole else [seg.blobs[j] for j in kept])
        self.seg.extend([si] * len(kept))
        for name, col in self.cols.items():
            src = seg.cols.get(name)
            if src is None:
                col.extend([None] * len(kept))
            else:
                col.extend(src if whole else [src[j] for j in kept])
        return kept

    def remove(self, ids: Sequence[str]) -> None:
        if not ids:
            return
        drop = {self.index[i] for i in ids if i in self.index}
        keep = [i for i in range(len(self.ids)) if i not in drop]
        self.ids = [self.ids[i] for i in keep]
        self.blobs = [self.blobs[i] for i in keep]
        self.seg = [self.seg[i] for i in keep]
        for name in self.cols:
            col = self.cols[name]
            self.cols[name] = [col[i] for i in keep]
        self.index = {eid: i for i, eid in enumerate(self.ids)}

    def set_labels(self, sets: dict[str, LabelSet]) -> None:
        lab, src, tim = self.cols["label"], self.cols["source"], self.cols["time"]
        for eid, (label, source, t) in sets.items():
            i = self.index.get(eid)
            if i is None:
                continue  # removed later in the same history; sets on absent rows are inert
            lab[i], src[i], tim[i] = label, source, t

    def apply(self, changes: Changes, segments: SegmentCache) -> None:
        for oid in changes.add:
            self.add_segment(oid, segments.get(oid))
        self.remove(changes.remove)
        self.set_labels(changes.set)

    def copy(self) -> Table:
        t = Table()
        t.ids, t.blobs, t.seg = list(self.ids), list(self.blobs), list(self.seg)
        t.cols = {k: list(v) for k, v in self.cols.items()}
        t.segments = list(self.segments)
        t.index = dict(self.index)
        return t


class Relabel(TypedDict):
    """One relabeled example in a diff."""

    id: str
    old: Value
    new: Value
    source: Value
    time: Value


class Diff(TypedDict):
    """The shape of ``kiln diff --json``: example ids added and removed, and relabeled rows."""

    added: list[str]
    removed: list[str]
    relabeled: list[Relabel]


class Row(TypedDict):
    """One example as ``kiln ls --json`` prints it."""

    id: str
    label: Value
    split: Value
    source: Value
    time: Value
    name: Value
    blob: str
    format: Value
    width: Value
    height: Value
    meta: dict[str, Value]


def diff_tables(a: Table, b: Table) -> Diff:
    """Row-level difference from ``a`` to ``b``: added, removed and relabeled examples."""
    added = [eid for eid in b.ids if eid not in a.index]
    removed = [eid for eid in a.ids if eid not in b.index]
    relabeled: list[Relabel] = []
    la, lb = a.cols["label"], b.cols["label"]
    for i, eid in enumerate(b.ids):
        j = a.index.get(eid)
        if j is not None and la[j] != lb[i]:
            relabeled.append(
                {"id": eid, "old": la[j], "new": lb[i], "source": b.cols["source"][i], "time": b.cols["time"][i]}
            )
    return {"added": added, "removed": removed, "relabeled": relabeled}


def confirmed_rows(a: Table, b: Table) -> list[str]:
    """Examples with the same label in ``a`` and ``b`` but a new label source: a person confirmed
    a label (``kiln keep``, or accepting a seeded one). ``diff_tables`` leaves them out."""
    la, sa, lb, sb = a.cols["label"], a.cols["source"], b.cols["label"], b.cols["source"]
    return [
        eid for i, eid in enumerate(b.ids) if (j := a.index.get(eid)) is not None and la[j] == lb[i] and sa[j] != sb[i]
    ]
