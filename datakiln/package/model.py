"""A loaded model package: verified, then run on onnxruntime to predict. Never imports torch."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BadPackage
from . import pixels
from .archive import read_package_files
from .format import MANIFEST, threads_of


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
        # The build's thread count (checked when the manifest was read), never more than the CPUs.
        opts.intra_op_num_threads = min(int(threads_of(self.manifest)), os.cpu_count() or 1)
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
        """The graph must take "pixels" and give "probs" and "embedding", and agree with the
        manifest on input shape and class count."""
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        names = [i.name for i in inputs], sorted(o.name for o in outputs)
        if names != (["pixels"], ["embedding", "probs"]):
            raise BadPackage(
                f"{self.source}: the ONNX graph takes {names[0]} and gives {names[1]}; a package's graph takes "
                "'pixels' and gives 'probs' and 'embedding'. Rebuild the package"
            )
        shape = list(inputs[0].shape[1:])
        k = next(o for o in outputs if o.name == "probs").shape[1]
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
        images = _as_batch(images)
        batch = pixels.batch_size(self.size, self.channels, batch)
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


def load(path: str | os.PathLike[str]) -> Model:
    """The package at ``path``: a package directory or archive, or a build directory (its
    ``package/``). Every hash is verified before the graph is loaded."""
    p = Path(path)
    if not p.exists():
        raise BadPackage(f"{p}: no such package; pass a package directory or archive, or a build id")
    if (p / "package" / MANIFEST).is_file():
        p = p / "package"
    return Model(read_package_files(p), str(p))
