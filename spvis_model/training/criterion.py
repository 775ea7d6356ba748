"""Mask2Former's set criterion: Hungarian matching, then class, mask-BCE and dice losses.

Per prediction layer (the last one and every aux output):

- ``loss_ce``: cross-entropy over K+1 classes for every query; matched queries target their
  instance's class, the rest "no object" (index K) with weight ``eos_coef``.
- ``loss_mask``: sigmoid BCE of matched masks at ``num_points`` points per mask, chosen by
  uncertainty-based importance sampling (``oversample_ratio``, ``importance_sample_ratio``).
- ``loss_dice``: dice loss on the same points.

Mask losses are summed over matched masks and divided by the number of ground-truth masks in
the batch (averaged over processes when torch.distributed is initialised, at least 1). Aux
layer i's losses get the suffix ``_i``. The total loss is sum(weight_dict[k] * losses[k]).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from spvis_model.modeling.transformer_decoder import DecoderOutput
from spvis_model.training.matcher import HungarianMatcher, MatchIndices, validate_targets
from spvis_model.training.point_sample import point_sample, uncertain_point_coords_with_randomness


@dataclass
class CriterionOutput:
    """Losses of one batch.

    Attributes:
        losses: unweighted scalar losses: loss_ce, loss_mask, loss_dice, and loss_ce_i,
            loss_mask_i, loss_dice_i for aux output i.
        weight_dict: the weight of every key of ``losses``.
        indices: final-layer matching, per image (pred_idx, tgt_idx) int64 CPU tensors.
        aux_indices: the matching of each aux output, same format.
    """

    losses: dict[str, torch.Tensor]
    weight_dict: dict[str, float]
    indices: list[MatchIndices]
    aux_indices: list[list[MatchIndices]]

    def total(self) -> torch.Tensor:
        """The weighted sum of all losses (scalar)."""
        return torch.stack([self.weight_dict[k] * v for k, v in self.losses.items()]).sum()


def sigmoid_ce_loss(inputs: torch.Tensor, targets: torch.Tensor, num_masks: float) -> torch.Tensor:
    """Mean-over-points BCE, summed over masks, / num_masks. inputs, targets: (M, P)."""
    loss = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    return loss.mean(1).sum() / num_masks


def dice_loss(inputs: torch.Tensor, targets: torch.Tensor, num_masks: float) -> torch.Tensor:
    """(+1 smoothed) dice loss summed over masks, / num_masks. inputs (logits), targets: (M, P)."""
    probs = inputs.sigmoid()
    numerator = 2.0 * (probs * targets).sum(-1)
    denominator = probs.sum(-1) + targets.sum(-1)
    return (1.0 - (numerator + 1.0) / (denominator + 1.0)).sum() / num_masks


def _as_prediction_dict(outputs: DecoderOutput | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(outputs, DecoderOutput):
        return {"pred_logits": outputs.pred_logits, "pred_masks": outputs.pred_masks,
                "aux_outputs": outputs.aux_outputs}
    for key in ("pred_logits", "pred_masks"):
        if key not in outputs:
            raise ValueError(f"SetCriterion: outputs is missing {key!r} (has {sorted(outputs)})")
    return outputs


class SetCriterion(nn.Module):
    """Mask2Former's loss for mask classification with deep supervision.

    Args:
        num_classes: K foreground classes (logits have K + 1 entries).
        class_weight, mask_weight, dice_weight: loss weights (2, 5, 5), also the matcher's costs
            unless a matcher is given.
        eos_coef: CE weight of the "no object" class.
        num_points: points per mask for the mask losses (and the default matcher).
        oversample_ratio, importance_sample_ratio: of the uncertainty-based point sampling.
        matcher: defaults to HungarianMatcher(class_weight, mask_weight, dice_weight, num_points).
    """

    def __init__(self, num_classes: int, *, class_weight: float = 2.0, mask_weight: float = 5.0,
                 dice_weight: float = 5.0, eos_coef: float = 0.1, num_points: int = 12544,
                 oversample_ratio: float = 3.0, importance_sample_ratio: float = 0.75,
                 matcher: HungarianMatcher | None = None) -> None:
        super().__init__()
        if not isinstance(num_classes, int) or num_classes <= 0:
            raise ValueError(f"SetCriterion: num_classes must be a positive int, got "
                             f"{num_classes!r}")
        for name, v in (("class_weight", class_weight), ("mask_weight", mask_weight),
                        ("dice_weight", dice_weight), ("eos_coef", eos_coef)):
            if not v >= 0:
                raise ValueError(f"SetCriterion: {name} must be >= 0, got {v}")
        if not isinstance(num_points, int) or num_points <= 0:
            raise ValueError(f"SetCriterion: num_points must be a positive int, got "
                             f"{num_points!r}")
        if oversample_ratio < 1:
            raise ValueError(f"SetCriterion: oversample_ratio must be >= 1, got "
                             f"{oversample_ratio}")
        if not 0.0 <= importance_sample_ratio <= 1.0:
            raise ValueError("SetCriterion: importance_sample_ratio must be in [0, 1], got "
                             f"{importance_sample_ratio}")
        self.num_classes = num_classes
        self.matcher = (matcher if matcher is not None
                        else HungarianMatcher(class_weight, mask_weight, dice_weight, num_points))
        self.weight_dict = {"loss_ce": float(class_weight), "loss_mask": float(mask_weight),
                            "loss_dice": float(dice_weight)}
        self.eos_coef = eos_coef
        self.num_points = num_points
        self.oversample_ratio = oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio
        empty_weight = torch.ones(num_classes + 1)
        empty_weight[-1] = eos_coef
        self.register_buffer("empty_weight", empty_weight, persistent=False)

    def forward(self, outputs: DecoderOutput | Mapping[str, Any],
                targets: Sequence[Mapping[str, torch.Tensor]]) -> CriterionOutput:
        """Match and compute every loss.

        Args:
            outputs: a DecoderOutput, or a dict with "pred_logits" (B, N, K+1), "pred_masks"
                (B, N, H, W) and optionally "aux_outputs" (list of such dicts).
            targets: B dicts: "labels" (T_b,) int64 in [0, K), "masks" (T_b, H', W') float or
                bool at any resolution covering the same image as the predictions (T_b may
                be 0).

        Returns:
            CriterionOutput.
        """
        out = _as_prediction_dict(outputs)
        pred_logits, pred_masks = out["pred_logits"], out["pred_masks"]
        if pred_logits.dim() != 3 or pred_logits.shape[-1] != self.num_classes + 1:
            raise ValueError(f"SetCriterion: pred_logits must be (B, N, {self.num_classes + 1}), "
                             f"got {tuple(pred_logits.shape)}")
        validate_targets(targets, pred_logits.shape[0], self.num_classes)
        num_masks = self._num_masks(targets, pred_logits.device)

        indices = self.matcher(pred_logits, pred_masks, targets)
        losses = self._layer_losses(pred_logits, pred_masks, targets, indices, num_masks, "")
        weight_dict = dict(self.weight_dict)
        aux_indices = []
        for i, aux in enumerate(out.get("aux_outputs") or []):
            aux_idx = self.matcher(aux["pred_logits"], aux["pred_masks"], targets)
            aux_indices.append(aux_idx)
            losses.update(self._layer_losses(aux["pred_logits"], aux["pred_masks"], targets,
                                             aux_idx, num_masks, f"_{i}"))
            weight_dict.update({f"{k}_{i}": w for k, w in self.weight_dict.items()})
        return CriterionOutput(losses=losses, weight_dict=weight_dict, indices=indices,
                               aux_indices=aux_indices)

    @staticmethod
    def _num_masks(targets: Sequence[Mapping[str, torch.Tensor]], device: torch.device) -> float:
        count = torch.tensor([float(sum(len(t["labels"]) for t in targets))], device=device)
        world = 1
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(count)
            world = torch.distributed.get_world_size()
        return max(count.item() / world, 1.0)

    def _layer_losses(self, pred_logits: torch.Tensor, pred_masks: torch.Tensor,
                      targets: Sequence[Mapping[str, torch.Tensor]], indices: list[MatchIndices],
                      num_masks: float, suffix: str) -> dict[str, torch.Tensor]:
        device = pred_logits.device
        batch_idx = torch.cat([torch.full_like(src, b) for b, (src, _) in enumerate(indices)])
        src_idx = torch.cat([src for src, _ in indices])
        batch_idx, src_idx = batch_idx.to(device), src_idx.to(device)

        # Classification: every unmatched query is "no object".
        target_classes = torch.full(pred_logits.shape[:2], self.num_classes, dtype=torch.int64,
                                    device=device)
        matched_labels = [t["labels"].to(device)[tgt.to(device)]
                          for t, (_, tgt) in zip(targets, indices, strict=True)]
        target_classes[batch_idx, src_idx] = torch.cat(matched_labels)
        loss_ce = F.cross_entropy(pred_logits.float().transpose(1, 2), target_classes,
                                  self.empty_weight.to(device))

        src_masks = pred_masks[batch_idx, src_idx].float()  # (M, H, W)
        if src_masks.shape[0] == 0:
            # No targets in the batch: keep the masks in the graph with zero loss.
            zero = pred_masks.sum() * 0.0
            return {f"loss_ce{suffix}": loss_ce, f"loss_mask{suffix}": zero,
                    f"loss_dice{suffix}": zero}
        coords = uncertain_point_coords_with_randomness(
            src_masks[:, None], self.num_points, self.oversample_ratio,
            self.importance_sample_ratio)  # (M, P, 2)
        with torch.no_grad():
            point_labels = []
            start = 0
            for t, (_, tgt) in zip(targets, indices, strict=True):
                if len(tgt) == 0:
                    continue
                masks = t["masks"].to(device)[tgt.to(device)].float()[:, None]
                point_labels.append(point_sample(masks, coords[start:start + len(tgt)])[:, 0])
                start += len(tgt)
            labels = torch.cat(point_labels)
        logits = point_sample(src_masks[:, None], coords)[:, 0]
        return {
            f"loss_ce{suffix}": loss_ce,
            f"loss_mask{suffix}": sigmoid_ce_loss(logits, labels, num_masks),
            f"loss_dice{suffix}": dice_loss(logits, labels, num_masks),
        }
