"""Importing: check candidates' bytes in parallel, store new blobs in one pack, build a segment.

A bad file (empty, truncated, not an image, a decompression bomb) is reported by name. Without
``skip_bad`` one bad file stops the import and nothing is published: the pack being written is a
temp file until every candidate has passed.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from ..errors import BadImage
from ..progress import Progress
from ..sources.images import MAX_BYTES, ImageFacts, blob_id, example_id, inspect_image
from ..sources.scan import Candidate
from ..store.objects import ObjectStore
from .label_source import IMPORT
from .table import SPLITS, Segment

# Below this many files, starting worker processes costs more than it saves.
PARALLEL_MIN = 256

Checked = tuple[str | None, bytes | None, ImageFacts | None, str | None]


@dataclass
class ImportReport:
    added: int = 0
    present: int = 0  # already in the repository under the same id
    bad: list[str] = field(default_factory=list)  # one message per bad file
    new_blobs: int = 0
    segment: str | None = None


def default_split(eid: str) -> str:
    """80/10/10 train/valid/test by id hash: stable, and independent of import order."""
    bucket = int(eid[:8], 16) % 10
    return SPLITS[0] if bucket < 8 else SPLITS[1] if bucket == 8 else SPLITS[2]


def check_one(item: tuple[str, str | None, bytes | None, str | None]) -> Checked:
    name, path, data, within = item
    try:
        if data is None:
            assert path is not None
            data = _read(name, path, within)
        facts = inspect_image(data, name)
        return blob_id(data), data, facts, None
    except BadImage as e:
        return None, None, None, str(e)
    except OSError as e:
        if path is not None and os.path.islink(path):
            return None, None, None, f"{name}: a link that leads nowhere readable ({e.strerror or e}); fix or remove it"
        return None, None, None, f"{name}: cannot read the file ({e.strerror or e}); check its permissions"


# Resolved parent directories, per process: one realpath per folder instead of one per file.
_REAL_DIRS: dict[str, str] = {}


def _read(name: str, path: str, within: str | None) -> bytes:
    """The file's bytes; with ``within``, refuse a file that symlinks lead outside that folder."""
    try:
        # O_NOFOLLOW fails on a final-component link, so otherwise the file's real path is its
        # parent's real path plus its name, without an lstat per path component. O_NONBLOCK: a
        # FIFO in the folder gets an error below instead of hanging the import.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        real = None
    except OSError as e:
        if e.errno != errno.ELOOP:
            raise
        real = os.path.realpath(path)
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if within is not None:
            if real is None:
                parent, _, base = path.rpartition(os.sep)
                if parent not in _REAL_DIRS:
                    _REAL_DIRS[parent] = os.path.realpath(parent)
                real = _REAL_DIRS[parent] + os.sep + base
            if not real.startswith(within + os.sep):
                raise BadImage(f"{name}: the path leads outside {within} through a link; copy the file in instead")
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise BadImage(f"{name}: not a regular file (a device, pipe or folder); list image files only")
        size = st.st_size
        if size > MAX_BYTES:
            raise BadImage(f"{name}: {size} bytes is over the {MAX_BYTES >> 20} MiB limit per image; downscale it")
        chunks = []
        while chunk := os.read(fd, max(size, 1 << 16)):
            chunks.append(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    finally:
        os.close(fd)


def _real(p: str, cache: dict[str, str]) -> str:
    if p not in cache:
        cache[p] = os.path.realpath(p)
    return cache[p]


def check_all(cands: list[Candidate], jobs: int) -> Iterator[Checked]:
    reals: dict[str, str] = {}
    items = [(c.name, c.path, c.data, _real(c.within, reals) if c.within else None) for c in cands]
    if jobs <= 1 or len(items) < PARALLEL_MIN:
        yield from map(check_one, items)
        return
    import multiprocessing  # here: 10 ms at start-up that only a large import needs

    # fork: workers inherit the imported modules, so each starts in milliseconds.
    with multiprocessing.get_context("fork").Pool(jobs) as pool:
        yield from pool.imap(check_one, items, chunksize=128)


def build_segment(
    store: ObjectStore,
    cands: list[Candidate],
    present_ids: Iterable[str],
    *,
    skip_bad: bool = False,
    jobs: int = 1,
    now: int | None = None,
) -> tuple[Segment | None, ImportReport]:
    """Check, dedupe and store candidates; return the segment of new rows (not yet stored)."""
    now = int(time.time()) if now is None else now
    present = set(present_ids)
    known_blobs = store.packed_ids()
    report = ImportReport()
    writer = store.pack_writer()
    ids: list[str] = []
    blobs: list[str] = []
    rows: list[tuple[Candidate, ImageFacts, str]] = []
    try:
        with Progress(len(cands), "import") as bar:
            for cand, (oid, data, facts, err) in zip(cands, check_all(cands, jobs)):
                bar.update()
                if err is not None:
                    report.bad.append(err)
                    continue
                assert oid is not None and data is not None and facts is not None
                eid = example_id(oid, cand.name)
                if eid in present:
                    report.present += 1
                    continue
                present.add(eid)
                raw = bytes.fromhex(oid)
                if raw not in known_blobs:
                    known_blobs.add(raw)
                    writer.add(oid, b"r" + data)
                ids.append(eid)
                blobs.append(oid)
                rows.append((cand, facts, eid))
        if report.bad and not skip_bad:
            raise BadImage(_bad_summary(report.bad))
    except BaseException:
        writer.abort()
        raise
    report.new_blobs = len(writer)
    writer.finish()
    report.added = len(ids)
    if not ids:
        return None, report
    return Segment(ids, blobs, _columns(rows, now)), report


def _bad_summary(bad: list[str]) -> str:
    shown = "\n  ".join(bad[:10])
    more = f"\n  ... and {len(bad) - 10} more" if len(bad) > 10 else ""
    return f"{len(bad)} bad file(s); nothing was imported:\n  {shown}{more}\nFix or remove them, or skip them."


def _columns(rows: list[tuple[Candidate, ImageFacts, str]], now: int) -> dict[str, list[str | int | None]]:
    cols: dict[str, list[str | int | None]] = {
        "name": [c.name for c, _, _ in rows],
        "split": [c.split or default_split(eid) for c, _, eid in rows],
        "label": [c.label for c, _, _ in rows],
        "source": [IMPORT if c.label is not None else None for c, _, _ in rows],
        "time": [now] * len(rows),
        "format": [f.format for _, f, _ in rows],
        "width": [f.width for _, f, _ in rows],
        "height": [f.height for _, f, _ in rows],
        "mode": [f.mode for _, f, _ in rows],
    }
    keys = sorted({k for c, _, _ in rows for k in c.meta})
    for k in keys:
        cols["meta:" + k] = [c.meta.get(k) for c, _, _ in rows]
    return cols
