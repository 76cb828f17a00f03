"""Installing and loading published packages: resolve a range, download, verify, cache, lock.

``install(["alice/digits-cnn@^1.2"])`` asks the hub for the package's versions, picks the newest
the range allows, downloads its archive into the cache (checked against the sha256 the hub
names, every file against the manifest, the signature against a trusted key), does the same for
the exact packages it was built on, and records all of them in ``kiln.lock``. ``install([])``
installs what the lock pins, from the cache when it holds them (no network at all).

``load("alice/digits-cnn@^1.2")`` resolves through the nearest kiln.lock, then the cache, then
the hub, and re-checks the hash and signature of the cached bytes on every load: a file altered
in the cache is refused, never run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import BadPackage, InputError, PackageNotFound, SignatureError
from ..store.credentials import known_hubs, origin
from . import keys
from .cache import Cache
from .lockfile import LOCK_FILE, Locked, find_lock, read_lock, update_lock
from .ref import PackageRef, parse_ref
from .semver import Range, Version

if TYPE_CHECKING:
    from ..package import Model
    from .client import Registry


@dataclass
class Installed:
    locked: Locked
    path: Path  # the cached archive
    downloaded: bool  # False: it was in the cache already


def default_hub(explicit: str | None = None, start: Path | None = None) -> str:
    """The hub to ask: ``explicit``, else ``$KILN_HUB``, else the origin of the default remote of
    the repository at ``start``, else the one hub this user is logged in to."""
    if explicit:
        return origin(explicit)
    if os.environ.get("KILN_HUB"):
        return origin(os.environ["KILN_HUB"])
    found = _repo_hub(start or Path.cwd())
    if found:
        return found
    hubs = known_hubs()
    if len(hubs) == 1:
        return hubs[0]
    raise InputError(
        "say which hub: --hub URL (or set $KILN_HUB)"
        + (f"; you are logged in to {', '.join(hubs)}" if hubs else "; log in to one first: 'kiln login URL'")
    )


def _repo_hub(start: Path) -> str | None:
    from ..errors import RepoNotFound
    from ..repo import Repo

    try:
        repo = Repo(start)
    except RepoNotFound:
        return None
    urls = repo.remotes()
    url = urls.get(repo.default_remote())
    return origin(url) if url else None


def choose(info: dict[str, Any], ref: PackageRef) -> dict[str, Any]:
    """The hub's record of the newest version ``ref``'s range allows; the error lists the others."""
    versions = {}
    for v in info.get("versions", []):
        try:
            versions[Version.parse(v["version"])] = v
        except (InputError, KeyError, TypeError):
            continue  # a version this client cannot read is not one it can pick
    best = ref.range.best(versions)
    if best is None:
        have = ", ".join(str(v) for v in sorted(versions, key=Version.key)) or "none"
        raise PackageNotFound(f"no version of {ref.full_name} matches {ref.range}; published versions: {have}")
    return dict(versions[best])


def install(
    refs: list[str],
    *,
    project: Path | None = None,
    hub: str | None = None,
    trust: bool = False,
    cache: Cache | None = None,
    write_lock: bool = True,
) -> list[Installed]:
    """Install ``refs`` (or, with none, everything kiln.lock pins) and record them in the lock."""
    project = Path(project or Path.cwd())
    cache = cache or Cache()
    lock_path = find_lock(project) or project / LOCK_FILE
    if not refs:
        return install_locked(lock_path, cache=cache, hub=hub, trust=trust)
    from .client import Registry

    done: list[Installed] = []
    for text in refs:
        ref = parse_ref(text)
        url = ref.hub or default_hub(hub, project)
        with Registry(url) as reg:
            record = choose(reg.info(ref.owner, ref.name), ref)
            done += _install_one(reg, ref.owner, ref.name, record, cache, trust, requested=str(ref.range))
    if write_lock:
        update_lock(lock_path, [i.locked for i in done])
    return done


def install_locked(
    lock_path: Path, *, cache: Cache | None = None, hub: str | None = None, trust: bool = False
) -> list[Installed]:
    """Every package kiln.lock pins, byte for byte: from the cache when it holds them, else from
    the hub they came from (or ``hub``), refused if the hub's bytes differ from the lock's hash."""
    cache = cache or Cache()
    entries = read_lock(lock_path)
    if not entries:
        raise InputError(f"{lock_path}: nothing is locked; install a package first: 'kiln install OWNER/NAME@RANGE'")
    from .client import Registry

    out = []
    for e in entries:
        path = _cached(cache, e.sha256, e.name)
        if path is not None:
            out.append(Installed(e, path, False))
            continue
        owner, _, name = e.name.partition("/")  # checked when the lock was read
        with Registry(origin(hub) if hub else e.hub) as reg:
            record = reg.version(owner, name, e.version)
            if record.get("sha256") != e.sha256:
                raise BadPackage(
                    f"{e.hub}: {e.name} {e.version} is now {str(record.get('sha256'))[:12]}, but {lock_path} pins "
                    f"{e.sha256[:12]}; versions never change on a hub, so this one was replaced. Nothing was installed"
                )
            got = _install_one(reg, owner, name, record, cache, trust, requested=e.requested)
            out.append(got[0])
    return out


def _cached(cache: Cache, sha: str, name: str) -> Path | None:
    """The cached archive of ``sha`` if it is there and still hashes right."""
    if cache.record(sha) is None:
        return None
    try:
        cache.verified_bytes(sha)
    except BadPackage:
        cache.drop(sha)  # altered or damaged: fetch a good copy instead of trusting it
        return None
    return cache.archive(sha)


def _install_one(
    reg: Registry, owner: str, name: str, record: dict[str, Any], cache: Cache, trust: bool, *, requested: str
) -> list[Installed]:
    """One version (and what it was built on) into the cache."""
    sha, version = str(record["sha256"]), str(record["version"])
    full = f"{owner}/{name}"
    path = _cached(cache, sha, full)
    downloaded = path is None
    if path is None:
        tmp, f = cache.spool()
        f.close()
        try:
            size = record.get("size")
            reg.download(owner, name, version, sha, tmp, size if isinstance(size, int) else None)
            manifest = _check_archive(tmp, full, version, record)
            _check_trusted(reg, record, manifest, trust, f"{full} {version}")
            path = cache.publish(tmp, sha, _cache_record(reg.hub, full, version, record, manifest))
        finally:
            tmp.unlink(missing_ok=True)
    rec = cache.record(sha) or {}
    deps = rec.get("dependencies") or []
    locked = _locked_from(rec, requested=requested, hub=str(rec.get("hub", reg.hub)))
    out = [Installed(locked, path, downloaded)]
    for dep in deps:
        d_ref = parse_ref(f"{dep['name']}@{dep['version']}")  # checks both names: they become URL paths
        d_owner, d_name = d_ref.owner, d_ref.name
        d_record = reg.version(d_owner, d_name, str(dep["version"]))
        if d_record.get("sha256") != dep.get("sha256"):
            raise BadPackage(
                f"{full} {version} was built on {dep['name']} {dep['version']} with sha256 {str(dep.get('sha256'))[:12]}, "
                f"but the hub serves {str(d_record.get('sha256'))[:12]}; refusing the mismatch"
            )
        out += _install_one(reg, d_owner, d_name, d_record, cache, trust, requested="")
    return out


def _check_archive(path: Path, full: str, version: str, record: dict[str, Any]) -> dict[str, Any]:
    """The manifest of a downloaded archive, which must be a whole package naming itself ``full``
    at ``version`` with the digest the hub's signature covers."""
    import json

    from ..package import MANIFEST, read_package_files

    manifest: dict[str, Any] = json.loads(read_package_files(path)[MANIFEST])
    if manifest.get("name") != full or manifest.get("version") != version:
        raise BadPackage(
            f"the archive the hub sent for {full} {version} says it is {manifest.get('name')} {manifest.get('version')}; "
            "refusing a package that is not what was asked for"
        )
    if manifest.get("digest") != record.get("digest"):
        raise BadPackage(
            f"the archive the hub sent for {full} {version} has another manifest digest than the hub's record; "
            "refusing it (the hub's data is inconsistent: tell its admin)"
        )
    return manifest


