"""Hungarian matching of predicted masks to ground-truth instances (Mask2Former's matcher).

For each image, the cost of pairing query i with target j is

    cost_class * (-p_i[label_j]) + cost_mask * BCE(m_i, m_j) + cost_dice * Dice(m_i, m_j)

with p_i the softmax class probabilities and both mask terms computed on ``num_points`` points
drawn uniformly once per image and shared by all predictions and targets. The one-to-one
assignment of least total cost is found with ``scipy.optimize.linear_sum_assignment``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from scipy.optimize import linear_sum_assignment
from torch.nn import functional as F

from spvis_model.training.point_sample import point_sample

#: One image's matching: (prediction indices ascending, matched target indices), int64 on CPU.
MatchIndices = tuple[torch.Tensor, torch.Tensor]


def validate_targets(targets: Sequence[Mapping[str, torch.Tensor]], batch_size: int,
                     num_classes: int | None = None, *, where: str = "targets") -> None:
    """Check the per-image target dicts; raise ValueError naming the bad entry.

    Each target needs "labels": (T,) int64 (in [0, num_classes) when given) and "masks":
    (T, H, W) float or bool; T may be 0.
    """
    if len(targets) != batch_size:
        raise ValueError(f"{where}: expected {batch_size} target dicts (one per image), got "
                         f"{len(targets)}")
    for b, t in enumerate(targets):
        for key in ("labels", "masks"):
            if key not in t:
                raise ValueError(f"{where}[{b}] is missing {key!r} (has {sorted(t)})")
        labels, masks = t["labels"], t["masks"]
        if labels.dim() != 1 or labels.dtype != torch.int64:
            raise ValueError(f"{where}[{b}]['labels'] must be (T,) int64, got {labels.dtype} "
                             f"{tuple(labels.shape)}")
        if masks.dim() != 3 or masks.shape[0] != labels.shape[0]:
            raise ValueError(f"{where}[{b}]['masks'] must be ({labels.shape[0]}, H, W), got "
                             f"{tuple(masks.shape)}")
        if not (masks.is_floating_point() or masks.dtype == torch.bool):
            raise ValueError(f"{where}[{b}]['masks'] must be float or bool, got {masks.dtype}")
        if num_classes is not None and labels.numel() > 0:
            lo, hi = int(labels.min()), int(labels.max())
            if lo < 0 or hi >= num_classes:
                raise ValueError(f"{where}[{b}]['labels'] must be in [0, {num_classes}), got "
                                 f"values in [{lo}, {hi}]")


def batch_sigmoid_ce_cost(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean sigmoid BCE of every prediction against every target.

    Args:
        inputs: (N, P) logits; targets: (T, P) in [0, 1].

    Returns:
        (N, T).
    """
    # BCE(x, y) = y * softplus(-x) + (1 - y) * softplus(x).
    pos = F.softplus(-inputs)
    neg = F.softplus(inputs)
    return (pos @ targets.T + neg @ (1.0 - targets).T) / inputs.shape[1]


