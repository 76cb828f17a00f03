"""Durable file primitives: atomic writes and an inter-process lock.

Every write in a repository goes through ``atomic_write``: the bytes land in a temp file in the
same directory tree, are fsynced, renamed over the target, and the directory is fsynced. A crash
at any instant leaves either the old file or the new one, never a torn file.
"""

from __future__ import annotations

import errno
import fcntl
import itertools
import os
import stat
import threading
import time
from pathlib import Path
from types import TracebackType

from ..errors import LockTimeout


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_COUNTER = itertools.count()


def temp_path(tmp_dir: Path, hint: str) -> Path:
    # pid + a counter + monotonic ns: unique across processes and across a server's threads.
    return tmp_dir / f"{hint}.{os.getpid()}.{next(_COUNTER)}.{time.monotonic_ns()}.tmp"


def atomic_write(target: Path, data: bytes, tmp_dir: Path) -> None:
    """Write ``data`` to ``target`` so that readers see all of it or none of it."""
    tmp = temp_path(tmp_dir, target.name)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target)
    fsync_dir(target.parent)


def read_regular(path: Path, limit: int) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them. Anything else (a FIFO,
    a device, a folder, a link to /dev/zero) raises ``OSError`` at once instead of blocking or
    filling memory: the files of a repository are read from a disk that someone else may have
    written. A missing file raises ``FileNotFoundError``."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        if st.st_size > limit:
            raise OSError(errno.EFBIG, f"{st.st_size:,} bytes, over the {limit:,}-byte limit", str(path))
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(limit + 1)[:limit]
    finally:
        os.close(fd)


def publish(tmp: Path, target: Path) -> None:
    """Move a fully written, fsynced temp file into place (no-op if an equal one exists)."""
    os.replace(tmp, target)
    fsync_dir(target.parent)


class FileLock:
    """An exclusive ``flock`` on a file; released by the kernel if the holder dies.

    Because the kernel drops the lock when a process is killed, a ``kill -9`` never leaves the
    repository locked (unlike lock files that must be deleted). ``flock`` excludes processes, not
    the threads of one (a server shares a ``Repo`` between request threads), so a thread lock is
    taken first; both are reentrant for the thread that holds them.
    """

    def __init__(self, path: Path, *, timeout: float = 30.0, what: str = "repository") -> None:
        self.path = path
        self.timeout = timeout
        self.what = what
        self._fd: int | None = None
        self._depth = 0  # touched only by the thread holding _thread
        self._thread = threading.RLock()

    def acquire(self) -> None:
        if not self._thread.acquire(timeout=self.timeout):
            raise LockTimeout(
                f"the {self.what} at {self.path.parent} stayed locked by another thread for {self.timeout:.0f} s"
            )
        if self._depth:
            self._depth += 1
            return
        try:
            self._flock()
        except BaseException:
            self._thread.release()
            raise
        self._depth = 1

    def _flock(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.timeout
        delay = 0.001
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise LockTimeout(
                        f"the {self.what} at {self.path.parent} stayed locked by another kiln "
                        f"process for {self.timeout:.0f} s; wait for it to finish and retry"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
        self._fd = fd

    def release(self) -> None:
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
        self._thread.release()

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
