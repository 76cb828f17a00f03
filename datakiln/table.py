"""The versioned label table: one row per example, stored as segments, snapshots and deltas.

* A **segment** holds the rows one import added (ids, blob ids, names, splits, labels, label
  sources and times, image facts, metadata). Segments are immutable and shared by every commit
  that contains their rows, so an import is stored once.
* A **state** is the table as of one commit. It is either a **snapshot** (a list of segments,
  the rows since removed, and the label overrides since import) or a **delta** against a base
  state (segments added, ids removed, labels set). Commits write deltas, so a one-label edit costs
  a few hundred bytes; every ``MAX_DEPTH`` deltas (or once the chain has set ``MAX_CHAIN_ROWS``
  labels) a commit writes a snapshot instead, which bounds the work of reading any state.

All three are canonical JSON objects in the object store. Columns are dictionary-encoded
(``{"values": [...], "codes": [...]}``) and id columns are hex strings concatenated, which keeps
them small after zlib and fast to parse. See docs/format.md.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import CorruptObject
from .store.objects import ObjectStore

ID_HEX = 32  # example ids: 128 bits as hex
BLOB_HEX = 64  # blob ids: sha256 as hex
SPLITS = ("train", "valid", "test")
# Columns a commit can change; everything else is fixed when the example is imported.
MUTABLE = ("label", "source", "time")
# Columns every segment has; user metadata columns are stored as "meta:<name>".
CORE = ("name", "split", "label", "source", "time", "format", "width", "height", "mode")
META_PREFIX = "meta:"
MAX_DEPTH = 100
MAX_CHAIN_ROWS = 250_000

Value = str | int | None
LabelSet = tuple[str | None, str | None, int]  # (label, source, time)


def encode_col(values: Iterable[Value]) -> dict[str, list[Any]]:
    """Dictionary-encode a column: distinct values once, then one small int per row."""
    table: dict[Value, int] = {}
    codes = [table.setdefault(v, len(table)) for v in values]
    return {"values": list(table), "codes": codes}


def decode_col(col: dict[str, list[Any]]) -> list[Value]:
    values = col["values"]
    return [values[c] for c in col["codes"]]


def _str(v: Value) -> str | None:
    return None if v is None else str(v)


def join_hex(ids: Iterable[str]) -> str:
    return "".join(ids)


def split_hex(s: str, width: int) -> list[str]:
    if len(s) % width:
        raise CorruptObject(f"id column of length {len(s)} is not a multiple of {width}")
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
    def from_json(cls, obj: dict[str, Any]) -> Changes:
        s = obj["set"]
        ids = split_hex(s["ids"], ID_HEX)
        cols = zip(decode_col(s["label"]), decode_col(s["source"]), decode_col(s["time"]))
        return cls(
            add=list(obj["add"]),
            remove=split_hex(obj["remove"], ID_HEX),
            set={i: (_str(lab), _str(src), int(t or 0)) for i, (lab, src, t) in zip(ids, cols)},
        )


class Segment:
    """The decoded rows of one segment object."""

    def __init__(self, ids: list[str], blobs: list[str], cols: dict[str, list[Value]]) -> None:
        self.ids, self.blobs, self.cols = ids, blobs, cols

    def __len__(self) -> int:
        return len(self.ids)

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "segment",
            "ids": join_hex(self.ids),
            "blobs": join_hex(self.blobs),
            "columns": {k: encode_col(v) for k, v in sorted(self.cols.items())},
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any], oid: str) -> Segment:
        try:
            ids = split_hex(obj["ids"], ID_HEX)
            blobs = split_hex(obj["blobs"], BLOB_HEX)
            cols = {k: decode_col(v) for k, v in obj["columns"].items()}
        except (KeyError, TypeError, IndexError) as e:
            raise CorruptObject(f"segment {oid} is malformed ({e!r}); run 'kiln fsck'") from None
        if len(blobs) != len(ids) or any(len(c) != len(ids) for c in cols.values()):
            raise CorruptObject(f"segment {oid} has columns of different lengths; run 'kiln fsck'")
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
            if obj.get("type") != "segment":
                raise CorruptObject(f"object {oid} is a {obj.get('type')!r}, expected a segment")
            seg = Segment.from_json(obj, oid)
            self._items[oid] = seg
            if len(self._items) > self.capacity:
                self._items.popitem(last=False)
        else:
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

    def row(self, i: int, metas: list[str] | None = None) -> dict[str, Any]:
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


# ---- states: snapshots and deltas -------------------------------------------------------


def snapshot_json(table: Table, segments: SegmentCache) -> dict[str, Any]:
    """A snapshot of ``table``: its live segments, removed rows, and labels changed since import."""
    # dict.fromkeys keeps first-seen order and drops a segment listed twice.
    seg_ids = list(dict.fromkeys(table.segments[s] for s in sorted(set(table.seg))))
    dead: list[int] = []
    over_pos: list[int] = []
    over: list[LabelSet] = []
    pos = 0
    for oid in seg_ids:
        seg = segments.get(oid)
        for j, eid in enumerate(seg.ids):
            i = table.index.get(eid)
            if i is None or table.segments[table.seg[i]] != oid:
                dead.append(pos + j)
                continue
            now = table.label_of(eid)
            then = (seg.cols["label"][j], seg.cols["source"][j], seg.cols["time"][j])
            if now != then:
                over_pos.append(pos + j)
                over.append(now)
        pos += len(seg)
    return {
        "type": "snapshot",
        "depth": 0,
        "chain_rows": 0,
        "segments": seg_ids,
        "dead": dead,
        "set": {
            "positions": over_pos,
            "label": encode_col(o[0] for o in over),
            "source": encode_col(o[1] for o in over),
            "time": encode_col(o[2] for o in over),
        },
    }


def table_from_snapshot(obj: dict[str, Any], segments: SegmentCache) -> Table:
    table = Table()
    dead = set(obj["dead"])
    s = obj["set"]
    overrides = dict(zip(s["positions"], zip(decode_col(s["label"]), decode_col(s["source"]), decode_col(s["time"]))))
    pos = 0
    for oid in obj["segments"]:
        seg = segments.get(oid)
        rows = [j for j in range(len(seg)) if pos + j not in dead] if dead else None
        kept = table.add_segment(oid, seg, rows)
        if len(kept) != (len(seg) if rows is None else len(rows)):
            raise CorruptObject("snapshot has two live rows with one example id; run 'kiln fsck'")
        if overrides:
            start = len(table) - len(kept)
            for k, j in enumerate(kept):
                o = overrides.get(pos + j)
                if o is not None:
                    i = start + k
                    table.cols["label"][i], table.cols["source"][i], table.cols["time"][i] = o
        pos += len(seg)
    return table


def delta_json(base: str, base_obj: dict[str, Any], changes: Changes) -> dict[str, Any]:
    obj = changes.to_json()
    obj.update(
        type="delta",
        base=base,
        depth=int(base_obj.get("depth", 0)) + 1,
        chain_rows=int(base_obj.get("chain_rows", 0)) + len(changes.set) + len(changes.remove),
    )
    return obj


def needs_snapshot(delta: dict[str, Any]) -> bool:
    return bool(delta["depth"] >= MAX_DEPTH or delta["chain_rows"] >= MAX_CHAIN_ROWS)


def state_header(store: ObjectStore, state: str) -> dict[str, Any]:
    obj = store.get_json(state)
    if obj.get("type") not in ("snapshot", "delta"):
        raise CorruptObject(f"object {state} is a {obj.get('type')!r}, expected a table state")
    return obj  # type: ignore[no-any-return]


def load_table(store: ObjectStore, state: str | None, segments: SegmentCache) -> Table:
    """Materialize the table of a state: its snapshot, then each delta in order."""
    if state is None:
        return Table()
    chain: list[dict[str, Any]] = []
    obj = state_header(store, state)
    while obj["type"] == "delta":
        chain.append(obj)
        if len(chain) > MAX_DEPTH * 10:
            raise CorruptObject(f"state {state} has a delta chain longer than {MAX_DEPTH * 10}")
        obj = state_header(store, obj["base"])
    table = table_from_snapshot(obj, segments)
    for d in reversed(chain):
        table.apply(Changes.from_json(d), segments)
    return table


def state_refs(obj: dict[str, Any]) -> list[str]:
    """Object ids a state refers to directly (for fsck, gc and push)."""
    if obj["type"] == "snapshot":
        return list(obj["segments"])
    return [obj["base"], *obj["add"]]


def diff_tables(a: Table, b: Table) -> dict[str, Any]:
    """Row-level difference from ``a`` to ``b``: added, removed and relabeled examples."""
    added = [eid for eid in b.ids if eid not in a.index]
    removed = [eid for eid in a.ids if eid not in b.index]
    relabeled = []
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
