"""Checking image files before they enter a repository.

An image is accepted only if Pillow identifies it as PNG, JPEG or WebP from its bytes (not its
name), it is not larger than ``MAX_PIXELS`` (decompression bombs), and it decodes completely
(truncated files fail here, not later in training). Plain 8-bit PNGs, the bulk of most image
datasets, take ``fast_png``: the same complete check without Pillow's per-file overhead.
"""

from __future__ import annotations

import hashlib
import io
import struct
import unicodedata
import warnings
import zlib
from dataclasses import dataclass

from ..errors import BadImage, BadLabel

FORMATS = {"PNG": "png", "JPEG": "jpeg", "WEBP": "webp"}
CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
EXTENSIONS = {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}
# 40 megapixels: larger than any labelling photo we expect, far below what exhausts memory.
MAX_PIXELS = 40_000_000
# A single image file over 64 MiB is not a training example; refuse before reading it all.
MAX_BYTES = 64 << 20
MAX_LABEL_LEN = 200


@dataclass(frozen=True)
class ImageFacts:
    format: str  # png | jpeg | webp
    width: int
    height: int
    mode: str  # Pillow mode: L, RGB, RGBA, ...


def inspect_image(data: bytes, name: str) -> ImageFacts:
    """Decode ``data`` fully and return its facts, or raise ``BadImage`` naming ``name``."""
    if not data:
        raise BadImage(f"{name}: the file is empty (0 bytes); re-export it or remove it")
    if len(data) > MAX_BYTES:
        raise BadImage(f"{name}: {len(data)} bytes is over the {MAX_BYTES >> 20} MiB limit per image; downscale it")
    fast = fast_png(data)
    if fast is not None:
        return fast
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=list(FORMATS)) as im:
                fmt = FORMATS[str(im.format)]
                width, height = im.size
                if width * height > MAX_PIXELS:
                    raise BadImage(
                        f"{name}: {width}x{height} pixels is over the {MAX_PIXELS:,}-pixel limit "
                        "(a decompression bomb or a huge scan); downscale it before importing"
                    )
                im.load()
                mode = im.mode
    except BadImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise BadImage(f"{name}: refused as a decompression bomb ({e}); downscale it before importing") from None
    except UnidentifiedImageError:
        raise BadImage(
            f"{name}: not a PNG, JPEG or WebP image (by its bytes, whatever its name says); convert it or remove it"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError, KeyError, IndexError) as e:
        raise BadImage(f"{name}: the image is corrupt or truncated ({e}); re-export it or remove it") from None
    return ImageFacts(fmt, width, height, mode)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# 8-bit colour types the fast path knows: colour type -> (Pillow mode, channels).
_FAST_PNG_TYPES = {0: ("L", 1), 2: ("RGB", 3), 4: ("LA", 2), 6: ("RGBA", 4)}
# Chunks that change nothing Pillow decodes or checks; any other chunk sends the file to Pillow.
_INERT_CHUNKS = {b"gAMA", b"sRGB", b"pHYs", b"cHRM", b"tIME"}
_CHUNK_HEAD = struct.Struct(">I4s")
_IHDR = struct.Struct(">IIBBBBB")


def fast_png(data: bytes) -> ImageFacts | None:
    """Facts of a plain 8-bit, non-interlaced PNG, checked completely, or None to ask Pillow.

    Pillow spends ~25 us per small image in Python; importing 100,000 thumbnails is mostly that.
    This checks the same things for the common case (every chunk's CRC, the whole zlib stream and
    its exact length, every row's filter byte) in a few microseconds. It never rejects: anything
    unusual or wrong (palettes, 16 bits, interlacing, transparency, text chunks, damage) returns
    None, and Pillow decides and words the error.
    """
    if not data.startswith(PNG_SIGNATURE):
        return None
    view, size, pos = memoryview(data), len(data), len(PNG_SIGNATURE)
    idat: list[memoryview] = []
    ihdr: tuple[int, ...] | None = None
    idat_end = 0
    while True:
        if pos + 12 > size:
            return None
        length, kind = _CHUNK_HEAD.unpack_from(data, pos)
        body = pos + 8
        end = body + length + 4
        if end > size or zlib.crc32(view[pos + 4 : body + length]) != int.from_bytes(view[end - 4 : end]):
            return None
        if ihdr is None:
            if kind != b"IHDR" or length != _IHDR.size:
                return None
            ihdr = _IHDR.unpack_from(data, body)
        elif kind == b"IDAT":
            if idat and pos != idat_end:  # IDAT chunks must be consecutive
                return None
            idat.append(view[body : body + length])
            idat_end = end
        elif kind == b"IEND":
            break
        elif kind not in _INERT_CHUNKS:
            return None
        pos = end
    width, height, depth, colour, compression, filtering, interlace = ihdr
    if depth != 8 or colour not in _FAST_PNG_TYPES or compression or filtering or interlace or not idat:
        return None
    if not 0 < width * height <= MAX_PIXELS:
        return None
    mode, channels = _FAST_PNG_TYPES[colour]
    stride = 1 + width * channels
    expected = stride * height
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(b"".join(idat), expected + 1)
    except zlib.error:
        return None
    if len(raw) != expected or not inflater.eof or inflater.unused_data or max(raw[::stride]) > 4:
        return None
    return ImageFacts("png", width, height, mode)


def blob_id(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def example_id(blob: str, name: str) -> str:
    """A stable example id: the same file under the same name always gets the same id.

    Including the name lets two files with equal bytes stay two examples (the outlier finder
    reports them as exact duplicates) while their bytes are stored once.
    """
    h = hashlib.sha256(b"kiln-example\0" + blob.encode() + b"\0" + name.encode("utf-8"))
    return h.hexdigest()[:32]


def _bad_chars(text: str) -> list[str]:
    return [f"U+{ord(c):04X}" for c in text if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Zl", "Zp")]


def check_label(label: str, where: str) -> str:
    if label in _GOOD_LABELS:
        return label
    label = _check_label(label, where)
    if len(_GOOD_LABELS) < 10_000:
        _GOOD_LABELS.add(label)
    return label


# Labels repeat a lot (a class name per row); remember the ones already checked.
_GOOD_LABELS: set[str] = set()


def _check_label(label: str, where: str) -> str:
    """Return the label in NFC form, or raise ``BadLabel`` saying what is wrong and where."""
    label = unicodedata.normalize("NFC", label)
    bad = _bad_chars(label)
    if bad:
        raise BadLabel(f"{where}: label {label!r} contains control characters ({', '.join(bad[:5])}); remove them")
    if not label.strip():
        raise BadLabel(f"{where}: the label is empty; give a class name (or leave the example unlabeled)")
    if label != label.strip():
        raise BadLabel(f"{where}: label {label!r} has leading or trailing spaces; remove them")
    if "/" in label or "\\" in label or label in (".", ".."):
        raise BadLabel(
            f"{where}: label {label!r} may not contain '/' or '\\' or be '.'/'..' (labels become folder names on export)"
        )
    if len(label) > MAX_LABEL_LEN:
        raise BadLabel(f"{where}: label is {len(label)} characters; the limit is {MAX_LABEL_LEN}")
    return label


def check_text(value: str, where: str) -> str:
    """Metadata values and names: any text without control characters."""
    if value.isascii() and value.isprintable():
        return value
    value = unicodedata.normalize("NFC", value)
    bad = _bad_chars(value)
    if bad:
        raise BadLabel(f"{where}: value {value!r} contains control characters ({', '.join(bad[:5])}); remove them")
    return value
