"""YouTube-VIS AP/AR, computed as the official YouTube-VIS API (youtubevos/cocoapi) does.

The matching, accumulation (101-point interpolated precision) and summary are pycocotools'
`COCOeval` (`evaluateImg`, `accumulate`, `summarize` unchanged; `evaluate` skips the
(video, category) units with nothing in them, for which evaluateImg returns None). Only what is
video-specific is supplied here, as the official API does:

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
import copy
import io
from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.cocoeval import COCOeval
from tqdm import tqdm

from spvis_model.eval.data import (
    RLE,
    GroundTruth,
    GtSource,
    PredSource,
    Track,
    load_ground_truth,
    load_predictions,
    paused_gc,
)

AREA_RANGES: list[list[float]] = [[0.0, 1e5**2], [0.0, 128.0**2], [128.0**2, 256.0**2],
                                  [256.0**2, 1e5**2]]
"""YouTube-VIS area ranges (all, small, medium, large) in pixels, bounds inclusive."""

SUMMARY_KEYS: tuple[str, ...] = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10")
# SUMMARY_KEYS are the first 8 of COCOeval.stats (AR100 and ARs/m/l follow, not reported).


_AREA_BATCH = 255
"""pycocotools' `area` overflows (OverflowError) on a list of more than 255 masks."""

# Rough costs (µs) of the two ways to get intersections, to pick the cheaper per
# (video, category): one merge(intersect) per pair and frame, or one iou call per frame.
_MERGE_US = 13.0
_IOU_CALL_US = 70.0
_IOU_PAIR_US = 1.0


def mask_areas(rles: Sequence[RLE]) -> np.ndarray:
    """Pixel counts, int64 (N,), of N compressed RLEs (pycocotools' area, 255 at a time)."""
    out = np.zeros(len(rles), dtype=np.int64)
    for start in range(0, len(rles), _AREA_BATCH):
        out[start:start + _AREA_BATCH] = mask_utils.area(list(rles[start:start + _AREA_BATCH]))
    return out


def _intersections_by_merge(dts: Sequence[Track], gts: Sequence[Track], both: np.ndarray,
                            inter: np.ndarray) -> None:
    """Add Σ_t |d_t ∩ g_t| into inter (D, G) with one pycocotools merge per pair and frame in
    `both` (D, G, T)."""
    i, j, t = np.nonzero(both)
    merged = [mask_utils.merge([dts[a].rles[c], gts[b].rles[c]], intersect=True)
              for a, b, c in zip(i.tolist(), j.tolist(), t.tolist(), strict=True)]
    np.add.at(inter, (i, j), mask_areas(merged))


def _intersections_by_iou(dts: Sequence[Track], gts: Sequence[Track], both: np.ndarray,
                          inter: np.ndarray) -> None:
    """Same as `_intersections_by_merge` with one pycocotools iou call per frame: with the
    crowd flag set its IoU is |d∩g| / |d|, so |d∩g| = round(iou * |d|) (exact for pixel
    counts)."""
    for t in np.flatnonzero(both.any(axis=(0, 1))).tolist():
        di = np.flatnonzero(both[:, :, t].any(axis=1))
        gi = np.flatnonzero(both[:, :, t].any(axis=0))
        ratio = np.asarray(mask_utils.iou([dts[k].rles[t] for k in di.tolist()],
                                          [gts[k].rles[t] for k in gi.tolist()],
                                          [1] * gi.size), dtype=np.float64)
        d_area = np.array([dts[k].frame_areas[t] for k in di.tolist()], dtype=np.float64)
        inter[np.ix_(di, gi)] += np.rint(ratio * d_area[:, None])


