"""``kiln.lock``: the exact packages a project uses, so every install of it gets the same bytes.

A TOML file (tomllib reads it; we write the few shapes it has), one ``[[package]]`` per
installed package and per dependency, each with its name, exact version, the sha256 of its
archive, the hub it came from, its publisher and signing key, and (for a package built on
another) the exact dependencies. Commit it beside ``kiln.toml``. ``kiln install`` with no
arguments installs what it pins, from the cache when it can (offline), from the hub otherwise.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import InputError
from ..store.fsutil import FileLock, atomic_write

LOCK_FILE = "kiln.lock"
LOCK_VERSION = 1
HEADER = (
    "# kiln.lock: the exact packages `kiln install` chose (name, version, sha256 of the archive).\n"
    "# Commit it: `kiln install` with no arguments installs these bytes, and datakiln.load uses them.\n"
)


@dataclass
class Locked:
    name: str  # OWNER/NAME
    version: str
    sha256: str
    hub: str
    publisher: str
    key: str
    requested: str = ""  # the range asked for ("" for a dependency)
    dependencies: list[str] = field(default_factory=list)  # "OWNER/NAME@VERSION" of each


def _check_dependents(path: Path, current: dict[str, Locked], old: Locked, new: Locked, entries: list[Locked]) -> None:
    """Moving ``old`` to ``new`` must not leave a locked package built on ``old`` (one this same
    install replaces too does not count)."""
    replaced = {e.name for e in entries}
    for e in current.values():
        if e.name not in replaced and f"{old.name}@{old.version}" in e.dependencies:
            raise InputError(
                f"{path}: {e.name} {e.version} was built on {old.name} {old.version}; installing {old.name} "
                f"{new.version} would break it. Install a version of {e.name} built on {new.version}, or remove it first"
            )


def find_lock(start: Path) -> Path | None:
    """The nearest kiln.lock at or above ``start``."""
    start = start.resolve()
    for d in (start, *start.parents):
        if (d / LOCK_FILE).is_file():
            return d / LOCK_FILE
    return None


def read_lock(path: Path) -> list[Locked]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise InputError(
            f"{path}: not valid TOML ({e}); restore it from version control or delete it and reinstall"
        ) from None
    if data.get("version") != LOCK_VERSION:
        raise InputError(f"{path}: lock version {data.get('version')!r}; this datakiln reads version {LOCK_VERSION}")
    out = []
    for i, entry in enumerate(data.get("package", [])):
        try:
            locked = Locked(**entry)
            _check_entry(locked)
        except (TypeError, ValueError, InputError) as e:
            raise InputError(f"{path}: package {i + 1} is not a lock entry ({e}); reinstall it") from None
        out.append(locked)
    return out


def _check_entry(e: Locked) -> None:
    """Every field a path or a URL is made from, checked: a lock comes from version control."""
    from .ref import check_segment
    from .semver import Version

    texts = (e.name, e.version, e.sha256, e.hub, e.publisher, e.key, e.requested)
    if not all(isinstance(t, str) for t in texts) or not isinstance(e.dependencies, list):
        raise ValueError("a field has the wrong type")
    owner, _, name = e.name.partition("/")
    check_segment(owner, "owner")
    check_segment(name, "package name")
    Version.parse(e.version)
    if len(e.sha256) != 64 or any(c not in "0123456789abcdef" for c in e.sha256):
        raise ValueError(f"sha256 {e.sha256[:70]!r} is not 64 hex digits")


def _toml(value: object) -> str:
    # JSON strings and arrays of strings are valid TOML basic strings and arrays.
    return json.dumps(value, ensure_ascii=False)


def render(entries: list[Locked]) -> str:
    out = [HEADER, f"version = {LOCK_VERSION}\n"]
    for e in sorted(entries, key=lambda e: (e.name, e.version)):
        out.append("\n[[package]]\n")
        out += [f"{k} = {_toml(v)}\n" for k, v in asdict(e).items()]
    return "".join(out)


def update_lock(path: Path, entries: list[Locked]) -> list[Locked]:
    """Add ``entries`` to the lock at ``path``, under a lock so two installs in one project both
    land. One version per name: a package asked for by name replaces its entry; a dependency
    pinned at other bytes than a package asked for is a conflict, named."""
    with FileLock(path.with_name(LOCK_FILE + ".lock"), what="kiln.lock"):
        current = {e.name: e for e in read_lock(path)}
        for e in entries:
            old = current.get(e.name)
            if old is not None and old.version != e.version:
                _check_dependents(path, current, old, e, entries)
            if old is not None and not e.requested and old.sha256 != e.sha256 and old.requested:
                raise InputError(
                    f"{path}: {e.name} is locked at {old.version}, but a package being installed was built on "
                    f"{e.version}; install {e.name}@{e.version} (or a build on {old.version}) so they agree"
                )
            if old is not None and not e.requested and old.sha256 == e.sha256:
                e = Locked(**{**asdict(e), "requested": old.requested})
            current[e.name] = e
        merged = list(current.values())
        atomic_write(path, render(merged).encode(), path.parent)
    return merged
