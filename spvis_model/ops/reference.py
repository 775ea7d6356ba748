"""Pure-PyTorch multi-scale deformable attention, built on ``F.grid_sample``.

Slow and memory-hungry (it materialises every sample), but simple: the ground truth the
compiled op is tested against, and available to users who ask for it explicitly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def ms_deform_attn_reference(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    level_start_index: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Multi-scale deformable attention in pure PyTorch.

    Args:
        value: (B, S, H, D), S = sum over levels of H_l * W_l.
        spatial_shapes: (L, 2) integer rows (H_l, W_l).
        level_start_index: (L,) offset of each level in S (unused beyond validation: the
            levels are taken in order).
        sampling_locations: (B, Q, H, L, P, 2) normalised (x, y); pixel = loc * size - 0.5.
        attention_weights: (B, Q, H, L, P).

    Returns:
        (B, Q, H * D) in the value's dtype.
    """
    del level_start_index  # levels are contiguous and in order
    b, _, n_heads, d = value.shape
    _, q, _, n_levels, n_points, _ = sampling_locations.shape
    sizes = [int(h) * int(w) for h, w in spatial_shapes.tolist()]
    per_level = value.split(sizes, dim=1)
    grids = 2 * sampling_locations.to(value.dtype) - 1
    samples = []
    for lvl, (h, w) in enumerate(spatial_shapes.tolist()):
        # (B, H_l*W_l, H, D) -> (B*H, D, H_l, W_l)
        v = per_level[lvl].flatten(2).transpose(1, 2).reshape(b * n_heads, d, int(h), int(w))
        # (B, Q, H, P, 2) -> (B*H, Q, P, 2)
        g = grids[:, :, :, lvl].transpose(1, 2).flatten(0, 1)
        samples.append(F.grid_sample(v, g, mode="bilinear", padding_mode="zeros",
                                     align_corners=False))  # (B*H, D, Q, P)
    # (B, Q, H, L, P) -> (B*H, 1, Q, L*P)
    weights = attention_weights.to(value.dtype).transpose(1, 2).reshape(
        b * n_heads, 1, q, n_levels * n_points)
    out = (torch.stack(samples, dim=-2).flatten(-2) * weights).sum(-1)  # (B*H, D, Q)
    return out.view(b, n_heads * d, q).transpose(1, 2).contiguous()
