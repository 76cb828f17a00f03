"""``fsck`` (verify every byte, decode every object, follow every link) and ``gc`` (drop what no
ref reaches). Both take the pieces they need (the object store, the refs, the stage), not a
``Repo``; the walk they share is ``datakiln.repo.reachability``.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import IntegrityError, KilnError
from ..store.codec import decode
from ..store.fsutil import read_regular
from ..store.objects import OBJECT_MAX, ObjectStore
from ..store.packs import PACK_HEADER, PACK_MAGIC, Pack
from ..store.refs import Refs, valid_ref
from .history import read_commit
from .reachability import roots, walk
from .stage import Stage
from .state import Tables


@dataclass
class FsckReport:
    objects: int = 0
    packs: int = 0
    reachable: int = 0
    dangling: int = 0
    temp_files: int = 0
    promised: int = 0  # images a partial clone lacks and its remote promised
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "ok": self.ok}


@dataclass
class GcReport:
    removed_objects: int = 0
    freed_bytes: int = 0
    packs_rewritten: int = 0
    temp_files: int = 0
    old_jobs: int = 0  # build job records pruned (``datakiln.compile.jobs``, asked by the CLI)


def _check_loose(root: Path, report: FsckReport, known: set[str]) -> None:
    for sub in sorted(root.iterdir()):
        if sub.name == "pack" or not sub.is_dir():
            continue
        for f in sorted(sub.iterdir()):
            oid = sub.name + f.name
            report.objects += 1
            if len(oid) != 64 or not all(c in "0123456789abcdef" for c in oid):
                report.errors.append(f"{f}: not an object file name; move it out of .kiln/objects")
                continue
            try:
                decode(read_regular(f, OBJECT_MAX), oid, str(f))
                known.add(oid)
            except KilnError as e:
                report.errors.append(f"object {oid}: {e}")
            except OSError as e:
                report.errors.append(
                    f"{f}: cannot be read as an object ({e.strerror or e}); move it out of .kiln/objects"
                )


def _check_pack(idx_path: Any, report: FsckReport, known: set[str]) -> None:
    name = idx_path.name
    try:
        pack = Pack(idx_path)
    except KilnError as e:
        report.errors.append(f"pack index {name}: {e}")
        return
    idx = pack.idx
    if hashlib.sha256(idx[:-32]).digest() != idx[-32:]:
        report.errors.append(f"pack index {name}: checksum mismatch (the index is damaged)")
    try:
        data = pack.pack_path.read_bytes()
    except OSError as e:
        report.errors.append(f"pack {pack.pack_path.name}: cannot read ({e})")
        return
    report.packs += 1
    if data[: len(PACK_MAGIC)] != PACK_MAGIC:
        report.errors.append(f"pack {pack.pack_path.name}: bad header")
    if hashlib.sha256(data[:-32]).digest() != data[-32:] or idx[-64:-32] != data[-32:]:
        report.errors.append(f"pack {pack.pack_path.name}: checksum mismatch (some bytes in it changed)")
    for oid, offset, length in pack.entries():
        report.objects += 1
        if offset < PACK_HEADER.size or offset + length > len(data) - 32:
            report.errors.append(f"object {oid}: offset outside pack {pack.pack_path.name}")
            continue
        try:
            decode(memoryview(data)[offset : offset + length], oid, pack.pack_path.name)
            known.add(oid)
        except KilnError as e:
            report.errors.append(f"object {oid}: {e}")


def _check_refs(refs: Refs, report: FsckReport) -> None:
    """Every ref file has a valid name and holds a commit id; HEAD names a branch or a commit."""
    for prefix in ("refs/heads/", "refs/tags/", "refs/remotes/"):
        for name in refs.names(prefix):
            if not valid_ref(prefix + name):
                report.errors.append(f"ref {prefix}{name}: not a valid branch or tag name; remove the file")
                continue
            try:
                refs.read(prefix + name)
            except KilnError as e:
                report.errors.append(str(e))
    try:
        refs.head()
    except KilnError as e:
        report.errors.append(str(e))


def _load_stage(path: Path, report: FsckReport) -> Stage:
    try:
        return Stage.load(path)
    except KilnError as e:
        report.errors.append(str(e))
        return Stage()


def _check_tables(store: ObjectStore, tables: Tables, tips: list[str], report: FsckReport) -> None:
    """Materialize the table of every named commit: a state can decode and still not list."""
    states: set[str] = set()
    for cid in tips:
        try:
            states.add(read_commit(store, cid).state)
        except KilnError:
            continue  # already reported by the walk
    for sid in sorted(states):
        try:
            tables.of_state(sid)
        except KilnError as e:
            report.errors.append(f"state {sid}: cannot be listed ({e})")


def fsck(store: ObjectStore, refs: Refs, stage_path: Path, tables: Tables, *, promised: bool = False) -> FsckReport:
    """Check every stored byte, decode every reachable object, and list every named commit.
    With ``promised`` (a partial clone), missing images are counted as promised, not errors."""
    report = FsckReport()
    known: set[str] = set()
    _check_loose(store.root, report, known)
    for idx_path in sorted(store.pack_dir.glob("*.idx")):
        _check_pack(idx_path, report, known)
    _check_refs(refs, report)
    stage = _load_stage(stage_path, report)
    try:
        tips = roots(refs, stage)
    except KilnError as e:
        report.errors.append(str(e))
        tips = []
    found = walk(store, tips, segments=stage.changes.add, decode=True)
    report.errors += found.errors
    if not found.errors:
        _check_tables(store, tables, tips, report)
    live = found.all()
    missing = sorted(live - known)
    if promised:
        report.promised = sum(1 for oid in missing if oid in found.blobs)
        missing = [oid for oid in missing if oid not in found.blobs]
    for oid in missing[:20]:
        report.errors.append(f"object {oid}: missing (referenced from a commit, state or segment)")
    if len(missing) > 20:
        report.errors.append(f"... and {len(missing) - 20} more missing objects")
    report.reachable = len(live)
    report.dangling = len(known - live)
    report.temp_files = sum(1 for _ in store.tmp_dir.iterdir())
    return report


def gc(store: ObjectStore, refs: Refs, stage: Stage, *, prune_seconds: float) -> GcReport:
    """Remove unreachable objects older than ``prune_seconds`` and temp files left by crashes.
    The caller holds the repository lock."""
    report = GcReport()
    cutoff = time.time() - prune_seconds
    found = walk(store, roots(refs, stage), segments=stage.changes.add)
    if found.errors:
        raise IntegrityError(
            "gc refused: the repository has errors; run 'kiln fsck' and fix them first:\n  "
            + "\n  ".join(found.errors[:5])
        )
    live = found.all()
    for oid in list(store.loose_ids()):
        path = store.loose_path(oid)
        if oid not in live and path.stat().st_mtime < cutoff:
            report.freed_bytes += path.stat().st_size
            path.unlink()
            report.removed_objects += 1
    for pack in list(store.packs()):
        _repack(store, pack, live, cutoff, report)
    for f in list(store.tmp_dir.iterdir()):
        if f.stat().st_mtime < min(cutoff, time.time() - 3600) or prune_seconds == 0:
            # Directories are builds a crash interrupted; files are half-written objects.
            if f.is_dir():
                shutil.rmtree(f, ignore_errors=True)
            else:
                f.unlink(missing_ok=True)
            report.temp_files += 1
    store.invalidate()
    return report


def _repack(store: ObjectStore, pack: Pack, live: set[str], cutoff: float, report: GcReport) -> None:
    entries = list(pack.entries())
    dead = [e for e in entries if e[0] not in live]
    if not dead or pack.pack_path.stat().st_mtime >= cutoff:
        return
    writer = store.pack_writer()
    for oid, offset, length in entries:
        if oid in live:
            writer.add(oid, pack.stored(offset, length))
    size = pack.pack_path.stat().st_size
    name = writer.finish()
    if name is not None:
        size -= (store.pack_dir / f"{name}.pack").stat().st_size
    pack.close()
    # The new pack is published before the old one goes, so readers always find every object.
    pack.idx_path.unlink()
    pack.pack_path.unlink()
    report.freed_bytes += size
    report.removed_objects += len(dead)
    report.packs_rewritten += 1
