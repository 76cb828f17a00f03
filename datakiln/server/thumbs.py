"""Images and thumbnails for ``kiln ui``, served by blob id (content-addressed, so cached forever).

A thumbnail is made once per blob and kept in ``.kiln/cache/thumbs/``: the original bytes when the
image already fits, else a downscaled JPEG (PNG when the image has transparency). The cache is
disposable: a file a crash lost is made again.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from ..errors import ExampleNotFound, InputError, MissingObject
from ..package.pixels import WIDE_GRAY, eight_bit
from ..store.fsutil import temp_path
from ..store.objects import ObjectStore

THUMB_MAX = 128  # pixels on the longer side: a gallery cell at 1x, sharp enough at 2x for small images
CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
_HEX = frozenset("0123456789abcdef")


def sniff(data: bytes) -> str | None:
    """The image format of ``data`` by its magic bytes: png, jpeg, webp or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def check_blob(blob: str) -> str:
    """``blob`` if it is a blob id (64 lowercase hex); it comes from a URL, so nothing else may pass."""
    if len(blob) != 64 or not _HEX.issuperset(blob):
        raise InputError(f"{blob[:80]!r} is not a blob id (64 hex digits)")
    return blob


def image(store: ObjectStore, blob: str) -> tuple[bytes, str]:
    """(bytes, content type) of an image blob; refuses store objects that are not images."""
    try:
        data = store.get(check_blob(blob))
    except MissingObject:
        data = b""
    fmt = sniff(data)
    if fmt is None:
        raise ExampleNotFound(f"no image {blob[:12]} in this repository")
    return data, CONTENT_TYPES[fmt]


def thumbnail(store: ObjectStore, cache: Path, tmp_dir: Path, blob: str) -> tuple[bytes, str]:
    """(bytes, content type) of the thumbnail of an image blob, made on first use."""
    path = cache / "thumbs" / check_blob(blob)[:2] / blob
    try:
        data = path.read_bytes()
        fmt = sniff(data)
        if fmt is not None:
            return data, CONTENT_TYPES[fmt]
    except FileNotFoundError:
        pass
    data, _ = image(store, blob)
    small = _shrink(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(tmp_dir, "thumb")
    with open(tmp, "wb") as f:
        f.write(small)
        f.flush()
        # The bytes reach the disk before the name does: a thumbnail is served as immutable, so a
        # torn one would be cached by browsers for good. (The folder is not synced: a rename a
        # crash loses only means the thumbnail is made again.)
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return small, CONTENT_TYPES[sniff(small) or "png"]


def _shrink(data: bytes) -> bytes:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as opened:
        wide = opened.mode in (*WIDE_GRAY, "F")
        if max(opened.size) <= THUMB_MAX and not wide:
            return data
        # 16-bit grayscale: browsers show it, but Pillow's conversion would clip it to white.
        im = eight_bit(opened) if wide else opened
        im.draft("RGB", (THUMB_MAX, THUMB_MAX))  # JPEG: decode at a reduced scale, much faster
        alpha = im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info
        small = im.convert("RGBA" if alpha else ("L" if im.mode in ("L", "1") else "RGB"))
        small.thumbnail((THUMB_MAX, THUMB_MAX), Image.Resampling.BILINEAR, reducing_gap=2.0)
        buf = io.BytesIO()
        if alpha:
            small.save(buf, format="PNG", optimize=False)
        else:
            small.save(buf, format="JPEG", quality=85)
        return buf.getvalue()
