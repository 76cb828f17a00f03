"""The model package format: three files, and the manifest that vouches for the other two.

A package is a directory (or a zip of the same three files, for sharing)::

    manifest.json        name, version, architecture and resolved spec, input contract, classes,
                         metrics, lineage, and the sha256 of every other file
    weights.safetensors  the trained weights (no pickle anywhere)
    model.onnx           the same network for onnxruntime: input "pixels" (N, C, H, W) float32
                         in [0, 1]; outputs "probs" (N, K) and "embedding" (N, D)

A manifest is read as hostile input: every field a loader uses is checked against sane limits
(``check_manifest``), so a package cannot ask for 100,000 threads or a 20000x20000 input.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ..errors import BadPackage
from ..store.fsutil import fsync_dir

FORMAT = "kiln-package/1"
MANIFEST = "manifest.json"
FILES = ("weights.safetensors", "model.onnx")
# Sizes a package's files may have: checked against what an archive member claims before it is
# unpacked, and again as it inflates (a member may claim less than it holds).
MAX_BYTES = {MANIFEST: 16 << 20, "weights.safetensors": 1 << 30, "model.onnx": 1 << 30}
MAX_SIDE = 1024  # pixels of an input side: the build spec's own limit
MAX_CLASSES = 100_000
MAX_THREADS = 256  # the build spec's limit; prediction also never asks for more than the CPUs


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_package(out: Path, manifest: dict[str, Any], files: dict[str, bytes]) -> None:
    """Write the package directory ``out`` (which must not exist yet); hashes go into the manifest."""
    out.mkdir(parents=True)
    manifest = {**manifest, "format": FORMAT, "files": {name: sha256(files[name]) for name in FILES}}
    manifest["digest"] = manifest_digest(manifest)
    for name, data in [*files.items(), (MANIFEST, manifest_bytes(manifest))]:
        with open(out / name, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    fsync_dir(out)


def rewrite_manifest(files: dict[str, bytes], changes: dict[str, Any], where: str) -> dict[str, bytes]:
    """``files`` with the manifest's top-level keys replaced by ``changes`` and its digest
    recomputed (publishing names a package and its version); the other two files are unchanged."""
    manifest = {**parse_manifest(files[MANIFEST], where), **changes}
    manifest["digest"] = manifest_digest(manifest)
    return {**files, MANIFEST: manifest_bytes(manifest)}


def manifest_digest(manifest: dict[str, Any]) -> str:
    """sha256 of the manifest's canonical JSON without its own ``digest`` key.

    It catches a damaged or hand-edited manifest (a renamed class, a changed input size); it does
    not stop a deliberate forger, who can recompute it: that takes a signature (sharing, later).
    """
    body = {k: v for k, v in manifest.items() if k != "digest"}
    return sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode())


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def parse_manifest(data: bytes, where: str) -> dict[str, Any]:
    """The manifest in ``data``, its digest and every field a loader uses checked."""
    try:
        manifest = json.loads(data)
    except (ValueError, RecursionError) as e:  # ValueError: bad JSON, bad UTF-8, huge integers
        raise BadPackage(f"{where}: {MANIFEST} is not valid JSON ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BadPackage(f"{where}: {MANIFEST} is not a {FORMAT} manifest; rebuild it with this datakiln")
    if manifest.get("digest") != manifest_digest(manifest):
        raise BadPackage(
            f"{where}: {MANIFEST} does not match its digest; it was edited or damaged. Rebuild the package "
            "('kiln build') or fetch it again"
        )
    problem = _manifest_problem(manifest)
    if problem:
        raise BadPackage(f"{where}: {MANIFEST} {problem}; rebuild the package with 'kiln build'")
    return manifest


def _manifest_problem(m: dict[str, Any]) -> str | None:
    """What is wrong with a manifest's fields, or None."""
    classes, contract = m.get("classes"), m.get("input")
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        return "has no list of class names ('classes')"
    if not 2 <= len(classes) <= MAX_CLASSES or len(set(classes)) != len(classes):
        return f"lists {len(classes)} classes; a package has 2 to {MAX_CLASSES:,} distinct ones"
    if not isinstance(contract, dict):
        return "has no input contract ('input')"
    size, channels = contract.get("size"), contract.get("channels")
    if not (isinstance(size, list) and len(size) == 2 and all(type(v) is int and 1 <= v <= MAX_SIDE for v in size)):
        return f"asks for input size {str(size)[:40]}; a side must be 1 to {MAX_SIDE} pixels"
    if channels not in (1, 3) or type(channels) is not int:
        return f"asks for {str(channels)[:20]} input channels; a package takes 1 or 3"
    threads = threads_of(m)
    if type(threads) is not int or not 1 <= threads <= MAX_THREADS:
        return f"asks for {str(threads)[:20]} threads; a package may ask for 1 to {MAX_THREADS}"
    if not isinstance(m.get("files"), dict):
        return "has no file hashes ('files')"
    return None


def threads_of(manifest: dict[str, Any]) -> Any:
    """The thread count the package was built with (spec.train.threads), 1 if it says none."""
    spec = manifest.get("spec")
    train = spec.get("train") if isinstance(spec, dict) else None
    return train.get("threads", 1) if isinstance(train, dict) else 1
