"""Where the hub keeps repositories: ``RepoStorage`` is the interface, ``DirStorage`` the embedded
default (one ordinary kiln repository per hosted repository, ``ROOT/repos/OWNER/NAME``, whose
working copy is never used). Every write goes through ``Repo`` and the store, so the hub gets the
same guarantees as a laptop: atomic writes, the repository lock, refs moved by compare-and-swap.
A later issue can put objects on S3 behind the same interface.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Protocol

from ..errors import StateError
from ..repo import Repo
from .meta import check_name


class RepoStorage(Protocol):
    def open(self, owner: str, name: str) -> Repo: ...
    def create(self, owner: str, name: str) -> Repo: ...
    def exists(self, owner: str, name: str) -> bool: ...
    def set_aside(self, owner: str, name: str) -> None: ...


class DirStorage:
    """Repositories as directories under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, owner: str, name: str) -> Path:
        # Both names passed check_name (one segment, no '..'): the path stays under root.
        return self.root / check_name(owner, "owner") / check_name(name, "repository name")

    def open(self, owner: str, name: str) -> Repo:
        return Repo(self.path(owner, name))

    def exists(self, owner: str, name: str) -> bool:
        return (self.path(owner, name) / ".kiln" / "config.json").is_file()

    def create(self, owner: str, name: str) -> Repo:
        path = self.path(owner, name)
        if self.exists(owner, name):
            raise StateError(f"repository {owner}/{name} already exists on this hub")
        path.parent.mkdir(parents=True, exist_ok=True)
        return Repo.init(path)

    def set_aside(self, owner: str, name: str) -> None:
        """Move a repository folder out of the way (into ROOT/orphans/), never delete it."""
        orphans = self.root.parent / "orphans"
        orphans.mkdir(exist_ok=True)
        os.rename(self.path(owner, name), orphans / f"{owner}.{name}.{time.time_ns()}")
