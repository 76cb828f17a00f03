"""State indexes: a state's example ids, sorted, with each example's label, label source and time.

``kiln label ID LABEL`` must resolve a prefix, read the label HEAD has and the label the stage
has, and count labeled examples. Materializing the table for that costs 0.3 s at 100,000 rows;
an index answers in microseconds after reading a few MB. Indexes are a cache, not part of the
repository: ``.kiln/cache/index/<state id>``, written without fsync (a torn file is detected by
its length and rebuilt). A state whose deltas since a cached ancestor only set labels gets that
index plus the deltas' labels, in memory, and a file of its own only every ``WRITE_EVERY``
deltas; any other state is indexed from its table. Only the newest few files are kept.

File layout: ``KILNIDS1``, a 4-byte big-endian header length, a JSON header
``{"n", "labels", "sources", "counts"}``, then ``n`` sorted 16-byte ids, ``n`` int32 label codes,
``n`` int32 source codes (-1 for none) and ``n`` int64 times, little-endian.
"""

from __future__ import annotations

import bisect
import json
import os
import sys
from array import array
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import ExampleNotFound
from ..store.fsutil import temp_path
from ..store.objects import ObjectStore
from .revs import example_prefix, one_example
from .state import load_table, state_header
from .table import Changes, LabelSet, SegmentCache, Table

MAGIC = b"KILNIDS1"
KEEP = 4  # index files kept: HEAD's, and a few for switching branches
CHAIN_MAX = 64  # delta ancestors searched for a cached index
WRITE_EVERY = 16  # a derived index is written once this many deltas separate it from the cached one
ID_BYTES = 16


class _Ids:
    """The sorted id column as a sequence ``bisect`` can search (no copy of 1.6 MB)."""

    def __init__(self, buf: bytes | bytearray) -> None:
        self.buf = buf

    def __len__(self) -> int:
        return len(self.buf) // ID_BYTES

    def __getitem__(self, i: int) -> bytes:
        return bytes(self.buf[i * ID_BYTES : (i + 1) * ID_BYTES])


class StateIndex:
    """One state's example ids, sorted, with their labels (see the module docstring)."""

    def __init__(
        self, ids: bytearray, labels: array[int], sources: array[int], times: array[int], vocab: tuple[list[Any], ...]
    ) -> None:
        self.ids, self.labels, self.sources, self.times = ids, labels, sources, times
        self.label_vocab, self.source_vocab = vocab
        self._keys = _Ids(ids)

    def __len__(self) -> int:
        return len(self.labels)

    # ---- reading -------------------------------------------------------------------------
    def row(self, eid: str) -> int | None:
        raw = bytes.fromhex(eid)
        i = bisect.bisect_left(self._keys, raw)
        return i if i < len(self) and self._keys[i] == raw else None

    def __contains__(self, eid: object) -> bool:
        return isinstance(eid, str) and len(eid) == 2 * ID_BYTES and self.row(eid) is not None

    def find(self, prefix: str, *, absent: Iterable[str] = ()) -> str:
        """The one id starting with ``prefix`` (ids in ``absent``, removed since, do not count)."""
        p = example_prefix(prefix)
        gone = set(absent)
        i = bisect.bisect_left(self._keys, bytes.fromhex(p.ljust(2 * ID_BYTES, "0")))
        hits: list[str] = []
        while i < len(self) and len(hits) < 5:
            eid = self._keys[i].hex()
            if not eid.startswith(p):
                break
            if eid not in gone:
                hits.append(eid)
            i += 1
        return one_example(prefix, hits)

    def label_of(self, eid: str) -> LabelSet:
        i = self.row(eid)
        if i is None:
            raise ExampleNotFound(f"no example {eid[:12]} in this state")
        lab, src = self.labels[i], self.sources[i]
        return (
            None if lab < 0 else self.label_vocab[lab],
            None if src < 0 else self.source_vocab[src],
            self.times[i],
        )

    def label_names(self) -> set[str]:
        """Every distinct label an example has."""
        return {str(self.label_vocab[code]) for code in set(self.labels) if code >= 0}

    def stats(self) -> dict[str, int]:
        return {"examples": len(self), "labeled": len(self) - self.labels.count(-1)}

    # ---- building ------------------------------------------------------------------------
    @classmethod
    def of_table(cls, table: Table) -> StateIndex:
        order = sorted(range(len(table)), key=table.ids.__getitem__)
        vocab: tuple[dict[Any, int], dict[Any, int]] = ({}, {})
        ids = bytearray(b"".join(bytes.fromhex(table.ids[i]) for i in order))
        c = table.cols
        labels = array("i", (_code(vocab[0], c["label"][i]) for i in order))
        sources = array("i", (_code(vocab[1], c["source"][i]) for i in order))
        times = array("q", (int(c["time"][i] or 0) for i in order))
        return cls(ids, labels, sources, times, (list(vocab[0]), list(vocab[1])))

    def with_sets(self, sets: dict[str, LabelSet]) -> StateIndex | None:
        """A copy with labels set (a delta that only sets labels), or None if an id is missing."""
        labels, sources, times = array("i", self.labels), array("i", self.sources), array("q", self.times)
        vocab = ({v: k for k, v in enumerate(self.label_vocab)}, {v: k for k, v in enumerate(self.source_vocab)})
        for eid, (lab, src, t) in sets.items():
            i = self.row(eid)
            if i is None:
                return None  # set on a row the delta's base lacks: let the table decide
            labels[i], sources[i], times[i] = _code(vocab[0], lab), _code(vocab[1], src), int(t or 0)
        return StateIndex(bytearray(self.ids), labels, sources, times, (list(vocab[0]), list(vocab[1])))

    # ---- the file ------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        head = json.dumps({"n": len(self), "labels": self.label_vocab, "sources": self.source_vocab}).encode()
        parts = [MAGIC, len(head).to_bytes(4, "big"), head, bytes(self.ids)]
        for a in (self.labels, self.sources, self.times):
            b = array(a.typecode, a)
            if sys.byteorder != "little":
                b.byteswap()
            parts.append(b.tobytes())
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes) -> StateIndex:
        if data[:8] != MAGIC:
            raise ValueError("not an id index")
        size = int.from_bytes(data[8:12], "big")
        head = json.loads(data[12 : 12 + size])
        n, pos = int(head["n"]), 12 + size
        ids = bytearray(data[pos : pos + n * ID_BYTES])
        pos += n * ID_BYTES
        cols = []
        for code, width in (("i", 4), ("i", 4), ("q", 8)):
            a = array(code)
            a.frombytes(data[pos : pos + n * width])
            if sys.byteorder != "little":
                a.byteswap()
            cols.append(a)
            pos += n * width
        if pos != len(data) or len(ids) != n * ID_BYTES:
            raise ValueError("the index is truncated")
        return cls(ids, cols[0], cols[1], cols[2], (list(head["labels"]), list(head["sources"])))


