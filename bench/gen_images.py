"""Generate the synthetic benchmark dataset: N small PNG files (1-2 KB) and a labels CSV.

Layout: ``OUT/images/NNN/NNNNNN.png`` (1,000 files a folder) and ``OUT/labels.csv`` with
columns ``path,label``. Deterministic for a given seed, so every anchor sees the same bytes.

    python bench/gen_images.py OUT [--n 100000] [--seed 0]
"""

from __future__ import annotations

import argparse
import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = [f"class{k}" for k in range(10)]


def make_png(rng: np.random.Generator) -> bytes:
    # Low-amplitude noise on a flat colour compresses to 1-2 KB at 24x24 RGB.
    base = rng.integers(60, 190, size=3)
    noise = rng.integers(0, 24, size=(24, 24, 3))
    pixels = (base + noise).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def generate(out: Path, n: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    images = out / "images"
    rows = ["path,label"]
    for i in range(n):
        folder = images / f"{i // 1000:03d}"
        if i % 1000 == 0:
            folder.mkdir(parents=True, exist_ok=True)
        rel = f"images/{i // 1000:03d}/{i:06d}.png"
        (out / rel).write_bytes(make_png(rng))
        rows.append(f"{rel},{CLASSES[int(rng.integers(0, len(CLASSES)))]}")
    manifest = out / "labels.csv"
    manifest.write_text("\n".join(rows) + "\n")
    return manifest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    print(generate(args.out, args.n, args.seed))


if __name__ == "__main__":
    main()
