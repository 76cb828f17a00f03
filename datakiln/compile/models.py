"""Architectures: a small CNN family and an MLP, both with a width multiplier and a depth.

Every model takes ``(N, C, H, W)`` float32 pixels in [0, 1] and normalises inside itself, so the
exported ONNX graph needs nothing but ``uint8 / 255`` from its caller.
"""

from __future__ import annotations

import torch
from torch import nn

from .spec import CNN_BASE, MLP_BASE, ModelSpec, channels


def conv_block(c_in: int, c_out: int, pool: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for c in (c_in, c_out):
        layers += [nn.Conv2d(c, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


def cnn_features(spec: ModelSpec, shape: tuple[int, int, int], stem: int = 1) -> tuple[nn.Module, int]:
    c, h, w = shape
    blocks: list[nn.Module] = []
    if stem > 1:
        # A patch convolution: each stem x stem patch becomes one pixel of the first block's input,
        # so a 64 px image costs the blocks what a 16 px one does.
        c_out = channels(CNN_BASE, spec.width)
        blocks.append(
            nn.Sequential(
                nn.Conv2d(c, c_out, stem, stride=stem, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)
            )
        )
        c, h, w = c_out, h // stem, w // stem
    for i in range(spec.depth):
        c_out = channels(CNN_BASE, spec.width, 2**i)
        pool = min(h, w) >= 4  # pool while the map has room: 8x8 digits pool twice, to 2x2
        blocks.append(conv_block(c, c_out, pool))
        c, h, w = c_out, (h // 2 if pool else h), (w // 2 if pool else w)
    blocks += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*blocks), c


def mlp_features(spec: ModelSpec, shape: tuple[int, int, int], stem: int = 1) -> tuple[nn.Module, int]:
    d = shape[0] * shape[1] * shape[2]
    hidden = channels(MLP_BASE, spec.width)
    layers: list[nn.Module] = [nn.Flatten()]
    for _ in range(spec.depth):
        layers += [nn.Linear(d, hidden), nn.ReLU(inplace=True)]
        d = hidden
    return nn.Sequential(*layers), d


class Classifier(nn.Module):
    """Normalise, extract features (the embedding), classify."""

    mean: torch.Tensor  # (1, C, 1, 1) buffers, saved with the weights
    std: torch.Tensor

    def __init__(
        self,
        spec: ModelSpec,
        shape: tuple[int, int, int],
        classes: int,
        mean: list[float],
        std: list[float],
        stem: int = 1,
    ) -> None:
        super().__init__()
        make = cnn_features if spec.arch == "cnn" else mlp_features
        self.features, self.dim = make(spec, shape, stem)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        self.dropout = nn.Dropout(spec.dropout)
        self.head = nn.Linear(self.dim, classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        emb: torch.Tensor = self.features((x - self.mean) / self.std)
        return emb  # (N, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.head(self.dropout(self.embed(x)))
        return logits  # (N, K)


class Exported(nn.Module):
    """What the package's ONNX graph computes: class probabilities and the embedding."""

    def __init__(self, model: Classifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.model.embed(x)  # (N, D)
        return torch.softmax(self.model.head(emb), dim=1), emb  # (N, K), (N, D)
