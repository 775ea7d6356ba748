"""Error breakdown: what goes wrong, per ground-truth track and per tracker track.

"Why is my AP low?" The summary numbers do not say whether objects are missed, found late,
split over several ids, given the wrong class, or buried under false tracks. This module
counts each of those on the tracker output, the predictions whose score is >= the score
threshold (the same tracker output as the tracking metrics).

**Matching.** A tracker track (a kept prediction) *matches* a ground-truth track in frame t
when both have a non-empty mask there and their mask IoU is >= `iou_threshold` (0.5), whatever
their categories. There is no one-to-one assignment: every pair is judged on its own.

Per ground-truth track:

- *covering ids*: the tracker tracks that match it in at least one frame;
- *fragmented*: covered by more than one id;
- *class flip*: covered by a track of another category (which includes being covered by tracks
  of more than one category);
- *missed*: covered by none;
- *covered frames*: the frames of it (non-empty mask) in which some tracker track matches it;
  over all tracks, covered / annotated object-frames is the *coverage* (how much of what is
  there the output finds at all, whatever the ids);
- *frames to first detection*: first frame in which some tracker track matches it, minus the
  first frame in which it appears (0: found at once; None: never found); in seconds too when the
  video has `timestamps` or `fps`.

Per tracker track:

- *one-frame track*: present (non-empty mask) in exactly one frame;
- *multi-object track*: matches two or more (non-crowd) ground-truth tracks over the video, in
  different frames or the same ones: an id handed from one object to another (a
  re-identification of the wrong object, a swap) or one mask over neighbours. Its
  *other-object frames* are its matches with any ground-truth track but the one it matches
  most (one frame counts once per object matched in it);
- *false-positive track*: matches no ground-truth track of its own category in any frame (a
  match with a crowd region counts as a match: AP ignores those predictions).

Crowd ground-truth tracks are listed (with `iscrowd`) but left out of the ground-truth counts:
AP ignores them.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np
from pycocotools import mask as mask_utils

from spvis_model.eval.data import GroundTruth, Track, Video

IOU_THRESHOLD = 0.5


@dataclass(frozen=True)
class GtTrackErrors:
    """One ground-truth track. `index` is its position in the annotations list; frame numbers
    are 0-based frames of the video; `covering` holds the covering tracker tracks' positions in
    the predictions list and `covering_categories` their categories (sorted, unique)."""

    video_id: int
    index: int
    ann_id: int | None
    category_id: int
    iscrowd: bool
    frames: int
    first_frame: int | None
    covering: tuple[int, ...]
    covering_categories: tuple[int, ...]
    first_detected_frame: int | None
    seconds_to_first_detection: float | None
    covered_frames: int = 0

    @property
    def frames_to_first_detection(self) -> int | None:
        """First matched frame minus first frame; None if never matched."""
        if self.first_detected_frame is None or self.first_frame is None:
            return None
        return self.first_detected_frame - self.first_frame

    @property
    def fragmented(self) -> bool:
        return len(self.covering) > 1

    @property
    def class_flip(self) -> bool:
        return any(c != self.category_id for c in self.covering_categories)

    @property
    def missed(self) -> bool:
        return not self.covering

    def as_json(self) -> dict[str, object]:
        return {**asdict(self), "covering": list(self.covering),
                "covering_categories": list(self.covering_categories),
                "covering_ids": len(self.covering),
                "frames_to_first_detection": self.frames_to_first_detection,
                "fragmented": self.fragmented, "class_flip": self.class_flip,
                "missed": self.missed}


@dataclass(frozen=True)
class TrackerTrackErrors:
    """One tracker track (a prediction with score >= the threshold); `index` is its position
    in the predictions list, `matched` the annotation indices of the ground-truth tracks it
    matches in some frame (any category); `objects` how many non-crowd ground-truth tracks it
    matches, `object_matches` its (frame, object) matches with them and
    `other_object_frames` those that are not with the object it matches most."""

    video_id: int
    index: int
    category_id: int
    score: float
    frames: int
    matched: tuple[int, ...]
    matched_same_category: bool
    objects: int = 0
    other_object_frames: int = 0
    object_matches: int = 0

    @property
    def one_frame(self) -> bool:
        return self.frames == 1

    @property
    def multi_object(self) -> bool:
        return self.objects >= 2

    @property
    def false_positive(self) -> bool:
        return not self.matched_same_category

    def as_json(self) -> dict[str, object]:
        return {**asdict(self), "matched": list(self.matched), "one_frame": self.one_frame,
                "false_positive": self.false_positive, "multi_object": self.multi_object}


def _mean(values: list[float]) -> float | None:
    return float(statistics.fmean(values)) if values else None


def _median(values: list[float]) -> float | None:
    return float(statistics.median(values)) if values else None


@dataclass(frozen=True)
class ErrorBreakdown:
    """Every ground-truth and tracker track's errors; `summary` totals them for any subset of
    videos."""

    score_threshold: float
    iou_threshold: float
    gt_tracks: tuple[GtTrackErrors, ...]
    tracker_tracks: tuple[TrackerTrackErrors, ...]

    def summary(self, video_ids: Iterable[int] | None = None) -> dict[str, int | float | None]:
        """Counts over `video_ids` (default all): gt_tracks (non-crowd, annotated in >= 1
        frame), missed / fragmented_gt_tracks / class_flips among them, covering_ids_mean (over
        covered tracks), tracker_tracks, one_frame_tracks, false_positive_tracks, and the mean,
        median and max frames (and mean and median seconds) to first detection over the
        detected tracks, and the coverage: object_frames (annotated, non-empty),
        covered_object_frames and their ratio; multi_object_tracks among the tracker tracks,
        with their other_object_frames and object_matches_of_multi (all their matched
        object-frames)."""
        wanted = None if video_ids is None else set(video_ids)
        gts = [g for g in self.gt_tracks if not g.iscrowd and g.frames
               and (wanted is None or g.video_id in wanted)]
        trks = [p for p in self.tracker_tracks if wanted is None or p.video_id in wanted]
        delays = [float(g.frames_to_first_detection) for g in gts
                  if g.frames_to_first_detection is not None]
        seconds = [g.seconds_to_first_detection for g in gts
                   if g.seconds_to_first_detection is not None]
        covered = [len(g.covering) for g in gts if g.covering]
        object_frames = sum(g.frames for g in gts)
        covered_frames = sum(g.covered_frames for g in gts)
        return {
            "object_frames": object_frames,
            "covered_object_frames": covered_frames,
            "coverage": covered_frames / object_frames if object_frames else None,
            "gt_tracks": len(gts),
            "detected_gt_tracks": len(delays),
            "missed_gt_tracks": sum(g.missed for g in gts),
            "fragmented_gt_tracks": sum(g.fragmented for g in gts),
            "class_flips": sum(g.class_flip for g in gts),
            "covering_ids_mean": _mean([float(c) for c in covered]),
            "tracker_tracks": len(trks),
            "one_frame_tracks": sum(p.one_frame for p in trks),
            "false_positive_tracks": sum(p.false_positive for p in trks),
            "multi_object_tracks": sum(p.multi_object for p in trks),
            "other_object_frames": sum(p.other_object_frames for p in trks),
            "object_matches_of_multi": sum(p.object_matches for p in trks if p.multi_object),
            "frames_to_first_detection_mean": _mean(delays),
            "frames_to_first_detection_median": _median(delays),
            "frames_to_first_detection_max": max(delays) if delays else None,
            "seconds_to_first_detection_mean": _mean(seconds),
            "seconds_to_first_detection_median": _median(seconds),
        }

    def as_json(self) -> dict[str, object]:
        return {"score_threshold": self.score_threshold, "iou_threshold": self.iou_threshold,
                "summary": self.summary(),
                "gt_tracks": [g.as_json() for g in self.gt_tracks],
                "tracker_tracks": [p.as_json() for p in self.tracker_tracks]}


def match_frames(gts: list[Track], trks: list[Track], length: int,
                 iou_threshold: float = IOU_THRESHOLD) -> np.ndarray:
    """Bool (G, P, T): ground truth g and tracker track p both have a non-empty mask in frame t
    and their mask IoU is >= iou_threshold."""
    out = np.zeros((len(gts), len(trks), length), dtype=bool)
    if not gts or not trks:
        return out
    g_present = np.stack([g.present for g in gts])
    p_present = np.stack([p.present for p in trks])
    for t in np.flatnonzero(g_present.any(axis=0) & p_present.any(axis=0)).tolist():
        gi = np.flatnonzero(g_present[:, t])
        pi = np.flatnonzero(p_present[:, t])
        iou = np.asarray(mask_utils.iou([gts[i].rles[t] for i in gi.tolist()],
                                        [trks[j].rles[t] for j in pi.tolist()],
                                        [0] * pi.size), dtype=np.float64)
        out[np.ix_(gi, pi, [t])] = iou.reshape(gi.size, pi.size, 1) >= iou_threshold
    return out


def _seconds(video: Video, first: int, detected: int) -> float | None:
    if video.timestamps is not None:
        return float(video.timestamps[detected] - video.timestamps[first])
    if video.fps:
        return (detected - first) / video.fps
    return None


def error_breakdown(gt: GroundTruth, predictions: list[Track], score_threshold: float,
                    iou_threshold: float = IOU_THRESHOLD) -> ErrorBreakdown:
    """The error breakdown (module docstring) of the predictions scoring >= score_threshold."""
    if not 0.0 <= score_threshold <= 1.0:
        raise ValueError(f"score_threshold must be in [0, 1], got {score_threshold}")
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    by_video: dict[int, list[Track]] = {vid: [] for vid in gt.videos}
    for p in predictions:
        if p.score >= score_threshold:
            by_video[p.video_id].append(p)
    gt_rows: list[GtTrackErrors] = []
    trk_rows: list[TrackerTrackErrors] = []
    for vid, video in gt.videos.items():
        gts, trks = gt.tracks_by_video[vid], by_video[vid]
        match = match_frames(gts, trks, video.length, iou_threshold)
        hit = match.any(axis=2)  # (G, P)
        for j, g in enumerate(gts):
            frames = np.flatnonzero(g.present)
            first = int(frames[0]) if frames.size else None
            covering = np.flatnonzero(hit[j]).tolist()
            found = np.flatnonzero(match[j].any(axis=0))
            detected = int(found[0]) if found.size else None
            gt_rows.append(GtTrackErrors(
                video_id=vid, index=g.index, ann_id=g.ann_id, category_id=g.category_id,
                iscrowd=g.iscrowd, frames=int(frames.size), first_frame=first,
                covering=tuple(trks[k].index for k in covering),
                covering_categories=tuple(sorted({trks[k].category_id for k in covering})),
                first_detected_frame=detected, covered_frames=int(found.size),
                seconds_to_first_detection=None if detected is None or first is None
                else _seconds(video, first, detected)))
        solid = np.array([not g.iscrowd for g in gts], dtype=bool)
        for k, p in enumerate(trks):
            matched = np.flatnonzero(hit[:, k]).tolist()
            per_object = match[solid, k].sum(axis=1) if gts else np.zeros(0, dtype=np.int64)
            trk_rows.append(TrackerTrackErrors(
                video_id=vid, index=p.index, category_id=p.category_id, score=p.score,
                frames=int(p.present.sum()), matched=tuple(gts[j].index for j in matched),
                matched_same_category=any(gts[j].category_id == p.category_id
                                          for j in matched),
                objects=int((per_object > 0).sum()),
                other_object_frames=int(per_object.sum() - per_object.max(initial=0)),
                object_matches=int(per_object.sum())))
    return ErrorBreakdown(score_threshold, iou_threshold, tuple(gt_rows), tuple(trk_rows))
