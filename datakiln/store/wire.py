"""The transfer pack: objects on the wire between a repository and a hub.

A pack file on disk needs its index to be read (offsets live in the ``.idx``); on the wire each
object carries its id and length, so the receiver can stream it straight into a new pack::

    "KILNWIRE" | u32 version=1 | u32 count | count x (id[32] | u32 length | stored object) | sha256(all before)

A stored object is the tag byte and payload of docs/format.md, so a packed image is copied from
the sender's pack to the receiver's without being decoded. The receiver checks every object's
hash as it arrives (inflating with a cap, so a zlib bomb costs nothing), the count and the
trailer; until ``Incoming.publish`` the objects sit in a temp file no reader sees, so a refused
or interrupted transfer changes nothing (``kiln gc`` removes the temp file a crash leaves).
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from collections.abc import Callable, Iterable
from typing import Any, BinaryIO

from ..errors import CorruptObject
from .objects import OBJECT_MAX, ObjectStore
from .packs import PackWriter

MAGIC = b"KILNWIRE"
VERSION = 1
HEADER = struct.Struct(">8sII")  # magic, version, count
RECORD = struct.Struct(">32sI")  # raw id, stored length
TRAILER = 32
COUNT_MAX = 50_000_000
STRUCTURED_MAX = 1 << 30  # bytes of commits, states and segments held to check a transfer (a 1M-row segment: ~60 MB)


def header(count: int) -> bytes:
    return HEADER.pack(MAGIC, VERSION, count)


def encode_stream(store: ObjectStore, oids: list[str]) -> Iterable[bytes]:
    """The transfer pack of ``oids`` (all present in ``store``), as chunks of about 1 MiB."""
    hasher = hashlib.sha256()
    buf = bytearray(header(len(oids)))
    for oid, stored in zip(oids, store.stored_many(oids)):
        buf += RECORD.pack(bytes.fromhex(oid), len(stored))
        buf += stored
        if len(buf) >= 1 << 20:
            hasher.update(buf)
            yield bytes(buf)
            buf.clear()
    hasher.update(buf)
    buf += hasher.digest()
    yield bytes(buf)


def encode(store: ObjectStore, oids: list[str]) -> bytes:
    return b"".join(encode_stream(store, oids))


def _content(stored: bytes, raw: bytes, where: str, cap: int = OBJECT_MAX) -> bytes:
    """The content of a stored object, hash checked; a zlib payload inflates to at most ``cap``."""
    oid = raw.hex()
    tag = stored[:1]
    if tag == b"r":
        content = stored[1:]
    elif tag == b"z":
        d = zlib.decompressobj()
        try:
            content = d.decompress(stored[1:], cap)
        except zlib.error as e:
            raise CorruptObject(f"object {oid} in {where} cannot be inflated ({e})") from None
        if d.unconsumed_tail or not d.eof:
            raise CorruptObject(f"object {oid} in {where} is truncated or inflates past {cap:,} bytes")
    else:
        raise CorruptObject(f"object {oid} in {where} has an unknown storage tag {tag!r}")
    if hashlib.sha256(content).digest() != raw:
        raise CorruptObject(f"object {oid} in {where} does not match its hash; the sender's copy is damaged")
    return content


class Incoming:
    """Objects received into a temp pack, checked and not yet visible.

    ``structured`` keeps the content of every zlib object (commits, states, segments: small) so
    the receiver can check that what it got is complete before ``publish``; images are not kept.
    """

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self.writer: PackWriter | None = store.pack_writer()
        self.ids: set[str] = set()
        self.structured: dict[str, bytes] = {}
        self.structured_bytes = 0

    def add(self, raw: bytes, stored: bytes, where: str) -> None:
        content = _content(stored, raw, where, max(0, min(OBJECT_MAX, STRUCTURED_MAX - self.structured_bytes)))
        oid = raw.hex()
        if stored[:1] == b"z":
            self.structured_bytes += len(content)
            if self.structured_bytes > STRUCTURED_MAX:
                raise CorruptObject(
                    f"{where} inflates to over {STRUCTURED_MAX:,} bytes of tables and commits; nothing was kept"
                )
            self.structured[oid] = content
        if self.writer is not None:
            self.writer.add_raw(raw, stored)
        self.ids.add(oid)

    def has(self, oid: str) -> bool:
        return oid in self.ids

    def publish(self) -> str | None:
        """Make the objects visible (one pack, its index renamed last); returns the pack name."""
        writer, self.writer = self.writer, None
        return writer.finish() if writer is not None else None

    def abort(self) -> None:
        writer, self.writer = self.writer, None
        if writer is not None:
            writer.abort()


class _Reader:
    """A stream read through a 1 MiB buffer: two small reads per object (its record, then its
    bytes) cost more than a 1 KiB image itself."""

    def __init__(self, stream: BinaryIO, where: str) -> None:
        self.stream, self.where = stream, where
        self.buf, self.pos = b"", 0
        self.hasher, self.hashed = hashlib.sha256(), 0  # the checksum of what was taken, by buffer

    def digest(self) -> bytes:
        """The sha256 of every byte taken so far."""
        self.hasher.update(memoryview(self.buf)[self.hashed : self.pos])
        self.hashed = self.pos
        return self.hasher.digest()

    def take(self, n: int) -> bytes:
        if len(self.buf) - self.pos < n:
            self.digest()
            parts, have = [self.buf[self.pos :]], len(self.buf) - self.pos
            while have < n:
                chunk = self.stream.read(max(n - have, 1 << 20))
                if not chunk:
                    raise CorruptObject(f"{self.where} ends early, {n - have:,} bytes short; retry the transfer")
                parts.append(chunk)
                have += len(chunk)
            self.buf, self.pos, self.hashed = b"".join(parts), 0, 0
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out


def _read_exact(stream: BinaryIO, n: int, where: str) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = stream.read(n - len(out))
        if not chunk:
            raise CorruptObject(f"{where} ends early: expected {n:,} more bytes, got {len(out):,}; retry the transfer")
        out += chunk
    return bytes(out)


def receive(
    store: ObjectStore,
    stream: BinaryIO,
    *,
    limit: int,
    where: str = "the transfer pack",
    progress: Callable[[int, int], None] | None = None,
) -> Incoming:
    """Read a transfer pack from ``stream`` into an ``Incoming`` (temp pack, unpublished).

    Raises ``CorruptObject`` naming the problem for a bad header, an object whose bytes do not
    match its id, a wrong trailer, or more than ``limit`` bytes; the temp file is removed then.
    """
    incoming = Incoming(store)
    try:
        _receive(incoming, stream, limit, where, progress)
    except BaseException:
        incoming.abort()
        raise
    return incoming


def _receive(
    incoming: Incoming, stream: BinaryIO, limit: int, where: str, progress: Callable[[int, int], None] | None
) -> None:
    reader = _Reader(stream, where)
    head = reader.take(HEADER.size)
    magic, version, count = HEADER.unpack(head)
    if magic != MAGIC or version != VERSION:
        raise CorruptObject(f"{where} is not a kiln transfer pack (version {VERSION}); is the URL a kiln hub?")
    if count > COUNT_MAX:
        raise CorruptObject(f"{where} claims {count:,} objects, over the limit of {COUNT_MAX:,}")
    total = HEADER.size
    for i in range(count):
        rec = reader.take(RECORD.size)
        raw, length = RECORD.unpack(rec)
        total += RECORD.size + length
        if total > limit or length > OBJECT_MAX + 1:
            raise CorruptObject(f"{where} is larger than the limit of {limit:,} bytes; nothing was kept")
        stored = reader.take(length)
        incoming.add(raw, stored, where)
        if progress is not None and (i % 512 == 0 or i == count - 1):
            progress(i + 1, count)
    if reader.digest() != reader.take(TRAILER):
        raise CorruptObject(f"{where} has a wrong checksum (bytes changed in transit); nothing was kept")


# ---- framing: a JSON header before a transfer pack in one body -------------------------------

FRAME = struct.Struct(">I")
FRAME_MAX = 64 << 20  # bytes of a header: refs and ids, never images


def frame(obj: object) -> bytes:
    """``obj`` as a length-prefixed JSON header (u32 big-endian length, then UTF-8 JSON)."""
    data = json.dumps(obj, separators=(",", ":")).encode()
    return FRAME.pack(len(data)) + data


def read_frame(stream: BinaryIO, where: str) -> Any:
    (n,) = FRAME.unpack(_read_exact(stream, FRAME.size, where))
    if n > FRAME_MAX:
        raise CorruptObject(f"{where} starts with a {n:,}-byte header, over the {FRAME_MAX:,}-byte limit")
    try:
        return json.loads(_read_exact(stream, n, where))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise CorruptObject(f"{where} starts with a header that is not JSON ({e})") from None
