"""``Hub``: hosted repositories, their metadata, and who may do what. The web layer (``hub.app``)
and the admin commands (``kiln hub user add``) are both thin over it.

Access: a repository's owner and hub admins have ``admin``; collaborators have the role they were
given; anyone has ``read`` on a public repository. A token caps what its user may do by its
scopes. Someone who may not read a private repository is told it does not exist (404), never
that it is private.
"""

from __future__ import annotations

import threading
from pathlib import Path

from ..errors import AuthRequired, InputError, PermissionDenied, RepoNotFound
from ..repo import Repo
from .meta import Meta, RepoInfo, SQLiteMeta, Token, check_name, rank
from .storage import DirStorage, RepoStorage

OPEN_MAX = 32  # repositories kept open (their pack indexes and table caches) between requests
PUSH_MAX = 16 << 30  # bytes of one push; a deployment can lower it (kiln hub serve --max-push)


class Hub:
    def __init__(
        self, root: Path, *, meta: Meta | None = None, storage: RepoStorage | None = None, push_max: int = PUSH_MAX
    ) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.meta: Meta = meta if meta is not None else SQLiteMeta(self.root / "hub.db")
        self.storage: RepoStorage = storage if storage is not None else DirStorage(self.root / "repos")
        self.push_max = push_max
        self._open: dict[tuple[str, str], Repo] = {}
        self._lock = threading.Lock()

    # ---- who is asking ------------------------------------------------------------------
    def identify(self, token: str | None) -> Token | None:
        """The token's owner, None for an anonymous request; a wrong token is an error, not anonymous."""
        if not token:
            return None
        found = self.meta.check_token(token)
        if found is None:
            raise AuthRequired(
                "the hub refused this token (unknown, expired or revoked); get a new one from the hub's admin "
                "('kiln hub token add USER') and run 'kiln login URL'"
            )
        return found

    def access(self, who: Token | None, owner: str, name: str, need: str) -> RepoInfo:
        """The repository if ``who`` may ``need`` (read, write or admin) in it."""
        info = self.meta.repo(owner, name) if _plausible(owner, name) else None
        role = self.meta.role(info, who.user if who else None) if info else None
        if info is None or role is None:
            raise RepoNotFound(
                f"repository {owner}/{name} is not on this hub, or you may not see it"
                + ("" if who else "; if it is private, log in first: 'kiln login URL'")
            )
        if rank(role) < rank(need):
            if who is None:
                raise AuthRequired(f"{need} access to {owner}/{name} needs a token; run 'kiln login URL'")
            raise PermissionDenied(f"{who.user} has {role} access to {owner}/{name}; this needs {need}")
        if who is not None and not who.allows(need):
            raise PermissionDenied(
                f"this token's scopes ({', '.join(who.scopes)}) do not allow {need}; make a token with that scope"
            )
        return info

    def role(self, who: Token | None, info: RepoInfo) -> str | None:
        role = self.meta.role(info, who.user if who else None)
        if who is not None and role is not None:
            cap = max(rank(s) for s in who.scopes)
            role = role if rank(role) <= cap else ("read", "write", "admin")[cap - 1]
        return role

    def visible(self, who: Token | None) -> list[RepoInfo]:
        return [r for r in self.meta.repos() if self.meta.role(r, who.user if who else None) is not None]

    # ---- repositories -------------------------------------------------------------------
    def create(self, who: Token | None, owner: str, name: str, *, private: bool, description: str = "") -> RepoInfo:
        if who is None:
            raise AuthRequired("creating a repository needs a token; run 'kiln login URL'")
        check_name(owner, "owner")
        check_name(name, "repository name")
        if not who.allows("write"):
            raise PermissionDenied("this token is read-only; creating a repository needs the write scope")
        if owner != who.user and not self.meta.is_admin(who.user):
            raise PermissionDenied(f"{who.user} may not create repositories for {owner}")
        if len(description) > 2000:
            raise InputError("a repository description is at most 2,000 characters")
        if self.meta.repo(owner, name) is None and self.storage.exists(owner, name):
            self.storage.set_aside(owner, name)  # left by a crash between the two steps below: kept, not deleted
        self.storage.create(owner, name)
        return self.meta.add_repo(owner, name, private=private, description=description)

    def open(self, info: RepoInfo) -> Repo:
        """The repository, kept open between requests: its pack indexes (4 MB at 100,000 images)
        are read once, not per request. A pack written or removed by another process (a push,
        ``kiln gc``) changes the pack folder's mtime, and the list is read again."""
        key = (info.owner, info.name)
        with self._lock:
            repo = self._open.pop(key, None)
            if repo is not None:
                self._open[key] = repo  # most recently used last: the first is dropped first
        if repo is not None:
            repo.store.refresh()
            return repo
        opened = self.storage.open(info.owner, info.name)
        with self._lock:
            repo = self._open.setdefault(key, opened)  # another thread may have opened it meanwhile
            while len(self._open) > OPEN_MAX:
                self._open.pop(next(iter(self._open)))
        return repo


def _plausible(owner: str, name: str) -> bool:
    try:
        check_name(owner, "owner")
        check_name(name, "repository name")
    except InputError:
        return False
    return True
