"""One fit across processes or machines: PyTorch's DistributedDataParallel under ``torchrun``.

``torchrun --nproc-per-node 2 -m datakiln build`` starts the build once per rank. Every rank
resolves the same plan and runs the same fits one after another; within a fit each rank takes
its share of every batch (rows ``rank::world`` of it), DistributedDataParallel averages the
gradients (gloo on CPU, NCCL on GPU), so the ranks keep one set of weights. Rank 0 decodes the
pixels first (the others then find them in the cache, or decode their own on a machine without
a shared filesystem), predicts, exports and writes the build; the others get its record. The
world size is part of the build id: the gradient of a batch split over ranks is summed in
another order, and BatchNorm sees each rank's share, so the bits depend on it.
"""

from __future__ import annotations

import os
from typing import Any

WORLD_ENV = "WORLD_SIZE"


def world_size() -> int:
    """Processes in the torchrun job (1 when not under torchrun)."""
    try:
        return max(1, int(os.environ.get(WORLD_ENV, "1")))
    except ValueError:
        return 1


def rank() -> int:
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def local_rank() -> int:
    try:
        return int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        return 0


def is_main() -> bool:
    return rank() == 0


def start(device: str) -> None:
    """Join the torchrun job's process group (once per process)."""
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return
    if device == "cuda":
        torch.cuda.set_device(local_rank())
    dist.init_process_group("nccl" if device == "cuda" else "gloo")


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()


def share(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def total(value: int) -> int:
    """The sum of ``value`` over the ranks."""
    import torch
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.int64)
    dist.all_reduce(t)
    return int(t.item())


def gather(obj: Any) -> list[Any] | None:
    """Every rank's ``obj``, in rank order, on rank 0; None on the others."""
    import torch.distributed as dist

    out: list[Any] | None = [None] * dist.get_world_size() if is_main() else None
    dist.gather_object(obj, out, dst=0)
    return out
