"""A commit's examples as arrays: labels as class indices, splits, folds, and decoded pixels.

numpy only. Pixels are decoded once per (images, input contract) and cached under
``.kiln/cache/pixels/``, so a sweep over widths or seeds decodes nothing twice.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import interrupt
from ..errors import BadSpec, InputError, NotBuildable
from ..package.pixels import WIDE_GRAY, decode
from ..progress import Progress
from ..repo import label_source
from ..repo.table import META_PREFIX, SPLITS, Table
from ..store.fsutil import temp_path
from ..store.objects import ObjectStore
from .spec import CNN_BASE, InputSpec, Spec, channels

if TYPE_CHECKING:
    from ..repo import Repo

NORM_BLOCK = 1024  # rows a normalization step reads at once: bounded memory at any size
CACHE_KEEP = 3  # pixel caches kept: the current data, and a branch or two to switch between
MAX_AUTO_SIDE = 64  # "auto" size: larger images are downscaled; a small CNN gains little above this


@dataclass
class Examples:
    """Every example of a commit, in table order. ``y`` is -1 where the example is not trained on."""

    ids: list[str]
    blobs: list[str]
    names: list[str]
    labels: list[str | None]  # the label in the table, whatever its source
    sources: list[str | None]
    splits: np.ndarray  # (N,) str
    y: np.ndarray  # (N,) int64 class index, -1 for unlabeled (or model-seeded, unless trained on)
    classes: list[str]
    meta: dict[str, list[str | None]]
    widths: list[int]
    heights: list[int]
    modes: list[str]

    def __len__(self) -> int:
        return len(self.ids)

    def where(self, split: str, *, labeled: bool = True) -> np.ndarray:
        mask = self.splits == split
        if labeled:
            mask &= self.y >= 0
        return np.flatnonzero(mask)


def gather(table: Table, *, use_model_labels: bool = False) -> Examples:
    c = table.cols
    labels = [None if v is None else str(v) for v in c["label"]]
    sources = [None if v is None else str(v) for v in c["source"]]
    trained = [
        lab if lab is not None and (use_model_labels or not label_source.is_suggestion(src)) else None
        for lab, src in zip(labels, sources)
    ]
    classes = sorted({lab for lab in trained if lab is not None})
    index = {k: i for i, k in enumerate(classes)}
    y = np.array([index[lab] if lab is not None else -1 for lab in trained], dtype=np.int64)
    meta = {
        k[len(META_PREFIX) :]: [None if v is None else str(v) for v in c[k]] for k in c if k.startswith(META_PREFIX)
    }
    return Examples(
        ids=list(table.ids),
        blobs=list(table.blobs),
        names=[str(v) for v in c["name"]],
        labels=labels,
        sources=sources,
        splits=np.array([str(v) for v in c["split"]], dtype=object),
        y=y,
        classes=classes,
        meta=meta,
        widths=[int(v or 0) for v in c["width"]],
        heights=[int(v or 0) for v in c["height"]],
        modes=[str(v) for v in c["mode"]],
    )


def check_buildable(ex: Examples) -> None:
    train = ex.where("train")
    if len(ex.classes) < 2:
        raise NotBuildable(
            f"the commit has {len(ex.classes)} class(es) among its labels; a classifier needs at least 2. "
            "Label more examples ('kiln label ID LABEL') and commit"
        )
    missing = sorted(set(ex.classes) - {ex.classes[i] for i in ex.y[train]})
    if missing:
        raise NotBuildable(
            f"class(es) {', '.join(map(repr, missing[:5]))} have no labeled examples in the train split, so no model "
            "can learn them; label some train examples of each, or relabel/remove those examples, and commit"
        )
    if len(train) < 2 * len(ex.classes):
        raise NotBuildable(
            f"only {len(train)} labeled examples in the train split for {len(ex.classes)} classes; "
            "label more train examples and commit"
        )


def resolve_input(spec: InputSpec, ex: Examples) -> tuple[list[int], int]:
    """The concrete [height, width] and channel count, deciding "auto" from the table's columns."""
    if isinstance(spec.size, list):
        size = list(spec.size)
    else:
        (h, w), _ = Counter(zip(ex.heights, ex.widths)).most_common(1)[0]
        scale = min(1.0, MAX_AUTO_SIDE / max(h, w))
        size = [max(1, round(h * scale)), max(1, round(w * scale))]
    if isinstance(spec.channels, int):
        channels = spec.channels
    else:
        channels = 1 if all(m in ("L", "1", "F", *WIDE_GRAY) for m in ex.modes) else 3
    return size, channels


def pixels(store: ObjectStore, cache_dir: Path, ex: Examples, size: list[int], channels: int) -> np.ndarray:
    """(N, C, H, W) uint8 for every example: a read-only memory map of the pixel cache file."""
    path = pixel_file(store, cache_dir, ex, size, channels)
    x: np.ndarray = np.load(path, mmap_mode="r", allow_pickle=False)
    return x