def video_iou(dts: Sequence[Track], gts: Sequence[Track]) -> np.ndarray:
    """Video-level IoU matrix, float64 (len(dts), len(gts)).

    IoU = sum over frames of |d∩g| / (sum_t |d_t| + sum_t |g_t| - sum_t |d_t∩g_t|), which is the
    official per-frame sum of unions including frames where only one side has a mask. 0 where
    the union is empty. Intersections come from pycocotools, for the frames where both masks
    are non-empty.
    """
    n_d, n_g = len(dts), len(gts)
    if n_d == 0 or n_g == 0:
        return np.zeros((n_d, n_g))
    d_present = np.stack([d.present for d in dts])
    g_present = np.stack([g.present for g in gts])
    both = d_present[:, None, :] & g_present[None, :, :]
    inter = np.zeros((n_d, n_g))
    n_pair_frames = int(np.count_nonzero(both))
    if n_pair_frames:
        n_frames = int(np.count_nonzero(both.any(axis=(0, 1))))
        if n_pair_frames * _MERGE_US <= n_frames * _IOU_CALL_US + n_pair_frames * _IOU_PAIR_US:
            _intersections_by_merge(dts, gts, both, inter)
        else:
            _intersections_by_iou(dts, gts, both, inter)
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

    Only the categories with ground truth in the videos are evaluated: the others have
    precision and recall -1 everywhere, which summarize leaves out of every mean, so the
    numbers are the same and accumulate has less to loop over.
    """

    def __init__(self, index: YTVISEvaluator, video_ids: Iterable[int]) -> None:
        super().__init__(cocoGt=None, cocoDt=None, iouType="segm")
        self.params.imgIds = sorted(video_ids)
        self.params.catIds = sorted({key[1] for vid in self.params.imgIds
                                     for key in index.units_by_video[vid]
                                     if index.gt_units[key]})
        self.params.areaRng = [list(r) for r in AREA_RANGES]
        self._index = index

    def _prepare(self) -> None:
        self._gts = defaultdict(list)
        self._dts = defaultdict(list)
        for vid in self.params.imgIds:
            for key in self._index.units_by_video[vid]:
                self._gts[key] = self._index.gt_units[key]
                self._dts[key] = self._index.dt_units[key]
        self.evalImgs = defaultdict(list)
        self.eval = {}

    def computeIoU(self, imgId: int, catId: int) -> np.ndarray | list:  # noqa: N802, N803
        """Video IoU (D, G) for one (video, category), D in descending score order."""
        return self._index.ious.get((imgId, catId), [])

    def evaluate(self) -> None:
        """COCOeval.evaluate without its calls on (video, category) units that have neither
        ground truth nor predictions: evaluateImg returns None for those, so the result is the
        same. (A results file scores ~40 categories per video, most of them empty.)"""
        p = self.params
        p.imgIds = list(np.unique(p.imgIds))
        p.catIds = list(np.unique(p.catIds))
        p.maxDets = sorted(p.maxDets)
        self._prepare()
        busy = set(self._gts) | set(self._dts)
        self.ious = {key: self.computeIoU(*key) for key in busy}
        max_det = p.maxDets[-1]
        self.evalImgs = [self.evaluateImg(img, cat, area, max_det) if (img, cat) in busy else None
                         for cat in p.catIds for area in p.areaRng for img in p.imgIds]
        self._paramsEval = copy.deepcopy(self.params)


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
        self.gt_units: dict[tuple[int, int], list[dict]] = {}
        self.dt_units: dict[tuple[int, int], list[dict]] = {}
        self.units_by_video: dict[int, list[tuple[int, int]]] = {v: [] for v in self.gt.videos}
        gt_tracks: dict[tuple[int, int], list[Track]] = defaultdict(list)
        dt_tracks: dict[tuple[int, int], list[Track]] = defaultdict(list)
        for g in self.gt.tracks:
            gt_tracks[g.video_id, g.category_id].append(g)
        for d in self.predictions:
            dt_tracks[d.video_id, d.category_id].append(d)
        self.ious: dict[tuple[int, int], np.ndarray] = {}
        with paused_gc():
            self._index_units(gt_tracks, dt_tracks, progress)

    def _index_units(self, gt_tracks: dict[tuple[int, int], list[Track]],
                     dt_tracks: dict[tuple[int, int], list[Track]], progress: bool) -> None:
        """Video IoUs and COCOeval's gt/dt dicts of every (video, category) unit."""
        max_dets = 100
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
            self.units_by_video[key[0]].append(key)

    def summary(self, video_ids: Iterable[int] | None = None) -> dict[str, float]:
        """AP, AP50, AP75, APs, APm, APl, AR1, AR10 over `video_ids` (all videos by default)."""
        ids = list(self.gt.videos) if video_ids is None else list(video_ids)
        unknown = [v for v in ids if v not in self.gt.videos]
        if unknown:
            raise ValueError(f"video_ids {unknown} are not in the ground truth")
        if not ids:
            raise ValueError("video_ids is empty")
        evaluator = _VideoCOCOeval(self, ids)
        # COCOeval prints progress and tables
        with contextlib.redirect_stdout(io.StringIO()), paused_gc():
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
