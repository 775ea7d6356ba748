"""PGT step c, error correction: re-decide the assignment with the refined track queries.

After the referring decoder, each track has a refined query and, through the segmenter's mask
head, a refined mask. The assignment is recomputed on those; it replaces step a's when it is
cheaper by more than a margin (each unmatched track is charged the gate, so assignments with
different numbers of pairs compare fairly). Newborn tracks keep the detection they were born
from, and are not part of the decision.

It runs on a frame only when the frame follows the previous one closely enough
(`correction_max_interval`, seconds): between close frames the refined mask is a good guide to
the new detection; after a long interval the object has moved and the refined mask points at
where it was (measured: it helps at 25-30 fps and costs AP at 2-5 fps, docs/model.md).
"""

from __future__ import annotations

import math

import torch

from spvis_model.config import TrackerConfig
from spvis_model.tracker.association import assignment_cost, gated_assignment


def correction_applies(cfg: TrackerConfig, interval: float) -> bool:
    """Whether step c runs on a frame `interval` seconds after the previous one (NaN: the
    stream's first frame, which has no old tracks to correct)."""
    if not cfg.use_correction or math.isnan(interval):
        return False
    return interval <= cfg.correction_max_interval


def corrected_assignment(cost: torch.Tensor, previous: torch.Tensor, gate: float,
                         margin: float) -> torch.Tensor:
    """Step c on one cost matrix.

    Args:
        cost: (T, U) refined track × usable detection costs.
        previous: (T,) int64 column each track took in step a, -1 for none (each column at
            most once).
        gate: largest admissible pair cost (also the charge for an unmatched track).
        margin: how much cheaper the new assignment must be to replace `previous`.

    Returns:
        (T,) int64 columns: the gated optimum when it wins by more than `margin`, else
        `previous` unchanged.
    """
    rows, cols = gated_assignment(cost, gate)
    kept = torch.nonzero(previous >= 0).flatten()
    before = assignment_cost(cost, kept, previous[kept], gate)
    after = assignment_cost(cost, rows, cols, gate)
    if after + margin >= before:
        return previous
    corrected = torch.full_like(previous, -1)
    corrected[rows] = cols
    return corrected
