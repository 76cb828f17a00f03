"""Table states: the table as of one commit, a snapshot or a delta against another state.

A **snapshot** lists segments, the rows since removed and the labels changed since import; a
**delta** names its base state and the segments it adds, the ids it removes and the labels it
sets. Commits write deltas, so a one-label edit costs a few hundred bytes; every ``MAX_DEPTH``
deltas (or once the chain has set ``MAX_CHAIN_ROWS`` labels) a commit writes a snapshot instead,
which bounds the work of reading any state. See docs/format.md.
"""

from __future__ import annotations

from typing import Any

from ..errors import CorruptObject
from ..store.objects import ObjectStore, check_oid
from .table import Changes, LabelSet, SegmentCache, Table, decode_col, encode_col

MAX_DEPTH = 100
MAX_CHAIN_ROWS = 250_000


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


def snapshot_overrides(obj: dict[str, Any]) -> dict[int, tuple[Any, Any, Any]]:
    """Row position -> (label, source, time) of every label a snapshot changed since import."""
    s = obj["set"]
    try:
        positions = s["positions"]
        cols = decode_col(s["label"]), decode_col(s["source"]), decode_col(s["time"])
        if not all(len(c) == len(positions) for c in cols):
            raise ValueError("the override columns have different lengths")
        if positions and not all(type(p) is int and p >= 0 for p in positions):
            raise ValueError("positions must be row numbers")
        return dict(zip(positions, zip(*cols)))
    except (KeyError, TypeError, ValueError) as e:
        raise CorruptObject(f"a snapshot's label overrides are malformed ({e!r}); run 'kiln fsck'") from None


def table_from_snapshot(obj: dict[str, Any], segments: SegmentCache) -> Table:
    table = Table()
    dead = set(obj["dead"])
    overrides = snapshot_overrides(obj)
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
    """A state object, its structure checked (not its columns: ``decode_state`` does that)."""
    return check_state(store.get_json(state), state)


def check_state(obj: Any, state: str) -> dict[str, Any]:
    """``obj`` if it is a well-formed state object (snapshot or delta) with id ``state``."""
    kind = obj.get("type") if isinstance(obj, dict) else type(obj).__name__
    if kind not in ("snapshot", "delta"):
        raise CorruptObject(f"object {state} is a {kind!r}, expected a table state (a snapshot or a delta)")
    try:
        _check_header(obj)
    except (KeyError, TypeError, ValueError) as e:
        raise CorruptObject(f"table state {state} is malformed ({e!r}); run 'kiln fsck'") from None
    return obj  # type: ignore[no-any-return]


def _check_header(obj: dict[str, Any]) -> None:
    for key in ("depth", "chain_rows"):
        if type(obj[key]) is not int or obj[key] < 0:
            raise ValueError(f"{key} must be a count")
    if not isinstance(obj["set"], dict):
        raise TypeError("set must be an object")
    if obj["type"] == "snapshot":
        for oid in obj["segments"]:
            check_oid(oid, "segment id")
        if not isinstance(obj["dead"], list) or not all(type(p) is int and p >= 0 for p in obj["dead"]):
            raise ValueError("dead must list row numbers")
    else:
        check_oid(obj["base"], "base state id")
        for oid in obj["add"]:
            check_oid(oid, "segment id")
        if not isinstance(obj["remove"], str):
            raise TypeError("remove must be a string of ids")


def decode_state(store: ObjectStore, state: str) -> dict[str, Any]:
    """A state with every column decoded and checked (``fsck``): damage raises ``CorruptObject``."""
    obj = state_header(store, state)
    if obj["type"] == "delta":
        Changes.from_json(obj, strict=True)
    else:
        snapshot_overrides(obj)
    return obj


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
    """Object ids a state refers to directly (for fsck, gc and push); ``obj`` passed ``state_header``."""
    if obj["type"] == "snapshot":
        return list(obj["segments"])
    return [obj["base"], *obj["add"]]


class Tables:
    """Materialized tables by state id, the last few kept: states are immutable, so an entry
    never goes stale. Callers get copies, which they may change."""

    def __init__(self, store: ObjectStore, segments: SegmentCache, capacity: int = 4) -> None:
        self.store, self.segments, self.capacity = store, segments, capacity
        self._tables: dict[str | None, Table] = {}

    def of_state(self, state: str | None) -> Table:
        table = self._tables.get(state)
        if table is None:
            table = load_table(self.store, state, self.segments)
            if len(self._tables) >= self.capacity:
                self._tables.clear()
            self._tables[state] = table  # a local, not a re-read: a server's other thread may clear the dict
        return table.copy()