def _code(vocab: dict[Any, int], value: Any) -> int:
    if value is None:
        return -1
    return vocab.setdefault(value, len(vocab))


class StateIndexes:
    """Id indexes by state id, from the cache folder, a parent's index plus a delta, or the table."""

    def __init__(self, store: ObjectStore, segments: SegmentCache, folder: Path, tmp_dir: Path) -> None:
        self.store, self.segments, self.folder, self.tmp_dir = store, segments, folder, tmp_dir
        self._last: tuple[str, StateIndex] | None = None

    def of_state(self, state: str) -> StateIndex:
        if self._last is not None and self._last[0] == state:
            return self._last[1]
        index = self._read(state) or self._derive(state)
        self._last = (state, index)
        return index

    def _path(self, state: str) -> Path:
        return self.folder / state

    def _read(self, state: str) -> StateIndex | None:
        try:
            return StateIndex.from_bytes(self._path(state).read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            return None  # a torn or foreign cache file: rebuilt below

    def _derive(self, state: str) -> StateIndex:
        """From the newest cached index among the state's delta ancestors, when every delta since
        only set labels (a label-and-commit loop: milliseconds), else from the table. A derived
        index is written only every ``WRITE_EVERY`` deltas, so a one-label commit does not cost a
        new copy of the index on disk."""
        sets, sid, base = [], state, None
        for _ in range(CHAIN_MAX):
            obj = state_header(self.store, sid)
            if obj["type"] != "delta":
                break
            changes = Changes.from_json(obj)
            if changes.add or changes.remove:
                break
            sets.append(changes.set)
            sid = obj["base"]
            base = self._read(sid)
            if base is not None:
                break
        combined: dict[str, LabelSet] = {}
        for s in reversed(sets):  # oldest first: a later set wins
            combined.update(s)
        index = base.with_sets(combined) if base is not None else None
        if index is None:
            index = StateIndex.of_table(load_table(self.store, state, self.segments))
            self._write(state, index)
        elif len(sets) >= WRITE_EVERY:
            self._write(state, index)
        return index

    def _write(self, state: str, index: StateIndex) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = temp_path(self.tmp_dir, "index")
            tmp.write_bytes(index.to_bytes())
            os.replace(tmp, self._path(state))  # no fsync: a cache; a torn file fails from_bytes
            self._prune()
        except OSError:
            pass  # a cache that cannot be written is only slower

    def _prune(self) -> None:
        files = sorted(self.folder.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in files[KEEP:]:
            old.unlink(missing_ok=True)
