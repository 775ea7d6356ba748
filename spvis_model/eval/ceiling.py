"""How much AP a tracker loses to association: its own published masks, re-associated by the
ground truth.

Each frame, the predicted masks and the annotated objects are matched one to one (Hungarian on
mask IoU, pairs with IoU >= `iou` kept). The masks matched to one object, whichever tracks they
came from, become one track for that object (category: the most frequent of the contributing
tracks, score: the mean of their scores); every mask left over stays in its own track. Scoring
three result lists on the same masks separates the losses:

- **as run**: the tracker's own ids;
- **re-associated**: perfect association of the same masks, left-over tracks kept;
- **re-associated, no left-overs**: also without the tracks of masks no object took
  (duplicates, parts, background): what the masks are worth with nothing else wrong.

The left-over masks are counted by kind: *duplicate* (IoU >= `iou` with an object another mask
took), *part* (at least half of the mask lies on one object) and *background*. Used by
`bench/ap_ladder.py` (docs/experiments.md, "Duplicate queries").
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from scipy.optimize import linear_sum_assignment

from spvis_model.eval.data import GroundTruth, Track

LEFTOVER_KINDS: tuple[str, ...] = ("duplicate", "part", "background")


@dataclass
class Reassociation:
    """Result lists (YouTube-VIS results entries) built from one set of predictions.

    Attributes:
        reassociated: one entry per annotated object that some mask covers, plus every
            left-over track.
        objects_only: the object entries alone.
        leftover_tracks: how many predicted tracks keep at least one frame.
        leftover_frames: {kind: count} of left-over masks (`LEFTOVER_KINDS`).
    """

    reassociated: list[dict[str, Any]]
    objects_only: list[dict[str, Any]]
    leftover_tracks: int = 0
    leftover_frames: dict[str, int] = field(default_factory=dict)


def _ios(pred: dict[str, Any], obj: dict[str, Any]) -> float:
    """Share of `pred`'s pixels that lie on `obj` (two compressed RLEs of one frame)."""
    area = float(mask_utils.area(pred))
    if area == 0:
        return 0.0
    inter = float(mask_utils.area(mask_utils.merge([pred, obj], intersect=True)))
    return inter / area


def reassociate(gt: GroundTruth, predictions: list[Track], iou: float = 0.5) -> Reassociation:
    """Re-associate `predictions` by the ground truth (see the module docstring).

    Args:
        gt: the annotations (crowd annotations are ignored).
        predictions: predicted tracks (`spvis_model.eval.data.load_predictions`).
        iou: smallest mask IoU at which a mask counts as an object's (0 < iou <= 1).

    Returns:
        The result lists and the left-over counts.
    """
    if not 0.0 < iou <= 1.0:
        raise ValueError(f"iou = {iou!r}: must be in (0, 1]")
    by_video: dict[int, list[Track]] = {}
    for p in predictions:
        by_video.setdefault(p.video_id, []).append(p)
    objects_only: list[dict[str, Any]] = []
    leftovers: list[dict[str, Any]] = []
    kinds: Counter[str] = Counter()
    for vid, video in gt.videos.items():
        objects = [t for t in gt.tracks_by_video.get(vid, []) if not t.iscrowd]
        preds = by_video.get(vid, [])
        length = video.length
        taken: list[list[dict[str, Any] | None]] = [[None] * length for _ in objects]
        scores: list[list[float]] = [[] for _ in objects]
        labels: list[list[int]] = [[] for _ in objects]
        rest = [list(p.rles) for p in preds]
        for t in range(length):
            live = [i for i, p in enumerate(preds) if p.frame_areas[t] > 0]
            here = [g for g, o in enumerate(objects) if o.frame_areas[t] > 0]
            if not live:
                continue
            ious = np.zeros((len(here), len(live)))
            if here:
                ious = np.asarray(mask_utils.iou([objects[g].rles[t] for g in here],
                                                 [preds[i].rles[t] for i in live],
                                                 [0] * len(live)), dtype=float)
                ious = ious.reshape(len(here), len(live))
                rows, cols = linear_sum_assignment(-ious)
                for r, c in zip(rows, cols, strict=True):
                    if ious[r, c] >= iou:
                        g, i = here[r], live[c]
                        taken[g][t] = preds[i].rles[t]
                        scores[g].append(preds[i].score)
                        labels[g].append(preds[i].category_id)
                        rest[i][t] = None
            for c, i in enumerate(live):
                mask = rest[i][t]
                if mask is None:
                    continue
                if here and float(ious[:, c].max()) >= iou:
                    kinds["duplicate"] += 1
                elif here and max(_ios(mask, objects[g].rles[t]) for g in here) >= 0.5:
                    kinds["part"] += 1
                else:
                    kinds["background"] += 1
        for g in range(len(objects)):
            if scores[g]:
                objects_only.append({
                    "video_id": vid,
                    "category_id": Counter(labels[g]).most_common(1)[0][0],
                    "score": float(np.mean(scores[g])),
                    "segmentations": taken[g]})
        for i, p in enumerate(preds):
            if any(m is not None for m in rest[i]):
                leftovers.append({"video_id": vid, "category_id": p.category_id,
                                  "score": p.score, "segmentations": rest[i]})
    return Reassociation(reassociated=objects_only + leftovers, objects_only=objects_only,
                         leftover_tracks=len(leftovers),
                         leftover_frames={k: kinds[k] for k in LEFTOVER_KINDS})
