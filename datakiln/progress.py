"""A minimal progress bar on stderr, shown only when stderr is a terminal (or KILN_PROGRESS=1)."""

from __future__ import annotations

import json
import os
import sys
import time
from types import TracebackType
from typing import Any

PROGRESS_FILE_ENV = "KILN_PROGRESS_FILE"


def progress_enabled() -> bool:
    """KILN_PROGRESS=1 (or true/yes/on) forces bars, 0 (false/no/off) hides them; default: on a terminal."""
    env = os.environ.get("KILN_PROGRESS", "").strip().lower()
    if env in ("1", "true", "yes", "on"):
        return True
    if env in ("0", "false", "no", "off"):
        return False
    return sys.stderr.isatty()


class Progress:
    def __init__(self, total: int, desc: str, *, enabled: bool | None = None) -> None:
        self.total, self.desc, self.n = total, desc, 0
        if enabled is None:
            enabled = progress_enabled()
        self.enabled = enabled and total > 0
        self.start = self._last = time.monotonic()

    def update(self, k: int = 1) -> None:
        self.n += k
        now = time.monotonic()
        # Redrawing more than ~10 times a second costs more than it tells.
        if self.enabled and (now - self._last > 0.1 or self.n >= self.total):
            self._last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        frac = min(self.n / self.total, 1.0)
        bar = "#" * int(frac * 30)
        rate = self.n / max(now - self.start, 1e-9)
        sys.stderr.write(f"\r{self.desc} [{bar:<30}] {self.n}/{self.total} {rate:,.0f}/s")
        sys.stderr.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()


_json_lines = False


def json_lines(on: bool = True) -> None:
    """Also write every progress event to stderr as one JSON line (``kiln build --json``)."""
    global _json_lines
    _json_lines = on


def report_progress(**event: Any) -> None:
    """Write ``event`` as JSON to the file named by KILN_PROGRESS_FILE, if set (``kiln ui`` polls
    it), and as a line on stderr after ``json_lines()``.

    Written to a temp file and renamed, so a reader sees a whole event; not fsynced, because
    progress that a crash loses is worth nothing.
    """
    if _json_lines:
        sys.stderr.write(json.dumps({"event": "progress", **event, "time": round(time.time(), 3)}) + "\n")
        sys.stderr.flush()
    path = os.environ.get(PROGRESS_FILE_ENV)
    if not path:
        return
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w") as f:
            json.dump({**event, "time": time.time()}, f)
        os.replace(tmp, path)
    except OSError:
        pass  # progress is advisory: a full disk must not fail the build
