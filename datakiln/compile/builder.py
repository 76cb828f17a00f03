"""``kiln build``: a commit and a spec in, a model package and out-of-sample predictions out.

The build id hashes the commit's dataset state, the resolved spec and the datakiln version, so an
unchanged build is found on disk and returned at once. A build is written into a temp directory
and renamed into ``.kiln/builds/<id>`` when complete: Ctrl-C or a crash leaves no half build.

Out-of-sample predictions: with ``folds`` >= 2 the labeled train examples are dealt into folds and
each fold is predicted by a model trained on the others; every other example (valid, test,
unlabeled, model-seeded) is predicted by the final model, which never trained on it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import shutil
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import interrupt
from ..insight import metrics
from ..package.format import write_package
from ..progress import progress_enabled, report_progress
from ..version import __version__
from .data import Examples, check_buildable, check_memory, folds_of, gather, normalization, pixels, resolve_input
from .records import BUILD_JSON, EXAMPLES, PREDICTIONS, BuildRecord, read_build
from .spec import SPEC_FILE, Spec, load_spec

if TYPE_CHECKING:
    from ..repo import Repo

BUILD_FORMAT = 1


@dataclass
class BuildResult:
    build: BuildRecord
    cached: bool

    def summary(self) -> dict[str, Any]:
        """The shape of ``kiln build --json``."""
        r = self.build.record
        return {
            "id": r["id"],
            "package": str(self.build.package),
            "cached": self.cached,
            "commit": r["lineage"]["commit"],
            "metrics": {
                s: {"accuracy": r["metrics"][s]["accuracy"], "n": r["metrics"][s]["n"]} for s in ("valid", "test")
            },
            "seconds": r["seconds"]["total"],
        }


def default_spec(repo: Repo) -> Spec:
    path = repo.root / SPEC_FILE
    return load_spec(path if path.is_file() else None)


def build_id(state: str | None, spec: Spec) -> str:
    key = {"build_format": BUILD_FORMAT, "state": state, "spec": spec.to_dict(), "datakiln": __version__}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]


def build(
    repo: Repo,
    rev: str = "HEAD",
    spec: Spec | None = None,
    *,
    no_cache: bool = False,
    progress: bool | None = None,
    **overrides: Any,
) -> BuildResult:
    """Train (or find in the cache) the model of ``rev`` under ``spec`` (default: kiln.toml).

    ``overrides`` replace single keys: ``build(repo, width=0.5, epochs=10)``, or dotted
    ``**{"augment.flip": True}``.
    """
    spec = spec or default_spec(repo)
    if overrides:
        spec = spec.with_overrides(**overrides)
    cid = repo.resolve(rev)
    commit = repo.read_commit(cid)
    bid = build_id(commit.state, spec)
    final = repo.layout.builds / bid
    cached = read_build(final)
    if cached is not None and not no_cache:
        return BuildResult(cached, cached=True)
    ex = gather(repo.table_at(cid), use_model_labels=spec.train.use_model_labels)
    check_buildable(ex)
    check_memory(len(ex), *resolve_input(spec.input, ex), spec)
    tmp = repo.tmp_dir / f"build-{bid}.{os.getpid()}.{time.monotonic_ns()}"
    tmp.mkdir(parents=True)
    try:
        with interrupt.deferred():
            _compile(repo, cid, commit.state, bid, spec, ex, tmp, progress_enabled() if progress is None else progress)
        _publish(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rec = read_build(final)
    assert rec is not None
    return BuildResult(rec, cached=False)


def _publish(tmp: Path, final: Path) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():
        # --no-cache, or a concurrent identical build: the new one replaces the old atomically enough
        # (readers see the old or the new directory, never a mix, because both are complete).
        trash = final.with_name(final.name + f".old.{os.getpid()}")
        os.rename(final, trash)
        os.rename(tmp, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.rename(tmp, final)


@dataclass
class Trained:
    final: Any  # train.FitResult of the final model
    probs: np.ndarray  # (N, K) final model on every example
    pred_probs: np.ndarray  # (N, K) out-of-sample: fold models on train, the final model elsewhere
    embeddings: np.ndarray  # (N, D) final model
    fold: np.ndarray  # (N,) fold of each train example, -1 elsewhere
    fold_epochs: list[int]


def _cross_fit(x: np.ndarray, ex: Examples, spec: Spec, mean: list[float], std: list[float], show: bool) -> Trained:
    from . import train as T
    from .models import Classifier

    t = spec.train
    tr, va = ex.where("train"), ex.where("valid")
    T.set_determinism(t.threads, t.seed)

    fits = t.folds + 1 if t.folds >= 2 else 1

    def fit(idx: np.ndarray, seed: int, desc: str, i: int) -> Any:
        torch_seed(seed)  # the initial weights depend on the seed only
        model = Classifier(spec.model, x.shape[1:], len(ex.classes), mean, std)
        bar = T.EpochBar(desc, t.epochs, show, fit=i, fits=fits)
        try:
            return T.fit(x[idx], ex.y[idx], x[va], ex.y[va], spec, model, seed=seed, on_epoch=bar)
        finally:
            bar.close()

    n, k = len(ex), len(ex.classes)
    pred_probs = np.zeros((n, k), dtype=np.float32)
    fold = np.full(n, -1, dtype=np.int64)
    fold_epochs = []
    if t.folds >= 2:
        f_of = folds_of(len(tr), t.folds, t.seed)
        for f in range(t.folds):
            res = fit(tr[f_of != f], t.seed + 1 + f, f"fold {f + 1}/{t.folds}", f)
            held = tr[f_of == f]
            pred_probs[held], _ = T.predict(res.model, x[held])
            fold[held] = f
            fold_epochs.append(res.best_epoch + 1)
    final = fit(tr, t.seed, "final", fits - 1)
    probs, emb = T.predict(final.model, x)
    others = fold < 0
    pred_probs[others] = probs[others]
    return Trained(final, probs, pred_probs, emb, fold, fold_epochs)


def _contract(size: list[int], channels: int, mean: list[float], std: list[float]) -> dict[str, Any]:
    """The input contract: how a caller turns an image into the model's input (see datakiln.pixels)."""
    return {
        "size": size,
        "channels": channels,
        "color": "L" if channels == 1 else "RGB",
        "layout": "NCHW",
        "dtype": "float32",
        "scale": "uint8 / 255",
        "resize": "bilinear",
        "mean": mean,
        "std": std,
        "normalized_in_model": True,
    }


