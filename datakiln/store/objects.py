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
import json
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from ..errors import CorruptObject, MissingObject
from .codec import canonical_json, check_oid, decode, encode, is_oid, object_id
from .fsutil import fsync_dir, publish, read_regular, temp_path
from .packs import Pack, PackWriter

OBJECT_MAX = 1 << 30  # bytes of a stored object: images are at most 64 MiB, a table segment far less

__all__ = ["ObjectStore", "canonical_json", "check_oid", "decode", "encode", "is_oid", "object_id"]


class ObjectStore:
    """Loose objects and packs under one ``objects`` directory."""

    def __init__(self, root: Path, tmp_dir: Path) -> None:
        self.root = root
        self.tmp_dir = tmp_dir
        self.pack_dir = root / "pack"
        self._packs: list[Pack] | None = None
        # A partial clone's remote: fetches missing objects (blobs) into this store by id.
        self.promisor: Callable[[list[str]], None] | None = None
        self._stamp = -1

    # ---- paths and pack list -------------------------------------------------------------
    def loose_path(self, oid: str) -> Path:
        check_oid(oid)
        return self.root / oid[:2] / oid[2:]

    def invalidate(self) -> None:
        """Forget the pack list (a pack appeared or went); it is read again when next needed.
        The old packs are not closed here: another thread (the hub serves many) may be reading
        one; their maps close when nothing refers to them."""
        self._packs = None

    def packs(self) -> list[Pack]:
        packs = self._packs  # one read: another thread may invalidate between two
        if packs is None:
            self._stamp = self._pack_dir_stamp()
            packs = self._packs = [Pack(p) for p in sorted(self.pack_dir.glob("*.idx"))]
        return packs

    def _pack_dir_stamp(self) -> int:
        try:
            return self.pack_dir.stat().st_mtime_ns
        except OSError:
            return -1

    def refresh(self) -> bool:
        """Forget the pack list if the pack folder changed since it was read (a pack appeared, or
        gc repacked); True if it did. A lookup of an id nobody has then costs a stat, not a
        re-read of every index."""
        if self._pack_dir_stamp() == self._stamp:
            return False
        self.invalidate()
        return True

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

    def get(self, oid: str, *, fetch: bool = True) -> bytes:
        """The content of object ``oid``, hash checked; in a partial clone a missing object is
        fetched from the remote that promised it (unless ``fetch`` is False)."""
        path = self.loose_path(oid)
        try:
            return decode(read_regular(path, OBJECT_MAX), oid, str(path))
        except FileNotFoundError:
            pass
        except OSError as e:  # a folder, a device, unreadable: damage, named
            raise CorruptObject(
                f"{path} cannot be read as object {oid[:12]} ({e.strerror or e}); run 'kiln fsck'"
            ) from None
        content = self._packed(oid)
        if content is None and fetch and self.promisor is not None:
            self.promisor([oid])
            return self.get(oid, fetch=False)
        if content is not None:
            return content
        raise MissingObject(
            f"object {oid} is not in the store at {self.root}; run 'kiln fsck', and restore "
            "it by pulling from a clone that has it"
        )

    def _packed(self, oid: str) -> bytes | None:
        for _ in range(2):
            for pack in self.packs():
                content = pack.read(oid)
                if content is not None:
                    return content
            if not self.refresh():  # a pack may have appeared (or been repacked) since we listed them
                return None
        return None

    def missing(self, oids: Iterable[str]) -> list[str]:
        """The ids of ``oids`` this store lacks, in order, each once."""
        return [o for o in dict.fromkeys(oids) if not self.has(o)]

    def ensure(self, oids: Iterable[str]) -> int:
        """In a partial clone, fetch the objects of ``oids`` not here yet, in batches (one
        request each, not one per image); returns how many were fetched. Elsewhere a no-op."""
        if self.promisor is None:
            return 0
        todo = self.missing(oids)
        if todo:
            self.promisor(todo)
        return len(todo)

    def stored_many(self, oids: list[str]) -> Iterator[bytes]:
        """The stored form of each of ``oids``, in order: ``stored`` for many objects, looked up
        in the packs' id maps first (a clone sends 100,000 objects; a path per object is slow)."""
        packs = self.packs()
        maps = [(p, p.locations()) for p in packs] if len(oids) > 64 else []
        for oid in oids:
            raw = bytes.fromhex(oid)
            for pack, where in maps:
                loc = where.get(raw)
                if loc is not None:
                    yield pack.stored(*loc)
                    break
            else:
                yield self.stored(oid)

    def stored(self, oid: str) -> bytes:
        """The stored form of an object (tag byte and payload), unchecked: what a transfer
        sends, so a packed image crosses the wire without being decoded and encoded again.
        The receiver checks every hash."""
        try:
            return read_regular(self.loose_path(oid), OBJECT_MAX)
        except FileNotFoundError:
            pass
        for _ in range(2):
            raw = bytes.fromhex(oid)
            for pack in self.packs():
                loc = pack.find(raw)
                if loc is not None:
                    return pack.stored(*loc)
            if not self.refresh():
                break
        raise MissingObject(f"object {oid} is not in the store at {self.root}; run 'kiln fsck'")

    def get_json(self, oid: str) -> Any:
        try:
            return json.loads(self.get(oid))
        except (UnicodeDecodeError, ValueError, RecursionError) as e:  # ValueError: bad JSON, huge ints
            raise CorruptObject(f"object {oid} is not valid JSON ({e}); run 'kiln fsck'") from None

    def with_prefix(self, prefix: str) -> list[str]:
        """Ids of stored objects (loose or packed) that start with the hex ``prefix`` (2+ digits)."""
        hits: set[str] = set()
        sub = self.root / prefix[:2]
        if sub.is_dir():
            hits.update(prefix[:2] + f.name for f in sub.iterdir() if f.name.startswith(prefix[2:]))
        low = bytes.fromhex(prefix[: len(prefix) // 2 * 2])
        for pack in self.packs():
            i = bisect.bisect_left(pack.keys, low)
            while i < pack.count and pack.keys[i].startswith(low):
                oid = pack.keys[i].hex()
                if oid.startswith(prefix):
                    hits.add(oid)
                i += 1
        return sorted(h for h in hits if is_oid(h))

    def packed_ids(self) -> set[bytes]:
        out: set[bytes] = set()
        for p in self.packs():
            out.update(p.raw_ids())
        return out

    def loose_ids(self) -> Iterator[str]:
        for sub in sorted(self.root.iterdir()):
            if len(sub.name) == 2 and sub.is_dir():
                for f in sub.iterdir():
                    if is_oid(sub.name + f.name):
                        yield sub.name + f.name
