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
from ..errors import BadSpec
from ..insight import metrics
from ..package.format import write_package
from ..progress import progress_enabled, report_progress
from ..version import __version__
from . import distributed
from .data import Examples, PixelFile, check_buildable, check_memory, gather, normalization, pixel_file
from .fits import FINAL, FitContext, FitSummary, FitTask, fit_paths, run_fits
from .plan import Resolved, folds_of, resolve, resolve_device
from .records import BUILD_JSON, EXAMPLES, PREDICTIONS, BuildRecord, read_build
from .spec import SPEC_FILE, Spec, load_spec
from .warm import find_parent, fit_weights, fresh_positions, same_build, trained_on

if TYPE_CHECKING:
    from ..repo import Repo
    from .meld import Backbone

BUILD_FORMAT = 2  # 2: folds by example id, per-step schedule, resolved "auto" keys, warm starts


@dataclass
class BuildResult:
    build: BuildRecord
    cached: bool
    expect: dict[str, Any] | None = None  # [expect] results: {"passed", "checks": [...]} (compile.expect)

    def summary(self) -> dict[str, Any]:
        """The shape of ``kiln build --json``."""
        r = self.build.record
        return {
            "id": r["id"],
            "package": str(self.build.package),
            "cached": self.cached,
            "commit": r["lineage"]["commit"],
            "warm_from": (r.get("warm") or {}).get("parent"),
            "metrics": {
                s: {"accuracy": r["metrics"][s]["accuracy"], "n": r["metrics"][s]["n"]} for s in ("valid", "test")
            },
            "seconds": r["seconds"]["total"],
            "expect": self.expect,
        }


def default_spec(repo: Repo) -> Spec:
    path = repo.root / SPEC_FILE
    return load_spec(path if path.is_file() else None)


def build_id(
    state: str | None,
    spec: Spec,
    device: str = "cpu",
    parent: str | None = None,
    world: int = 1,
    backbone: str | None = None,
) -> str:
    """What a build's bits depend on: the data, the weight-changing keys of the spec, the device
    (and the torchrun world size, when more than 1), the datakiln version, the build a warm
    build started from (None: a cold build), and the sha256 of the package it melds (if any)."""
    spec_key = spec.id_dict()
    spec_key["train"]["device"] = device
    if world > 1:
        spec_key["train"]["world"] = world
    key = {
        "build_format": BUILD_FORMAT,
        "state": state,
        "spec": spec_key,
        "datakiln": __version__,
        "warm_from": parent,
    }
    if backbone is not None:
        key["backbone"] = backbone
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]


