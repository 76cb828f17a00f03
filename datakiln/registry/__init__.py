"""The registry, client side: published model packages by name and version range.

``install`` resolves ``OWNER/NAME@RANGE`` on a hub, downloads and verifies the archive (sha256,
every file against the manifest, an ed25519 signature by a trusted key) into a per-user
content-addressed cache and pins it in ``kiln.lock``; ``load`` gives a verified ``Model`` from
the lock, the cache or the hub; ``publish`` names, signs and sends a build's package. The hub's
side is ``datakiln.hub.registry``. Imports the store and ``package``; no torch. The HTTP client
and the package writer load when first used: ``datakiln.load("alice/x@^1")`` from the cache pays
for neither.
"""

from .cache import Cache, cache_home
from .install import Installed, default_hub, install, load
from .lockfile import LOCK_FILE, Locked, find_lock, read_lock
from .publish import publish
from .ref import PackageRef, looks_like_ref, parse_ref
from .semver import Range, Version

__all__ = [
    "LOCK_FILE",
    "Cache",
    "Installed",
    "Locked",
    "PackageRef",
    "Range",
    "Version",
    "cache_home",
    "default_hub",
    "find_lock",
    "install",
    "load",
    "looks_like_ref",
    "parse_ref",
    "publish",
    "read_lock",
]
