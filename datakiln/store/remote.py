"""The client side of the hub protocol: one kept-alive HTTP connection to a hosted repository.

``Remote(url)`` speaks to ``URL/kiln/...`` (refs, fetch, objects, push) and to the hub's JSON
API; the porcelain (``datakiln.repo.sync``) decides what to ask for. HTTP errors come back as
the library's own (401 ``AuthRequired``, 403 ``PermissionDenied``, 404 ``RepoNotFound``, 409
``StateError``...) with the hub's message, so the CLI prints one line that says what to do.
Counters (requests, bytes sent and received) let the benchmarks report what a command cost.
"""

from __future__ import annotations

import http.client
import io
import json
from collections.abc import Iterable
from typing import Any, BinaryIO
from urllib.parse import quote, urlsplit

from ..errors import (
    AuthRequired,
    BadName,
    BadPackage,
    InputError,
    KilnError,
    PackageNotFound,
    PermissionDenied,
    RemoteError,
    RepoNotFound,
    SignatureError,
    StateError,
)
from . import wire
from .credentials import origin, token_for

# Errors the hub names (its JSON "kind") that the client raises as themselves rather than by status.
_PRECISE: dict[str, type[KilnError]] = {
    "PackageNotFound": PackageNotFound,
    "SignatureError": SignatureError,
    "BadPackage": BadPackage,
    "BadName": BadName,
}
TIMEOUT = 120.0  # seconds without a byte before a request fails


class _Counted(io.RawIOBase):
    """A response body that counts what it delivers."""

    def __init__(self, resp: http.client.HTTPResponse, remote: Remote) -> None:
        self.resp, self.remote = resp, remote

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = self.resp.readinto(b)
        self.remote.received += n
        return n