def batch_dice_cost(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Dice loss (+1 smoothed) of every prediction against every target.

    Args:
        inputs: (N, P) logits; targets: (T, P) in [0, 1].

    Returns:
        (N, T).
    """
    probs = inputs.sigmoid()
    numerator = 2.0 * probs @ targets.T
    denominator = probs.sum(-1)[:, None] + targets.sum(-1)[None, :]
    return 1.0 - (numerator + 1.0) / (denominator + 1.0)


class HungarianMatcher:
    """One-to-one matching of queries to targets by class, BCE and dice costs.

    Args:
        cost_class: weight of the class cost (Mask2Former: 2).
        cost_mask: weight of the sigmoid-BCE mask cost (5).
        cost_dice: weight of the dice cost (5).
        num_points: points per image the mask costs are computed on (112 * 112 = 12544).
    """

    def __init__(self, cost_class: float = 2.0, cost_mask: float = 5.0, cost_dice: float = 5.0,
                 num_points: int = 12544) -> None:
        for name, v in (("cost_class", cost_class), ("cost_mask", cost_mask),
                        ("cost_dice", cost_dice)):
            if v < 0:
                raise ValueError(f"HungarianMatcher: {name} must be >= 0, got {v}")
        if cost_class == 0 and cost_mask == 0 and cost_dice == 0:
            raise ValueError("HungarianMatcher: cost_class, cost_mask and cost_dice are all 0")
        if not isinstance(num_points, int) or num_points <= 0:
            raise ValueError(f"HungarianMatcher: num_points must be a positive int, got "
                             f"{num_points!r}")
        self.cost_class, self.cost_mask, self.cost_dice = cost_class, cost_mask, cost_dice
        self.num_points = num_points

    @torch.no_grad()
    def cost_matrix(self, logits: torch.Tensor, masks: torch.Tensor, labels: torch.Tensor,
                    target_masks: torch.Tensor, point_coords: torch.Tensor) -> torch.Tensor:
        """Matching cost of one image.

        Args:
            logits: (N, K+1) class logits.
            masks: (N, H, W) mask logits.
            labels: (T,) int64.
            target_masks: (T, H', W') float or bool, any resolution covering the same image.
            point_coords: (P, 2) normalised (x, y) points shared by all masks.

        Returns:
            (N, T) float32.
        """
        probs = logits.float().softmax(-1)
        cost_class = -probs[:, labels]
        coords = point_coords[None]
        out = point_sample(masks.float()[None], coords)[0]  # (N, P)
        tgt = point_sample(target_masks.to(device=masks.device, dtype=torch.float32)[None],
                           coords)[0]  # (T, P)
        return (self.cost_class * cost_class + self.cost_mask * batch_sigmoid_ce_cost(out, tgt)
                + self.cost_dice * batch_dice_cost(out, tgt))

    @torch.no_grad()
    def __call__(self, pred_logits: torch.Tensor, pred_masks: torch.Tensor,
                 targets: Sequence[Mapping[str, torch.Tensor]]) -> list[MatchIndices]:
        """Match every image's queries to its targets.

        Args:
            pred_logits: (B, N, K+1).
            pred_masks: (B, N, H, W) logits.
            targets: B dicts with "labels" (T_b,) int64 and "masks" (T_b, H', W').

        Returns:
            B pairs (pred_idx, tgt_idx) of int64 CPU tensors of length min(N, T_b), pred_idx
            ascending; empty for an image without targets.
        """
        if pred_logits.dim() != 3 or pred_masks.dim() != 4 or (
                pred_logits.shape[:2] != pred_masks.shape[:2]):
            raise ValueError(f"HungarianMatcher: pred_logits (B, N, K+1) and pred_masks (B, N, "
                             f"H, W) disagree: {tuple(pred_logits.shape)} vs "
                             f"{tuple(pred_masks.shape)}")
        validate_targets(targets, pred_logits.shape[0], pred_logits.shape[-1] - 1)
        indices: list[MatchIndices] = []
        empty = torch.empty(0, dtype=torch.int64)
        for b, target in enumerate(targets):
            if target["labels"].numel() == 0:
                indices.append((empty, empty))
                continue
            coords = torch.rand(self.num_points, 2, device=pred_masks.device)
            cost = self.cost_matrix(pred_logits[b], pred_masks[b],
                                    target["labels"].to(pred_logits.device), target["masks"],
                                    coords).cpu()
            if not torch.isfinite(cost).all():
                raise ValueError(f"HungarianMatcher: the cost matrix of image {b} is not finite "
                                 "(NaN or inf in pred_logits or pred_masks?)")
            rows, cols = linear_sum_assignment(cost.numpy())
            indices.append((torch.as_tensor(rows, dtype=torch.int64),
                            torch.as_tensor(cols, dtype=torch.int64)))
        return indices
