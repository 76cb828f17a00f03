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
import warnings
import zlib
from dataclasses import dataclass

from ..errors import BadImage

FORMATS = {"PNG": "png", "JPEG": "jpeg", "WEBP": "webp"}
CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
EXTENSIONS = {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}
# 40 megapixels: larger than any labelling photo we expect, far below what exhausts memory.
MAX_PIXELS = 40_000_000
# A single image file over 64 MiB is not a training example; refuse before reading it all.
MAX_BYTES = 64 << 20


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
                if fmt == "jpeg":
                    check_jpeg_size(data, name)
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


# Huffman-coded JPEG frames (baseline, extended, progressive, lossless): every 8x8 block costs
# at least one bit, so the file bounds how many blocks it can hold.
_HUFFMAN_SOF = {0xC0, 0xC1, 0xC2, 0xC3}
_NO_LENGTH = {0xD8, 0x01, *range(0xD0, 0xD8)}


def check_jpeg_size(data: bytes, name: str) -> None:
    """Refuse a JPEG too short for the image it claims. libjpeg fills what is missing with grey and
    only warns (which Pillow does not pass on), so a 1 KB file claiming 6000x6000 would import."""
    blocks = jpeg_blocks(data)
    if blocks is not None and len(data) * 8 < blocks:
        raise BadImage(
            f"{name}: the image is corrupt or truncated ({len(data):,} bytes cannot hold the {blocks:,} "
            "blocks its header claims); re-export it or remove it"
        )


def jpeg_blocks(data: bytes) -> int | None:
    """The 8x8 blocks a Huffman-coded JPEG's frame header claims (every component, after
    subsampling), or None when there is no such header (arithmetic coding: no bound)."""
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _NO_LENGTH:
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4])
        if marker in _HUFFMAN_SOF:
            return _frame_blocks(data[pos + 4 : pos + 2 + length])
        if marker == 0xDA:  # start of scan before any frame header
            return None
        pos += 2 + length
    return None


def _frame_blocks(sof: bytes) -> int | None:
    if len(sof) < 6:
        return None
    height, width, count = int.from_bytes(sof[1:3]), int.from_bytes(sof[3:5]), sof[5]
    comps = [(sof[7 + 3 * i] >> 4, sof[7 + 3 * i] & 15) for i in range(count) if 8 + 3 * i <= len(sof)]
    if not comps or not height or not width:
        return None
    hmax, vmax = max(h for h, _ in comps), max(v for _, v in comps)
    if not hmax or not vmax:
        return None
    return sum(_ceil(_ceil(width * h, hmax), 8) * _ceil(_ceil(height * v, vmax), 8) for h, v in comps)


def _ceil(a: int, b: int) -> int:
    return (a + b - 1) // b


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
