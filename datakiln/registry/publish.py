"""Publishing a build's package: name it, version it, sign it, send it.

The package's manifest is rewritten to say what it is published as (``OWNER/NAME``, the version,
the publisher, whether its expectations were waived), which changes its digest; the digest is
signed with the publisher's ed25519 key, so a signature covers the name and version too and
cannot be moved to another package. The weights and the ONNX graph are the build's bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import InputError, StateError
from . import keys
from .ref import check_segment
from .semver import Version


def prepare(
    package_dir: Path,
    full_name: str,
    version: str,
    publisher: str,
    *,
    expect: dict[str, Any] | None = None,
    force: bool = False,
) -> tuple[bytes, dict[str, Any]]:
    """(archive bytes, manifest) of the package at ``package_dir`` published as ``full_name`` ``version``.

    ``expect`` is the build's expectation results (``{"passed": bool, "checks": [...]}``): a
    failed one is refused unless ``force``, and a forced publish says so in the manifest."""
    from ..package import MANIFEST, archive_bytes, parse_manifest, read_package_files, rewrite_manifest

    owner, _, name = full_name.partition("/")
    check_segment(owner, "owner")
    check_segment(name, "package name")
    parsed = Version.parse(version)
    if parsed.build:
        raise InputError(f"version {version}: build metadata (+...) cannot tell two published versions apart; drop it")
    v = str(parsed)
    files = read_package_files(package_dir)
    if expect is not None and not expect.get("passed", True):
        failed = [c["name"] for c in expect.get("checks", []) if not c.get("passed")]
        if not force:
            raise StateError(
                f"the build fails its expectations ({', '.join(failed[:5])}); fix the data or the spec and rebuild, "
                "or publish anyway with --force (the package will say so)"
            )
    changes: dict[str, Any] = {"name": full_name, "version": v, "publisher": publisher}
    if expect is not None:
        changes["expect"] = {**expect, "forced": bool(force and not expect.get("passed", True))}
    files = rewrite_manifest(files, changes, str(package_dir))
    return archive_bytes(files), parse_manifest(files[MANIFEST], str(package_dir))


def publish(
    package_dir: Path,
    full_name: str,
    version: str,
    hub: str,
    *,
    expect: dict[str, Any] | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Publish the package at ``package_dir`` to ``hub``; the result names its sha256."""
    from .client import Registry

    me = keys.public_key()  # before anything is sent: no key, no publish
    with Registry(hub) as reg:
        user = str(reg.remote.api("GET", "user")["user"])
        data, manifest = prepare(package_dir, full_name, version, user, expect=expect, force=force)
        if me["key_id"] not in reg.keys(user):
            reg.add_key(me["public"], keys.sign_registration(user))
        owner, _, name = full_name.partition("/")
        result = reg.publish(owner, name, str(manifest["version"]), data, keys.sign(manifest["digest"]), me["key_id"])
    return {**result, "publisher": user, "key": me["key_id"], "hub": hub}
