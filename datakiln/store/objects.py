"""The object store: immutable objects named by the sha256 of their content.

An object's *content* is bytes (an image, or canonical JSON for structured objects). Its id is
``sha256(content)`` in hex. On disk an object is stored as one tag byte and a payload: ``r`` +
content (raw, for images that are already compressed) or ``z`` + zlib(content). Objects live
either loose (``objects/ab/cdef...``, one file each) or in packs (``objects/pack/*.pack`` with a
sorted ``.idx``), which is how an import of 100,000 images costs one fsync instead of 100,000.
See docs/format.md for the byte layout.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import mmap
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import CorruptObject, MissingObject
from .fsutil import fsync_dir, publish, temp_path

PACK_MAGIC = b"KILNPACK"
IDX_MAGIC = b"KILNIDX\0"
FORMAT_VERSION = 1
# id (32) + offset (8) + stored length (4)
IDX_RECORD = struct.Struct(">32sQI")
IDX_HEADER = struct.Struct(">8sII")  # magic, version, count
PACK_HEADER = struct.Struct(">8sI")  # magic, version


def object_id(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


# Above this size zlib level 1: a 100,000-row segment compresses 3x faster for ~10% more bytes,
# and the level is the writer's choice (readers only inflate; ids hash the content).
FAST_COMPRESS_OVER = 1 << 20


def encode(content: bytes, *, compress: bool) -> bytes:
    if not compress:
        return b"r" + content
    return b"z" + zlib.compress(content, 1 if len(content) > FAST_COMPRESS_OVER else 6)


def decode(stored: bytes | memoryview, oid: str, where: str) -> bytes:
    tag = bytes(stored[:1])
    try:
        if tag == b"r":
            content = bytes(stored[1:])
        elif tag == b"z":
            content = zlib.decompress(stored[1:])
        else:
            raise ValueError(f"unknown storage tag {tag!r}")
    except (ValueError, zlib.error) as e:
        raise CorruptObject(f"object {oid} in {where} cannot be decoded ({e}); run 'kiln fsck'") from None
    if object_id(content) != oid:
        raise CorruptObject(
            f"object {oid} in {where} does not match its hash (the bytes on disk changed); "
            "run 'kiln fsck' to list damaged objects and restore them from a clone"
        )
    return content


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class _Keys:
    """The sorted id column of a pack index, as a sequence ``bisect`` can search."""

    def __init__(self, buf: bytes, count: int) -> None:
        self.buf, self.count = buf, count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> bytes:
        start = IDX_HEADER.size + i * IDX_RECORD.size
        return self.buf[start : start + 32]


class Pack:
    """One pack file and its index, read-only."""

    def __init__(self, idx_path: Path) -> None:
        self.idx_path = idx_path
        self.pack_path = idx_path.with_suffix(".pack")
        self.idx = idx_path.read_bytes()
        magic, version, self.count = IDX_HEADER.unpack_from(self.idx)
        expected = IDX_HEADER.size + self.count * IDX_RECORD.size + 64
        if magic != IDX_MAGIC or version != FORMAT_VERSION or len(self.idx) != expected:
            raise CorruptObject(f"pack index {idx_path} is damaged; run 'kiln fsck'")
        self.keys = _Keys(self.idx, self.count)
        self._map: mmap.mmap | None = None

    def _mapped(self) -> mmap.mmap:
        if self._map is None:
            with open(self.pack_path, "rb") as f:
                self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        return self._map

    def find(self, raw_id: bytes) -> tuple[int, int] | None:
        i = bisect.bisect_left(self.keys, raw_id)
        if i < self.count and self.keys[i] == raw_id:
            _, offset, length = IDX_RECORD.unpack_from(self.idx, IDX_HEADER.size + i * IDX_RECORD.size)
            return offset, length
        return None

    def read(self, oid: str) -> bytes | None:
        loc = self.find(bytes.fromhex(oid))
        if loc is None:
            return None
        offset, length = loc
        data = self._mapped()
        if offset + length > len(data):
            raise CorruptObject(f"object {oid}: pack {self.pack_path.name} is truncated; run 'kiln fsck'")
        return decode(memoryview(data)[offset : offset + length], oid, self.pack_path.name)

    def entries(self) -> Iterator[tuple[str, int, int]]:
        for i in range(self.count):
            raw, offset, length = IDX_RECORD.unpack_from(self.idx, IDX_HEADER.size + i * IDX_RECORD.size)
            yield raw.hex(), offset, length

    def stored(self, offset: int, length: int) -> bytes:
        return bytes(self._mapped()[offset : offset + length])

    def raw_ids(self) -> Iterator[bytes]:
        for i in range(self.count):
            yield self.keys[i]

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None


class PackWriter:
    """Streams objects into a new pack; ``finish`` publishes it atomically (idx renamed last)."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self.tmp = temp_path(store.tmp_dir, "pack")
        self.f = open(self.tmp, "wb", buffering=1 << 20)
        header = PACK_HEADER.pack(PACK_MAGIC, FORMAT_VERSION)
        self.f.write(header)
        self.hasher = hashlib.sha256(header)
        self.records: dict[bytes, tuple[int, int]] = {}
        self.offset = PACK_HEADER.size

    def add(self, oid: str, stored: bytes) -> None:
        raw = bytes.fromhex(oid)
        if raw in self.records:
            return
        self.f.write(stored)
        self.hasher.update(stored)
        self.records[raw] = (self.offset, len(stored))
        self.offset += len(stored)

    def __len__(self) -> int:
        return len(self.records)

    def abort(self) -> None:
        self.f.close()
        self.tmp.unlink(missing_ok=True)

    def finish(self) -> str | None:
        """Publish the pack; returns its name, or None if it holds nothing."""
        if not self.records:
            self.abort()
            return None
        body_hash = self.hasher.digest()
        self.f.write(body_hash)
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()
        name = "pack-" + body_hash.hex()
        idx = bytearray(IDX_HEADER.pack(IDX_MAGIC, FORMAT_VERSION, len(self.records)))
        for raw in sorted(self.records):
            offset, length = self.records[raw]
            idx += IDX_RECORD.pack(raw, offset, length)
        idx += body_hash
        idx += hashlib.sha256(bytes(idx)).digest()
        pack_dir = self.store.pack_dir
        publish(self.tmp, pack_dir / f"{name}.pack")
        idx_tmp = temp_path(self.store.tmp_dir, name + ".idx")
        with open(idx_tmp, "wb") as f:
            f.write(idx)
            f.flush()
            os.fsync(f.fileno())
        # The index appears last: readers only see packs whose index exists.
        publish(idx_tmp, pack_dir / f"{name}.idx")
        self.store.invalidate()
        return name


