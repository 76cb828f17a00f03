"""Package references: ``OWNER/NAME``, ``OWNER/NAME@RANGE``, or either after a hub's address
(``http://hub:8900/alice/digits-cnn@^1.2``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import BadName
from .semver import Range

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_REF = re.compile(r"^(?:(https?://[^/\s]+)/)?([^/@\s]+)/([^/@\s]+)(?:@(.*))?$")


def check_segment(name: str, what: str) -> str:
    """An owner or package name: one path segment any tool can carry (the hub's rule for names)."""
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name or name.endswith((".", ".lock")):
        raise BadName(
            f"{what} {str(name)[:80]!r} is not allowed; use 1-64 letters, digits, '.', '_' and '-', starting "
            "with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class PackageRef:
    owner: str
    name: str
    range: Range
    hub: str | None = None  # an origin, when the reference names one

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    def __str__(self) -> str:
        text = self.full_name if str(self.range) == "*" else f"{self.full_name}@{self.range}"
        return f"{self.hub}/{text}" if self.hub else text


def looks_like_ref(text: str) -> bool:
    """Whether ``text`` has the shape of a package reference (a path that exists is checked first)."""
    m = _REF.match(text) if isinstance(text, str) else None
    return m is not None and bool(_NAME.match(m[2])) and bool(_NAME.match(m[3]))


def parse_ref(text: str) -> PackageRef:
    m = _REF.match(text.strip()) if isinstance(text, str) else None
    if m is None:
        raise BadName(
            f"{str(text)[:80]!r} is not a package reference; use OWNER/NAME, OWNER/NAME@RANGE (alice/digits-cnn@^1.2) "
            "or HUB_URL/OWNER/NAME@RANGE"
        )
    hub = None
    if m[1]:
        from ..store.credentials import origin

        hub = origin(m[1])
    return PackageRef(check_segment(m[2], "owner"), check_segment(m[3], "package name"), Range(m[4] or "*"), hub)
