"""The package cache: one per user, content-addressed, safe under concurrent installs.

``$KILN_CACHE_HOME`` (default ``~/.cache/kiln``) holds ``packages/<sha256>.kiln.zip`` (a package
archive, named by the sha256 of its bytes) and beside it ``<sha256>.json``: what the hub said
about it (name, version, publisher, signing key, signature, dependencies). An entry is complete
when both exist: the archive is downloaded into ``tmp/``, checked (its hash, every file against
the manifest, the signature), fsynced and renamed into place, then the record is written the
same way. Two installs of the same package write the same bytes under the same name, so
whichever rename lands last changes nothing; a crash leaves at most a file in ``tmp/``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import BadPackage
from ..store.fsutil import fsync_dir, temp_path

_SHA = re.compile(r"^[0-9a-f]{64}$")
RECORD_MAX = 1 << 20


def cache_home() -> Path:
    env = os.environ.get("KILN_CACHE_HOME")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kiln"


class Cache:
    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else cache_home()
        self.dir = self.root / "packages"
        self.tmp = self.root / "tmp"

    def archive(self, sha: str) -> Path:
        if not _SHA.match(sha):
            raise BadPackage(f"{sha[:80]!r} is not a sha256; a package is named by the 64 hex digits of its hash")
        return self.dir / f"{sha}.kiln.zip"

    def record(self, sha: str) -> dict[str, Any] | None:
        """What the hub said about the cached package ``sha``, or None when it is not (fully) cached."""
        path = self.archive(sha).with_name(f"{sha}.json")
        try:
            data = json.loads(path.read_bytes()[:RECORD_MAX])
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and data.get("sha256") == sha and self.archive(sha).is_file() else None

    def records(self) -> list[dict[str, Any]]:
        """Every complete entry."""
        if not self.dir.is_dir():
            return []
        out = []
        for path in sorted(self.dir.glob("*.json")):
            if not _SHA.match(path.stem):
                continue  # not an entry (a file someone put there)
            rec = self.record(path.stem)
            if rec is not None:
                out.append(rec)
        return out

    def verified_bytes(self, sha: str) -> bytes:
        """The archive's bytes, refused if they no longer hash to ``sha`` (a damaged or altered cache)."""
        path = self.archive(sha)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise BadPackage(f"package {sha[:12]} is not in the cache ({self.dir}); run 'kiln install'") from None
        if hashlib.sha256(data).hexdigest() != sha:
            raise BadPackage(
                f"{path}: the cached archive no longer matches its sha256; it was altered or damaged. "
                "Run 'kiln install' again to fetch a good copy"
            )
        return data

    def spool(self) -> tuple[Path, BinaryIO]:
        """A temp file in the cache to download into."""
        self.tmp.mkdir(parents=True, exist_ok=True)
        path = temp_path(self.tmp, "download")
        return path, open(path, "wb")

    def publish(self, tmp: Path, sha: str, record: dict[str, Any]) -> Path:
        """Move a downloaded, checked archive into place, then its record."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        target = self.archive(sha)
        os.replace(tmp, target)
        rec_tmp = temp_path(self.tmp, "record")
        with open(rec_tmp, "w") as f:
            f.write(json.dumps({**record, "sha256": sha}, indent=2, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(rec_tmp, target.with_name(f"{sha}.json"))
        fsync_dir(self.dir)
        return target

    def drop(self, sha: str) -> None:
        """Forget an entry (its record first: an archive without a record is not an entry)."""
        for path in (self.archive(sha).with_name(f"{sha}.json"), self.archive(sha)):
            path.unlink(missing_ok=True)

    def clean_tmp(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
