"""Point sampling of mask logits and targets (PointRend style), as Mask2Former's losses use.

Masks are compared at a few thousand points instead of every pixel: points are given in
normalised image coordinates, so predictions (at stride 4) and targets (at any resolution) are
sampled at the same image locations without resizing either.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def point_sample(inputs: torch.Tensor, point_coords: torch.Tensor) -> torch.Tensor:
    """Bilinearly sample maps at normalised points.

    Args:
        inputs: (N, C, H, W).
        point_coords: (N, P, 2) (x, y) in [0, 1] x [0, 1] of the image: (0, 0) is the top-left
            corner of the top-left pixel, (1, 1) the bottom-right corner of the bottom-right
            one (align_corners=False convention). As in Mask2Former (grid_sample's zero
            padding), the map is taken as 0 outside, so points within half a pixel of the
            border are blended with 0.

    Returns:
        (N, C, P).
    """
    if inputs.dim() != 4:
        raise ValueError(f"point_sample: inputs must be (N, C, H, W), got {tuple(inputs.shape)}")
    if (point_coords.dim() != 3 or point_coords.shape[-1] != 2
            or point_coords.shape[0] != inputs.shape[0]):
        raise ValueError(f"point_sample: point_coords must be ({inputs.shape[0]}, P, 2), got "
                         f"{tuple(point_coords.shape)}")
    grid = (2.0 * point_coords - 1.0).unsqueeze(2).to(inputs.dtype)  # (N, P, 1, 2)
    return F.grid_sample(inputs, grid, mode="bilinear", align_corners=False).squeeze(3)


def uncertain_point_coords_with_randomness(
    mask_logits: torch.Tensor,
    num_points: int,
    oversample_ratio: float,
    importance_sample_ratio: float,
) -> torch.Tensor:
    """Pick points where the predicted masks are least certain, plus uniform random ones.

    ``num_points * oversample_ratio`` candidates are drawn uniformly; the
    ``importance_sample_ratio * num_points`` whose logits are closest to 0 (uncertainty
    -|logit|) are kept, and the rest of the ``num_points`` are fresh uniform points.
    Not differentiable (coordinates only).

    Args:
        mask_logits: (N, 1, H, W) class-agnostic mask logits.
        num_points: P.
        oversample_ratio: >= 1.
        importance_sample_ratio: in [0, 1].

    Returns:
        (N, P, 2) (x, y) in [0, 1]; the uncertain points come first.
    """
    if mask_logits.dim() != 4 or mask_logits.shape[1] != 1:
        raise ValueError("uncertain_point_coords_with_randomness: mask_logits must be "
                         f"(N, 1, H, W), got {tuple(mask_logits.shape)}")
    if not isinstance(num_points, int) or num_points <= 0:
        raise ValueError("uncertain_point_coords_with_randomness: num_points must be a positive "
                         f"int, got {num_points!r}")
    if oversample_ratio < 1:
        raise ValueError("uncertain_point_coords_with_randomness: oversample_ratio must be >= 1, "
                         f"got {oversample_ratio}")
    if not 0.0 <= importance_sample_ratio <= 1.0:
        raise ValueError("uncertain_point_coords_with_randomness: importance_sample_ratio must "
                         f"be in [0, 1], got {importance_sample_ratio}")
    n = mask_logits.shape[0]
    device = mask_logits.device
    num_sampled = int(num_points * oversample_ratio)
    num_uncertain = int(importance_sample_ratio * num_points)
    num_random = num_points - num_uncertain
    with torch.no_grad():
        candidates = torch.rand(n, num_sampled, 2, device=device)
        uncertainty = -point_sample(mask_logits.detach().float(), candidates).abs()[:, 0]
        idx = uncertainty.topk(num_uncertain, dim=1).indices  # (N, num_uncertain)
        chosen = torch.gather(candidates, 1, idx[..., None].expand(-1, -1, 2))
        if num_random > 0:
            chosen = torch.cat((chosen, torch.rand(n, num_random, 2, device=device)), dim=1)
    return chosen
