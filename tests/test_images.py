"""Image checks: the fast PNG path agrees with Pillow, and never accepts what Pillow refuses."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from datakiln.errors import BadImage
from datakiln.sources.images import fast_png, inspect_image


def _encode(mode: str, size: tuple[int, int], seed: int, **save: object) -> bytes:
    rng = np.random.default_rng(seed)
    channels = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4, "P": 1, "1": 1, "I;16": 1}[mode]
    dtype = np.uint16 if mode == "I;16" else np.uint8
    pixels = rng.integers(0, 2 if mode == "1" else 256, size=(size[1], size[0], channels), dtype=dtype)
    if mode == "1":
        im = Image.fromarray(pixels[:, :, 0].astype(bool))
    elif channels == 1:
        im = Image.fromarray(pixels[:, :, 0], mode=None if mode != "P" else "L")
        im = im.convert("P") if mode == "P" else im
    else:
        im = Image.fromarray(pixels, mode=mode)
    buf = io.BytesIO()
    im.save(buf, format="PNG", **save)
    return buf.getvalue()


def _pillow(data: bytes) -> tuple[int, int, str]:
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return im.width, im.height, im.mode


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA"])
@pytest.mark.parametrize("size", [(1, 1), (8, 8), (37, 5), (64, 48)])
@pytest.mark.parametrize("save", [{}, {"optimize": True}, {"compress_level": 0}, {"dpi": (72, 72)}])
def test_fast_path_agrees_with_pillow(mode: str, size: tuple[int, int], save: dict[str, object]) -> None:
    data = _encode(mode, size, seed=size[0], **save)
    facts = fast_png(data)
    assert facts is not None, "the common 8-bit PNG must take the fast path"
    assert (facts.width, facts.height, facts.mode) == _pillow(data)
    assert facts.format == "png"


@pytest.mark.parametrize("mode", ["P", "1", "I;16"])
def test_unusual_pngs_go_to_pillow(mode: str) -> None:
    data = _encode(mode, (9, 7), seed=1)
    assert fast_png(data) is None
    facts = inspect_image(data, "x.png")
    assert (facts.width, facts.height, facts.mode) == _pillow(data)


def test_transparency_and_text_chunks_go_to_pillow() -> None:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("comment", "hello")
    assert fast_png(_encode("RGB", (4, 4), seed=2, pnginfo=info)) is None
    assert fast_png(_encode("L", (4, 4), seed=2, transparency=3)) is None


def test_every_truncation_is_refused() -> None:
    data = _encode("RGB", (12, 10), seed=3)
    for cut in range(len(data)):
        assert fast_png(data[:cut]) is None
        # Pillow still decodes a file missing only IEND, the IDAT CRC and the zlib checksum (20
        # bytes): it stops once it has every pixel. Cut into the pixels and it refuses.
        if cut < len(data) - 20:
            with pytest.raises(BadImage):
                inspect_image(data[:cut], "cut.png")


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_damage_is_never_accepted_by_the_fast_path_alone(data: st.DataObject) -> None:
    mode = data.draw(st.sampled_from(["L", "LA", "RGB", "RGBA"]))
    good = bytearray(_encode(mode, (data.draw(st.integers(1, 20)), data.draw(st.integers(1, 20))), seed=4))
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(good) - 1))
        good[at] ^= data.draw(st.integers(1, 255))
    facts = fast_png(bytes(good))
    if facts is not None:  # accepted: then Pillow must decode it to the same facts
        assert (facts.width, facts.height, facts.mode) == _pillow(bytes(good))


def _png16(value: int, size: int = 8) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((size, size), value, dtype=np.uint16)).save(buf, format="PNG")
    return buf.getvalue()


def test_16_bit_grayscale_is_scaled_not_clipped() -> None:
    """Pillow's own conversion clips 16-bit values at 255: every pixel above would turn white."""
    from datakiln.package.pixels import decode
    from datakiln.server.thumbs import _shrink

    for value, expected in ((0, 0), (257, 1), (10_000, 39), (32_768, 128), (65_535, 255)):
        data = _png16(value)
        assert inspect_image(data, "x").mode in ("I;16", "I")
        assert int(decode(data, [8, 8], 1)[0, 0, 0]) == expected
        assert int(decode(data, [4, 4], 3).max()) == expected  # RGB and a resize too
    big = Image.open(io.BytesIO(_shrink(_png16(10_000, 300))))
    assert big.mode == "L" and abs(int(np.asarray(big).mean()) - 39) <= 1  # the thumbnail is not white


@pytest.mark.slow
def test_a_16_bit_dataset_trains(tmp_path: object) -> None:
    """Two classes that differ only in 16-bit brightness above 255: separable only if scaled."""
    from pathlib import Path

    import datakiln

    root = Path(str(tmp_path))
    for label, value in (("dark", 12_000), ("light", 52_000)):
        (root / "src" / label).mkdir(parents=True)
        for i in range(40):
            (root / "src" / label / f"{i}.png").write_bytes(_png16(value + 40 * i))
    r = datakiln.Repo.init(root / "r")
    r.import_folder(root / "src", jobs=1)
    r.commit("16-bit")
    m = datakiln.build(r, epochs=4, folds=0, progress=False).build.record["metrics"]
    assert m["valid"]["accuracy"] == 1.0 and m["test"]["accuracy"] == 1.0
