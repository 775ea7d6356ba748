"""Input builders shared by the MSDeformAttn tests."""

from __future__ import annotations

import torch

# (spatial shapes, heads, channels D, queries, points): 1-4 levels, odd and even sizes.
CASES = [
    (((7, 9),), 2, 1, 11, 3),
    (((6, 8), (3, 4)), 3, 30, 9, 4),
    (((8, 10), (4, 5), (2, 3)), 2, 32, 13, 2),
    (((12, 7), (6, 4), (3, 2), (1, 1)), 1, 64, 7, 4),
    (((5, 6), (3, 3)), 2, 71, 10, 1),
    # The CPU forward's fixed-D kernels (float32: 4-wide vectors): D 8 and 16.
    (((9, 11), (5, 6), (3, 3)), 4, 16, 12, 4),
    (((6, 5),), 3, 8, 9, 2),
]


def level_index(shapes: tuple[tuple[int, int], ...]) -> tuple[torch.Tensor, torch.Tensor, int]:
    """spatial_shapes (L, 2), level_start_index (L,) and S for a tuple of (H_l, W_l)."""
    spatial = torch.tensor(shapes, dtype=torch.int64)
    areas = spatial[:, 0] * spatial[:, 1]
    starts = torch.cat([areas.new_zeros(1), areas.cumsum(0)[:-1]])
    return spatial, starts, int(areas.sum())


def make_case(shapes: tuple[tuple[int, int], ...], heads: int, channels: int, queries: int,
              points: int, *, batch: int = 2, dtype: torch.dtype = torch.float64,
              device: str = "cpu", seed: int = 0, spread: float = 0.3) -> tuple:
    """(value, spatial_shapes, level_start_index, locations, weights) with some locations
    outside [0, 1] (spread) so zero padding is exercised."""
    gen = torch.Generator().manual_seed(seed)
    spatial, starts, s = level_index(shapes)
    n_levels = len(shapes)
    value = torch.randn(batch, s, heads, channels, generator=gen, dtype=torch.float64)
    loc = torch.rand(batch, queries, heads, n_levels, points, 2, generator=gen,
                     dtype=torch.float64) * (1 + 2 * spread) - spread
    attn = torch.rand(batch, queries, heads, n_levels, points, generator=gen, dtype=torch.float64)
    return (value.to(device, dtype), spatial.to(device), starts.to(device), loc.to(device, dtype),
            attn.to(device, dtype))
