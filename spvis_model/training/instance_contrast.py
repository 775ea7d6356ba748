"""Stage 1's instance-contrastive term: the query embedding of an object in one frame of a clip
must be closer to the same object's query in another frame than to any other object's.

The tracker associates detections by the cosine of their query embeddings (PGT step a, the
memory re-identification pass, MinVIS). Mask2Former's set loss gives the queries class and mask
information but nothing that tells two objects of one class apart, and on same-class crowds
the embedding cannot (docs/experiments.md, "Stage 1, same-class crowds"). This term trains exactly
that choice: for every ground-truth object seen in two frames of a clip, an InfoNCE loss over
the queries matched (by the set loss's Hungarian matching) to the objects of the other frame,
the object's own query the positive and every other object's the negatives, same class
included. Anchors without a negative (one object in the other frame) add nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

MatchIndices = tuple[torch.Tensor, torch.Tensor]


def instance_contrast_loss(query_embed: torch.Tensor, frames_per_clip: Sequence[int],
                           indices: Sequence[MatchIndices], track_ids: Sequence[torch.Tensor],
                           temperature: float = 0.1) -> tuple[torch.Tensor, int]:
    """Mean InfoNCE over (anchor object, other frame) pairs of every clip.

    Args:
        query_embed: (F, Q, C) last-layer query embeddings of all frames, clips concatenated in
            order (the layout of `stage1.batch_frames`).
        frames_per_clip: T of each clip (sum = F).
        indices: per frame, the final-layer matching (pred_idx (m,), tgt_idx (m,)) int64.
        track_ids: per frame, (n_t,) int64 ground-truth identity of each target.
        temperature: the softmax temperature on cosine similarities (> 0).

    Returns:
        (scalar loss, number of anchors). With no anchor the loss is a zero that still depends
        on `query_embed` (every parameter keeps a gradient, as DDP needs).
    """
    if temperature <= 0:
        raise ValueError(f"temperature = {temperature!r}: must be > 0")
    if sum(frames_per_clip) != query_embed.shape[0] or len(indices) != query_embed.shape[0] \
            or len(track_ids) != query_embed.shape[0]:
        raise ValueError(f"instance_contrast_loss: {query_embed.shape[0]} frames of queries, "
                         f"{sum(frames_per_clip)} in clips, {len(indices)} matchings, "
                         f"{len(track_ids)} id lists")
    unit = F.normalize(query_embed.float(), dim=-1)
    # Per frame: {track id: matched query index}.
    matched: list[dict[int, int]] = []
    for (pred, tgt), ids in zip(indices, track_ids, strict=True):
        ids_l = ids.tolist()
        pairs = zip(pred.tolist(), tgt.tolist(), strict=True)
        matched.append({int(ids_l[int(t)]): int(p) for p, t in pairs})
    terms: list[torch.Tensor] = []
    start = 0
    for t_len in frames_per_clip:
        for a in range(start, start + t_len):
            for b in range(start, start + t_len):
                if a == b or len(matched[b]) < 2:
                    continue
                keys = list(matched[b])
                key_idx = torch.tensor([matched[b][k] for k in keys], device=unit.device)
                anchors = [k for k in matched[a] if k in matched[b]]
                if not anchors:
                    continue
                anchor_idx = torch.tensor([matched[a][k] for k in anchors], device=unit.device)
                target = torch.tensor([keys.index(k) for k in anchors], device=unit.device)
                logits = unit[a, anchor_idx] @ unit[b, key_idx].T / temperature
                terms.append(F.cross_entropy(logits, target, reduction="none"))
        start += t_len
    if not terms:
        return query_embed.sum() * 0.0, 0
    all_terms = torch.cat(terms)
    return all_terms.mean(), int(all_terms.numel())
