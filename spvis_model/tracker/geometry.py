"""Mask geometry shared by the tracker: boxes, frame-normalised low-resolution masks, IoU."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Tight boxes of binary masks.

    Args:
        masks: (N, H, W) bool.

    Returns:
        (N, 4) float (x1, y1, x2, y2) in pixels, x2/y2 exclusive; zeros for empty masks.
    """
    n, h, w = masks.shape
    if n == 0:
        return masks.new_zeros((0, 4), dtype=torch.float32)
    rows = masks.any(2)
    cols = masks.any(1)
    ys = torch.arange(h, device=masks.device)
    xs = torch.arange(w, device=masks.device)
    y1 = torch.where(rows, ys, h).amin(1)
    y2 = torch.where(rows, ys + 1, 0).amax(1)
    x1 = torch.where(cols, xs, w).amin(1)
    x2 = torch.where(cols, xs + 1, 0).amax(1)
    boxes = torch.stack([x1, y1, x2, y2], 1).float()
    return torch.where(masks.flatten(1).any(1, keepdim=True), boxes, torch.zeros_like(boxes))


def normalised_cxcywh(prob: torch.Tensor) -> torch.Tensor:
    """Boxes (cx, cy, w, h) in [0, 1] of soft masks thresholded at 0.5.

    Args:
        prob: (N, H, W) probabilities over the frame.

    Returns:
        (N, 4); an empty mask gives (0.5, 0.5, 0, 0).
    """
    _, h, w = prob.shape
    xyxy = masks_to_boxes(prob > 0.5)
    # (w, h, w, h) made on the device by fills: an upload from a Python list would be a
    # synchronising host-to-device copy on CUDA. Divided as a tensor, as before (CUDA divides
    # by a host scalar as a multiplication by its reciprocal, which rounds differently).
    scale = torch.full((4,), w, dtype=xyxy.dtype, device=xyxy.device)
    scale[1::2] = h
    x1, y1, x2, y2 = (xyxy / scale).unbind(1)
    empty = (x2 <= x1) | (y2 <= y1)
    cx = torch.where(empty, torch.full_like(x1, 0.5), (x1 + x2) / 2)
    cy = torch.where(empty, torch.full_like(y1, 0.5), (y1 + y2) / 2)
    return torch.stack([cx, cy, (x2 - x1).clamp_min(0), (y2 - y1).clamp_min(0)], 1)


def lowres(maps: torch.Tensor, res: int) -> torch.Tensor:
    """Area-average (N, H, W) maps over the frame down to (N, res, res)."""
    if maps.shape[0] == 0:
        return maps.new_zeros((0, res, res))
    return F.adaptive_avg_pool2d(maps[:, None].float(), (res, res))[:, 0]


def soft_iou(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Pairwise soft IoU of probability masks: (M, R, R) x (N, R, R) -> (M, N)."""
    a = a.flatten(1)
    b = b.flatten(1)
    inter = a @ b.T
    union = a.sum(1, keepdim=True) + b.sum(1)[None] - inter
    return inter / union.clamp_min(eps)


def hard_ios(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise intersection over the smaller mask of probability masks thresholded at 0.5:
    (M, R, R) x (N, R, R) -> (M, N); 0 where either mask is empty."""
    a = (a > 0.5).flatten(1).float()
    b = (b > 0.5).flatten(1).float()
    inter = a @ b.T
    smaller = torch.minimum(a.sum(1, keepdim=True), b.sum(1)[None])
    return torch.where(smaller > 0, inter / smaller.clamp_min(1.0), torch.zeros_like(inter))


def mask_overlap(a: torch.Tensor, b: torch.Tensor, measure: str = "soft_iou") -> torch.Tensor:
    """Pairwise overlap of probability masks by `measure` ("soft_iou" or "hard_ios", see
    TrackerConfig.nms_measure): (M, R, R) x (N, R, R) -> (M, N)."""
    if measure == "soft_iou":
        return soft_iou(a, b)
    if measure == "hard_ios":
        return hard_ios(a, b)
    raise ValueError(f"measure = {measure!r}: must be 'soft_iou' or 'hard_ios'")


def centre_distance(box_a: torch.Tensor, box_b: torch.Tensor) -> torch.Tensor:
    """Pairwise distance of box centres (cx, cy, w, h normalised): (M, 4) x (N, 4) -> (M, N)."""
    return torch.cdist(box_a[:, :2], box_b[:, :2])


def time_encoding(dt: torch.Tensor, dim: int) -> torch.Tensor:
    """φ(Δt): sinusoidal encoding of log(1 + Δt).

    Args:
        dt: (...) seconds, >= 0.
        dim: even channel count.

    Returns:
        (..., dim).
    """
    x = torch.log1p(dt.float().clamp_min(0))
    half = dim // 2
    freqs = torch.exp(torch.arange(half, device=dt.device, dtype=torch.float32)
                      * (-math.log(100.0) / max(half - 1, 1))) * 10.0
    angles = x[..., None] * freqs
    enc = torch.cat([angles.sin(), angles.cos()], -1)
    if enc.shape[-1] < dim:
        enc = F.pad(enc, (0, dim - enc.shape[-1]))
    return enc