class Remote:
    """A hosted repository at ``url`` (``http://HOST:PORT/OWNER/NAME``)."""

    def __init__(self, url: str, *, token: str | None = None, timeout: float = TIMEOUT) -> None:
        self.url = url.rstrip("/")
        self.origin = origin(url)
        parts = urlsplit(self.url)
        self.path = parts.path
        self.token = token if token is not None else token_for(url)
        self.timeout = timeout
        self.scheme, self.host, self.port = parts.scheme, parts.hostname or "", parts.port
        self._conn: http.client.HTTPConnection | None = None
        self.requests = self.sent = self.received = 0

    # ---- plumbing -----------------------------------------------------------------------
    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
            self._conn = cls(self.host, self.port, timeout=self.timeout)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Remote:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        body: bytes | Iterable[bytes] | None = None,
        *,
        kind: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> http.client.HTTPResponse:
        """Send a request to ``path`` (absolute on the hub) and return its response, raising the
        library's error for a non-2xx status. A kept-alive connection the hub closed is retried once."""
        headers = {"Content-Type": kind, "Accept": "*/*", "User-Agent": "kiln", **(headers or {})}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        chunked = body is not None and not isinstance(body, bytes)
        # A kept-alive connection the hub closed is retried once, but only for requests that
        # change nothing (refs, fetch, objects): a merge or a comment sent twice would act twice.
        retry = method == "GET" or path.endswith(("/kiln/fetch", "/kiln/objects"))
        for attempt in (0, 1):
            conn = self._connection()
            try:
                if chunked:
                    conn.request(method, path, body=self._counting(body), headers=headers, encode_chunked=True)  # type: ignore[arg-type]
                else:
                    assert body is None or isinstance(body, bytes)
                    conn.request(method, path, body=body, headers=headers)
                    self.sent += len(body or b"")
                resp = conn.getresponse()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as e:
                self.close()
                if attempt or chunked or not retry:
                    raise RemoteError(f"the hub at {self.origin} closed the connection ({e}); retry") from None
            except OSError as e:
                self.close()
                raise RemoteError(
                    f"cannot reach the hub at {self.origin} ({e.strerror or e}); is 'kiln hub serve' running there?"
                ) from None
        self.requests += 1
        self.sent += sum(len(k) + len(v) + 4 for k, v in headers.items()) + len(method) + len(path) + 12
        if resp.status >= 300:
            raise self._error(resp)
        return resp

    def _counting(self, chunks: Iterable[bytes]) -> Iterable[bytes]:
        for c in chunks:
            self.sent += len(c)
            yield c

    def _error(self, resp: http.client.HTTPResponse) -> KilnError:
        raw = resp.read(1 << 16)
        self.received += len(raw)
        kind = None
        try:
            answer = json.loads(raw)
            message, kind = str(answer["error"]), answer.get("kind")
        except (ValueError, KeyError, TypeError):
            message = raw.decode("utf-8", "replace")[:300] or resp.reason
            if resp.status == 404:
                message = f"{self.url} is not a repository on a kiln hub (HTTP 404)"
        cls = {401: AuthRequired, 403: PermissionDenied, 404: RepoNotFound, 409: StateError, 400: InputError}
        err = cls.get(resp.status, RemoteError)
        if resp.status == 413:
            err = InputError
        if kind in _PRECISE:  # the hub named the error: a missing package is not a missing repository
            err = _PRECISE[kind]
        if resp.status == 401 and "kiln login" not in message:
            message += f"; run 'kiln login {self.origin}'"
        return err(f"{self.origin}: {message}")

    def _json(self, resp: http.client.HTTPResponse) -> Any:
        raw = resp.read()
        self.received += len(raw)
        try:
            return json.loads(raw)
        except ValueError:
            raise RemoteError(f"{self.url} answered something that is not JSON; is it a kiln hub?") from None

    def body(self, resp: http.client.HTTPResponse) -> BinaryIO:
        """A buffered, counted reader over a response body."""
        return io.BufferedReader(_Counted(resp, self), 1 << 20)

    # ---- the protocol -------------------------------------------------------------------
    def refs(self) -> dict[str, Any]:
        """{"refs": {ref: commit}, "head": default branch}."""
        return self._json(self.request("GET", f"{self.path}/kiln/refs"))  # type: ignore[no-any-return]

    def fetch(self, want: list[str] | None, have: list[str], *, images: bool = True) -> tuple[dict[str, Any], BinaryIO]:
        """(the hub's header: refs, objects; a reader positioned at the transfer pack)."""
        body = json.dumps({"want": want, "have": have, "images": images}).encode()
        stream = self.body(self.request("POST", f"{self.path}/kiln/fetch", body))
        return wire.read_frame(stream, f"the fetch from {self.url}"), stream

    def objects(self, ids: list[str]) -> BinaryIO:
        body = json.dumps({"ids": ids}).encode()
        return self.body(self.request("POST", f"{self.path}/kiln/objects", body))

    def push(self, updates: list[dict[str, Any]], pack: Iterable[bytes]) -> list[dict[str, str]]:
        def chunks() -> Iterable[bytes]:
            yield wire.frame({"updates": updates})
            yield from pack

        resp = self.request("POST", f"{self.path}/kiln/push", chunks(), kind="application/x-kiln-wire")
        return self._json(resp)["results"]  # type: ignore[no-any-return]

    # ---- the JSON API -------------------------------------------------------------------
    def api(self, method: str, path: str, obj: Any = None) -> Any:
        """``/api/v1/PATH`` on this hub, with an optional JSON body."""
        body = None if obj is None else json.dumps(obj).encode()
        return self._json(self.request(method, f"/api/v1/{path.lstrip('/')}", body))

    def repo_path(self) -> tuple[str, str]:
        """(owner, name) of the repository this URL names."""
        parts = [p for p in self.path.split("/") if p]
        if len(parts) != 2:
            raise InputError(f"{self.url} does not name a repository; expected {self.origin}/OWNER/NAME")
        return parts[0], parts[1]

    def repo_api(self, suffix: str = "") -> str:
        owner, name = self.repo_path()
        return f"repos/{quote(owner)}/{quote(name)}{suffix}"
