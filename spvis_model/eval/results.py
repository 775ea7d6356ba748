"""Turn per-frame tracker outputs into the standard YouTube-VIS results list."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from pycocotools import mask as mask_utils


class FrameInstances(Protocol):
    """What the tracker outputs for one frame (N instances; any object with these fields).

    ids: int64 (N,) persistent track ids. labels: int (N,) category index into the dataset's
    categories order. scores: float (N,). masks: bool (N, H, W). An optional `track_scores`
    float (N,) (spvis_model.instances.Instances: stage 2's learned track score), when present
    and not None, is what a track's result score averages instead of `scores`.
    """

    ids: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    masks: np.ndarray


@dataclass
class FrameOutput:
    """A plain `FrameInstances` (see its field shapes), with optional `track_scores`."""

    ids: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    masks: np.ndarray
    track_scores: np.ndarray | None = None


def _check_frame(t: int, frame: FrameInstances, n_labels: int, size: tuple[int, int] | None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    where = f"frames[{t}]"
    try:
        ids = np.asarray(frame.ids)
        labels = np.asarray(frame.labels)
        scores = np.asarray(frame.scores, dtype=np.float64)
        masks = np.asarray(frame.masks)
    except AttributeError as err:
        raise ValueError(f"{where} must have fields ids, labels, scores, masks: {err}") from err
    if masks.ndim != 3:
        raise ValueError(f"{where}.masks must be (N, H, W), got shape {masks.shape}")
    n = masks.shape[0]
    for name, arr in (("ids", ids), ("labels", labels), ("scores", scores)):
        if arr.shape != (n,):
            raise ValueError(f"{where}.{name} must have shape ({n},) like masks, got {arr.shape}")
    if masks.dtype != np.bool_:
        raise ValueError(f"{where}.masks must be bool, got {masks.dtype}")
    if not np.issubdtype(ids.dtype, np.integer) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{where}: ids and labels must be integers, got {ids.dtype}, "
                         f"{labels.dtype}")
    if len(np.unique(ids)) != n:
        raise ValueError(f"{where}.ids has duplicates: {ids.tolist()}")
    if n and (labels.min() < 0 or labels.max() >= n_labels):
        raise ValueError(f"{where}.labels must be in [0, {n_labels}), got {labels.tolist()}")
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"{where}.scores must be finite, got {scores.tolist()}")
    if n and size is not None and masks.shape[1:] != size:
        raise ValueError(f"{where}.masks are {masks.shape[1:]}, earlier frames are {size}")
    return ids, labels, scores, masks


def _track_scores(t: int, frame: FrameInstances, scores: np.ndarray) -> np.ndarray:
    """The frame's `track_scores` when it has them (checked like `scores`), else `scores`."""
    track = getattr(frame, "track_scores", None)
    if track is None:
        return scores
    track = np.asarray(track, dtype=np.float64)
    if track.shape != scores.shape or not np.all(np.isfinite(track)):
        raise ValueError(f"frames[{t}].track_scores must be finite with shape {scores.shape} "
                         f"like scores, got {track.shape}: {track.tolist()}")
    return track


def results_from_tracks(video_id: int, frames: Sequence[FrameInstances],
                        category_ids: Sequence[int] | Mapping[int, int]) -> list[dict[str, Any]]:
    """Convert one video's per-frame tracker outputs into YouTube-VIS results entries.

    One entry per persistent track id (in order of first appearance):
    `score` = mean of the track's per-frame scores (of its per-frame `track_scores` where the
    frames carry them: the learned probability that the track is right); `category_id` =
    category_ids[label] of the label with the largest summed per-frame score over the track's
    frames (ties: smaller label index);
    `segmentations[t]` = compressed COCO RLE with str counts where the track is present in frame
    t, else None.

    Args:
        video_id: the dataset's video id.
        frames: one FrameInstances per frame of the video, in order.
        category_ids: label index -> dataset category_id (a list in the dataset's categories
            order, or a dict).
    """
    mapping = dict(category_ids) if isinstance(category_ids, Mapping) \
        else dict(enumerate(category_ids))
    n_labels = max(mapping) + 1 if mapping else 0
    size: tuple[int, int] | None = None
    length = len(frames)
    segs: dict[int, list[dict[str, Any] | None]] = {}
    scores: dict[int, list[float]] = {}
    label_score: dict[int, dict[int, float]] = {}
    for t, frame in enumerate(frames):
        ids, labels, frame_scores, masks = _check_frame(t, frame, n_labels, size)
        if ids.size == 0:
            continue
        ranking = _track_scores(t, frame, frame_scores)
        size = (int(masks.shape[1]), int(masks.shape[2]))
        rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
        for k, tid in enumerate(ids.tolist()):
            label = int(labels[k])
            if label not in mapping:
                raise ValueError(f"frames[{t}].labels[{k}] = {label} has no category_id in "
                                 f"category_ids (keys {sorted(mapping)})")
            if tid not in segs:
                segs[tid] = [None] * length
                scores[tid] = []
                label_score[tid] = {}
            segs[tid][t] = {"size": list(rles[k]["size"]),
                            "counts": rles[k]["counts"].decode("ascii")}
            scores[tid].append(float(ranking[k]))
            label_score[tid][label] = label_score[tid].get(label, 0.0) + float(frame_scores[k])
    out = []
    for tid, track_segs in segs.items():
        best = min(label_score[tid].items(), key=lambda kv: (-kv[1], kv[0]))[0]
        out.append({"video_id": int(video_id), "category_id": int(mapping[best]),
                    "score": float(np.mean(scores[tid])), "segmentations": track_segs})
    return out
