"""How an object is named and stored: its id is the sha256 of its content; on disk it is one tag
byte and a payload, ``r`` + content (raw, for images already compressed) or ``z`` + zlib(content).
"""

from __future__ import annotations

import hashlib
import json
import zlib
from typing import Any

from ..errors import CorruptObject

_HEX = frozenset("0123456789abcdef")
OID_LEN = 64


def is_oid(value: object) -> bool:
    """True for an object id: 64 lowercase hex digits, nothing else."""
    return isinstance(value, str) and len(value) == OID_LEN and _HEX.issuperset(value)


def check_oid(value: object, what: str = "object id") -> str:
    """``value`` if it is an object id. Ids read from objects, refs and working files pass here
    before they touch the filesystem: a forged ``../../etc/passwd`` or ``xx/dev/zero`` never does."""
    if not is_oid(value):
        raise CorruptObject(
            f"{what} {str(value)[:80]!r} is not an object id (64 lowercase hex digits); run 'kiln fsck'"
        )
    return value  # type: ignore[return-value]


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