def pixel_file(store: ObjectStore, cache_dir: Path, ex: Examples, size: list[int], channels: int) -> Path:
    """The ``.npy`` file of (N, C, H, W) uint8 pixels of every example, decoded now unless these
    images were decoded under this contract before. Written a block at a time, so decoding
    200,000 images holds one block in memory, not the 2.4 GB they make."""
    key = hashlib.sha256(f"{size}|{channels}|".encode() + "".join(ex.blobs).encode()).hexdigest()[:32]
    path = cache_dir / f"pixels-{key}.npy"
    shape = (len(ex), channels, size[0], size[1])
    if path.is_file():
        try:
            if PixelFile(path).shape == shape:
                os.utime(path)  # the newest caches survive pruning
                return path
        except (OSError, ValueError):
            pass  # a damaged cache file is rebuilt below
    cache_dir.mkdir(parents=True, exist_ok=True)
    store.ensure(ex.blobs)  # a partial clone fetches the images it lacks, in batches, before decoding
    tmp = temp_path(cache_dir, path.name)
    try:
        with open(tmp, "wb") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "|u1", "fortran_order": False, "shape": shape})
            with Progress(len(ex), "decode") as bar:
                for _, block in _decoded(store, ex, size, channels):
                    interrupt.check()
                    f.write(np.ascontiguousarray(block).data)
                    bar.update(len(block))
        # No fsync: the cache is disposable, and a torn file fails its shape check and is rebuilt.
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _prune(cache_dir, keep=path)
    return path


