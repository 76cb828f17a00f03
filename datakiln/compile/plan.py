"""What a build decides before it trains: the spec's "auto" values resolved against the data and
the machine, the fold of every example, and the fits to run. numpy only.

Every decision is recorded in the build (``resolved``), so a build says what it did, and the
same commit and spec decide the same way on any machine (except ``workers`` and ``device``,
which depend on the machine: ``workers`` never changes the weights, ``device`` is in the id).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BadSpec
from .data import Examples, resolve_input
from .spec import Spec

# "auto" epochs: enough passes to show the network about this many images. A small CNN on
# 50,000 digits is within a few tenths of a point of its long-schedule accuracy after 6 passes
# (bench/bench_scale.py), and a fixed 30 epochs made a first build of 60,000 images take hours.
AUTO_SAMPLES = 250_000
MAX_AUTO_EPOCHS = 30
MIN_AUTO_EPOCHS = 2
STEM_MIN_SIDE = 14  # "auto" stem: the largest power of two that leaves the first block this many px
MAX_STEM = 8
JOBS_ENV = "KILN_JOBS"  # caps worker processes (tests run with 1)


@dataclass(frozen=True)
class Resolved:
    """The concrete values a build used for the spec's "auto" keys."""

    size: list[int]
    channels: int
    stem: int
    epochs: int
    workers: int
    device: str
    world: int = 1  # processes of a torchrun job that share each fit (1: none)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def resolve(spec: Spec, ex: Examples, fits: int, world: int = 1) -> Resolved:
    size, channels = resolve_input(spec.input, ex)
    n_train = len(ex.where("train"))
    return Resolved(
        size=size,
        channels=channels,
        stem=resolve_stem(spec, size),
        epochs=resolve_epochs(spec, n_train),
        # Under torchrun every process already has its cores' share of the work: one fit at a time.
        workers=1 if world > 1 else resolve_workers(spec, fits),
        device=resolve_device(spec),
        world=world,
    )


def resolve_stem(spec: Spec, size: list[int]) -> int:
    if spec.model.arch != "cnn":
        return 1
    if isinstance(spec.model.stem, int):
        if min(size) // spec.model.stem < 1:
            raise BadSpec(f"model.stem = {spec.model.stem} is larger than the input ({size}); use a smaller stem")
        return spec.model.stem
    s = 1
    while s < MAX_STEM and min(size) // (2 * s) >= STEM_MIN_SIDE:
        s *= 2
    return s


def resolve_epochs(spec: Spec, n_train: int) -> int:
    if isinstance(spec.train.epochs, int):
        return spec.train.epochs
    return max(MIN_AUTO_EPOCHS, min(MAX_AUTO_EPOCHS, math.ceil(AUTO_SAMPLES / max(n_train, 1))))


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def resolve_workers(spec: Spec, fits: int) -> int:
    if isinstance(spec.train.workers, int):
        return max(1, min(spec.train.workers, fits))
    cores = usable_cores()
    cap = os.environ.get(JOBS_ENV, "").strip()
    if cap.isdigit() and int(cap) > 0:
        cores = min(cores, int(cap))
    if resolve_device(spec) == "cuda":
        return 1  # one GPU: fits queue on it rather than fight over its memory
    return max(1, min(fits, cores // spec.train.threads))


def resolve_device(spec: Spec) -> str:
    """``cpu`` or ``cuda``. "auto" asks torch only when the machine has an NVIDIA device node,
    so deciding costs no torch import (a second) on the CPU machines most builds run on."""
    want = spec.train.device
    if want == "cpu":
        return "cpu"
    present = Path("/dev/nvidia0").exists() or Path("/proc/driver/nvidia").exists()
    available = present and _cuda_available()
    if want == "cuda" and not available:
        raise BadSpec(
            'train.device = "cuda" but torch sees no GPU here (a CPU build of torch, or no driver); '
            'use device = "auto" or "cpu"'
        )
    return "cuda" if available else "cpu"


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def folds_of(ids: list[str], folds: int, seed: int) -> np.ndarray:
    """Fold of each example, from a hash of its id and the seed: adding, removing or relabeling
    examples never moves another example to another fold, so fold i of a warm rebuild trains on
    what fold i of its parent trained on, and its held-out rows stay out of sample."""
    k = max(folds, 1)
    return np.array(
        [int.from_bytes(hashlib.sha256(f"{seed}:{i}".encode()).digest()[:8], "big") % k for i in ids],
        dtype=np.int64,
    )


def batch_bounds(n: int, bs: int, world: int = 1) -> list[int]:
    """Batch start offsets plus ``n``; a last batch too small to give every process two samples
    (one sample breaks BatchNorm) joins the one before."""
    bounds = [*range(0, n, bs), n]
    if len(bounds) > 2 and n - bounds[-2] < 2 * world:
        del bounds[-2]
    return bounds


def lr_factor(schedule: str, step: int, steps: int) -> float:
    """Learning-rate multiplier of optimizer step ``step`` (0-based) of ``steps``, set every step:
    the cosine reaches zero at the end of the schedule however short it is (set once per epoch,
    the last of 3 epochs used to run at a quarter of the peak, the only one of 1 at the peak)."""
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * step / max(steps, 1)))
    if schedule == "step":
        return float(0.1 ** min(2, (3 * step) // max(steps, 1)))
    return 1.0


# A warm fit (a rebuild that starts from an earlier build's weights) trains this fraction of the
# cold schedule's steps, at least WARM_MIN_STEPS and at least two batches' worth per new or
# relabeled example, at WARM_LR times the peak rate: a converged network needs a nudge, not a
# schedule.
WARM_FRACTION = 0.04
WARM_MIN_STEPS = 20
WARM_LR = 0.1


def warm_steps(cold_steps: int, fresh: int, bs: int) -> int:
    return min(cold_steps, max(WARM_MIN_STEPS, math.ceil(WARM_FRACTION * cold_steps), math.ceil(2 * fresh / bs)))


def global_batch(batch_size: int, n: int, world: int = 1) -> int:
    """Rows per optimizer step: ``batch_size`` per process (torchrun: ``world`` processes share a
    step, each with its own batch, as DistributedDataParallel is used), at most the rows there are."""
    return min(batch_size * world, max(n, 1))


def fit_steps(n: int, batch_size: int, epochs: int, warm: bool, fresh: int, world: int = 1) -> int:
    """Optimizer steps a fit on ``n`` rows takes: for progress and its estimate of time left."""
    bs = global_batch(batch_size, n, world)
    cold = epochs * (len(batch_bounds(n, bs, world)) - 1)
    return warm_steps(cold, fresh, bs) if warm else cold
