"""A learning test that can fail: a briefly trained tiny model segments two objects and keeps
both ids while they cross (the square passes in front of the disk)."""

from __future__ import annotations

import numpy as np
from synthetic_clip import crossing_clip

# Visible area below this fraction of the object's unoccluded area is a heavy occlusion: the
# object is only required to keep its id there, not to be segmented to the bound.
HEAVY_OCCLUSION = 0.5
# Mask IoU bound. Masks come from a stride-4 grid (16×24 cells for a 64×96 frame) upsampled
# bilinearly, so a one-pixel boundary error all round a radius-9 disk (area ~254 px, perimeter
# ~57 px) costs ~0.2 IoU: 0.75 demands about one pixel of accuracy. Measured after 300 steps:
# 0.88-0.99 on every frame that counts; an untrained model stays far below.
IOU_BOUND = 0.75


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_segments_both_and_keeps_ids_through_crossing(trained_tiny):
    model = trained_tiny
    frames, masks = crossing_clip()
    full_area = [max(m[k].sum() for m in masks) for k in range(2)]
    state = model.init_state()
    ids: list[set[int]] = [set(), set()]
    ious: list[list[float]] = [[], []]
    for t, (frame, gt) in enumerate(zip(frames, masks, strict=True)):
        state, inst = model.step(state, frame, 0.25 * t)  # 4 fps
        for k in range(2):
            if not gt[k].any():
                continue
            best = max(range(len(inst)), key=lambda i: iou(inst.masks[i], gt[k]), default=None)
            score = iou(inst.masks[best], gt[k]) if best is not None else 0.0
            if gt[k].sum() >= HEAVY_OCCLUSION * full_area[k]:
                ious[k].append(score)
                assert score >= IOU_BOUND, f"frame {t}, object {k}: IoU {score:.2f}"
            if score >= 0.3:
                ids[k].add(int(inst.ids[best]))
                assert inst.label_names[best] == ("disk", "square")[k]
    assert len(ids[0]) == 1 and len(ids[1]) == 1, f"ids per object: {ids}"
    assert ids[0] != ids[1]
    assert min(len(v) for v in ious) >= 15  # the bound was checked on most frames
