"""What flows into and out of a tracker step: the segmenter's frame outputs and the results.

Both association methods (`pgt`, `minvis`) read `FrameFeatures` and return `TrackStep`, so the
model, the training task and the evaluation treat them alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class FrameFeatures:
    """Segmenter outputs for one frame (batch of one): what the tracker consumes.

    Attributes:
        query_embed: (N, C) per-frame query embeddings E_t (after the decoder norm).
        pred_logits: (N, K+1) class logits, last = no object.
        pred_masks: (N, h, w) mask logits on the padded stride-4 grid.
        mask_features: (C, h, w) per-pixel embeddings F_t.
        memory: (S, C_mem) pixel-decoder encoder output; spatial_shapes (L, 2);
            level_start_index (L,).
        valid_hw: rows and columns of the (h, w) grid that cover the frame (the rest is padding).
    """

    query_embed: torch.Tensor
    pred_logits: torch.Tensor
    pred_masks: torch.Tensor
    mask_features: torch.Tensor
    memory: torch.Tensor
    spatial_shapes: torch.Tensor
    level_start_index: torch.Tensor
    valid_hw: tuple[int, int]


@dataclass
class TrackStep:
    """Per-frame tracker results for the live tracks (V of them) after the update.

    Attributes:
        slots: (V,) state slots.
        ids: (V,) int64 track ids.
        visible: (V,) bool, matched to a detection this frame (these are published).
        det_index: (V,) int64 matched detection (query) index, -1 if none.
        class_logits: (V, K+1) this frame's class logits of the track's query.
        running_logits: (V, K+1) the track's running class logits (used for its label).
        mask_logits: (V, h, w) this frame's mask logits on the padded stride-4 grid.
        visibility: (V,) probability that the track is visible.
        score: (V,) the track's score: the mean score of the detections it was matched to.
        first_seen: (V,) float64 stamps.
        query: (V, C) the propagated queries q (RCP output), for training losses.
        refined: (V, C) the referring decoder outputs o.
        track_score: (V,) the track's learned probability of being right (stage 2's score
            model, `TrackerConfig.score_model`) when the tracker has one, else None. Result
            files rank whole tracks by it; what is published per frame is `score`.
        host: the same decisions already on the host (`TrackHost`), when the step made them
            there; None otherwise (e.g. the MinVIS baseline). Not a result of its own: equal
            to the device fields it copies.
    """

    slots: torch.Tensor
    ids: torch.Tensor
    visible: torch.Tensor
    det_index: torch.Tensor
    class_logits: torch.Tensor
    running_logits: torch.Tensor
    mask_logits: torch.Tensor
    visibility: torch.Tensor
    score: torch.Tensor
    first_seen: torch.Tensor
    query: torch.Tensor
    refined: torch.Tensor
    track_score: torch.Tensor | None = None
    host: TrackHost | None = field(default=None, compare=False, repr=False)


@dataclass
class TrackHost:
    """Host (CPU) copies of a `TrackStep`'s discrete results, known without reading the device.

    Attributes:
        slots, ids, det_index: (V,) int64; visible: (V,) bool; first_seen: (V,) float64.
    """

    slots: torch.Tensor
    ids: torch.Tensor
    det_index: torch.Tensor
    visible: torch.Tensor
    first_seen: torch.Tensor
