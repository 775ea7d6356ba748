"""YouTube-VIS AP/AR, computed as the official YouTube-VIS API (youtubevos/cocoapi) does.

The matching, accumulation (101-point interpolated precision) and summary are pycocotools'
`COCOeval`, unchanged. Only what is video-specific is supplied here, as the official API does:

- the unit of evaluation is a (video, category) pair (COCOeval's "image" is a video);
- IoU of a prediction d and a ground-truth track g is
  ``sum_t |d_t ∩ g_t| / sum_t |d_t ∪ g_t|``; a frame where only one side has a mask adds that
  mask's area to the union (so missing a frame, or predicting an extra one, costs IoU);
- the area used for the small/medium/large split is the track's mean area over the frames
  where it is annotated (non-zero), split at 128² and 256²;
- iscrowd tracks are "ignore" regions exactly as in COCOeval (no special crowd IoU, as in the
  official video IoU).

Defaults are COCOeval's: IoU thresholds .50:.05:.95, 101 recall points, maxDets 1/10/100.
A value of -1 means "no ground truth in that setting" (e.g. APs when no track is small), as in
the official API.
"""

from __future__ import annotations

import contextlib
import io
from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.cocoeval import COCOeval
from tqdm import tqdm

from spvis_model.eval.data import (
    GroundTruth,
    GtSource,
    PredSource,
    Track,
    load_ground_truth,
    load_predictions,
)

AREA_RANGES: list[list[float]] = [[0.0, 1e5**2], [0.0, 128.0**2], [128.0**2, 256.0**2],
                                  [256.0**2, 1e5**2]]
"""YouTube-VIS area ranges (all, small, medium, large) in pixels, bounds inclusive."""

SUMMARY_KEYS: tuple[str, ...] = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10")
# SUMMARY_KEYS are the first 8 of COCOeval.stats (AR100 and ARs/m/l follow, not reported).


def video_iou(dts: Sequence[Track], gts: Sequence[Track]) -> np.ndarray:
    """Video-level IoU matrix, float64 (len(dts), len(gts)).

    IoU = sum over frames of |d∩g| / (sum_t |d_t| + sum_t |g_t| - sum_t |d_t∩g_t|), which is the
    official per-frame sum of unions including frames where only one side has a mask. 0 where
    the union is empty. Intersections come from pycocotools: with the crowd flag set, its IoU is
    |d∩g| / |d|, so |d∩g| = round(iou * |d|) (exact for integer pixel counts).
    """
    n_d, n_g = len(dts), len(gts)
    if n_d == 0 or n_g == 0:
        return np.zeros((n_d, n_g))
    length = len(gts[0].rles)
    inter = np.zeros((n_d, n_g))
    d_present = np.stack([d.present for d in dts])
    g_present = np.stack([g.present for g in gts])
    for t in range(length):
        di = np.flatnonzero(d_present[:, t])
        gi = np.flatnonzero(g_present[:, t])
        if di.size == 0 or gi.size == 0:
            continue
        ratio = np.asarray(mask_utils.iou([dts[i].rles[t] for i in di],
                                          [gts[j].rles[t] for j in gi],
                                          [1] * gi.size), dtype=np.float64)
        d_area = np.array([dts[i].frame_areas[t] for i in di], dtype=np.float64)
        inter[np.ix_(di, gi)] += np.rint(ratio * d_area[:, None])
    d_total = np.array([d.frame_areas.sum() for d in dts], dtype=np.float64)
    g_total = np.array([g.frame_areas.sum() for g in gts], dtype=np.float64)
    union = d_total[:, None] + g_total[None, :] - inter
    out = np.zeros_like(inter)
    np.divide(inter, union, out=out, where=union > 0)
    return out


class _VideoCOCOeval(COCOeval):
    """COCOeval over (video, category) units with precomputed video IoUs.

    `_prepare` and `computeIoU` are replaced (they read COCO image annotations); evaluateImg,
    accumulate and summarize run as shipped. Ground-truth dicts carry `area` = the track's mean
    annotated area, which is what evaluateImg compares against the area ranges.
    """

    def __init__(self, index: YTVISEvaluator, video_ids: Iterable[int]) -> None:
        super().__init__(cocoGt=None, cocoDt=None, iouType="segm")
        self.params.imgIds = sorted(video_ids)
        self.params.catIds = sorted(index.gt.categories)
        self.params.areaRng = [list(r) for r in AREA_RANGES]
        self._index = index

    def _prepare(self) -> None:
        wanted = set(self.params.imgIds)
        self._gts = defaultdict(list)
        self._dts = defaultdict(list)
        for key, gts in self._index.gt_units.items():
            if key[0] in wanted:
                self._gts[key] = gts
        for key, dts in self._index.dt_units.items():
            if key[0] in wanted:
                self._dts[key] = dts
        self.evalImgs = defaultdict(list)
        self.eval = {}

    def computeIoU(self, imgId: int, catId: int) -> np.ndarray | list:  # noqa: N802, N803
        """Video IoU (D, G) for one (video, category), D in descending score order."""
        return self._index.ious.get((imgId, catId), [])


