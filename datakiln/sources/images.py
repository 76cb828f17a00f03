"""Checking image files before they enter a repository.

An image is accepted only if Pillow identifies it as PNG, JPEG or WebP from its bytes (not its
name), it is not larger than ``MAX_PIXELS`` (decompression bombs), and it decodes completely
(truncated files fail here, not later in training).
"""

from __future__ import annotations

import hashlib
import io
import unicodedata
import warnings
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
