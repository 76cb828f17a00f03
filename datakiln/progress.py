"""A minimal progress bar on stderr, shown only when stderr is a terminal (or KILN_PROGRESS=1)."""

from __future__ import annotations

import os
import sys
import time
from types import TracebackType


class Progress:
    def __init__(self, total: int, desc: str, *, enabled: bool | None = None) -> None:
        self.total, self.desc, self.n = total, desc, 0
        if enabled is None:
            enabled = os.environ.get("KILN_PROGRESS") == "1" or (
                sys.stderr.isatty() and os.environ.get("KILN_PROGRESS") != "0"
            )
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