class YTVISEvaluator:
    """Loads ground truth and predictions once, computes every video IoU once, then summarises
    any subset of videos (all, one video, a frame-rate bucket ...) with COCOeval.

    Subsets are evaluated as the official API does when `params.vidIds` is restricted: AP is
    averaged over the categories that have ground truth in the subset.
    """

    def __init__(self, gt: GtSource | GroundTruth, predictions: PredSource | list[Track],
                 progress: bool = False) -> None:
        self.gt = load_ground_truth(gt)
        self.predictions = load_predictions(predictions, self.gt)
        self.gt_units: dict[tuple[int, int], list[dict]] = defaultdict(list)
        self.dt_units: dict[tuple[int, int], list[dict]] = defaultdict(list)
        gt_tracks: dict[tuple[int, int], list[Track]] = defaultdict(list)
        dt_tracks: dict[tuple[int, int], list[Track]] = defaultdict(list)
        for g in self.gt.tracks:
            gt_tracks[g.video_id, g.category_id].append(g)
        for d in self.predictions:
            dt_tracks[d.video_id, d.category_id].append(d)
        max_dets = 100
        self.ious: dict[tuple[int, int], np.ndarray] = {}
        keys = sorted(set(gt_tracks) | set(dt_tracks))
        for key in tqdm(keys, desc="video IoU", disable=not progress, leave=False):
            gts = gt_tracks.get(key, [])
            # Stable sort by descending score and keep the top maxDets, as COCOeval does; the
            # IoU rows follow this order, which evaluateImg reproduces with the same sort.
            order = np.argsort([-d.score for d in dt_tracks.get(key, [])], kind="mergesort")
            dts = [dt_tracks[key][i] for i in order[:max_dets]]
            self.ious[key] = video_iou(dts, gts)
            self.gt_units[key] = [{"id": g.uid, "area": g.avg_area, "iscrowd": int(g.iscrowd),
                                   "ignore": int(g.iscrowd)} for g in gts]
            self.dt_units[key] = [{"id": d.uid, "area": d.avg_area, "score": d.score}
                                  for d in dts]

    def summary(self, video_ids: Iterable[int] | None = None) -> dict[str, float]:
        """AP, AP50, AP75, APs, APm, APl, AR1, AR10 over `video_ids` (all videos by default)."""
        ids = list(self.gt.videos) if video_ids is None else list(video_ids)
        unknown = [v for v in ids if v not in self.gt.videos]
        if unknown:
            raise ValueError(f"video_ids {unknown} are not in the ground truth")
        if not ids:
            raise ValueError("video_ids is empty")
        evaluator = _VideoCOCOeval(self, ids)
        with contextlib.redirect_stdout(io.StringIO()):  # COCOeval prints progress and tables
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        stats = [float(v) for v in evaluator.stats[: len(SUMMARY_KEYS)]]
        return dict(zip(SUMMARY_KEYS, stats, strict=True))

    def per_video(self, progress: bool = False) -> dict[int, dict[str, float]]:
        """`summary` of each video on its own (-1 where the video has no ground truth)."""
        return {vid: self.summary([vid])
                for vid in tqdm(self.gt.videos, desc="per-video AP", disable=not progress,
                                leave=False)}


def evaluate(gt: GtSource | GroundTruth, predictions: PredSource | list[Track],
             video_ids: Iterable[int] | None = None) -> dict[str, float]:
    """YouTube-VIS AP and AR of a results list.

    Args:
        gt: dataset JSON path or parsed dict (videos, annotations, categories).
        predictions: results JSON path or list of {video_id, category_id, score, segmentations}.
        video_ids: evaluate only these videos (default: all videos of `gt`).

    Returns:
        {"AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10"} as floats in [0, 1], or -1
        where no ground truth falls in that setting.

    Raises:
        ValueError: naming the entry (index, video_id, field) for malformed inputs.
    """
    return YTVISEvaluator(gt, predictions).summary(video_ids)
