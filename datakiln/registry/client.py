"""The registry's client: the hub's package API over one kept-alive connection (``store.remote``).

Routes (docs/registry.md): ``GET /api/v1/packages`` lists packages; ``GET .../packages/O/N``
gives every version (hash, size, publisher, key, signature, metrics); ``GET .../O/N/V/archive``
the archive's bytes; ``PUT .../O/N/V`` publishes one, with its signature in headers;
``POST /api/v1/user/keys`` registers a public key; ``GET /api/v1/users/U/keys`` lists one's keys.
"""

from __future__ import annotations

import hashlib
import http.client
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..errors import BadPackage, RemoteError
from ..store.remote import Remote

ATTEMPTS = 3  # a download cut off by the network is tried again from the start this many times
CHUNK = 1 << 20


class Registry:
    def __init__(self, hub: str, *, token: str | None = None) -> None:
        self.hub = hub
        self.remote = Remote(hub, token=token)

    def close(self) -> None:
        self.remote.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _path(owner: str, name: str, *rest: str) -> str:
        return "/".join(["packages", *(quote(part, safe="") for part in (owner, name, *rest))])

    def packages(self) -> list[dict[str, Any]]:
        return list(self.remote.api("GET", "packages")["packages"])

    def info(self, owner: str, name: str) -> dict[str, Any]:
        """{"name", "versions": [{"version", "sha256", "size", "publisher", "key", "signature", ...}], "keys"}."""
        return dict(self.remote.api("GET", self._path(owner, name)))

    def version(self, owner: str, name: str, version: str) -> dict[str, Any]:
        return dict(self.remote.api("GET", self._path(owner, name, version)))

    def download(self, owner: str, name: str, version: str, sha: str, out: Path, size: int | None = None) -> None:
        """The archive of one version into ``out``, checked against ``sha`` as it arrives; a
        connection cut mid-way is retried from the start, a wrong hash is not retried."""
        path = "/api/v1/" + self._path(owner, name, version, "archive")
        for attempt in range(ATTEMPTS):
            h = hashlib.sha256()
            try:
                resp = self.remote.request("GET", path)
                with open(out, "wb") as f:
                    got = 0
                    while chunk := resp.read(CHUNK):
                        got += len(chunk)
                        if size is not None and got > size:  # a hub streaming without end fills no disk
                            raise BadPackage(
                                f"{self.hub}: the archive of {owner}/{name} {version} is over the {size:,} bytes the "
                                "hub's record names; refusing it. Nothing was installed"
                            )
                        h.update(chunk)
                        f.write(chunk)
                        self.remote.received += len(chunk)
                if resp.length:  # the connection closed before Content-Length bytes arrived
                    raise RemoteError(f"{self.hub}: the download of {owner}/{name} {version} was cut off")
            except (RemoteError, OSError, http.client.HTTPException) as e:
                self.remote.close()
                if attempt == ATTEMPTS - 1 or _not_transient(e):
                    if isinstance(e, http.client.HTTPException):
                        raise RemoteError(
                            f"{self.hub}: the download of {owner}/{name} {version} failed ({e!r})"
                        ) from None
                    raise
                time.sleep(0.2 * (attempt + 1))
                continue
            if h.hexdigest() != sha:
                raise BadPackage(
                    f"{self.hub}: the archive of {owner}/{name} {version} hashes to {h.hexdigest()[:12]}, not the "
                    f"{sha[:12]} the hub (or kiln.lock) names; it was replaced or damaged. Nothing was installed"
                )
            return

    def publish(self, owner: str, name: str, version: str, archive: bytes, signature: str, key: str) -> dict[str, Any]:
        import json

        headers = {"X-Kiln-Signature": signature, "X-Kiln-Key": key}
        resp = self.remote.request(
            "PUT", "/api/v1/" + self._path(owner, name, version), archive, kind="application/zip", headers=headers
        )
        return dict(json.loads(resp.read()))

    def add_key(self, public: str, proof: str) -> dict[str, Any]:
        """Register ``public`` for the token's user; ``proof`` is the key's signature of that name."""
        return dict(self.remote.api("POST", "user/keys", {"public": public, "proof": proof}))

    def keys(self, user: str) -> dict[str, str]:
        """key id -> public key of ``user`` on this hub."""
        return dict(self.remote.api("GET", f"users/{quote(user, safe='')}/keys")["keys"])


def _not_transient(e: Exception) -> bool:
    """Errors a retry cannot fix: the hub answered (a 4xx), as opposed to a cut connection."""
    from ..errors import AuthRequired, PermissionDenied

    transient = (RemoteError, OSError, http.client.HTTPException)
    return isinstance(e, (AuthRequired, PermissionDenied)) or not isinstance(e, transient)
