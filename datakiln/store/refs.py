"""Refs: the only mutable names in a repository.

``HEAD`` holds either ``ref: refs/heads/<branch>`` or a commit id (detached). Branches live in
``refs/heads/<name>``, tags in ``refs/tags/<name>``, each a file holding one commit id. Refs move
only by compare-and-swap under the repository lock, so two writers can never silently overwrite
each other's commit.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import BadName, CorruptObject, RefMoved
from .fsutil import FileLock, atomic_write

_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def check_name(name: str, kind: str) -> str:
    """Reject names git would reject, so names travel unchanged between tools."""
    bad = (
        not _NAME_OK.match(name)
        or ".." in name
        or "//" in name
        or name.endswith(("/", ".", ".lock"))
        or "/." in name
        or name == "HEAD"
        or len(name) > 200
    )
    if bad:
        raise BadName(
            f"{kind} name {name!r} is not allowed; use letters, digits, '.', '_', '-' and '/' "
            "(not starting with '-' or '.', no '..', not 'HEAD')"
        )
    return name


class Refs:
    def __init__(self, kiln_dir: Path, lock: FileLock) -> None:
        self.dir = kiln_dir
        self.lock = lock
        self.tmp_dir = kiln_dir / "tmp"

    def _path(self, ref: str) -> Path:
        return self.dir / ref

    def read(self, ref: str) -> str | None:
        """The commit id a ref points at, or None if the ref does not exist."""
        try:
            value = self._path(ref).read_text().strip()
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not _HEX64.match(value):
            raise CorruptObject(f"ref {ref} holds {value[:80]!r}, not a commit id; run 'kiln fsck'")
        return value

    def head(self) -> tuple[str | None, str | None]:
        """(symbolic ref or None if detached, commit id or None if unborn)."""
        text = (self.dir / "HEAD").read_text().strip()
        if text.startswith("ref: "):
            ref = text[5:]
            return ref, self.read(ref)
        if not _HEX64.match(text):
            raise CorruptObject(f"HEAD holds {text[:80]!r}; expected 'ref: refs/heads/NAME' or a commit id")
        return None, text

    def set_head(self, *, ref: str | None = None, commit: str | None = None) -> None:
        text = f"ref: {ref}\n" if ref else f"{commit}\n"
        with self.lock:
            atomic_write(self.dir / "HEAD", text.encode(), self.tmp_dir)

    def update(self, ref: str, new: str, expected: str | None) -> None:
        """Compare-and-swap: point ``ref`` at ``new`` only if it still points at ``expected``."""
        with self.lock:
            current = self.read(ref)
            if current != expected:
                raise RefMoved(
                    f"{ref} moved to {(current or 'nothing')[:12]} while this operation expected "
                    f"{(expected or 'nothing')[:12]}; another writer committed first, retry"
                )
            path = self._path(ref)
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, f"{new}\n".encode(), self.tmp_dir)

    def delete(self, ref: str, expected: str | None) -> None:
        with self.lock:
            if self.read(ref) != expected:
                raise RefMoved(f"{ref} moved while deleting it; retry")
            self._path(ref).unlink()

    def list(self, prefix: str) -> dict[str, str]:
        """Names under ``prefix`` (e.g. ``refs/heads/``) mapped to commit ids."""
        base = self.dir / prefix
        out: dict[str, str] = {}
        if not base.exists():
            return out
        for root, _dirs, files in os.walk(base):
            for f in files:
                full = Path(root) / f
                name = full.relative_to(base).as_posix()
                value = self.read(prefix + name)
                if value:
                    out[name] = value
        return dict(sorted(out.items()))
