"""``fsck`` (verify every byte and every link) and ``gc`` (drop what no ref reaches)."""

from __future__ import annotations

import hashlib
import shutil
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import IntegrityError, KilnError
from .store.objects import PACK_HEADER, PACK_MAGIC, Pack, decode
from .table import BLOB_HEX, split_hex, state_refs

if TYPE_CHECKING:
    from .repo import Repo


@dataclass
class FsckReport:
    objects: int = 0
    packs: int = 0
    reachable: int = 0
    dangling: int = 0
    temp_files: int = 0
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
    old_jobs: int = 0


def _check_loose(repo: Repo, report: FsckReport, known: set[str]) -> None:
    root = repo.store.root
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
                decode(f.read_bytes(), oid, str(f))
                known.add(oid)
            except KilnError as e:
                report.errors.append(f"object {oid}: {e}")


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


def roots(repo: Repo) -> list[str]:
    """Every commit a user can name: branches, tags, a detached HEAD, a merge in progress."""
    out = list(repo.branches().values()) + list(repo.tags().values())
    ref, head = repo.head()
    if head and ref is None:
        out.append(head)
    merge = repo._merge_state()
    if merge:
        out += [merge["theirs"], merge["base"]]
    return [c for c in dict.fromkeys(out) if c]


def reachable(repo: Repo, errors: list[str]) -> set[str]:
    """Ids of every object reachable from the roots and the stage; problems go to ``errors``."""
    store = repo.store
    seen: set[str] = set()
    commits = roots(repo)
    states: list[str] = []
    segments: list[str] = list(repo._stage().changes.add)
    while commits:
        cid = commits.pop()
        if cid in seen:
            continue
        seen.add(cid)
        try:
            c = repo.read_commit(cid)
        except KilnError as e:
            errors.append(f"commit {cid}: {e}")
            continue
        commits.extend(c.parents)
        states.append(c.state)
    while states:
        sid = states.pop()
        if sid in seen:
            continue
        seen.add(sid)
        try:
            obj = store.get_json(sid)
            refs = state_refs(obj)
        except (KilnError, KeyError) as e:
            errors.append(f"state {sid}: {e}")
            continue
        if obj["type"] == "delta":
            states.append(refs[0])
            segments.extend(refs[1:])
        else:
            segments.extend(refs)
    for oid in segments:
        if oid in seen:
            continue
        seen.add(oid)
        try:
            seg = store.get_json(oid)
            blobs = split_hex(seg["blobs"], BLOB_HEX)
        except (KilnError, KeyError) as e:
            errors.append(f"segment {oid}: {e}")
            continue
        seen.update(blobs)
    return seen


def fsck(repo: Repo) -> FsckReport:
    report = FsckReport()
    known: set[str] = set()
    _check_loose(repo, report, known)
    for idx_path in sorted(repo.store.pack_dir.glob("*.idx")):
        _check_pack(idx_path, report, known)
    live = reachable(repo, report.errors)
    missing = sorted(live - known)
    for oid in missing[:20]:
        report.errors.append(f"object {oid}: missing (referenced from a commit, state or segment)")
    if len(missing) > 20:
        report.errors.append(f"... and {len(missing) - 20} more missing objects")
    report.reachable = len(live)
    report.dangling = len(known - live)
    report.temp_files = sum(1 for _ in repo.tmp_dir.iterdir())
    return report


def gc(repo: Repo, *, prune_seconds: float) -> GcReport:
    """Remove unreachable objects older than ``prune_seconds`` and temp files left by crashes."""
    report = GcReport()
    cutoff = time.time() - prune_seconds
    with repo.lock:
        errors: list[str] = []
        live = reachable(repo, errors)
        if errors:
            raise IntegrityError(
                "gc refused: the repository has errors; run 'kiln fsck' and fix them first:\n  "
                + "\n  ".join(errors[:5])
            )
        for oid in list(repo.store.loose_ids()):
            path = repo.store.loose_path(oid)
            if oid not in live and path.stat().st_mtime < cutoff:
                report.freed_bytes += path.stat().st_size
                path.unlink()
                report.removed_objects += 1
        for pack in list(repo.store.packs()):
            _repack(repo, pack, live, cutoff, report)
        for f in list(repo.tmp_dir.iterdir()):
            if f.stat().st_mtime < min(cutoff, time.time() - 3600) or prune_seconds == 0:
                # Directories are builds a crash interrupted; files are half-written objects.
                if f.is_dir():
                    shutil.rmtree(f, ignore_errors=True)
                else:
                    f.unlink(missing_ok=True)
                report.temp_files += 1
        report.old_jobs = _prune_jobs(repo, cutoff if prune_seconds else time.time())
        repo.store.invalidate()
    return report


def _prune_jobs(repo: Repo, cutoff: float) -> int:
    """Remove the records of build jobs (``kiln ui``) that ended before ``cutoff``; their builds stay."""
    from .build import jobs

    pruned = 0
    for job in jobs.list_jobs(repo, limit=10**9):
        if job["state"] != "running" and (job.get("finished") or 0) < cutoff:
            shutil.rmtree(jobs.jobs_dir(repo) / job["id"], ignore_errors=True)
            pruned += 1
    return pruned


def _repack(repo: Repo, pack: Pack, live: set[str], cutoff: float, report: GcReport) -> None:
    entries = list(pack.entries())
    dead = [e for e in entries if e[0] not in live]
    if not dead or pack.pack_path.stat().st_mtime >= cutoff:
        return
    writer = repo.store.pack_writer()
    for oid, offset, length in entries:
        if oid in live:
            writer.add(oid, pack.stored(offset, length))
    size = pack.pack_path.stat().st_size
    name = writer.finish()
    if name is not None:
        size -= (repo.store.pack_dir / f"{name}.pack").stat().st_size
    pack.close()
    # The new pack is published before the old one goes, so readers always find every object.
    pack.idx_path.unlink()
    pack.pack_path.unlink()
    report.freed_bytes += size
    report.removed_objects += len(dead)
    report.packs_rewritten += 1
