"""Hand-made segmenter outputs for tracker tests: objects are channels of the mask features.

Channel 0 of the (C, h, w) mask features is -1 everywhere and channel k is +2 inside object k's
region, so the embedding e_k = 5 (onehot(0) + onehot(k)) has mask logits +5 inside object k and -5
outside (the stub heads' mask_embed is the identity). Queries that show no object get low class
logits and random embeddings.
"""

from __future__ import annotations

import torch
from torch import nn

from spvis_model.tracker.types import FrameFeatures

GRID = 16
SHAPES = torch.tensor([[2, 2], [4, 4], [8, 8]])
STARTS = torch.tensor([0, 4, 20])


class StubHeads(nn.Module):
    """class_embed: always confident foreground; mask_embed: identity."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.class_embed = nn.Linear(dim, 2)
        nn.init.zeros_(self.class_embed.weight)
        with torch.no_grad():
            self.class_embed.bias.copy_(torch.tensor([3.0, -3.0]))
        self.mask_embed = nn.Identity()


def region(y: int, x: int, size: int = 4) -> torch.Tensor:
    m = torch.zeros(GRID, GRID)
    m[y:y + size, x:x + size] = 1
    return m


def scene(objects: dict[int, torch.Tensor], dim: int = 64, queries: int = 8,
          seed: int = 0) -> FrameFeatures:
    """Features of a frame showing `objects` {channel k >= 1: (GRID, GRID) region}; object k is
    reported by query k - 1 (so the query order never carries identity by itself: callers may
    pass regions in any order)."""
    gen = torch.Generator().manual_seed(seed)
    feats = torch.zeros(dim, GRID, GRID)
    feats[0] = -1
    embed = torch.randn(queries, dim, generator=gen)
    logits = torch.tensor([-3.0, 3.0]).repeat(queries, 1)
    for k, reg in objects.items():
        feats[k] = 2 * reg
        e = torch.zeros(dim)
        e[0] = e[k] = 5
        q = (k - 1) % queries
        embed[q] = e
        logits[q] = torch.tensor([3.0, -3.0])
    masks = torch.einsum("nc,chw->nhw", embed, feats)
    memory = torch.randn(int((SHAPES[:, 0] * SHAPES[:, 1]).sum()), dim, generator=gen)
    return FrameFeatures(query_embed=embed, pred_logits=logits, pred_masks=masks,
                         mask_features=feats, memory=memory, spatial_shapes=SHAPES,
                         level_start_index=STARTS, valid_hw=(GRID, GRID))
