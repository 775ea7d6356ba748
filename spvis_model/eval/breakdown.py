"""Per-video properties used to break results down: frame rate and occlusion, and their buckets.

Frame rate: the video's `fps` field, else (n - 1) / (t_last - t_first) from its `timestamps`,
else unknown. Buckets: "fps < 10", "10 <= fps < 20", "fps >= 20", "fps unknown".

Occlusion of a video: over its non-crowd ground-truth tracks, the fraction of track-frames between
each track's first and last appearance in which the object is absent (segmentation None or
empty): sum of absent in-span frames / sum of span lengths. When annotations carry an
`occlusion` list (per-frame values in [0, 1], None where not annotated), the video's occlusion
is instead the mean of all those values over its tracks. Buckets: "none" (0), "low" (0 < occ
<= 0.2), "high" (occ > 0.2), "no gt" (no non-crowd track).
"""

from __future__ import annotations

import numpy as np

from spvis_model.eval.data import GroundTruth, Video

FPS_BUCKETS: tuple[str, ...] = ("fps < 10", "10 <= fps < 20", "fps >= 20", "fps unknown")
OCCLUSION_BUCKETS: tuple[str, ...] = ("none", "low", "high", "no gt")
LOW_OCCLUSION_MAX = 0.2


def fps_bucket(video: Video) -> str:
    """Frame-rate bucket of a video (see module docstring)."""
    if video.fps is None:
        return FPS_BUCKETS[3]
    if video.fps < 10:
        return FPS_BUCKETS[0]
    if video.fps < 20:
        return FPS_BUCKETS[1]
    return FPS_BUCKETS[2]


def video_occlusion(gt: GroundTruth, video_id: int) -> float | None:
    """Occlusion fraction of one video in [0, 1], or None without non-crowd ground truth."""
    tracks = [t for t in gt.tracks_by_video[video_id] if not t.iscrowd]
    if not tracks:
        return None
    if any(t.occlusion is not None for t in tracks):
        values = [v for t in tracks if t.occlusion is not None for v in t.occlusion
                  if v is not None]
        return float(np.mean(values)) if values else 0.0
    absent = 0
    span = 0
    for track in tracks:
        frames = np.flatnonzero(track.present)
        if frames.size == 0:
            continue
        first, last = int(frames[0]), int(frames[-1])
        span += last - first + 1
        absent += (last - first + 1) - frames.size
    return absent / span if span else 0.0


def occlusion_bucket(occlusion: float | None) -> str:
    """Occlusion bucket (see module docstring)."""
    if occlusion is None:
        return OCCLUSION_BUCKETS[3]
    if occlusion == 0:
        return OCCLUSION_BUCKETS[0]
    if occlusion <= LOW_OCCLUSION_MAX:
        return OCCLUSION_BUCKETS[1]
    return OCCLUSION_BUCKETS[2]
