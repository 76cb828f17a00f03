"""Modules that meld: a published network as the trainable start of a new one.

``[model] backbone = "alice/digits-cnn@^1.2"`` resolves the package (kiln.lock, the cache, the
hub; installing and pinning it in the repository's kiln.lock when it is new), verifies it
(hash, files, signature by a trusted key), and rebuilds its network as a torch module from the
architecture its manifest records and the weights in its safetensors: the layers up to the
embedding and the normalisation keep the backbone's weights, the head is new (this dataset's
classes), and the whole network is fine-tuned end to end, optionally with the backbone frozen
for the first ``freeze_epochs``. The backbone decides the architecture and the input contract:
a spec that asks for another says why it cannot have it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BadSpec
from .spec import ModelSpec, Spec

HEAD = "head."  # the keys of the classifier layer: everything else is the backbone


@dataclass(frozen=True)
class Backbone:
    name: str  # OWNER/NAME
    version: str
    sha256: str  # of the package archive: what the build id and the lock pin
    manifest: dict[str, Any]
    weights: bytes

    @property
    def contract(self) -> dict[str, Any]:
        return dict(self.manifest["input"])

    def lineage(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version, "sha256": self.sha256}


def resolve_backbone(text: str, project: Path) -> Backbone:
    """The verified package ``text`` names, pinned in ``project``'s kiln.lock."""
    from ..package import MANIFEST
    from ..registry.install import backbone_files

    rec, files = backbone_files(text, project)
    manifest = json.loads(files[MANIFEST])
    arch = manifest.get("architecture")
    if not isinstance(arch, dict) or arch.get("arch") not in ("cnn", "mlp"):
        raise BadSpec(
            f"model.backbone {text}: {rec['name']} {rec['version']} records no architecture kiln can rebuild "
            "(a cnn or mlp from 'kiln build'); pick a package built by kiln"
        )
    return Backbone(str(rec["name"]), str(rec["version"]), str(rec["sha256"]), manifest, files["weights.safetensors"])


def effective_spec(spec: Spec, bb: Backbone) -> Spec:
    """``spec`` with the backbone's architecture and input contract; conflicting explicit keys refused."""
    arch = bb.manifest["architecture"]
    theirs = {
        "arch": arch["arch"],
        "width": float(arch["width"]),
        "depth": int(arch["depth"]),
        "stem": int(arch["stem"]),
    }
    default = ModelSpec()
    for key, value in theirs.items():
        mine = getattr(spec.model, key)
        if mine != getattr(default, key) and mine != value:
            raise BadSpec(
                f"model.{key} = {mine!r}, but the backbone {bb.name} {bb.version} is built with {key} {value!r}; "
                f"remove model.{key} (a backbone brings its own architecture)"
            )
    c = bb.contract
    size, channels = [int(v) for v in c["size"]], int(c["channels"])
    if isinstance(spec.input.size, list) and spec.input.size != size:
        raise BadSpec(
            f"input.size = {spec.input.size}, but the backbone {bb.name} {bb.version} takes {size}; remove input.size "
            "(images are resized to the backbone's input) or pick a backbone of that size"
        )
    if isinstance(spec.input.channels, int) and spec.input.channels != channels:
        raise BadSpec(
            f"input.channels = {spec.input.channels}, but the backbone {bb.name} {bb.version} takes {channels}; "
            "remove input.channels (images are converted to the backbone's)"
        )
    model = dataclasses.replace(spec.model, **theirs)
    inp = dataclasses.replace(spec.input, size=size, channels=channels)
    return dataclasses.replace(spec, model=model, input=inp)


def normalization(bb: Backbone) -> tuple[list[float], list[float]]:
    """The backbone's mean and std: its weights were trained on inputs normalised this way."""
    c = bb.contract
    return [float(v) for v in c["mean"]], [float(v) for v in c["std"]]


def load_backbone(model: Any, path: str) -> None:
    """Put the backbone's weights (every key but the head's) into ``model``."""
    import torch
    from safetensors.numpy import load_file

    state = {k: torch.from_numpy(v) for k, v in load_file(path).items() if not k.startswith(HEAD)}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith(HEAD) for k in missing):
        raise BadSpec(
            f"the backbone's weights do not fit the network its manifest describes (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}); the package is inconsistent, pick another version"
        )


def imprint_head(model: Any, pixels: Any, rows: Any, y: Any) -> None:
    """Start the new head as the nearest-class-mean classifier of the backbone's embeddings.

    With class means ``m_k`` and a temperature ``T``, ``-|e - m_k|^2 / T`` is, up to a term the
    same for every class, the linear ``(2 m_k . e - |m_k|^2) / T``: a head with those weights
    classifies by the nearest mean from its first step. A random head given 20 labels a class
    and a few dozen steps barely moves, and its gradients scramble the backbone meanwhile (the
    weights-imprinting idea of Qi et al., 2018). ``T`` is the mean squared distance of an
    embedding to its class mean, so logits start at a sensible scale. Classes with no rows keep
    their random weights."""
    import numpy as np
    import torch

    from .train import predict

    if len(rows) == 0:
        return
    _, emb = predict(model, pixels, rows)
    k = model.head.out_features
    means = np.zeros((k, emb.shape[1]), np.float64)
    seen = np.zeros(k, bool)
    for c in range(k):
        mine = emb[y == c]
        if len(mine):
            means[c], seen[c] = mine.mean(0), True
    spread = float(np.mean([np.sum((emb[y == c] - means[c]) ** 2, axis=1).mean() for c in range(k) if seen[c]]))
    t = max(spread, 1e-6)
    with torch.no_grad():
        w, b = model.head.weight, model.head.bias
        w[seen] = torch.from_numpy((2 * means[seen] / t).astype(np.float32))
        b[seen] = torch.from_numpy((-np.sum(means[seen] ** 2, axis=1) / t).astype(np.float32))
