"""Versions and version ranges, as semver.org and npm/Cargo define them.

A version is ``MAJOR.MINOR.PATCH`` with an optional pre-release (``1.2.0-rc.1``) and build
metadata (``+abc``, ignored when comparing). A range is what ``kiln install NAME@RANGE`` takes:

    1.2.0          exactly that version (``=1.2.0`` too)
    ^1.2  ^1.2.3   compatible: >=1.2.0 <2.0.0 (``^0.2.3``: >=0.2.3 <0.3.0, as 0.x breaks on minor)
    ~1.2  ~1.2.3   patch updates: >=1.2.3 <1.3.0
    1.2  1         any 1.2.x, any 1.x.x
    >=1,<2         comparators, all of which must hold (commas or spaces between them)
    ^1 || ^2       either side
    *  (empty)     any version that is not a pre-release

A pre-release matches only a range that names a pre-release of the same ``MAJOR.MINOR.PATCH``
(npm's rule): ``^1.2`` never picks ``1.3.0-beta`` up behind its user's back.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import InputError

_VERSION = re.compile(
    r"^(0|[1-9]\d{0,8})\.(0|[1-9]\d{0,8})\.(0|[1-9]\d{0,8})"
    r"(?:-([0-9A-Za-z-]{1,40}(?:\.[0-9A-Za-z-]{1,40}){0,7}))?(?:\+([0-9A-Za-z-]{1,40}(?:\.[0-9A-Za-z-]{1,40}){0,7}))?$"
)
_PARTIAL = re.compile(r"^[vV]?(\d{1,9}|[xX*])(?:\.(\d{1,9}|[xX*]))?(?:\.(\d{1,9}|[xX*]))?(?:-([0-9A-Za-z.-]{1,80}))?$")
_COMPARATOR = re.compile(r"^(\^|~|>=|<=|>|<|=)?\s*(.+)$")


@dataclass(frozen=True)
class Version:
    major: int
    minor: int
    patch: int
    pre: tuple[str, ...] = ()
    build: str = ""

    @classmethod
    def parse(cls, text: str) -> Version:
        m = _VERSION.match(text.strip()) if isinstance(text, str) else None
        if m is None:
            raise InputError(
                f"{str(text)[:60]!r} is not a version; use MAJOR.MINOR.PATCH like 1.2.0 (semver.org), "
                "optionally with -PRERELEASE (1.2.0-rc.1)"
            )
        pre = tuple(m[4].split(".")) if m[4] else ()
        return cls(int(m[1]), int(m[2]), int(m[3]), pre, m[5] or "")

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.pre:
            text += "-" + ".".join(self.pre)
        return text + (f"+{self.build}" if self.build else "")

    @property
    def core(self) -> tuple[int, int, int]:
        return self.major, self.minor, self.patch

    def key(self) -> tuple[int, int, int, int, tuple[tuple[int, int, str], ...]]:
        """Sort key: a pre-release sorts before its release; numeric identifiers numerically,
        before alphanumeric ones (semver 11)."""
        pre = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in self.pre)
        return (*self.core, 0 if self.pre else 1, pre)

    def __lt__(self, other: Version) -> bool:
        return self.key() < other.key()


@dataclass(frozen=True)
class _Bound:
    op: str  # >=, >, <=, <, =
    version: Version

    def holds(self, v: Version) -> bool:
        a, b = v.key(), self.version.key()
        return {">=": a >= b, ">": a > b, "<=": a <= b, "<": a < b, "=": a == b}[self.op]


class Range:
    """A parsed version range; ``best(versions)`` is the newest version it allows."""

    def __init__(self, text: str) -> None:
        self.text = (text or "*").strip() or "*"
        if len(self.text) > 200:
            raise InputError(f"version range {self.text[:40]!r}... is too long; ranges are like ^1.2 or >=1,<2")
        self.alternatives = [self._clause(part) for part in self.text.split("||")]

    def __str__(self) -> str:
        return self.text

    def _clause(self, text: str) -> list[_Bound]:
        tokens = [t for t in re.split(r"[,\s]+", re.sub(r"(>=|<=|>|<|=|\^|~)\s+", r"\1", text.strip())) if t]
        bounds: list[_Bound] = []
        for token in tokens or ["*"]:
            bounds += self._comparator(token)
        return bounds

    def _comparator(self, token: str) -> list[_Bound]:
        m = _COMPARATOR.match(token)
        p = _PARTIAL.match(m[2]) if m else None
        if m is None or p is None:
            raise InputError(
                f"version range {self.text!r}: cannot read {token!r}; use an exact version (1.2.0), ^1.2, ~1.2.3, "
                "comparators like >=1,<2, or * for any"
            )
        op = m[1] or ""
        parts = [None if x is None or x in "xX*" else int(x) for x in (p[1], p[2], p[3])]
        given = 0
        while given < 3 and parts[given] is not None:
            given += 1
        if any(x is not None for x in parts[given:]):
            raise InputError(f"version range {self.text!r}: {token!r} has a number after a wildcard")
        nums = [x or 0 for x in parts]
        pre = tuple(p[4].split(".")) if p[4] else ()
        low = Version(nums[0], nums[1], nums[2], pre)
        if given == 0:
            return [] if op in ("", "=", ">=", "<=", "^", "~") else [_Bound("<", Version(0, 0, 0, ("0",)))]
        if op == "^":
            first = next((i for i, x in enumerate(nums[:given]) if x), given - 1)
            return [_Bound(">=", low), _Bound("<", _bump(nums, min(first, given - 1)))]
        if op == "~":
            return [_Bound(">=", low), _Bound("<", _bump(nums, 1 if given >= 2 else 0))]
        if given == 3:
            return [_Bound(op or "=", low)]
        # A partial version: 1.2 is [1.2.0, 1.3.0); >1.2 means >=1.3.0; <=1.2 means <1.3.0.
        upper = _bump(nums, given - 1)
        return {
            "": [_Bound(">=", low), _Bound("<", upper)],
            "=": [_Bound(">=", low), _Bound("<", upper)],
            ">=": [_Bound(">=", low)],
            ">": [_Bound(">=", Version(*upper.core))],  # not upper's -0: that would admit 1.3.0-beta
            "<": [_Bound("<", low)],
            "<=": [_Bound("<", upper)],
        }[op]

    def allows(self, v: Version) -> bool:
        for bounds in self.alternatives:
            if all(b.holds(v) for b in bounds) and (
                not v.pre or any(b.version.pre and b.version.core == v.core for b in bounds)
            ):
                return True
        return False

    def best(self, versions: Iterable[Version]) -> Version | None:
        """The newest of ``versions`` the range allows, or None."""
        ok = [v for v in versions if self.allows(v)]
        return max(ok, key=Version.key) if ok else None


def _bump(nums: list[int], at: int) -> Version:
    """The first version past ``nums`` at position ``at``: 1.2.3 at 0 is 2.0.0-0, at 1 1.3.0-0.

    The ``-0`` pre-release makes ``<2.0.0-0`` exclude every 2.0.0 pre-release as well."""
    out = [*nums[:at], nums[at] + 1] + [0] * (2 - at)
    return Version(out[0], out[1], out[2], ("0",))


def parse_range(text: str) -> Range:
    return Range(text)
