"""Model packages: the binary that ``kiln build`` emits, and loading it to predict.

A package is a directory (or a zip of the same three files, for sharing)::

    manifest.json        name, version, architecture and resolved spec, input contract, classes,
                         metrics, lineage, and the sha256 of every other file
    weights.safetensors  the trained weights (no pickle anywhere)
    model.onnx           the same network for onnxruntime: input "pixels" (N, C, H, W) float32
                         in [0, 1]; outputs "probs" (N, K) and "embedding" (N, D)

Loading verifies every hash and refuses a package whose files differ from its manifest.
Prediction runs on onnxruntime and never imports torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import BadPackage
from .store.fsutil import fsync_dir

FORMAT = "kiln-package/1"
MANIFEST = "manifest.json"
FILES = ("weights.safetensors", "model.onnx")
MAX_FILE = 2 << 30  # refuse archives whose members claim more than 2 GiB


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


def manifest_digest(manifest: dict[str, Any]) -> str:
    """sha256 of the manifest's canonical JSON without its own ``digest`` key.

    It catches a damaged or hand-edited manifest (a renamed class, a changed input size); it does
    not stop a deliberate forger, who can recompute it: that takes a signature (sharing, later).
    """
    body = {k: v for k, v in manifest.items() if k != "digest"}
    return sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode())


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def write_archive(package_dir: Path, out: Path) -> Path:
    """A single-file zip of the package, byte-identical for identical packages."""
    files = read_package_files(package_dir)
    tmp = out.with_name(out.name + f".{os.getpid()}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name in (MANIFEST, *FILES):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, files[name])
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, out)
    return out


def read_package_files(path: Path) -> dict[str, bytes]:
    """The three files of a package directory or archive, verified against the manifest's hashes."""
    if path.is_dir():
        files = {}
        for name in (MANIFEST, *FILES):
            try:
                files[name] = (path / name).read_bytes()
            except FileNotFoundError:
                raise BadPackage(
                    f"{path}: no {name}; a package directory holds {MANIFEST} and {', '.join(FILES)}"
                ) from None
    elif zipfile.is_zipfile(path):
        files = _read_archive(path)
    else:
        raise BadPackage(f"{path}: not a model package (a directory with {MANIFEST}, or its zip archive)")
    _verify(path, files)
    return files


def _read_archive(path: Path) -> dict[str, bytes]:
    try:
        with zipfile.ZipFile(path) as z:
            infos = {i.filename: i for i in z.infolist()}
            if set(infos) != {MANIFEST, *FILES}:
                raise BadPackage(
                    f"{path}: the archive holds {sorted(infos)}; a package archive holds exactly {MANIFEST}, "
                    f"{', '.join(FILES)}"
                )
            if any(i.file_size > MAX_FILE for i in infos.values()):
                raise BadPackage(f"{path}: a member claims over {MAX_FILE >> 30} GiB; refusing to unpack it")
            return {name: z.read(name) for name in infos}
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as e:
        raise BadPackage(
            f"{path}: the archive is damaged ({e}); fetch it again or rebuild it with 'kiln package'"
        ) from None


