"""Packs: many objects in one file, with a sorted index, so an import of 100,000 images costs one
fsync instead of 100,000.

``*.pack`` is a header (magic, version), the stored objects back to back, and the sha256 of all
that; ``*.idx`` is a header (magic, version, count), one record per object (raw id, offset, stored
length) sorted by id, the pack's checksum, and its own. The index is published last, so readers
only see complete packs. See docs/format.md for the byte layout.
"""

from __future__ import annotations

import bisect
import hashlib
import mmap
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CorruptObject
from .codec import decode
from .fsutil import publish, temp_path

if TYPE_CHECKING:
    from .objects import ObjectStore

PACK_MAGIC = b"KILNPACK"
IDX_MAGIC = b"KILNIDX\0"
FORMAT_VERSION = 1
# id (32) + offset (8) + stored length (4)
IDX_RECORD = struct.Struct(">32sQI")
IDX_HEADER = struct.Struct(">8sII")  # magic, version, count
PACK_HEADER = struct.Struct(">8sI")  # magic, version


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
        try:
            self.idx = idx_path.read_bytes()
        except OSError as e:
            raise CorruptObject(f"pack index {idx_path} cannot be read ({e.strerror or e}); run 'kiln fsck'") from None
        if len(self.idx) < IDX_HEADER.size:
            raise CorruptObject(f"pack index {idx_path} is truncated ({len(self.idx)} bytes); run 'kiln fsck'")
        magic, version, self.count = IDX_HEADER.unpack_from(self.idx)
        expected = IDX_HEADER.size + self.count * IDX_RECORD.size + 64
        if magic != IDX_MAGIC or version != FORMAT_VERSION or len(self.idx) != expected:
            raise CorruptObject(f"pack index {idx_path} is damaged; run 'kiln fsck'")
        self.keys = _Keys(self.idx, self.count)
        self._map: mmap.mmap | None = None
        self._locations: dict[bytes, tuple[int, int]] | None = None

    def _mapped(self) -> mmap.mmap:
        if self._map is None:
            try:
                with open(self.pack_path, "rb") as f:
                    self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            except (OSError, ValueError) as e:  # missing, a folder, or empty (mmap refuses 0 bytes)
                raise CorruptObject(
                    f"pack {self.pack_path} cannot be read ({e}); its index lists {self.count} object(s): run 'kiln fsck'"
                ) from None
        return self._map

    def locations(self) -> dict[bytes, tuple[int, int]]:
        """Raw id -> (offset, stored length) of every object, built once (one pass in C): a
        transfer of 100,000 objects looks each up in a dict instead of bisecting in Python."""
        if self._locations is None:
            records = memoryview(self.idx)[IDX_HEADER.size : IDX_HEADER.size + self.count * IDX_RECORD.size]
            self._locations = {raw: (off, n) for raw, off, n in IDX_RECORD.iter_unpack(records)}
        return self._locations

    def find(self, raw_id: bytes) -> tuple[int, int] | None:
        if self._locations is not None:
            return self._locations.get(raw_id)
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
        self.add_raw(bytes.fromhex(oid), stored)

    def add_raw(self, raw: bytes, stored: bytes) -> None:
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
