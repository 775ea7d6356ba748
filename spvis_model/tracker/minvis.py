"""The MinVIS baseline: frame-to-frame Hungarian matching of segmenter query embeddings.

One track slot per segmenter query; every frame the N previous embeddings are matched to the N
new ones by cosine similarity, and each slot takes over its match. No memory beyond the previous
frame, no SIM, no RCP: the peer baseline every SPVIS measurement compares against on the same
segmenter. Uses the same `TrackerState` (the first N slots) and returns the same `TrackStep`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from spvis_model.config import TrackerConfig
from spvis_model.tracker.association import gated_assignment
from spvis_model.tracker.state import ACTIVE, TrackerState
from spvis_model.tracker.types import FrameFeatures, TrackStep


def minvis_step(cfg: TrackerConfig, state: TrackerState, feats: FrameFeatures,
                stamp: float) -> tuple[TrackerState, TrackStep]:
    """Advance one frame with MinVIS association (see the module docstring)."""
    n = feats.query_embed.shape[0]
    dev = feats.query_embed.device
    unit = F.normalize(feats.query_embed, dim=-1)
    slots = torch.arange(n, device=dev)
    status = state.status.clone()
    ids = state.ids.clone()
    first_seen = state.first_seen.clone()
    next_id = int(state.next_id)
    if not bool((status[:n] == ACTIVE).all()):
        # First frame (or after a reset): every query starts a track.
        perm = slots
        status[:n] = ACTIVE
        ids[:n] = torch.arange(next_id, next_id + n, device=dev)
        first_seen[:n] = stamp
        next_id += n
    else:
        rows, cols = gated_assignment(1 - state.ref[:n] @ unit.T, float("inf"))
        perm = torch.empty_like(slots)
        perm[rows] = cols
    probs = feats.pred_logits[perm].softmax(-1)[:, :-1]
    score = probs.max(-1).values
    visible = score >= cfg.output_score
    logits = feats.pred_logits[perm]
    new = state.clone()
    new.ref[:n] = unit[perm]
    new.query[:n] = feats.query_embed[perm]
    new.status, new.ids, new.first_seen = status, ids, first_seen
    new.last_seen[:n] = torch.where(visible, torch.full_like(new.last_seen[:n], stamp),
                                    new.last_seen[:n])
    new.score[:n] = score
    new.class_logits[:n] = logits
    new.next_id = torch.tensor(next_id, dtype=torch.int64, device=state.next_id.device)
    new.last_stamp = torch.tensor(float(stamp), dtype=torch.float64,
                                  device=state.last_stamp.device)
    return new, TrackStep(
        slots=slots, ids=ids[:n], visible=visible, det_index=perm, class_logits=logits,
        running_logits=logits, mask_logits=feats.pred_masks[perm], visibility=score,
        score=score, first_seen=first_seen[:n], query=feats.query_embed[perm],
        refined=feats.query_embed[perm])
