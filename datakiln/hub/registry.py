"""The package registry in the hub: publish, list, describe and download model packages.

A version is published once and never changes: the hub checks the archive (every file against
the manifest, the ONNX graph for external data), that the manifest names the package and version
it is published as and its publisher, and that the publisher's registered key signed the
manifest digest; only then is the archive stored under its sha256 (``ROOT/packages/``) and the
version recorded. Anyone may read packages; publishing under ``OWNER/`` takes a write token of
``OWNER`` (or of a hub admin). Routes are listed in docs/registry.md.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, Response
from starlette.concurrency import run_in_threadpool

from ..errors import AuthRequired, BadPackage, InputError, PackageNotFound, PermissionDenied, SignatureError, StateError
from ..package import MANIFEST, read_package_files
from ..registry import keys
from ..registry.ref import check_segment
from ..registry.semver import Range, Version
from ..store.fsutil import fsync_dir, temp_path
from .app import TooLarge, json_response, read_json, who
from .hub import Hub

PACKAGE_MAX = 2 << 30  # bytes of one archive: a package's files are capped at 1 GiB each


def blob_path(hub: Hub, sha: str) -> Path:
    return hub.root / "packages" / f"{sha}.kiln.zip"


def public_version(row: dict[str, Any], *, manifest: bool = False) -> dict[str, Any]:
    """What a client sees of a version: enough to choose, download, verify and describe it."""
    m = json.loads(row["manifest"])
    out = {
        k: row[k]
        for k in ("version", "sha256", "size", "digest", "publisher", "key", "signature", "created", "downloads")
    }
    out.update(
        classes=m.get("classes"),
        input=m.get("input"),
        metrics=m.get("metrics"),
        lineage=m.get("lineage"),
        architecture=m.get("architecture"),
        dependencies=m.get("dependencies") or [],
        expect=m.get("expect"),
    )
    if manifest:
        out["manifest"] = m
    return out


def latest(rows: list[dict[str, Any]]) -> str | None:
    best = Range("*").best(Version.parse(r["version"]) for r in rows)
    if best is None and rows:  # only pre-releases: the newest of them
        best = max((Version.parse(r["version"]) for r in rows), key=Version.key)
    return None if best is None else str(best)


def describe(hub: Hub, owner: str, name: str) -> dict[str, Any]:
    rows = hub.meta.versions(owner, name)
    if not rows:
        raise PackageNotFound(f"no package {owner}/{name} on this hub; 'kiln packages' lists them")
    publishers = {r["publisher"] for r in rows}
    return {
        "name": f"{owner}/{name}",
        "latest": latest(rows),
        "downloads": sum(r["downloads"] for r in rows),
        "versions": [public_version(r) for r in rows],
        "keys": {p: hub.meta.keys(p) for p in sorted(publishers)},
    }


def one_version(hub: Hub, owner: str, name: str, version: str) -> dict[str, Any]:
    row = hub.meta.version(owner, name, version)
    if row is None:
        have = [r["version"] for r in hub.meta.versions(owner, name)]
        raise PackageNotFound(
            f"no version {version} of {owner}/{name}; published: {', '.join(have)}"
            if have
            else f"no package {owner}/{name} on this hub; 'kiln packages' lists them"
        )
    return row


def accept(
    hub: Hub, user: str, owner: str, name: str, version: str, tmp: Path, sha: str, key_id: str, signature: str
) -> dict[str, Any]:
    """Check a spooled archive (whose sha256 was taken as it arrived) and record it as
    ``owner/name`` ``version`` (runs in a thread)."""
    size = tmp.stat().st_size
    files = read_package_files(tmp)  # hashes, sizes, the graph's external data: BadPackage if anything is off
    manifest = json.loads(files[MANIFEST])
    full = f"{owner}/{name}"
    if (manifest.get("name"), manifest.get("version"), manifest.get("publisher")) != (full, version, user):
        raise BadPackage(
            f"the package says it is {manifest.get('name')} {manifest.get('version')} by {manifest.get('publisher')}, "
            f"not {full} {version} by {user}; publish it with 'kiln publish', which names it"
        )
    public = hub.meta.keys(user).get(key_id)
    if public is None:
        raise SignatureError(f"{user} has no key {key_id} on this hub; 'kiln publish' registers your key first")
    if not keys.verify(public, manifest["digest"], signature):
        raise SignatureError(f"the signature does not verify with {user}'s key {key_id}; nothing was published")
    target = blob_path(hub, sha)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, target)  # content-addressed: a second upload of the same bytes is the same file
    fsync_dir(target.parent)
    fields = {
        "owner": owner,
        "name": name,
        "version": version,
        "sha256": sha,
        "size": size,
        "digest": manifest["digest"],
        "publisher": user,
        "key": key_id,
        "signature": signature,
        "manifest": json.dumps(manifest, sort_keys=True),
    }
    hub.meta.add_version(fields)
    return {"name": full, "version": version, "sha256": sha, "size": size}


def may_publish(hub: Hub, request: Request, owner: str) -> str:
    token = who(hub, request)
    if token is None:
        raise AuthRequired("publishing needs a token; run 'kiln login URL'")
    if not token.allows("write"):
        raise PermissionDenied(
            f"this token's scopes ({', '.join(token.scopes)}) do not allow publishing; it needs write"
        )
    if token.user != owner and not hub.meta.is_admin(token.user):
        raise PermissionDenied(f"{token.user} may not publish under {owner}/; publish under {token.user}/ instead")
    return token.user


def add_routes(app: FastAPI, hub: Hub) -> None:
    @app.get("/api/v1/packages")
    def packages() -> Response:
        out = []
        for p in hub.meta.packages():
            rows = hub.meta.versions(p["owner"], p["name"])
            out.append({**p, "full_name": f"{p['owner']}/{p['name']}", "latest": latest(rows)})
        return json_response({"packages": out})

    @app.get("/api/v1/packages/{owner}/{name}")
    def package(owner: str, name: str) -> Response:
        return json_response(describe(hub, owner, name))

    @app.get("/api/v1/packages/{owner}/{name}/{version}")
    def version(owner: str, name: str, version: str) -> Response:
        return json_response(public_version(one_version(hub, owner, name, version), manifest=True))

    @app.get("/api/v1/packages/{owner}/{name}/{version}/archive")
    def archive(owner: str, name: str, version: str) -> Response:
        row = one_version(hub, owner, name, version)
        hub.meta.count_download(owner, name, version)
        return FileResponse(
            blob_path(hub, row["sha256"]), media_type="application/zip", headers={"ETag": row["sha256"]}
        )

    @app.put("/api/v1/packages/{owner}/{name}/{version}")
    async def publish(owner: str, name: str, version: str, request: Request) -> Response:
        user = may_publish(hub, request, owner)
        check_segment(owner, "owner")
        check_segment(name, "package name")
        parsed = Version.parse(version)
        if str(parsed) != version or parsed.build:
            raise InputError(
                f"version {version!r} is not a canonical version without build metadata; publish it as "
                f"{parsed.major}.{parsed.minor}.{parsed.patch}{'-' + '.'.join(parsed.pre) if parsed.pre else ''}"
            )
        if hub.meta.version(owner, name, version) is not None:  # before reading a gigabyte we will refuse
            raise StateError(
                f"{owner}/{name} {version} is already published and versions never change; publish a new version"
            )
        key_id, signature = request.headers.get("x-kiln-key", ""), request.headers.get("x-kiln-signature", "")
        if not key_id or not signature:
            raise InputError("a publish carries X-Kiln-Key and X-Kiln-Signature headers; use 'kiln publish'")
        tmp_dir = hub.root / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        tmp = temp_path(tmp_dir, "publish")
        try:
            size, h = 0, hashlib.sha256()
            with open(tmp, "wb") as f:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > PACKAGE_MAX:
                        raise TooLarge(f"the package is over {PACKAGE_MAX:,} bytes; nothing was published")
                    h.update(chunk)
                    f.write(chunk)
            args = (hub, user, owner, name, version, tmp, h.hexdigest(), key_id, signature)
            result = await run_in_threadpool(accept, *args)
        finally:
            tmp.unlink(missing_ok=True)
        return json_response(result, 201)

    @app.post("/api/v1/user/keys")
    async def add_key(request: Request) -> Response:
        token = who(hub, request)
        if token is None or not token.allows("write"):
            raise AuthRequired("registering a signing key needs a write token; run 'kiln login URL'")
        body = await read_json(request, 1 << 16)
        public = body.get("public") if isinstance(body, dict) else None
        proof = body.get("proof") if isinstance(body, dict) else None
        kid = keys.key_id(str(public))
        # Only the holder of the private key may register it: otherwise anyone could claim
        # alice's public key (everyone can read it) and lock her out of registering it.
        if not keys.verify_registration(str(public), token.user, str(proof)):
            raise SignatureError(
                f"no proof that {token.user} holds key {kid}: send the key's signature of the user name ('kiln publish' does)"
            )
        hub.meta.add_key(token.user, kid, str(public))
        return json_response({"user": token.user, "key": kid, "public": public}, 201)

    @app.get("/api/v1/users/{user}/keys")
    def user_keys(user: str) -> Response:
        return json_response({"user": user, "keys": hub.meta.keys(user)})
