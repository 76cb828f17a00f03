"""The training loop: deterministic, reading batches from the pixel file, with a per-step schedule.

Determinism: one seeded numpy generator orders batches and draws augmentations, torch's seed
fixes the initial weights and dropout, ``use_deterministic_algorithms`` refuses kernels whose
result depends on timing, and the thread count comes from the spec. Same inputs and spec, same
threads and CPU instruction set: bit-identical weights.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .. import interrupt
from .data import PixelFile
from .models import Classifier
from .plan import WARM_LR, batch_bounds, global_batch, lr_factor, warm_steps
from .spec import AugmentSpec, Spec

EpochHook = Callable[[int, float, float | None], None]  # (epoch, mean loss, valid accuracy)
StepHook = Callable[[int, int, int, int], None]  # (steps done, steps, epoch, epochs)


def set_determinism(threads: int, seed: int, device: str = "cpu") -> None:
    if device == "cuda":
        # cuBLAS is deterministic only with a fixed workspace, which must be set before it starts.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(seed)


def cpu_capability() -> str:
    return str(torch.backends.cpu.get_cpu_capability())


@dataclass
class FitResult:
    model: Classifier
    best_epoch: int
    epochs_run: int
    history: list[dict[str, float | None]] = field(default_factory=list)


def augment(
    xb: np.ndarray, rng: np.random.Generator, aug: AugmentSpec, share: slice = slice(None), total: int = 0
) -> np.ndarray:
    """Random shift (zero padding), flip and brightness on a (B, C, H, W) float32 batch in [0, 1].

    Under torchrun ``xb`` is rows ``share`` of a batch of ``total``: the draws are made for the
    whole batch (so every rank's generator stays in step) and this share's are applied."""
    n = total or len(xb)
    if aug.shift:
        s = aug.shift
        _, _, h, w = xb.shape
        padded = np.pad(xb, ((0, 0), (0, 0), (s, s), (s, s)))
        dy, dx = (d[share] for d in rng.integers(0, 2 * s + 1, size=(2, n)))
        xb = np.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(len(xb))])
    if aug.flip:
        flip = (rng.random(n) < 0.5)[share]
        xb[flip] = xb[flip][..., ::-1]
    if aug.brightness:
        scale = rng.uniform(1 - aug.brightness, 1 + aug.brightness, size=(n, 1, 1, 1)).astype(np.float32)[share]
        xb = np.clip(xb * scale, 0.0, 1.0)
    return np.ascontiguousarray(xb, dtype=np.float32)


def _optimizer(model: nn.Module, spec: Spec) -> torch.optim.Optimizer:
    t = spec.train
    if t.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay, nesterov=True
        )
    return torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)


@dataclass
class FitData:
    """A fit's rows of a pixel file: train rows with their class indices, and the valid rows."""

    pixels: PixelFile
    rows: np.ndarray
    y: np.ndarray
    valid_rows: np.ndarray
    valid_y: np.ndarray
    fresh: np.ndarray | None = None  # warm fits: positions in ``rows`` new or relabeled since the parent


def _warm_order(data: FitData, steps: int, bs: int, rng: np.random.Generator) -> np.ndarray:
    """Positions in ``data.rows`` for a warm fit: every fresh example, topped up with others drawn
    at random, shuffled; longer than one pass only when the schedule is."""
    n = len(data.rows)
    fresh = data.fresh if data.fresh is not None else np.zeros(0, np.int64)
    others = np.setdiff1d(np.arange(n), fresh)
    picked = np.concatenate([rng.permutation(fresh), rng.permutation(others)])[: steps * bs]
    while len(picked) < steps * bs:
        picked = np.concatenate([picked, rng.permutation(n)])[: steps * bs]
    return rng.permutation(picked)


def fit(
    data: FitData,
    spec: Spec,
    model: Classifier,
    *,
    seed: int,
    epochs: int,
    device: str = "cpu",
    warm: bool = False,
    freeze_epochs: int = 0,
    world: int = 1,
    rank: int = 0,
    on_epoch: EpochHook | None = None,
    on_step: StepHook | None = None,
) -> FitResult:
    """Train ``model`` on the uint8 (N, C, H, W) pixels of ``data.rows``, a batch read at a time.

    Cold: ``epochs`` passes with the spec's schedule. Warm: one short pass (see WARM_FRACTION).
    Under torchrun (``world`` > 1) a step takes ``batch_size`` rows per rank: every rank draws
    the same global batch and augmentations and trains on rows ``rank::world`` of it, through
    DistributedDataParallel (see ``distributed``).
    ``freeze_epochs``: the first epochs train only the head; the features (a backbone's) keep
    their weights and their batch statistics.
    Stops after ``patience`` epochs without a better valid accuracy (0: never). Keeps the last
    epoch's weights, or with ``keep = "best"`` those of the epoch with the best valid accuracy
    (ties: the earlier epoch). Without valid examples, trains all epochs and keeps the last.
    """
    t = spec.train
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    net = _placed(model, device, world)
    opt = _optimizer(model, spec)
    loss_fn = nn.CrossEntropyLoss()
    n = len(data.rows)
    aug = spec.augment
    augmenting = bool(aug.shift or aug.flip or aug.brightness)
    bs, steps, passes, peak = _schedule(data, spec, epochs, warm, world)
    best: tuple[float, int, dict[str, torch.Tensor]] | None = None
    result = FitResult(model, best_epoch=passes - 1, epochs_run=0)
    step = 0
    for epoch in range(passes):
        model.train()
        _freeze_features(model, epoch < freeze_epochs)
        order = _warm_order(data, steps, bs, rng) if warm else rng.permutation(n)
        bounds = batch_bounds(len(order), bs, world)
        total = 0.0
        for start, stop in zip(bounds, bounds[1:]):
            interrupt.check()
            for g in opt.param_groups:
                g["lr"] = peak * lr_factor(t.schedule, step, steps)
            # Under torchrun this rank reads and trains rows rank::world of the batch (share).
            share = slice(rank, None, world) if world > 1 else slice(None)
            pos = order[start:stop]
            xb = np.divide(data.pixels.take(data.rows[pos[share]]), 255.0, dtype=np.float32)  # (B, C, H, W) in [0, 1]
            if augmenting:
                xb = augment(xb, rng, aug, share, len(pos))
            yb = data.y[pos[share]]
            loss = loss_fn(net(torch.from_numpy(xb).to(device)), torch.from_numpy(yb).to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(pos)
            step += 1
            if on_step:
                on_step(step, steps, epoch, passes)
        if world > 1:
            _sync_buffers(model)
        acc = _valid_accuracy(model, data, device, world, rank) if len(data.valid_rows) else None
        mean_loss = total / max(len(order), 1)
        result.history.append({"epoch": epoch + 1, "loss": mean_loss, "valid_accuracy": acc})
        result.epochs_run = epoch + 1
        if on_epoch:
            on_epoch(epoch, mean_loss, acc)
        if acc is None:
            continue
        if best is None or acc > best[0]:
            best = (acc, epoch, copy.deepcopy(model.state_dict()) if t.keep == "best" else {})
        elif t.patience and epoch - best[1] >= t.patience:
            break
    result.best_epoch = result.epochs_run - 1
    if best is not None and t.keep == "best":
        model.load_state_dict(best[2])
        result.best_epoch = best[1]
    model.eval()
    return result


def _freeze_features(model: Classifier, frozen: bool) -> None:
    """Train the head alone (``frozen``) or everything: a frozen backbone keeps its weights and,
    in eval mode, its BatchNorm running statistics."""
    for p in model.features.parameters():
        p.requires_grad_(not frozen)
    if frozen:
        model.features.eval()


def _placed(model: Classifier, device: str, world: int) -> nn.Module:
    """The model on its device; under torchrun, wrapped in DistributedDataParallel."""
    model.to(device)
    if world == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    # BatchNorm's running statistics are not broadcast every step (a collective per step costs
    # more than the step on small images); rank 0's are sent to the others whenever the model
    # is evaluated or handed back (_sync_buffers), so every rank then holds one model.
    return DistributedDataParallel(
        model,
        device_ids=[torch.cuda.current_device()] if device == "cuda" else None,
        broadcast_buffers=False,
        gradient_as_bucket_view=True,  # gradients live in the all-reduce buckets: no copy per step
    )


def _schedule(data: FitData, spec: Spec, epochs: int, warm: bool, world: int) -> tuple[int, int, int, float]:
    """(rows per step, steps, passes, peak learning rate) of a cold or a warm fit."""
    t, n = spec.train, len(data.rows)
    bs = global_batch(t.batch_size, n, world)
    cold = epochs * (len(batch_bounds(n, bs, world)) - 1)
    if warm:
        return bs, warm_steps(cold, len(data.fresh) if data.fresh is not None else 0, bs), 1, t.lr * WARM_LR
    return bs, cold, epochs, t.lr


def _sync_buffers(model: nn.Module) -> None:
    import torch.distributed as dist

    for b in model.buffers():
        dist.broadcast(b, src=0)


def _valid_accuracy(model: Classifier, data: FitData, device: str, world: int, rank: int) -> float:
    if world == 1:
        return accuracy(model, data.pixels, data.valid_rows, data.valid_y, device)
    from .distributed import total

    mine = slice(rank, None, world)
    n = len(data.valid_rows[mine])
    right = round(accuracy(model, data.pixels, data.valid_rows[mine], data.valid_y[mine], device) * n) if n else 0
    return total(right) / len(data.valid_rows)


PREDICT_BATCH = 256  # rows per forward pass: bounds the activations (512 let the heap grow to GBs)


def release_memory() -> None:
    """Hand freed heap back to the system. glibc keeps the activation buffers of large batches in
    its heap: predicting 70,000 images grew a process from 0.35 GB to 1.4-3.8 GB without this."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: nothing to trim


@torch.no_grad()
def predict(
    model: Classifier, x: PixelFile, rows: np.ndarray, *, embed: bool = True, device: str = "cpu"
) -> tuple[np.ndarray, np.ndarray]:
    """(len(rows), K) probabilities and (len(rows), D) embeddings (empty unless ``embed``) of the
    uint8 pixels of ``rows``, ``PREDICT_BATCH`` rows at a time."""
    model.eval()
    k, d = model.head.out_features, model.dim
    probs = np.zeros((len(rows), k), np.float32)
    embs = np.zeros((len(rows) if embed else 0, d), np.float32)
    for start in range(0, len(rows), PREDICT_BATCH):
        interrupt.check()
        xb = torch.from_numpy(np.divide(x.take(rows[start : start + PREDICT_BATCH]), 255.0, dtype=np.float32))
        emb = model.embed(xb.to(device))
        stop = start + len(xb)
        probs[start:stop] = torch.softmax(model.head(emb), dim=1).cpu().numpy()
        if embed:
            embs[start:stop] = emb.cpu().numpy()
    release_memory()
    return probs, embs


@torch.no_grad()
def accuracy(model: Classifier, x: PixelFile, rows: np.ndarray, y: np.ndarray, device: str = "cpu") -> float:
    model.eval()
    right = 0
    for start in range(0, len(rows), PREDICT_BATCH):
        xb = torch.from_numpy(np.divide(x.take(rows[start : start + PREDICT_BATCH]), 255.0, dtype=np.float32))
        logits = model(xb.to(device))
        right += int((logits.argmax(1).cpu().numpy() == y[start : start + PREDICT_BATCH]).sum())
    return right / len(rows)
