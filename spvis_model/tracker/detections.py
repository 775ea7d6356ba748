"""This frame's detections as the tracker sees them: scores, low-resolution masks, boxes."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from spvis_model.tracker.geometry import lowres, mask_overlap, normalised_cxcywh
from spvis_model.tracker.types import FrameFeatures


@dataclass
class Detections:
    """The segmenter's N query outputs for one frame, prepared for association.

    Attributes:
        embed: (N, C) query embeddings E_t.
        unit: (N, C) the same, unit norm (cosine costs).
        score: (N,) Mask2Former's instance score: max class probability × mean mask
            probability inside the mask, so a confident class with an empty mask scores 0.
        birth_score: (N,) the score a detection must reach to start a track: `score`
            itself, or the same score measured on the R×R masks (`birth_masks: low`).
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
    birth_score: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.birth_score is None:
            self.birth_score = self.score

    @property
    def num(self) -> int:
        return self.embed.shape[0]


def detections_from(feats: FrameFeatures, mask_res: int, detect_score: float,
                    nms_iou: float = 1.0, nms_measure: str = "soft_iou",
                    score_masks: str = "low", birth_masks: str = "low") -> Detections:
    """Prepare a frame's detections (see `Detections`); masks are cropped to the valid frame
    area before pooling, so R×R covers the frame and not the padding. Candidates whose mask
    overlaps a better-scoring candidate's by more than `nms_iou` (measured by `nms_measure`)
    are duplicates of it and left out (1.0: keep all). `score_masks`, `birth_masks`: see
    `detection_tensors`."""
    dets = detection_tensors(feats, mask_res, score_masks, birth_masks)
    return dataclasses.replace(dets, candidates=candidates(dets.score, dets.low, detect_score,
                                                           nms_iou, nms_measure))


def detection_tensors(feats: FrameFeatures, mask_res: int, score_masks: str = "low",
                      birth_masks: str = "low") -> Detections:
    """The device part of `detections_from`: every field but `candidates` (left empty), with
    no host round trip. The tracker chooses the candidates on host copies (`candidates`).

    `score_masks` says which masks the score's mask quality is measured on: "low", the R×R
    masks (an object smaller than about one R×R cell has an empty mask there and scores 0),
    or "full", the segmenter's stride-4 masks (Mask2Former's own score). `birth_masks` says
    the same of the birth score (`Detections.birth_score`): with score_masks "full" and
    birth_masks "low", a track is followed as small as the stride-4 masks see it but starts
    only on a detection that covers R×R cells."""
    h, w = feats.valid_hw
    class_score = feats.pred_logits.softmax(-1)[:, :-1].max(-1).values
    low = lowres(feats.pred_masks[:, :h, :w], mask_res).sigmoid()
    scores: dict[str, torch.Tensor] = {}
    for masks, what in ((score_masks, "score_masks"), (birth_masks, "birth_masks")):
        if masks not in ("low", "full"):
            raise ValueError(f"{what} = {masks!r}: must be 'low' or 'full'")
        if masks not in scores:
            prob = low if masks == "low" else feats.pred_masks[:, :h, :w].sigmoid()
            scores[masks] = class_score * mask_quality(prob)
    score = scores[score_masks]
    return Detections(
        embed=feats.query_embed, unit=F.normalize(feats.query_embed, dim=-1), score=score,
        low=low, box=normalised_cxcywh(low),
        pooled_features=lowres(feats.mask_features[:, :h, :w], mask_res),
        candidates=torch.zeros(0, dtype=torch.int64, device=score.device),
        birth_score=scores[birth_masks])


def candidates(score: torch.Tensor, low: torch.Tensor, detect_score: float,
               nms_iou: float = 1.0, nms_measure: str = "soft_iou") -> torch.Tensor:
    """(D,) int64 indices of the detections scoring >= `detect_score`, in index order, without
    the ones a better-scoring candidate's mask overlaps by more than `nms_iou` (measured by
    `nms_measure`, see `mask_nms`).

    Args:
        score: (N,); low: (N, R, R) mask probabilities.
    """
    cand = torch.nonzero(score >= detect_score).flatten()
    if nms_iou < 1.0:
        cand = mask_nms(cand, score, low, nms_iou, nms_measure)
    return cand


def mask_quality(prob: torch.Tensor) -> torch.Tensor:
    """Mean mask probability inside each mask (prob > 0.5), 0 for an empty mask: (N, R, R)
    -> (N,)."""
    inside = (prob > 0.5).float()
    return (prob * inside).flatten(1).sum(1) / inside.flatten(1).sum(1).clamp_min(1)


def mask_nms(cand: torch.Tensor, score: torch.Tensor, low: torch.Tensor,
             iou: float, measure: str = "soft_iou") -> torch.Tensor:
    """Greedy non-maximum suppression on mask overlap.

    Args:
        cand: (D,) candidate indices; score: (N,); low: (N, R, R) mask probabilities.
        iou: a candidate overlapping a kept, better-scoring one by more than this goes.
        measure: "soft_iou" (IoU of the probabilities) or "hard_ios" (intersection over the
            smaller of the masks at 0.5).

    Returns:
        (D',) the kept candidates, in index order.
    """
    if cand.numel() < 2:
        return cand
    order = cand[score[cand].argsort(descending=True)]
    overlap = mask_overlap(low[order], low[order], measure)
    keep = torch.ones(order.numel(), dtype=torch.bool, device=cand.device)
    # A candidate is suppressed by any better kept one; rows are visited best first.
    for i in range(1, order.numel()):
        if bool((overlap[i, :i][keep[:i]] > iou).any()):
            keep[i] = False
    return order[keep].sort().values
