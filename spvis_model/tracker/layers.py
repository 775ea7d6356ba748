"""Small building blocks of the tracker modules."""

from __future__ import annotations

import torch
from torch import nn


class LayerScale(nn.Module):
    """Per-channel residual scale, initialised to `init` (0: the branch starts switched off, so an
    untrained tracker passes its input through unchanged and training opens the branch)."""

    def __init__(self, dim: int, init: float = 0.0) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class FFN(nn.Module):
    """Pre-norm feed-forward block with a layer-scaled residual: x + γ·MLP(LN(x))."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.scale = LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.scale(self.mlp(self.norm(x)))


class BoxEncoding(nn.Module):
    """Position of a track or detection from its box (cx, cy, w, h) in [0, 1].

    (..., 4) -> (..., C).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(4, dim), nn.ReLU(), nn.Linear(dim, dim))

    def forward(self, box: torch.Tensor) -> torch.Tensor:
        return self.mlp(box)
