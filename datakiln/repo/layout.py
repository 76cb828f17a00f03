"""Every path under ``.kiln/``, with the package that owns it (the only one that writes it).

A test checks that docs/format.md names each of them, so a new working-copy file cannot appear
undocumented. Paths are relative to the ``.kiln`` directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

KILN_DIR = ".kiln"

# (path, owner, what it holds): the repository's files, then the working copy's, then caches.
PATHS: tuple[tuple[str, str, str], ...] = (
    ("config.json", "repo", "format version, repository id, optional user name"),
    ("HEAD", "store.refs", "'ref: refs/heads/NAME' or a commit id (detached)"),
    ("refs/heads/", "store.refs", "branches: one file per branch holding a commit id"),
    ("refs/tags/", "store.refs", "tags: one file per tag holding a commit id"),
    (
        "refs/remotes/",
        "repo.sync",
        "remote-tracking refs: refs/remotes/REMOTE/BRANCH, a remote's branch when last fetched",
    ),
    ("objects/", "store", "loose objects, objects/ab/cdef... (256 fan-out folders)"),
    ("objects/pack/", "store", "packs: *.pack and their *.idx"),
    ("lock", "repo", "flock'ed by every writer; empty"),
    ("tmp/", "store", "temp files before their rename, and builds being written; gc clears leftovers"),
    ("stage.json", "repo.stage", "staged changes, a merge in progress, keep marks staged with them"),
    ("kept.json", "repo.stage", "keep marks of committed keeps: labels a reviewer confirmed"),
    ("queue.json", "review", "the labelling queue: example ids chosen to label next"),
    ("builds/", "compile", "one folder per build: build.json, package/, predictions"),
    ("jobs/", "compile.jobs", "one folder per build process: job.json, progress.json, out.json, err.txt"),
    ("cache/pixels-*.npy", "compile.data", "decoded pixels per (images, input contract); disposable"),
    ("cache/thumbs/", "server.thumbs", "thumbnails by blob id for kiln ui; disposable"),
    ("cache/index/", "repo.index", "example id indexes per table state, for fast label edits; disposable"),
)


@dataclass(frozen=True)
class Layout:
    """The paths of one repository's ``.kiln`` directory."""

    dir: Path

    @property
    def config(self) -> Path:
        return self.dir / "config.json"

    @property
    def head(self) -> Path:
        return self.dir / "HEAD"

    @property
    def objects(self) -> Path:
        return self.dir / "objects"

    @property
    def lock(self) -> Path:
        return self.dir / "lock"

    @property
    def tmp(self) -> Path:
        return self.dir / "tmp"

    @property
    def stage(self) -> Path:
        return self.dir / "stage.json"

    @property
    def kept(self) -> Path:
        return self.dir / "kept.json"

    @property
    def queue(self) -> Path:
        return self.dir / "queue.json"

    @property
    def builds(self) -> Path:
        return self.dir / "builds"

    @property
    def jobs(self) -> Path:
        return self.dir / "jobs"

    @property
    def cache(self) -> Path:
        return self.dir / "cache"

    @property
    def index_cache(self) -> Path:
        return self.dir / "cache" / "index"