class ObjectStore:
    """Loose objects and packs under one ``objects`` directory."""

    def __init__(self, root: Path, tmp_dir: Path) -> None:
        self.root = root
        self.tmp_dir = tmp_dir
        self.pack_dir = root / "pack"
        self._packs: list[Pack] | None = None

    # ---- paths and pack list -------------------------------------------------------------
    def loose_path(self, oid: str) -> Path:
        return self.root / oid[:2] / oid[2:]

    def invalidate(self) -> None:
        if self._packs:
            for p in self._packs:
                p.close()
        self._packs = None

    def packs(self) -> list[Pack]:
        if self._packs is None:
            self._packs = [Pack(p) for p in sorted(self.pack_dir.glob("*.idx"))]
        return self._packs

    # ---- writing -------------------------------------------------------------------------
    def put(self, content: bytes, *, compress: bool = True) -> str:
        oid = object_id(content)
        if not self.has(oid):
            self._write_loose(oid, encode(content, compress=compress))
        return oid

    def put_json(self, obj: Any) -> str:
        return self.put(canonical_json(obj))

    def _write_loose(self, oid: str, stored: bytes) -> None:
        path = self.loose_path(oid)
        new_dir = not path.parent.exists()
        path.parent.mkdir(exist_ok=True)
        if new_dir:
            fsync_dir(self.root)
        tmp = temp_path(self.tmp_dir, oid[:16])
        with open(tmp, "wb") as f:
            f.write(stored)
            f.flush()
            os.fsync(f.fileno())
        publish(tmp, path)

    def pack_writer(self) -> PackWriter:
        return PackWriter(self)

    # ---- reading -------------------------------------------------------------------------
    def has(self, oid: str) -> bool:
        if self.loose_path(oid).exists():
            return True
        raw = bytes.fromhex(oid)
        return any(p.find(raw) is not None for p in self.packs())

    def get(self, oid: str) -> bytes:
        path = self.loose_path(oid)
        try:
            return decode(path.read_bytes(), oid, str(path))
        except FileNotFoundError:
            pass
        for _ in range(2):
            for pack in self.packs():
                content = pack.read(oid)
                if content is not None:
                    return content
            # A pack may have appeared (or been repacked by gc) since we listed them.
            self.invalidate()
        raise MissingObject(
            f"object {oid} is not in the store at {self.root}; run 'kiln fsck', and restore "
            "it by pulling from a clone that has it"
        )

    def get_json(self, oid: str) -> Any:
        try:
            return json.loads(self.get(oid))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CorruptObject(f"object {oid} is not valid JSON ({e}); run 'kiln fsck'") from None

    def packed_ids(self) -> set[bytes]:
        out: set[bytes] = set()
        for p in self.packs():
            out.update(p.raw_ids())
        return out

    def loose_ids(self) -> Iterator[str]:
        for sub in sorted(self.root.iterdir()):
            if len(sub.name) == 2 and sub.is_dir():
                for f in sub.iterdir():
                    if len(f.name) == 62:
                        yield sub.name + f.name