def _check_trusted(reg: Registry, record: dict[str, Any], manifest: dict[str, Any], trust: bool, where: str) -> None:
    """The signature must verify with a key trusted for the publisher the signed manifest names.
    ``trust`` adds a key only for a publisher none of whose keys is trusted yet: a new key of a
    publisher you already trust (a stolen token can register one) is refused, not adopted."""
    publisher, kid = str(record.get("publisher")), str(record.get("key"))
    if manifest.get("publisher") != publisher:
        raise SignatureError(
            f"{where}: the hub says {publisher} published it, the signed manifest says {manifest.get('publisher')}; "
            "refusing it"
        )
    entry = keys.trusted().get(kid)
    if trust and entry is None and not keys.trusts_publisher(publisher):
        public = reg.keys(publisher).get(kid)
        if public is None or keys.key_id(public) != kid:
            raise SignatureError(f"{where}: the hub does not list key {kid} for {publisher}; refusing it")
        keys.trust(public, publisher, note=f"trusted on first use, from {reg.hub}")
    keys.check_signature(publisher, kid, str(manifest["digest"]), str(record.get("signature")), where)


def _cache_record(
    hub: str, full: str, version: str, record: dict[str, Any], manifest: dict[str, Any]
) -> dict[str, Any]:
    return {
        "name": full,
        "version": version,
        "hub": hub,
        "publisher": record.get("publisher"),
        "key": record.get("key"),
        "signature": record.get("signature"),
        "digest": manifest.get("digest"),
        "dependencies": manifest.get("dependencies") or [],
    }


