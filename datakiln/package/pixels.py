"""Images to model input: one function shared by training and prediction, so both see the same pixels.

The input contract (stored in every package's manifest): convert to L (1 channel) or RGB (3),
resize to ``[height, width]`` with Pillow's bilinear filter if the size differs, lay out as
``(C, H, W)`` uint8, then the model takes ``float32 = uint8 / 255`` in ``(N, C, H, W)`` and
normalises inside itself. numpy and Pillow only: prediction must not need torch.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import BadImage

RESIZE = "bilinear"


WIDE_GRAY = ("I;16", "I;16B", "I;16L", "I;16N", "I")  # 16-bit grayscale PNGs open in one of these


def eight_bit(im: Image.Image) -> Image.Image:
    """``im`` with 16-bit grayscale scaled to 8 bits (0-65535 to 0-255). Pillow's own conversion
    clips instead, so every value above 255 would become white and a 16-bit dataset train to chance."""
    if im.mode in WIDE_GRAY:
        a = np.asarray(im).astype(np.int64)
        scaled = (np.clip(a, 0, 65535) * 255 + 32767) // 65535
        return Image.fromarray(scaled.astype(np.uint8), "L")
    if im.mode == "F":
        return Image.fromarray(np.clip(np.asarray(im), 0, 255).astype(np.uint8), "L")
    return im


def to_pixels(im: Image.Image, size: Sequence[int], channels: int) -> np.ndarray:
    """(C, H, W) uint8 pixels of ``im`` under the input contract."""
    mode = "L" if channels == 1 else "RGB"
    im = eight_bit(im)
    if im.mode != mode:
        # Transparent pixels become white, not black: a PNG icon on transparency is drawn on white.
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            rgba = im.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            im = Image.alpha_composite(white, rgba)
        im = im.convert(mode)
    h, w = int(size[0]), int(size[1])
    if im.size != (w, h):
        im = im.resize((w, h), Image.Resampling.BILINEAR)
    a = np.asarray(im, dtype=np.uint8)
    return a[None] if channels == 1 else a.transpose(2, 0, 1)


# Formats prediction reads: the common raster ones. Pillow would also open EPS (which runs
# Ghostscript), PDF and others that an untrusted file must not reach.
READ_FORMATS = ["PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF"]


def decode(data: bytes, size: Sequence[int], channels: int, name: str = "image") -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=READ_FORMATS) as im:
                im.load()
                return to_pixels(im, size, channels)
    except UnidentifiedImageError:
        raise BadImage(f"{name}: not an image datakiln reads ({', '.join(READ_FORMATS)}); convert it") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise BadImage(f"{name}: refused as a decompression bomb ({e}); downscale it") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise BadImage(f"{name}: cannot be decoded ({e}); pass a PNG, JPEG or WebP image") from None


def from_input(item: Any, size: Sequence[int], channels: int) -> np.ndarray:
    """One input of ``predict``: a file path, encoded bytes, a PIL image, or a uint8 array (H, W) or (H, W, C)."""
    if isinstance(item, bytes):
        return decode(item, size, channels, "bytes input")
    if isinstance(item, (str, os.PathLike)):
        try:
            with open(item, "rb") as f:
                data = f.read()
        except OSError as e:
            raise BadImage(f"{item}: cannot read the file ({e.strerror or e})") from None
        return decode(data, size, channels, str(item))
    if isinstance(item, Image.Image):
        if item.width == 0 or item.height == 0:
            raise BadImage(f"an image of {item.width}x{item.height} pixels has nothing to predict on")
        return to_pixels(item, size, channels)
    if isinstance(item, np.ndarray):
        return to_pixels(_array_image(item), size, channels)
    raise BadImage(
        f"cannot predict on a {type(item).__name__}; pass file paths, encoded bytes, PIL images or uint8 numpy arrays"
    )


def _array_image(a: np.ndarray) -> Image.Image:
    if a.dtype != np.uint8:
        raise BadImage(
            f"array images must be uint8 (0-255), not {a.dtype}; scale to 0-255 first (floats in [0, 1]: x * 255), "
            "then np.clip(x, 0, 255).astype(np.uint8)"
        )
    if a.size == 0:
        raise BadImage(f"an array image of shape {a.shape} has no pixels")
    if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[2] not in (1, 3, 4):
        raise BadImage(
            f"array image of shape {a.shape} looks channels-first (C, H, W); pass (H, W, C): a.transpose(1, 2, 0)"
        )
    if a.ndim == 2:
        return Image.fromarray(a, "L")
    if a.ndim == 3 and a.shape[2] in (1, 3, 4):
        if a.shape[2] == 1:
            return Image.fromarray(a[:, :, 0], "L")
        return Image.fromarray(a, "RGB" if a.shape[2] == 3 else "RGBA")
    raise BadImage(
        f"array image of shape {a.shape}: expected (H, W) or (H, W, C) with C in 1, 3, 4 (a batch: a list, or (N, H, W, C))"
    )


BATCH_BYTES = 256 << 20  # float32 input a predict batch may take: 256 at 64x64, fewer for large inputs


def batch_size(size: Sequence[int], channels: int, wanted: int) -> int:
    """``wanted`` images a batch, or fewer when that many would pass ``BATCH_BYTES``."""
    return max(1, min(wanted, BATCH_BYTES // (4 * channels * int(size[0]) * int(size[1]))))


def batch(items: Sequence[Any], size: Sequence[int], channels: int) -> np.ndarray:
    """(N, C, H, W) float32 in [0, 1]: what the model's input takes."""
    out = np.empty((len(items), channels, int(size[0]), int(size[1])), dtype=np.float32)
    for i, item in enumerate(items):
        out[i] = from_input(item, size, channels)
    out /= 255.0
    return out
