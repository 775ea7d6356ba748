"""PGT step a, association: gated Hungarian matching of tracks to this frame's detections.

Two passes. Tracks that were recently visible (active and tentative; with
`lost_by_position`, lost ones too, at their last position) are matched on appearance plus
position, cost (1 − cos(ref, e)) + λ(1 − IoU(last mask, mask)). Every
confirmed track still unmatched (lost ones, and active ones whose last mask no longer
overlaps, e.g. after an occlusion or at a low frame rate) then gets a second chance by
appearance alone, through its memory prototype μ, against the confident leftovers, with a
stricter gate: re-identification.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from spvis_model.config import TrackerConfig
from spvis_model.tracker.detections import Detections
from spvis_model.tracker.geometry import soft_iou
from spvis_model.tracker.state import ACTIVE, LOST, TENTATIVE, TrackerState


@dataclass
class Association:
    """Which detection each slot took this frame.

    Attributes:
        match: (M,) int64 detection index per state slot, -1 for none.
        by_memory: (M,) bool, matched in the re-identification pass.
    """

    match: torch.Tensor
    by_memory: torch.Tensor


def gated_assignment(cost: torch.Tensor, gate: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimum-cost one-to-one assignment, keeping only pairs with cost <= gate.

    Args:
        cost: (M, N) finite costs (rows: tracks, columns: detections).
        gate: largest admissible cost.

    Returns:
        (rows, cols) int64 index tensors of the kept pairs, on cost's device.
    """
    m, n = cost.shape
    if m == 0 or n == 0:
        empty = torch.zeros(0, dtype=torch.int64, device=cost.device)
        return empty, empty
    c = cost.detach().float().cpu().numpy()
    # Pairs above the gate can never be taken: price them out so they don't steer the rest.
    big = float(np.abs(c[np.isfinite(c)]).max(initial=0.0)) * 4 + gate * 4 + 1.0
    c = np.where(np.isfinite(c) & (c <= gate), c, big)
    rows, cols = linear_sum_assignment(c)
    keep = c[rows, cols] <= gate
    to = {"dtype": torch.int64, "device": cost.device}
    return torch.as_tensor(rows[keep], **to), torch.as_tensor(cols[keep], **to)


def assignment_cost(cost: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                    unmatched_cost: float) -> float:
    """Total cost of an assignment under `cost` (M, N), charging `unmatched_cost` for each row
    left unmatched, so assignments with different numbers of pairs compare fairly."""
    total = float(cost.detach()[rows, cols].sum()) if rows.numel() else 0.0
    return total + unmatched_cost * (cost.shape[0] - rows.numel())


def match_cost(ref: torch.Tensor, mask: torch.Tensor, det_unit: torch.Tensor,
               det_low: torch.Tensor, iou_weight: float) -> torch.Tensor:
    """(1 − cos) + λ(1 − IoU).

    Args:
        ref: (M, C) unit track embeddings; mask: (M, R, R) track mask probabilities.
        det_unit: (N, C) unit detection embeddings; det_low: (N, R, R).

    Returns:
        (M, N) costs.
    """
    return (1 - ref @ det_unit.T) + iou_weight * (1 - soft_iou(mask, det_low))


def memory_key(state: TrackerState, slots: torch.Tensor) -> torch.Tensor:
    """(S, C) re-identification keys: the memory prototype μ where the track has snapshots,
    else its reference embedding."""
    has_memory = state.snap_valid[slots].any(1, keepdim=True)
    return torch.where(has_memory, state.proto[slots], state.ref[slots])


def associate(state: TrackerState, dets: Detections, cfg: TrackerConfig) -> Association:
    """PGT step a over the state's live tracks (see the module docstring). The memory pass
    runs when `cfg.use_reid`; only detections confident enough to start a track
    (>= `new_track_score`) may re-identify one."""
    dev = dets.embed.device
    m = state.max_tracks
    match = torch.full((m,), -1, dtype=torch.int64, device=dev)
    by_memory = torch.zeros(m, dtype=torch.bool, device=dev)
    cand = dets.candidates
    status = state.status
    first = (status == ACTIVE) | (status == TENTATIVE)
    if cfg.lost_by_position:
        first = first | (status == LOST)
    recent = torch.nonzero(first).flatten()
    if recent.numel() and cand.numel():
        cost = match_cost(state.ref[recent], state.mask[recent], dets.unit[cand],
                          dets.low[cand], cfg.iou_weight)
        rows, cols = gated_assignment(cost, cfg.active_gate)
        match[recent[rows]] = cand[cols]
    if not cfg.use_reid:
        return Association(match, by_memory)
    confirmed = (status == ACTIVE) | (status == LOST)
    waiting = torch.nonzero(confirmed & (match < 0)).flatten()
    left = cand[~torch.isin(cand, match) & (dets.score[cand] >= cfg.new_track_score)]
    if waiting.numel() and left.numel():
        cost = 1 - memory_key(state, waiting) @ dets.unit[left].T
        rows, cols = gated_assignment(cost, cfg.lost_gate)
        match[waiting[rows]] = left[cols]
        by_memory[waiting[rows]] = True
    return Association(match, by_memory)