# ---- loading --------------------------------------------------------------------------------
def resolve_installed(text: str, *, project: Path | None = None, cache: Cache | None = None) -> dict[str, Any] | None:
    """The cache record ``text`` names through the nearest kiln.lock, else the newest cached
    version its range allows; None when neither has it."""
    ref = parse_ref(text)
    cache = cache or Cache()
    lock = find_lock(Path(project or Path.cwd()))
    for e in read_lock(lock) if lock is not None else []:
        assert lock is not None
        if e.name != ref.full_name:
            continue
        if not ref.range.allows(Version.parse(e.version)):
            raise InputError(
                f"{lock} pins {e.name} {e.version}, which {ref.range} does not allow; run "
                f"'kiln install {ref.full_name}@{ref.range}' to move the lock"
            )
        if cache.record(e.sha256) is None:
            install_locked(lock, cache=cache)
        return cache.record(e.sha256)
    return _newest_cached(cache, ref.full_name, ref.range, ref.hub)


def _newest_cached(cache: Cache, full: str, rng: Range, hub: str | None) -> dict[str, Any] | None:
    found: dict[Version, dict[str, Any]] = {}
    for rec in cache.records():
        if rec.get("name") == full and (hub is None or rec.get("hub") == hub):
            try:
                found[Version.parse(str(rec.get("version")))] = rec
            except InputError:
                continue
    best = rng.best(found)
    return found[best] if best is not None else None


def load(text: str, *, project: Path | None = None, hub: str | None = None, trust: bool = False) -> Model:
    """The package ``text`` names (``OWNER/NAME@RANGE``), verified: from kiln.lock's pin, else the
    cache, else installed from the hub into the cache (kiln.lock is written only by install)."""
    cache = Cache()
    rec = resolve_installed(text, project=project, cache=cache)
    if rec is None:
        got = install([text], project=project, hub=hub, trust=trust, cache=cache, write_lock=False)
        rec = cache.record(got[0].locked.sha256)
        assert rec is not None
    return open_cached(cache, rec)


def backbone_files(text: str, project: Path, *, trust: bool = False) -> tuple[dict[str, Any], dict[str, bytes]]:
    """(cache record, verified files) of the package ``text`` names, for a build that melds it:
    through the project's kiln.lock, else the cache, else installed from the hub and pinned in
    the lock (a build on a backbone is reproducible only if the backbone's bytes are pinned)."""
    cache = Cache()
    rec = resolve_installed(text, project=project, cache=cache)
    if rec is None:
        got = install([text], project=project, trust=trust, cache=cache)
        rec = cache.record(got[0].locked.sha256)
        assert rec is not None
    else:
        lock = find_lock(project) or project / LOCK_FILE
        if not any(e.sha256 == rec["sha256"] for e in read_lock(lock)):
            hub = str(rec.get("hub", ""))
            update_lock(lock, [_locked_from(rec, requested=str(parse_ref(text).range), hub=hub)])
    return rec, verified_files(cache, rec)


def _locked_from(rec: dict[str, Any], *, requested: str, hub: str) -> Locked:
    deps = rec.get("dependencies") or []
    return Locked(
        str(rec["name"]),
        str(rec["version"]),
        str(rec["sha256"]),
        hub,
        str(rec.get("publisher")),
        str(rec.get("key")),
        requested,
        [f"{d['name']}@{d['version']}" for d in deps],
    )


def open_cached(cache: Cache, rec: dict[str, Any]) -> Model:
    """A cached package as a ``Model``: its bytes re-hashed, its files checked against the
    manifest, its signature checked against a trusted key, before onnxruntime sees the graph."""
    from ..package import Model

    return Model(verified_files(cache, rec), f"{rec.get('name')}@{rec.get('version')}")


def verified_files(cache: Cache, rec: dict[str, Any]) -> dict[str, bytes]:
    """The files of a cached package after every check ``open_cached`` names."""
    import json

    from ..package import MANIFEST, read_package_files

    sha = str(rec["sha256"])
    path = cache.archive(sha)
    files = read_package_files(path, cache.verified_bytes(sha))  # read once: hashed, then unpacked
    manifest = json.loads(files[MANIFEST])
    digest = manifest.get("digest")
    where = f"{rec.get('name')} {rec.get('version')} ({path})"
    said = (manifest.get("name"), manifest.get("version"), manifest.get("publisher"))
    if digest != rec.get("digest") or said != (rec.get("name"), rec.get("version"), rec.get("publisher")):
        raise BadPackage(f"{where}: the cache's record does not describe this package; run 'kiln install' again")
    keys.check_signature(str(rec.get("publisher")), str(rec.get("key")), str(digest), str(rec.get("signature")), where)
    return files
