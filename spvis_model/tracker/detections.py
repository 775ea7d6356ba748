"""This frame's detections as the tracker sees them: scores, low-resolution masks, boxes."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from spvis_model.tracker.geometry import lowres, normalised_cxcywh
from spvis_model.tracker.types import FrameFeatures


@dataclass
class Detections:
    """The segmenter's N query outputs for one frame, prepared for association.

    Attributes:
        embed: (N, C) query embeddings E_t.
        unit: (N, C) the same, unit norm (cosine costs).
        score: (N,) Mask2Former's instance score: max class probability × mean mask
            probability inside the mask, so a confident class with an empty mask scores 0.
        low: (N, R, R) mask probabilities area-averaged over the frame to R×R.
        box: (N, 4) boxes (cx, cy, w, h) of `low`, normalised to the frame.
        pooled_features: (C, R, R) the mask features pooled the same way (pooling is linear,
            so mask_embed(q) · pooled_features = pooled mask logits of any query q).
        candidates: (D,) int64 indices of the detections scoring >= the detect threshold.
    """

    embed: torch.Tensor
    unit: torch.Tensor
    score: torch.Tensor
    low: torch.Tensor
    box: torch.Tensor
    pooled_features: torch.Tensor
    candidates: torch.Tensor

    @property
    def num(self) -> int:
        return self.embed.shape[0]


def detections_from(feats: FrameFeatures, mask_res: int, detect_score: float) -> Detections:
    """Prepare a frame's detections (see `Detections`); masks are cropped to the valid frame
    area before pooling, so R×R covers the frame and not the padding."""
    h, w = feats.valid_hw
    class_score = feats.pred_logits.softmax(-1)[:, :-1].max(-1).values
    low = lowres(feats.pred_masks[:, :h, :w], mask_res).sigmoid()
    inside = (low > 0.5).float()
    mask_score = (low * inside).flatten(1).sum(1) / inside.flatten(1).sum(1).clamp_min(1)
    score = class_score * mask_score
    return Detections(
        embed=feats.query_embed, unit=F.normalize(feats.query_embed, dim=-1), score=score,
        low=low, box=normalised_cxcywh(low),
        pooled_features=lowres(feats.mask_features[:, :h, :w], mask_res),
        candidates=torch.nonzero(score >= detect_score).flatten())
