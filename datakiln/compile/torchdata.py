"""``datakiln.dataset()``: a commit's split as a PyTorch ``Dataset``, for users with their own loops."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset


class ExampleDataset(Dataset[tuple[torch.Tensor, int]]):
    """Items are ``(pixels, label)``: (C, H, W) float32 in [0, 1] under the build's input contract,
    and the class index into ``classes`` (-1 for unlabeled examples, when they are included)."""

    def __init__(self, x: np.ndarray, rows: np.ndarray, y: np.ndarray, ids: list[str], classes: list[str]) -> None:
        # x: every example's pixels (a memory map of the cache file); rows: this dataset's rows of it.
        self.x, self.rows, self.y, self.ids, self.classes = x, rows, y, ids, classes

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.from_numpy(self.x[self.rows[i]].astype(np.float32) / 255.0), int(self.y[i])