def _compile(
    repo: Repo, cid: str, state: str | None, bid: str, spec: Spec, ex: Examples, out: Path, show: bool
) -> None:
    from .train import cpu_capability

    t0 = time.perf_counter()
    report_progress(phase="pixels", desc="decoding images", fraction=0.0)
    size, channels = resolve_input(spec.input, ex)
    x = pixels(repo.store, repo.layout.cache, ex, size, channels)
    tr, va, te = ex.where("train"), ex.where("valid"), ex.where("test")
    mean, std = normalization(x, tr, spec.input.normalize)
    t_pixels = time.perf_counter()
    run = _cross_fit(x, ex, spec, mean, std, show)
    t_train = time.perf_counter()
    model = run.final.model
    report_progress(phase="export", desc="exporting ONNX", fraction=1.0)
    weights, onnx_bytes, onnx_diff = _export(model, x[np.concatenate([va, te])[:256]], (channels, size[0], size[1]))
    m = _metrics(ex, run)
    lineage = {
        "repo": repo.id,
        "commit": cid,
        "state": state,
        "spec_hash": spec.hash(),
        "datakiln": __version__,
        "build": bid,
    }
    contract = _contract(size, channels, mean, std)
    manifest = {
        "name": repo.root.name,
        "version": f"0.0.0+{bid[:12]}",
        "architecture": {**dataclasses.asdict(spec.model), "embedding_dim": model.dim},
        "spec": spec.to_dict(),
        "input": contract,
        "classes": ex.classes,
        "outputs": {"probs": ["N", len(ex.classes)], "embedding": ["N", model.dim]},
        "metrics": {s: m[s] for s in ("valid", "test")},
        "lineage": lineage,
    }
    write_package(out / "package", manifest, {"weights.safetensors": weights, "model.onnx": onnx_bytes})
    _write_predictions(out, ex, run.pred_probs, run.embeddings, run.fold)
    t_end = time.perf_counter()
    record = {
        "id": bid,
        "created": time.time(),
        "lineage": lineage,
        "spec": spec.to_dict(),
        "input": contract,
        "classes": ex.classes,
        "metrics": m,
        "training": {
            "epochs_run": run.final.epochs_run,
            "best_epoch": run.final.best_epoch + 1,
            "fold_best_epochs": run.fold_epochs,
            "history": run.final.history,
            "oos": spec.train.folds >= 2,
        },
        "environment": {
            "threads": spec.train.threads,
            "cpu_capability": cpu_capability(),
            "torch": _torch_version(),
            "python": sys.version.split()[0],
        },
        "weights_sha256": hashlib.sha256(weights).hexdigest(),
        "onnx_max_abs_diff": onnx_diff,
        "seconds": {
            "pixels": round(t_pixels - t0, 3),
            "train": round(t_train - t_pixels, 3),
            "export": round(t_end - t_train, 3),
            "total": round(t_end - t0, 3),
        },
    }
    (out / BUILD_JSON).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def torch_seed(seed: int) -> None:
    import torch

    torch.manual_seed(seed)