def build(
    repo: Repo,
    rev: str = "HEAD",
    spec: Spec | None = None,
    *,
    no_cache: bool = False,
    cold: bool = False,
    progress: bool | None = None,
    **overrides: Any,
) -> BuildResult:
    """Train (or find in the cache) the model of ``rev`` under ``spec`` (default: kiln.toml).

    A build of this dataset state and spec on disk is the result (``cached``). Otherwise, when
    a build of the same spec exists for an ancestor commit, each fit starts from its matching fit
    and trains a short schedule (a *warm* build); ``cold=True`` trains from scratch. ``overrides``
    replace single keys: ``build(repo, width=0.5)``, or dotted ``**{"augment.flip": True}``.
    """
    spec = spec or default_spec(repo)
    if overrides:
        spec = spec.with_overrides(**overrides)
    backbone = None
    if spec.model.backbone:
        from .meld import effective_spec, resolve_backbone

        backbone = resolve_backbone(spec.model.backbone, repo.root)
        spec = effective_spec(spec, backbone)
        cold = True  # a warm start would begin from a build of this backbone anyway; keep it simple
    cid = repo.resolve(rev)
    commit = repo.read_commit(cid)
    device = resolve_device(spec)
    world = distributed.world_size()
    if world > 1 and spec.model.freeze_epochs:
        raise BadSpec("model.freeze_epochs is not supported under torchrun; set it to 0 or build in one process")
    if world > 1:
        distributed.start(device)
        cold = True  # a warm rebuild is short enough for one process: torchrun builds are cold
    sha = backbone.sha256 if backbone else None
    cold_final = repo.layout.builds / build_id(commit.state, spec, device, world=world, backbone=sha)
    if not no_cache:
        found = read_build(cold_final) if cold else same_build(repo, commit.state, spec.hash(), device)
        if world > 1:
            found = _rank0_build(cold_final, found)
        if found is not None:
            return _expectations(repo, BuildResult(found, cached=True), spec)
    ex = gather(repo.table_at(cid), use_model_labels=spec.train.use_model_labels)
    check_buildable(ex)
    fits = spec.train.folds + 1 if spec.train.folds >= 2 else 1
    resolved = resolve(spec, ex, fits, world)
    check_memory(len(ex), resolved, spec, len(ex.classes))
    parent = None if cold else find_parent(repo, cid, commit.state, spec.hash(), resolved, ex, spec.train.folds)
    bid = build_id(commit.state, spec, device, parent.id if parent else None, world, sha)
    final = repo.layout.builds / bid
    tmp = repo.tmp_dir / f"build-{bid}.{os.getpid()}.{time.monotonic_ns()}"
    tmp.mkdir(parents=True)
    show = (progress_enabled() if progress is None else progress) and distributed.is_main()
    try:
        with interrupt.deferred():
            _compile(repo, cid, commit.state, bid, spec, resolved, ex, parent, tmp, show, backbone)
        if distributed.is_main():
            _publish(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rec = read_build(final) if distributed.is_main() else None
    if world > 1:
        rec = _rank0_build(final, rec)
    assert rec is not None
    return _expectations(repo, BuildResult(rec, cached=False), spec)


def _expectations(repo: Repo, res: BuildResult, spec: Spec) -> BuildResult:
    """The build with its [expect] results (measured once per set of expectations, then kept)."""
    if spec.expect.checks() and distributed.is_main():
        from .expect import ensure

        res.expect = ensure(repo, res.build, spec.expect)
    return res


def _rank0_build(d: Path, found: BuildRecord | None) -> BuildRecord | None:
    """Under torchrun: rank 0's answer on every rank (the others may not share its filesystem)."""
    record = distributed.share(found.record if found is not None and distributed.is_main() else None)
    return None if record is None else BuildRecord(d, record)


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
    final: FitSummary
    probs: np.ndarray  # (N, K) final model on every example
    pred_probs: np.ndarray  # (N, K) out-of-sample: fold models on train, the final model elsewhere
    embeddings: np.ndarray  # (N, D) final model
    fold: np.ndarray  # (N,) fold of each train example, -1 elsewhere
    fits: dict[str, FitSummary]
    fresh: int  # warm builds: train examples new or relabeled since the parent build


def _tasks(ex: Examples, spec: Spec, parent: BuildRecord | None) -> tuple[list[FitTask], np.ndarray]:
    """The fits (the final model first: it is the longest) and the fold of every row (-1: none)."""
    t = spec.train
    tr = ex.where("train")
    fold = np.full(len(ex), -1, dtype=np.int64)
    every = np.arange(len(ex))
    tasks = [FitTask(t.folds if t.folds >= 2 else 0, FINAL, t.seed, tr, every)]
    if t.folds >= 2:
        fold[tr] = folds_of([ex.ids[i] for i in tr], t.folds, t.seed)
        for f in range(t.folds):
            rows, held = tr[fold[tr] != f], tr[fold[tr] == f]
            tasks.append(FitTask(f, f"fold-{f + 1}", t.seed + 1 + f, rows, held))
    if parent is not None:
        known = trained_on(parent)
        for task in tasks:
            task.warm_from = str(fit_weights(parent, task.name))
            task.fresh = fresh_positions(known, ex, task.rows)
    return tasks, fold


def _cross_fit(
    px_path: Path,
    ex: Examples,
    spec: Spec,
    resolved: Resolved,
    mean: list[float],
    std: list[float],
    parent: BuildRecord | None,
    out: Path,
    show: bool,
    backbone: str | None = None,
) -> Trained | None:
    tasks, fold = _tasks(ex, spec, parent)
    ctx = FitContext(
        str(px_path), ex.y, ex.where("valid"), spec.to_dict(), resolved, mean, std, len(ex.classes), str(out), backbone
    )
    fits = run_fits(ctx, tasks, resolved.workers, show)
    if not distributed.is_main():
        return None
    n, k = len(ex), len(ex.classes)
    pred_probs = np.zeros((n, k), dtype=np.float32)
    for task in tasks:
        probs = np.load(fit_paths(out, task.name)["probs"], allow_pickle=False)
        pred_probs[task.predict] = probs  # the final model's first; the folds' then replace theirs
    probs = np.load(fit_paths(out, FINAL)["probs"], allow_pickle=False)
    emb = np.load(fit_paths(out, FINAL)["emb"], allow_pickle=False)
    fresh = tasks[0].fresh
    return Trained(fits[FINAL], probs, pred_probs, emb, fold, fits, 0 if fresh is None else len(fresh))


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
    repo: Repo,
    cid: str,
    state: str | None,
    bid: str,
    spec: Spec,
    resolved: Resolved,
    ex: Examples,
    parent: BuildRecord | None,
    out: Path,
    show: bool,
    backbone: Backbone | None = None,
) -> None:
    t0 = time.perf_counter()
    report_progress(phase="pixels", desc="decoding images", fraction=0.0)
    size, channels = resolved.size, resolved.channels
    px_path = _decode_once(repo, ex, resolved)
    px = PixelFile(px_path)
    tr, va, te = ex.where("train"), ex.where("valid"), ex.where("test")
    mean, std = _normalization(px, tr, spec, parent, backbone)
    bb_path = None
    if backbone is not None:  # the fits (maybe in worker processes) read the weights from a file
        bb_path = out / "backbone.safetensors"
        bb_path.write_bytes(backbone.weights)
    t_pixels = time.perf_counter()
    run = _cross_fit(px_path, ex, spec, resolved, mean, std, parent, out, show, str(bb_path) if bb_path else None)
    if bb_path is not None:
        bb_path.unlink()
    t_train = time.perf_counter()
    if run is None:
        return  # a torchrun rank but the first: rank 0 exports and writes the build
    report_progress(phase="export", desc="exporting ONNX", fraction=1.0)
    weights = fit_paths(out, FINAL)["weights"].read_bytes()
    sample = px.take(np.concatenate([va, te])[:256])
    onnx_bytes, onnx_diff = _export(spec, resolved, len(ex.classes), mean, std, weights, sample)
    px.close()
    _tidy_fits(out)
    m = _metrics(ex, run)
    lineage: dict[str, Any] = {
        "repo": repo.id,
        "commit": cid,
        "state": state,
        "spec_hash": spec.hash(),
        "datakiln": __version__,
        "build": bid,
    }
    if backbone is not None:
        lineage["backbone"] = backbone.lineage()
    contract = _contract(size, channels, mean, std)
    manifest = _manifest(repo.root.name, bid, spec, resolved, ex.classes, run.final.dim, contract, m, lineage)
    if backbone is not None:  # what `kiln install` installs and pins with this package
        manifest["dependencies"] = [backbone.lineage()]
    write_package(out / "package", manifest, {"weights.safetensors": weights, "model.onnx": onnx_bytes})
    _write_predictions(out, ex, run.pred_probs, run.embeddings, run.fold)
    t_end = time.perf_counter()
    record = {
        "id": bid,
        "format": BUILD_FORMAT,
        "created": time.time(),
        "lineage": lineage,
        "spec": spec.to_dict(),
        "resolved": resolved.to_dict(),
        "input": contract,
        "classes": ex.classes,
        "metrics": m,
        "warm": _warm_record(parent, run) if parent is not None else None,
        "training": _training(spec, run),
        "environment": _environment(spec, resolved),
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


def _normalization(
    px: PixelFile, train: np.ndarray, spec: Spec, parent: BuildRecord | None, backbone: Backbone | None
) -> tuple[list[float], list[float]]:
    """The input normalisation: a backbone's or a warm parent's (their weights were trained on
    it), else the train split's."""
    if backbone is not None:
        from .meld import normalization as backbone_normalization

        return backbone_normalization(backbone)
    if parent is not None:
        return parent.record["input"]["mean"], parent.record["input"]["std"]
    return normalization(px, train, spec.input.normalize)


def _manifest(
    name: str,
    bid: str,
    spec: Spec,
    resolved: Resolved,
    classes: list[str],
    dim: int,
    contract: dict[str, Any],
    m: dict[str, Any],
    lineage: dict[str, Any],
) -> dict[str, Any]:
    return {
        "name": name,
        "version": f"0.0.0+{bid[:12]}",
        "architecture": {**dataclasses.asdict(spec.model), "stem": resolved.stem, "embedding_dim": dim},
        "spec": spec.to_dict(),
        "input": contract,
        "classes": classes,
        "outputs": {"probs": ["N", len(classes)], "embedding": ["N", dim]},
        # The model card (kiln package info, the hub's package page) reads per class and slice from here.
        "metrics": {**{s: m[s] for s in ("valid", "test")}, "per_class": m["per_class"], "slices": m["slices"][:100]},
        "lineage": lineage,
    }


def _decode_once(repo: Repo, ex: Examples, resolved: Resolved) -> Path:
    """The pixel file; under torchrun rank 0 decodes and the others then find it in the cache."""
    if not distributed.is_main():
        distributed.barrier()
    path = pixel_file(repo.store, repo.layout.cache, ex, resolved.size, resolved.channels)
    if resolved.world > 1 and distributed.is_main():
        distributed.barrier()
    return path


def _training(spec: Spec, run: Trained) -> dict[str, Any]:
    folds = [run.fits[f"fold-{i + 1}"] for i in range(spec.train.folds)] if spec.train.folds >= 2 else []
    return {
        "epochs_run": run.final.epochs_run,
        "best_epoch": run.final.best_epoch + 1,
        "fold_best_epochs": [f.best_epoch + 1 for f in folds],
        "history": run.final.history,
        "oos": spec.train.folds >= 2,
        "fit_seconds": {name: f.seconds for name, f in sorted(run.fits.items())},
    }


def _warm_record(parent: BuildRecord, run: Trained) -> dict[str, Any]:
    return {"parent": parent.id, "parent_commit": parent.record["lineage"]["commit"], "fresh": run.fresh}


def _environment(spec: Spec, resolved: Resolved) -> dict[str, Any]:
    """Where the build ran, and what a rebuild needs to reproduce its bits."""
    import platform

    cuda = resolved.device == "cuda"
    return {
        "threads": spec.train.threads,
        "workers": resolved.workers,
        "device": resolved.device,
        "device_name": _cuda_name() if cuda else platform.processor() or platform.machine(),
        "cpu_capability": _torch_attr("cpu_capability"),
        "torch": _torch_attr("version"),
        "python": sys.version.split()[0],
        # Bit-identical weights need the same threads and instruction set on a CPU; on a GPU the
        # same model of GPU, CUDA and cuDNN (deterministic kernels are forced either way).
        "bit_reproducible": "same GPU model, CUDA and cuDNN versions" if cuda else "same threads and CPU capability",
    }


def _tidy_fits(out: Path) -> None:
    """Keep the fold models' weights (a warm rebuild starts from them); drop what the fits handed
    over (their predictions, now in predictions.safetensors; the final weights, in the package)."""
    for f in (out / "fits").iterdir():
        if f.name.endswith(".npy") or f.name.startswith(FINAL + "."):
            f.unlink()


def _cuda_name() -> str:
    import torch

    return str(torch.cuda.get_device_name(0))


def _torch_attr(what: str) -> str:
    import torch

    if what == "version":
        return str(torch.__version__)
    return str(torch.backends.cpu.get_cpu_capability())


def _export(
    spec: Spec,
    resolved: Resolved,
    classes: int,
    mean: list[float],
    std: list[float],
    weights: bytes,
    sample: np.ndarray,
) -> tuple[bytes, float]:
    """The ONNX graph of the final model, and its largest |onnx - torch| probability on ``sample``."""
    import onnxruntime as ort
    import torch
    from safetensors.torch import load as load_weights

    from .models import Classifier, Exported

    r = resolved
    torch.set_num_threads(spec.train.threads)
    model = Classifier(spec.model, (r.channels, r.size[0], r.size[1]), classes, mean, std, r.stem)
    model.load_state_dict(load_weights(weights))
    model.eval()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # torch 2.13 steers to the dynamo exporter; the TorchScript one is the one that works here.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Exported(model).eval(),  # export restores the module's mode afterwards: make that eval
            (torch.zeros((1, r.channels, r.size[0], r.size[1])),),
            buf,  # type: ignore[arg-type]  # a file object works; the stub says path only
            dynamo=False,
            input_names=["pixels"],
            output_names=["probs", "embedding"],
            dynamic_axes={"pixels": {0: "n"}, "probs": {0: "n"}, "embedding": {0: "n"}},
        )
    onnx_bytes = buf.getvalue()
    if len(sample) == 0:
        return onnx_bytes, 0.0
    x = sample.astype(np.float32) / 255.0
    model.eval()
    sess = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    ort_probs = sess.run(["probs"], {"pixels": x})[0]
    with torch.no_grad():
        torch_probs = torch.softmax(model(torch.from_numpy(x)), dim=1).numpy()
    return onnx_bytes, float(np.abs(ort_probs - torch_probs).max())


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
    from safetensors.numpy import save

    # Bytes written by Python, not save_file: that creates its file 0600, unlike every other file.
    arrays = {"pred_probs": pred_probs, "embeddings": np.ascontiguousarray(emb, dtype=np.float32), "y": ex.y}
    (out / PREDICTIONS).write_bytes(save({**arrays, "fold": fold}))
    (out / EXAMPLES).write_text(
        json.dumps({"ids": ex.ids, "splits": ex.splits.tolist(), "labels": ex.labels, "sources": ex.sources})
    )
