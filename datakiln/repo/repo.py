"""``Repo``: the porcelain. Import, label, commit, log, diff, branch, merge, over the plumbing.

``Repo`` is assembled from parts that each fit in a sitting: ``base`` (its pieces: store, refs,
tables, indexes, the stage under the lock), ``editing`` (import, label, keep, remove, commit),
``branching`` (branches, tags, checkout, merge) and ``reading`` (status, log, diff, ls, fsck, gc).

Layout of a repository (every path, with its owner: ``datakiln.repo.layout``; docs/format.md)::

    <root>/.kiln/config.json      format version and repository id
    <root>/.kiln/HEAD             "ref: refs/heads/main" or a commit id
    <root>/.kiln/refs/heads/...   branches; refs/tags/... tags
    <root>/.kiln/objects/         loose objects and packs
    <root>/.kiln/stage.json       staged changes, a merge in progress, keep marks
    <root>/.kiln/lock             flock'ed by every writer
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ..errors import InputError, RepoExists
from ..store.fsutil import fsync_dir
from ..store.refs import check_name
from .base import DEFAULT_BRANCH, FORMAT
from .layout import KILN_DIR
from .reading import Reading
from .sync import FetchResult, Progress, Syncing, check_url, default_branch


class Repo(Syncing, Reading):
    """A dataset repository on disk."""

    # ---- creation ------------------------------------------------------------------------
    @classmethod
    def init(cls, path: str | os.PathLike[str] = ".", *, branch: str = DEFAULT_BRANCH) -> Repo:
        root = Path(path)
        kdir = root / KILN_DIR
        if (kdir / "config.json").exists():
            raise RepoExists(f"{root.resolve()} is already a kiln repository")
        check_name(branch, "branch")
        root.mkdir(parents=True, exist_ok=True)
        # Build everything in a temp dir and rename it into place: init is all-or-nothing.
        tmp = root / f".kiln-init-{os.getpid()}"
        for sub in ("objects/pack", "refs/heads", "refs/tags", "tmp"):
            (tmp / sub).mkdir(parents=True, exist_ok=True)
        # All 256 fan-out directories up front: a commit then only adds files, never directories.
        for i in range(256):
            (tmp / "objects" / f"{i:02x}").mkdir()
        import uuid  # here: it imports platform, 5 ms of every command's start-up

        cfg = {"format": FORMAT, "repo_id": uuid.uuid4().hex}
        (tmp / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
        (tmp / "HEAD").write_text(f"ref: refs/heads/{branch}\n")
        fsync_dir(tmp)
        os.rename(tmp, kdir)
        fsync_dir(root)
        return cls(root)

    @classmethod
    def clone(
        cls, url: str, path: str | os.PathLike[str], *, labels_only: bool = False, progress: Progress | None = None
    ) -> tuple[Repo, FetchResult]:
        """A new repository at ``path`` from the hosted one at ``url``: remote ``origin``, every
        branch fetched, the remote's default branch checked out. With ``labels_only``, no images
        (a partial clone: they are fetched when first needed). A failed clone leaves nothing."""
        url, root = check_url(url), Path(path)
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise InputError(f"{root} already exists and is not empty; clone into a new directory")
        created = not root.exists()
        try:
            repo = cls.init(root)
            repo.add_remote("origin", url)
            if labels_only:
                repo.set_partial("origin")
            fetched = repo.fetch("origin", progress=progress)
            chosen = default_branch(repo.tracking("origin"), fetched["head"])
            if chosen is not None:
                repo.refs.update(f"refs/heads/{chosen[0]}", chosen[1], None)
                repo.refs.set_head(ref=f"refs/heads/{chosen[0]}")
            return repo, fetched
        except BaseException:
            shutil.rmtree(root if created else root / KILN_DIR, ignore_errors=True)
            raise