def _torch_version() -> str:
    import torch

    return str(torch.__version__)


def _export(model: Any, sample: np.ndarray, shape: tuple[int, int, int]) -> tuple[bytes, bytes, float]:
    """safetensors weights, the ONNX graph, and the largest |onnx - torch| probability on ``sample``."""
    import onnxruntime as ort
    import torch
    from safetensors.numpy import save

    from .models import Exported
    from .train import predict

    model.eval()
    weights = save(
        {k: v.detach().contiguous().numpy() for k, v in model.state_dict().items()}, metadata={"format": "pt"}
    )
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # torch 2.13 steers to the dynamo exporter; the TorchScript one is the one that works here.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Exported(model),
            (torch.zeros((1, *shape)),),
            buf,  # type: ignore[arg-type]  # a file object works; the stub says path only
            dynamo=False,
            input_names=["pixels"],
            output_names=["probs", "embedding"],
            dynamic_axes={"pixels": {0: "n"}, "probs": {0: "n"}, "embedding": {0: "n"}},
        )
    onnx_bytes = buf.getvalue()
    if len(sample) == 0:
        return weights, onnx_bytes, 0.0
    sess = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    ort_probs = sess.run(["probs"], {"pixels": sample.astype(np.float32) / 255.0})[0]
    torch_probs, _ = predict(model, sample)
    return weights, onnx_bytes, float(np.abs(ort_probs - torch_probs).max())


def _metrics(ex: Examples, run: Trained) -> dict[str, Any]:
    y, probs, pred_probs = ex.y, run.probs, run.pred_probs
    tr, va, te = ex.where("train"), ex.where("valid"), ex.where("test")
    held = te if len(te) else va  # per-class and confusion on test; on valid when there is no test
    # Slices only count predictions from a model that did not train on the example: without
    # cross-fitting, train examples are left out rather than flattered.
    labeled = np.flatnonzero((y >= 0) & ((run.fold >= 0) | (ex.splits != "train")))
    tr_oos = tr[run.fold[tr] >= 0]
    columns: dict[str, list[str | None]] = {"split": [str(s) for s in ex.splits], "label": list(ex.labels)}
    columns.update(ex.meta)
    return {
        "valid": {"accuracy": metrics.accuracy(y[va], probs[va]), "n": int(len(va))},
        "test": {"accuracy": metrics.accuracy(y[te], probs[te]), "n": int(len(te))},
        "train_oos": {"accuracy": metrics.accuracy(y[tr_oos], pred_probs[tr_oos]), "n": int(len(tr_oos))},
        "per_class": {
            "split": "test" if len(te) else "valid",
            "classes": metrics.per_class(y[held], probs[held], ex.classes),
        },
        "confusion": {
            "split": "test" if len(te) else "valid",
            "matrix": metrics.confusion(y[held], probs[held], len(ex.classes)),
        },
        "slices": metrics.slice_metrics(
            y[labeled], pred_probs[labeled], {k: [v[i] for i in labeled] for k, v in columns.items()}
        ),
        "unlabeled": int((y < 0).sum()),
    }


def _write_predictions(out: Path, ex: Examples, pred_probs: np.ndarray, emb: np.ndarray, fold: np.ndarray) -> None:
    from safetensors.numpy import save_file

    save_file(
        {"pred_probs": pred_probs, "embeddings": np.ascontiguousarray(emb, dtype=np.float32), "y": ex.y, "fold": fold},
        str(out / PREDICTIONS),
    )
    (out / EXAMPLES).write_text(
        json.dumps({"ids": ex.ids, "splits": ex.splits.tolist(), "labels": ex.labels, "sources": ex.sources})
    )
