"""Which live tracks are published on a frame (`TrackStep.visible`).

A track is published when it matched a detection this frame (and, with `publish_min_hits`
n > 1, from its n-th matched frame on: applied in `Tracker.step`). Two optional policies change
that, both off by default and measured in the ablation harness (docs/model.md):

- coasting: a confirmed track whose detection was missed is still published for a short while
  with the mask of its propagated query, when it is likely visible;
- duplicate suppression: of two published tracks whose masks overlap more than a threshold,
  only the better-scoring one is published (the segmenter sometimes reports one object twice,
  under two classes).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from spvis_model.tracker.geometry import soft_iou
from spvis_model.tracker.state import ACTIVE, LOST, TrackerState


def coasting(state: TrackerState, slots: torch.Tensor, matched: torch.Tensor,
             visibility: torch.Tensor, low: torch.Tensor, stamp: float,
             coast_seconds: float, overlap_iou: float = 0.5) -> torch.Tensor:
    """Which unmatched tracks are still published this frame, with their propagated mask: the
    detection was missed, but the track is confirmed, was seen within `coast_seconds`, is
    likely visible (visibility >= 0.5) and does not overlap a matched track's mask (that
    object has a detection of its own this frame).

    Args:
        state: the state before this frame's update (statuses, last-seen stamps).
        slots: (V,) live slots; matched: (V,) bool; visibility: (V,); low: (V, R, R) the
            tracks' mask probabilities on this frame.

    Returns:
        (V,) bool.
    """
    out = torch.zeros_like(matched)
    if coast_seconds <= 0:
        return out
    confirmed = (state.status[slots] == ACTIVE) | (state.status[slots] == LOST)
    recent = (stamp - state.last_seen[slots]) <= coast_seconds
    out = ~matched & confirmed & recent & (visibility >= 0.5)
    if bool(out.any()) and bool(matched.any()):
        overlap = soft_iou(low[out], low[matched]).max(1).values > overlap_iou
        out[torch.nonzero(out).flatten()[overlap]] = False
    return out


def suppress_duplicates(visible: torch.Tensor, score: torch.Tensor, low: torch.Tensor,
                        iou: float) -> torch.Tensor:
    """Published tracks without the duplicates: greedy by score, a track whose mask overlaps a
    better-scoring published one by more than `iou` is not published (1.0: keep all).

    Args:
        visible: (V,) bool; score: (V,) track scores; low: (V, R, R) mask probabilities.

    Returns:
        (V,) bool.
    """
    if iou >= 1.0 or int(visible.sum()) < 2:
        return visible
    idx = torch.nonzero(visible).flatten()
    idx = idx[score[idx].argsort(descending=True)]
    overlap = soft_iou(low[idx], low[idx])
    keep = torch.ones(idx.numel(), dtype=torch.bool, device=visible.device)
    for i in range(1, idx.numel()):
        if bool((overlap[i, :i][keep[:i]] > iou).any()):
            keep[i] = False
    out = torch.zeros_like(visible)
    out[idx[keep]] = True
    return out


def track_score(score: torch.Tensor, hits: torch.Tensor, model: Sequence[float]) -> torch.Tensor:
    """The score whole tracks are ranked by (`TrackStep.track_score`: result files, AP) under
    a score model [b, w_s, w_h]: the learned probability that the track is right,
    sigmoid(b + w_s * logit(score) + w_h * log(hits)). (Without a score model the tracker
    ranks by the running detection score and does not call this.) What is published per
    frame stays the running detection score: a new
    track's learned score is low by design and would hold it back from the node for seconds
    at 1-2 fps (docs/model.md).

    A one-frame track at 1-2 fps is usually a false detection even when the detection scored
    0.98 (docs/model.md): with w_h > 0 a track seen once ranks below one with the same
    detection scores seen many times. The weights are fitted on stage-2 training videos
    (bench/fit_track_score.py).

    Args:
        score: (V,) running mean of the matched detections' scores; hits: (V,) int matched
            frames so far (>= 1 for a track published this frame).

    Returns:
        (V,) scores, `score`'s dtype.
    """
    b, w_s, w_h = (float(x) for x in model)
    h = hits.clamp_min(1).to(score.dtype)
    return torch.sigmoid(b + w_s * torch.logit(score.clamp(1e-4, 1 - 1e-4)) + w_h * h.log())