def _verify(path: Path, files: dict[str, bytes]) -> None:
    try:
        manifest = json.loads(files[MANIFEST])
    except (ValueError, UnicodeDecodeError) as e:
        raise BadPackage(f"{path}: {MANIFEST} is not valid JSON ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BadPackage(f"{path}: {MANIFEST} is not a {FORMAT} manifest; rebuild it with this datakiln")
    if manifest.get("digest") != manifest_digest(manifest):
        raise BadPackage(
            f"{path}: {MANIFEST} does not match its digest; it was edited or damaged. Rebuild the package "
            "('kiln build') or fetch it again"
        )
    expected = manifest.get("files", {})
    for name in FILES:
        if expected.get(name) != sha256(files[name]):
            raise BadPackage(
                f"{path}: {name} does not match the sha256 in {MANIFEST}; the package was modified or damaged. "
                "Rebuild it ('kiln build') or fetch it again"
            )


@dataclass
class Predictions:
    """``labels[i]`` is the most probable class of input i; ``probs`` is (N, K) in ``classes`` order."""

    labels: list[str]
    probs: np.ndarray  # (N, K)
    embeddings: np.ndarray  # (N, D)
    classes: list[str]


class Model:
    """A loaded, verified package. ``predict`` takes file paths, encoded bytes, PIL images or uint8 arrays."""

    def __init__(self, files: dict[str, bytes], source: str) -> None:
        import onnxruntime as ort

        self.source = source
        self.manifest: dict[str, Any] = json.loads(files[MANIFEST])
        self.classes: list[str] = list(self.manifest["classes"])
        contract = self.manifest["input"]
        self.size: list[int] = list(contract["size"])
        self.channels: int = int(contract["channels"])
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(self.manifest.get("spec", {}).get("train", {}).get("threads", 1))
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                files["model.onnx"], sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # onnxruntime raises its own exception types
            raise BadPackage(f"{source}: model.onnx cannot be loaded by onnxruntime ({e})") from None
        self._check_graph()

    def _check_graph(self) -> None:
        """The manifest and the graph must agree on input shape and class count."""
        shape = list(self.session.get_inputs()[0].shape[1:])
        k = self.session.get_outputs()[0].shape[1]
        if shape != [self.channels, *self.size] or k != len(self.classes):
            raise BadPackage(
                f"{self.source}: the manifest says input {[self.channels, *self.size]} and {len(self.classes)} classes, "
                f"the ONNX graph {shape} and {k}; the package is inconsistent, rebuild it"
            )

    def __repr__(self) -> str:
        return (
            f"<datakiln.Model {self.name} {self.manifest.get('version')}: {len(self.classes)} classes, "
            f"input {self.channels}x{self.size[0]}x{self.size[1]}, from {self.source}>"
        )

    @property
    def name(self) -> str:
        return str(self.manifest.get("name"))

    def run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw forward pass on a prepared (N, C, H, W) float32 batch in [0, 1]."""
        probs, emb = self.session.run(["probs", "embedding"], {"pixels": x})
        return probs, emb

    def predict(self, images: Sequence[Any], *, batch: int = 256) -> Predictions:
        from . import pixels

        images = _as_batch(images)
        probs, embs = [], []
        for start in range(0, len(images), batch):
            p, e = self.run(pixels.batch(images[start : start + batch], self.size, self.channels))
            probs.append(p)
            embs.append(e)
        k = len(self.classes)
        probs_all = np.concatenate(probs) if probs else np.zeros((0, k), np.float32)
        embs_all = np.concatenate(embs) if embs else np.zeros((0, 0), np.float32)
        return Predictions([self.classes[i] for i in probs_all.argmax(1)], probs_all, embs_all, self.classes)


def _as_batch(images: Any) -> Sequence[Any]:
    """A list of images from one image or many. A numpy array of 2 or 3 dimensions is one image
    ((H, W) or (H, W, C)); of 4, a batch (N, H, W, C). For (N, H, W) grayscale, pass ``list(a)``."""
    if isinstance(images, np.ndarray):
        return list(images) if images.ndim == 4 else [images]
    if isinstance(images, (str, bytes, os.PathLike)) or not isinstance(images, Sequence):
        return [images]
    return images


def load(path_or_build: str | os.PathLike[str], *, repo: str | os.PathLike[str] = ".") -> Model:
    """A package directory or archive, a build directory, or a build id in the repository at ``repo``."""
    path = Path(path_or_build)
    if path.exists():
        if (path / "package" / MANIFEST).is_file():
            path = path / "package"
        return Model(read_package_files(path), str(path))
    from .build.records import find_build
    from .repo import Repo

    rec = find_build(Repo(repo), str(path_or_build))
    return Model(read_package_files(rec.package), str(rec.package))
