"""The HTTP protocol ``kiln ui`` serves with: uvicorn's h11 protocol, plus deadlines for clients
that connect and then send a request slowly or never.

uvicorn closes an idle kept-alive connection, but not one that has sent half a request line or
half a body: a thousand of those held the server's file descriptors until it could accept no
one. Here a request's head must arrive within ``HEAD_TIMEOUT`` of the connection (or of the
first byte of the next request), and a body may not pause for longer than ``BODY_IDLE``.
"""

from __future__ import annotations

import asyncio
import resource
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

HEAD_TIMEOUT = 10.0  # seconds from connecting (or the next request's first byte) to a whole request head
BODY_IDLE = 30.0  # seconds a request body may pause between chunks


class GuardedH11Protocol(H11Protocol):
    """``H11Protocol`` that drops connections whose request stalls (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(HEAD_TIMEOUT)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        state = self.conn.their_state
        if state is h11.IDLE and self.conn.trailing_data[0]:
            self._arm(HEAD_TIMEOUT)  # part of a request head is waiting for the rest
        elif state is h11.SEND_BODY:
            self._arm(BODY_IDLE)
        else:
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
        self._deadline = None
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
