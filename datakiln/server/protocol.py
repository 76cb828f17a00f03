"""The HTTP protocol ``kiln ui`` serves with: uvicorn's h11 protocol, plus deadlines for clients
that connect and then send a request slowly or never.

uvicorn closes an idle kept-alive connection, but not one that has sent half a request line or
half a body: a thousand of those held the server's file descriptors until it could accept no
one. Here a request's head must be whole within ``HEAD_TIMEOUT`` of the connection (or of the
first byte of the next request; later bytes do not extend it, so a byte every few seconds does
not hold a connection), and a body may not pause for longer than ``BODY_IDLE`` nor take longer
than ``BODY_TIMEOUT`` in all.
"""

from __future__ import annotations

import asyncio
import resource
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

HEAD_TIMEOUT = 10.0  # seconds from connecting (or the next request's first byte) to a whole request head
BODY_IDLE = 30.0  # seconds a request body may pause between chunks
BODY_TIMEOUT = 300.0  # seconds a request body may take in all: 64 MB over a slow link, not forever


class GuardedH11Protocol(H11Protocol):
    """``H11Protocol`` that drops connections whose request stalls (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._phase: str | None = None  # "head" or "body": what the armed deadline waits for
        self._body_since = 0.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._phase = "head"
        self._arm(HEAD_TIMEOUT)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        state = self.conn.their_state
        if state is h11.IDLE and self.conn.trailing_data[0]:
            if self._phase != "head":  # the first bytes of a head: its deadline starts now, once
                self._phase = "head"
                self._arm(HEAD_TIMEOUT)
        elif state is h11.SEND_BODY:
            if self._phase != "body":
                self._phase, self._body_since = "body", self.loop.time()
            left = BODY_TIMEOUT - (self.loop.time() - self._body_since)
            self._arm(max(0.0, min(BODY_IDLE, left)))
        else:
            self._phase = None
            self._disarm()  # a whole request: the app has it now

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline, self._phase = None, None
        if self.conn.their_state in (h11.IDLE, h11.SEND_BODY) and not self.transport.is_closing():
            self.transport.close()


def raise_open_file_limit() -> None:
    """Let the server hold as many connections as the system allows this process (the soft limit
    is often 1,024, the hard one far higher): a burst of clients is then queued, not refused."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 65536, hard))
        except (ValueError, OSError):
            pass
