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
from .codec import check_oid
from .fsutil import FileLock, atomic_write, read_regular

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


REF_PREFIXES = ("refs/heads/", "refs/tags/", "refs/remotes/")
REF_MAX = 4096  # bytes of a ref file or HEAD: a commit id, or "ref: " and a name


def valid_ref(ref: str) -> bool:
    """True for ``refs/heads/NAME``, ``refs/tags/NAME`` or ``refs/remotes/REMOTE/NAME`` (a
    remote-tracking ref: where a remote's branch was when last fetched) with a NAME
    ``check_name`` allows."""
    for prefix in REF_PREFIXES:
        if ref.startswith(prefix):
            try:
                check_name(ref[len(prefix) :], "ref")
            except BadName:
                return False
            return True
    return False


def check_ref(ref: str, where: str = "ref") -> str:
    """``ref`` if it is a branch or tag ref; every ref name read from disk passes here before it
    becomes a path, by the same rules as a name a user types (so ``ref: ../../x`` goes nowhere)."""
    if not valid_ref(ref):
        raise CorruptObject(
            f"{where} names {ref[:80]!r}, not a branch or tag (refs/heads/NAME or refs/tags/NAME); "
            "run 'kiln fsck', and fix it with 'kiln checkout BRANCH'"
        )
    return ref


class Refs:
    def __init__(self, kiln_dir: Path, lock: FileLock) -> None:
        self.dir = kiln_dir
        self.lock = lock
        self.tmp_dir = kiln_dir / "tmp"

    def _path(self, ref: str) -> Path:
        return self.dir / check_ref(ref)

    def read(self, ref: str) -> str | None:
        """The commit id a ref points at, or None if the ref does not exist."""
        path = self._path(ref)
        try:
            value = read_regular(path, REF_MAX).decode().strip()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as e:
            if path.is_dir():
                return None  # refs/heads/a when refs/heads/a/b exists: a folder of refs, not a ref
            raise CorruptObject(f"ref {ref} cannot be read ({e.strerror or e}); run 'kiln fsck'") from None
        except UnicodeDecodeError as e:
            raise CorruptObject(f"ref {ref} cannot be read ({e}); run 'kiln fsck'") from None
        if not _HEX64.match(value):
            raise CorruptObject(f"ref {ref} holds {value[:80]!r}, not a commit id; run 'kiln fsck'")
        return value

    def head(self) -> tuple[str | None, str | None]:
        """(symbolic ref or None if detached, commit id or None if unborn)."""
        try:
            text = read_regular(self.dir / "HEAD", REF_MAX).decode().strip()
        except (OSError, UnicodeDecodeError) as e:
            raise CorruptObject(f"{self.dir / 'HEAD'} cannot be read ({e}); run 'kiln fsck'") from None
        if text.startswith("ref: "):
            ref = text[5:]
            if not ref.startswith("refs/heads/"):
                raise CorruptObject(
                    f"HEAD names {ref[:80]!r}, not a branch (refs/heads/NAME); fix it with 'kiln checkout BRANCH'"
                )
            check_ref(ref, "HEAD")
            return ref, self.read(ref)
        if not _HEX64.match(text):
            raise CorruptObject(f"HEAD holds {text[:80]!r}; expected 'ref: refs/heads/NAME' or a commit id")
        return None, text

    def set_head(self, *, ref: str | None = None, commit: str | None = None) -> None:
        text = f"ref: {check_ref(ref)}\n" if ref else f"{check_oid(commit, 'commit id')}\n"
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
            atomic_write(path, f"{check_oid(new, 'commit id')}\n".encode(), self.tmp_dir)

    def delete(self, ref: str, expected: str | None) -> None:
        with self.lock:
            if self.read(ref) != expected:
                raise RefMoved(f"{ref} moved while deleting it; retry")
            self._path(ref).unlink()

    def names(self, prefix: str) -> list[str]:
        """Every file name under ``prefix``, valid ref name or not (``fsck`` reports the others)."""
        base = self.dir / prefix
        return sorted(
            (Path(root) / f).relative_to(base).as_posix() for root, _dirs, files in os.walk(base) for f in files
        )

    def list(self, prefix: str) -> dict[str, str]:
        """Names under ``prefix`` (e.g. ``refs/heads/``) mapped to commit ids."""
        base = self.dir / prefix
        out: dict[str, str] = {}
        if not base.exists():
            return out
        for name in self.names(prefix):
            if valid_ref(prefix + name):
                value = self.read(prefix + name)
                if value:
                    out[name] = value
        return dict(sorted(out.items()))