class PixelFile:
    """Rows of a pixel cache file, read with ``pread``: a training batch reads its 64 rows and no
    more, and what was read is not mapped into the process (so it never counts toward its memory,
    as a memory map's pages do), however large the file."""

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        with open(self.path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(f)
            self.offset = f.tell()
        if dtype != np.uint8 or fortran or len(shape) != 4:
            raise ValueError(f"{path}: not a (N, C, H, W) uint8 pixel file")
        self.shape: tuple[int, int, int, int] = tuple(shape)  # type: ignore[assignment]
        self.row_bytes = int(np.prod(shape[1:]))
        if os.path.getsize(self.path) != self.offset + self.row_bytes * shape[0]:
            raise ValueError(f"{path}: truncated pixel file")
        self._fd: int | None = None

    def __len__(self) -> int:
        return self.shape[0]

    def _file(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        return self._fd

    def take(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows), C, H, W) uint8, in the order of ``rows``; runs of consecutive rows are one read."""
        out = np.empty((len(rows), *self.shape[1:]), dtype=np.uint8)
        flat = out.reshape(len(rows), self.row_bytes)
        fd, rb = self._file(), self.row_bytes
        rows = np.asarray(rows, dtype=np.int64)
        i = 0
        while i < len(rows):
            j = i + 1
            while j < len(rows) and rows[j] == rows[j - 1] + 1:
                j += 1
            data = os.pread(fd, rb * (j - i), self.offset + int(rows[i]) * rb)
            flat[i:j] = np.frombuffer(data, dtype=np.uint8).reshape(j - i, rb)
            i = j
        return out

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_fd": None}  # a worker process opens its own descriptor


DECODE_BLOCK = 512  # images a worker decodes per task
PARALLEL_MIN = 4096  # below this, starting workers costs more than decoding in one process
_WORK: tuple[ObjectStore, list[str], list[str], list[int], int] | None = None  # what forked workers decode


def _decoded(store: ObjectStore, ex: Examples, size: list[int], channels: int) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, (B, C, H, W) pixels) blocks in order; in worker processes for large tables
    ($KILN_JOBS, default every core), since decoding is one core's work per image."""
    global _WORK
    starts = range(0, len(ex), DECODE_BLOCK)
    jobs = int(os.environ.get("KILN_JOBS") or os.cpu_count() or 1)
    _WORK = (store, ex.blobs, ex.names, size, channels)
    try:
        if jobs <= 1 or len(ex) < PARALLEL_MIN:
            yield from zip(starts, map(_decode_block, starts))
            return
        import multiprocessing

        # fork: workers inherit the store and the block list, so a task is two integers.
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            yield from zip(starts, pool.imap(_decode_block, starts))
    finally:
        _WORK = None


def _decode_block(start: int) -> np.ndarray:
    assert _WORK is not None
    store, blobs, names, size, channels = _WORK
    stop = min(start + DECODE_BLOCK, len(blobs))
    out = np.empty((stop - start, channels, size[0], size[1]), dtype=np.uint8)
    for k, i in enumerate(range(start, stop)):
        out[k] = decode(store.get(blobs[i]), size, channels, names[i])
    return out


def _prune(cache_dir: Path, keep: Path, newest: int = CACHE_KEEP) -> None:
    """Drop all but the newest few pixel caches: each import makes a new one, and they are big."""
    files = sorted(cache_dir.glob("pixels-*.npy"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in files[newest:]:
        if old != keep:
            old.unlink(missing_ok=True)


def check_memory(n: int, resolved: Any, spec: Spec, classes: int) -> None:
    """Refuse a build whose training activations and outputs would not fit in memory, before
    decoding an image (a 1024 x 1024 input used to fail after minutes with a MemoryError).
    Pixels are not counted: they are read from the cache file a batch at a time."""
    size, channels, stem = resolved.size, resolved.channels, resolved.stem
    batch = min(spec.train.batch_size, max(n, 1))
    if spec.model.arch == "cnn":
        # The first full-resolution maps (the stem's, or the first block's: two conv outputs, their
        # norms and activations, kept for the backward pass, and their gradients): about 8 float32
        # maps of the first block's channels.
        act = batch * channels_of(spec) * (size[0] // stem) * (size[1] // stem) * 4 * 8
        act += batch * channels * size[0] * size[1] * 4 * 3  # the batch itself, as float32
    else:
        act = batch * channels * size[0] * size[1] * 4 * 4
    dim = channels_of(spec) * 2 ** max(spec.model.depth - 1, 0)
    outputs = n * (classes * 3 + dim) * 4  # probabilities (a copy per fit's and the final's) and embeddings
    need, budget = resolved.workers * act + outputs, memory_budget()
    if need > budget:
        raise BadSpec(
            f"input.size {size} needs about {need / 2**30:.1f} GiB to train ({resolved.workers} worker(s) x "
            f"{act / 2**30:.1f} GiB for a batch of {batch}, {outputs / 2**30:.1f} GiB of outputs for {n:,} images); "
            f"this machine allows {budget / 2**30:.1f} GiB ({MEMORY_ENV} or free memory). Use a smaller input.size, "
            "e.g. [64, 64], a smaller train.batch_size, or fewer train.workers"
        )


def channels_of(spec: Spec) -> int:
    return channels(CNN_BASE, spec.model.width)


MEMORY_ENV = "KILN_MAX_MEMORY"


def memory_budget() -> int:
    """Bytes a build may use: $KILN_MAX_MEMORY (e.g. 8G, 512M), else 80% of the memory free now."""
    given = os.environ.get(MEMORY_ENV, "").strip()
    if given:
        raw = given.upper()
        scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}.get(raw[-1], 1)
        try:
            return int(float(raw.rstrip("KMGT")) * scale)
        except ValueError:
            raise BadSpec(
                f"{MEMORY_ENV}={given!r} is not a size; use bytes or a number with K, M, G (e.g. 8G)"
            ) from None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(int(line.split()[1]) * 1024 * 0.8)
    except (OSError, ValueError, IndexError):
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES") * 0.8)


def normalization(x: PixelFile, train: np.ndarray, how: str) -> tuple[list[float], list[float]]:
    """Per-channel mean and std (of x/255) over the train rows. Sums of the uint8 values and of
    their squares are exact integers, taken a block of rows at a time: no float copy of the data."""
    channels = x.shape[1]
    if how == "none" or len(train) == 0:
        return [0.0] * channels, [1.0] * channels
    total = np.zeros(channels, dtype=np.int64)
    squares = np.zeros(channels, dtype=np.int64)
    for start in range(0, len(train), NORM_BLOCK):
        block = x.take(np.sort(train[start : start + NORM_BLOCK])).astype(np.int64)
        total += block.sum(axis=(0, 2, 3))
        squares += (block * block).sum(axis=(0, 2, 3))
    n = len(train) * x.shape[2] * x.shape[3]
    mean = total / n / 255.0
    var = np.maximum(squares / n / 255.0**2 - mean**2, 0.0)
    std = np.maximum(np.sqrt(var), 1e-3)
    return [round(float(v), 6) for v in mean], [round(float(v), 6) for v in std]


def dataset(
    repo: Repo, split: str = "train", commit: str = "HEAD", *, spec: Spec | None = None, labeled: bool = True
) -> Any:
    """A PyTorch ``Dataset`` of ``(pixels, class index)`` for one split of a commit, under the
    input contract ``spec`` (default: kiln.toml) resolves to: for users with their own loops."""
    from .builder import default_spec
    from .torchdata import ExampleDataset

    if split not in SPLITS:
        raise InputError(f"split {split!r} is not one of {', '.join(SPLITS)}")
    spec = spec or default_spec(repo)
    ex = gather(repo.table(commit), use_model_labels=spec.train.use_model_labels)
    size, channels = resolve_input(spec.input, ex)
    x = pixels(repo.store, repo.layout.cache, ex, size, channels)  # a memory map: rows load when read
    idx = ex.where(split, labeled=labeled)
    return ExampleDataset(x, idx, ex.y[idx], [ex.ids[i] for i in idx], ex.classes)
