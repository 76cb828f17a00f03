"""The training loop: deterministic, in memory, with early stopping on the valid split.

Determinism: one seeded numpy generator orders batches and draws augmentations, torch's seed
fixes the initial weights and dropout, ``use_deterministic_algorithms`` refuses kernels whose
result depends on timing, and the thread count comes from the spec. Same inputs and spec, same
threads and CPU instruction set: bit-identical weights.
"""

from __future__ import annotations

import copy
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .. import interrupt
from ..progress import report_progress
from .models import Classifier
from .spec import AugmentSpec, Spec

EpochHook = Callable[[int, float, float | None], None]  # (epoch, mean loss, valid accuracy)


def set_determinism(threads: int, seed: int) -> None:
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


def augment(xb: np.ndarray, rng: np.random.Generator, aug: AugmentSpec) -> np.ndarray:
    """Random shift (zero padding), flip and brightness on a (B, C, H, W) float32 batch in [0, 1]."""
    if aug.shift:
        s = aug.shift
        b, _, h, w = xb.shape
        padded = np.pad(xb, ((0, 0), (0, 0), (s, s), (s, s)))
        dy, dx = rng.integers(0, 2 * s + 1, size=(2, b))
        xb = np.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(b)])
    if aug.flip:
        flip = rng.random(len(xb)) < 0.5
        xb[flip] = xb[flip][..., ::-1]
    if aug.brightness:
        scale = rng.uniform(1 - aug.brightness, 1 + aug.brightness, size=(len(xb), 1, 1, 1)).astype(np.float32)
        xb = np.clip(xb * scale, 0.0, 1.0)
    return np.ascontiguousarray(xb, dtype=np.float32)


def batch_bounds(n: int, bs: int) -> list[int]:
    """Batch start offsets plus ``n``; a last batch of one sample (which breaks BatchNorm) joins the one before."""
    bounds = [*range(0, n, bs), n]
    if len(bounds) > 2 and n - bounds[-2] == 1:
        del bounds[-2]
    return bounds


def _optimizer(model: nn.Module, spec: Spec) -> torch.optim.Optimizer:
    t = spec.train
    if t.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay, nesterov=True
        )
    return torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)


def _lr_factor(spec: Spec, epoch: int) -> float:
    """Learning-rate multiplier for ``epoch`` (0-based), set once per epoch."""
    e, n = epoch, spec.train.epochs
    if spec.train.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * e / n))
    if spec.train.schedule == "step":
        return 0.1 ** (e // max(1, n // 3))
    return 1.0


def fit(
    x: np.ndarray,
    y: np.ndarray,
    x_valid: np.ndarray,
    y_valid: np.ndarray,
    spec: Spec,
    model: Classifier,
    *,
    seed: int,
    on_epoch: EpochHook | None = None,
) -> FitResult:
    """Train ``model`` on uint8 (N, C, H, W) pixels ``x`` with class indices ``y``.

    Stops after ``patience`` epochs without a better valid accuracy (0: never). Keeps the last
    epoch's weights, or with ``keep = "best"`` those of the epoch with the best valid accuracy
    (ties: the earlier epoch). Without valid examples, trains all epochs and keeps the last.
    """
    t = spec.train
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    opt = _optimizer(model, spec)
    loss_fn = nn.CrossEntropyLoss()
    n = len(x)
    aug = spec.augment
    augmenting = bool(aug.shift or aug.flip or aug.brightness)
    bs = min(t.batch_size, n)
    best: tuple[float, int, dict[str, torch.Tensor]] | None = None
    result = FitResult(model, best_epoch=t.epochs - 1, epochs_run=0)
    for epoch in range(t.epochs):
        for g in opt.param_groups:
            g["lr"] = t.lr * _lr_factor(spec, epoch)
        model.train()
        order = rng.permutation(n)
        bounds = batch_bounds(n, bs)
        total = 0.0
        for start, stop in zip(bounds, bounds[1:]):
            interrupt.check()
            idx = order[start:stop]
            xb = np.divide(x[idx], 255.0, dtype=np.float32)  # (B, C, H, W) in [0, 1]
            if augmenting:
                xb = augment(xb, rng, aug)
            loss = loss_fn(model(torch.from_numpy(xb)), torch.from_numpy(y[idx]))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        acc = accuracy(model, x_valid, y_valid) if len(x_valid) else None
        result.history.append({"epoch": epoch + 1, "loss": total / n, "valid_accuracy": acc})
        result.epochs_run = epoch + 1
        if on_epoch:
            on_epoch(epoch, total / n, acc)
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


@torch.no_grad()
def predict(model: Classifier, x: np.ndarray, batch: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """(N, K) probabilities and (N, D) embeddings for uint8 pixels ``x``."""
    model.eval()
    probs, embs = [], []
    for start in range(0, len(x), batch):
        xb = torch.from_numpy(np.divide(x[start : start + batch], 255.0, dtype=np.float32))
        emb = model.embed(xb)
        probs.append(torch.softmax(model.head(emb), dim=1).numpy())
        embs.append(emb.numpy())
    if not probs:
        return np.zeros((0, model.head.out_features), np.float32), np.zeros((0, model.dim), np.float32)
    return np.concatenate(probs), np.concatenate(embs)


@torch.no_grad()
def accuracy(model: Classifier, x: np.ndarray, y: np.ndarray, batch: int = 512) -> float:
    model.eval()
    right = 0
    for start in range(0, len(x), batch):
        logits = model(torch.from_numpy(np.divide(x[start : start + batch], 255.0, dtype=np.float32)))
        right += int((logits.argmax(1).numpy() == y[start : start + batch]).sum())
    return right / len(x)


class EpochBar:
    """One line per fit on stderr: ``final  epoch 12/30  loss 0.123  valid 0.981`` (when enabled),
    and a progress event for ``kiln ui`` (fit ``fit`` of ``fits``)."""

    def __init__(self, desc: str, epochs: int, enabled: bool, *, fit: int = 0, fits: int = 1) -> None:
        self.desc, self.epochs, self.enabled = desc, epochs, enabled
        self.fit, self.fits = fit, fits

    def __call__(self, epoch: int, loss: float, acc: float | None) -> None:
        report_progress(
            phase="train",
            desc=self.desc,
            fit=self.fit + 1,
            fits=self.fits,
            epoch=epoch + 1,
            epochs=self.epochs,
            loss=loss,
            valid=acc,
            fraction=(self.fit + (epoch + 1) / self.epochs) / self.fits,
        )
        if not self.enabled:
            return
        done = int(30 * (epoch + 1) / self.epochs)
        valid = f"  valid {acc:.3f}" if acc is not None else ""
        sys.stderr.write(
            f"\r{self.desc:>8} [{'#' * done:<30}] epoch {epoch + 1}/{self.epochs}  loss {loss:.4f}{valid}   "
        )
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()
