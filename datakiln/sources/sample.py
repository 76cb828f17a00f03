"""The bundled sample: scikit-learn's copy of the UCI optical digits (1,797 8x8 images, 10 classes).

The CSV ships inside the package (``samples/digits.csv.gz``, see ``samples/NOTICE``), so nothing is
downloaded. Each image is written as an 8-bit grayscale PNG by a tiny encoder of our own, so the
bytes, and therefore the example ids, never change with the Pillow version.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from importlib import resources

from .scan import Candidate

SAMPLES = ("digits",)


def png_gray(pixels: list[list[int]]) -> bytes:
    """Encode rows of 0..255 ints as a grayscale PNG (deterministic bytes)."""
    h, w = len(pixels), len(pixels[0])
    raw = b"".join(b"\0" + bytes(row) for row in pixels)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def digits() -> list[Candidate]:
    raw = resources.files("datakiln").joinpath("samples/digits.csv.gz").read_bytes()
    rows = [line.split(",") for line in gzip.decompress(raw).decode().splitlines() if line]
    inks = sorted(sum(int(v) for v in r[:64]) for r in rows)
    # Ink terciles give the sample one honest metadata column to slice by.
    lo, hi = inks[len(inks) // 3], inks[2 * len(inks) // 3]
    out = []
    for i, r in enumerate(rows):
        values = [int(v) for v in r[:64]]
        pixels = [[v * 255 // 16 for v in values[y * 8 : y * 8 + 8]] for y in range(8)]
        ink = sum(values)
        meta = {"ink": "light" if ink < lo else "heavy" if ink >= hi else "medium"}
        out.append(Candidate(name=f"digits/{i:04d}.png", path=None, label=r[64], meta=meta, data=png_gray(pixels)))
    return out


def sample(name: str) -> list[Candidate]:
    if name == "digits":
        return digits()
    from ..errors import InputError

    raise InputError(f"no bundled sample named {name!r}; available: {', '.join(SAMPLES)}")
