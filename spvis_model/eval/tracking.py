"""Tracking metrics (HOTA, DetA, AssA, MOTSA, IDF1, ID switches) on YouTube-VIS style inputs.

The metric maths is trackeval's (`HOTA`, `CLEAR`, `Identity` classes, unchanged), fed what
trackeval's own YouTube-VIS reader (`trackeval.datasets.YouTubeVIS`) feeds them, so the numbers
are the ones its `Evaluator` reports:

- **Tracker output** = the predictions whose score is >= `score_threshold` (default 0.5). A
  YouTube-VIS results list usually holds many low-score hypotheses per video, which AP tolerates
  but a tracker would not publish; the threshold plays the role of the node's publish threshold.
  trackeval's reader has no threshold: it keeps every prediction, so it gives the same numbers
  as `score_threshold=0` (for scores >= 0), or as any threshold applied to the file first.
  Each kept prediction is one tracker id.
- **Ground truth** = every annotation, crowd ones included: the reader uses `iscrowd` only for
  its TrackMAP metric; for HOTA/CLEAR/Identity a crowd track is an ordinary object.
- **Detections**: a track is detected in frame t when its segmentation for t is given (not
  None), even if the mask is empty (the reader keeps any non-empty RLE dict); an empty mask
  matches nothing.
- **Classes are evaluated one at a time**: for each (video, category), the category's ground
  truth against the category's tracker output, similarity = mask IoU. Each class's videos are
  combined with each metric's `combine_sequences`, then the classes with
  `combine_classes_det_averaged` (trackeval's `cls_comb_det_av`, the headline here) and, in
  `class_averaged`, `combine_classes_class_averaged` (`cls_comb_cls_av`: the plain mean over all
  the dataset's categories of each class's HOTA, MOTA, IDF1 ..., counting a category with no
  ground truth and no tracks in the videos as 0). Scoring all classes in one pass with the
  similarity zeroed across classes is *not* the same: CLEAR's ID-switch and fragmentation
  bookkeeping and the per-frame Hungarian matchings then see frames that only other classes
  occupy.
- Subsets of videos (one video, a bucket) combine the same per-(video, class) results over
  those videos only.

MOTSA is CLEAR's MOTA with mask IoU >= 0.5 as the match criterion: (TP - FP - IDSW) / #gt dets.
HOTA, DetA, AssA (and DetRe, DetPr, AssRe, AssPr, LocA) are averaged over trackeval's 19
localisation thresholds alpha = 0.05 ... 0.95.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from tqdm import tqdm
from trackeval.metrics import CLEAR, HOTA, Identity

from spvis_model.eval.data import (
    GroundTruth,
    GtSource,
    PredSource,
    Track,
    load_ground_truth,
    load_predictions,
    paused_gc,
)

DEFAULT_SCORE_THRESHOLD = 0.5

_HOTA_MEAN_FIELDS = ("HOTA", "DetA", "AssA", "DetRe", "DetPr", "AssRe", "AssPr", "LocA")


@dataclass
class SequenceData:
    """trackeval's per-sequence input: ids are contiguous 0-based, per frame t
    `gt_ids[t]` (G_t,), `tracker_ids[t]` (P_t,), `similarity_scores[t]` (G_t, P_t)."""

    num_timesteps: int
    gt_ids: list[np.ndarray]
    tracker_ids: list[np.ndarray]
    similarity_scores: list[np.ndarray]
    num_gt_ids: int
    num_tracker_ids: int
    num_gt_dets: int
    num_tracker_dets: int

    def as_trackeval(self) -> dict[str, Any]:
        """The dict the trackeval metric classes read."""
        return dict(self.__dict__)


def sequence_data(length: int, gt_tracks: list[Track], tracker_tracks: list[Track]
                  ) -> SequenceData:
    """trackeval's input for one video from its gt and tracker tracks (normally those of one
    category): ids in list order over the tracks detected at least once, a detection wherever
    the segmentation is given, similarity = mask IoU (0 across categories)."""
    gts = [g for g in gt_tracks if g.given.any()]
    trks = [p for p in tracker_tracks if p.given.any()]
    g_given = np.stack([g.given for g in gts]) if gts else np.zeros((0, length), dtype=bool)
    p_given = np.stack([p.given for p in trks]) if trks else np.zeros((0, length), dtype=bool)
    g_cat = np.array([g.category_id for g in gts], dtype=np.int64)
    p_cat = np.array([p.category_id for p in trks], dtype=np.int64)
    gt_ids, trk_ids, sims = [], [], []
    for t in range(length):
        gi = np.flatnonzero(g_given[:, t])
        pi = np.flatnonzero(p_given[:, t])
        sim = np.zeros((gi.size, pi.size))
        if gi.size and pi.size:
            iou = np.asarray(mask_utils.iou([gts[i].rles[t] for i in gi.tolist()],
                                            [trks[j].rles[t] for j in pi.tolist()],
                                            [0] * pi.size), dtype=np.float64)
            sim = iou.reshape(gi.size, pi.size) * (g_cat[gi][:, None] == p_cat[pi][None, :])
        gt_ids.append(gi.astype(np.int64))
        trk_ids.append(pi.astype(np.int64))
        sims.append(sim)
    return SequenceData(
        num_timesteps=length, gt_ids=gt_ids, tracker_ids=trk_ids, similarity_scores=sims,
        num_gt_ids=len(gts), num_tracker_ids=len(trks),
        num_gt_dets=int(g_given.sum()), num_tracker_dets=int(p_given.sum()))


def _flatten(hota: dict, clear: dict, ident: dict) -> dict[str, float]:
    out: dict[str, float] = {k: float(np.mean(hota[k])) for k in _HOTA_MEAN_FIELDS}
    out.update({
        "MOTSA": float(clear["MOTA"]), "MOTSP": float(clear["MOTP"]),
        "IDSW": int(clear["IDSW"]), "Frag": int(clear["Frag"]),
        "MT": int(clear["MT"]), "PT": int(clear["PT"]), "ML": int(clear["ML"]),
        "TP": int(clear["CLR_TP"]), "FN": int(clear["CLR_FN"]), "FP": int(clear["CLR_FP"]),
        "IDF1": float(ident["IDF1"]), "IDR": float(ident["IDR"]), "IDP": float(ident["IDP"]),
        "IDTP": int(ident["IDTP"]), "IDFN": int(ident["IDFN"]), "IDFP": int(ident["IDFP"]),
    })
    return out


_COUNT_KEYS = ("gt_tracks", "pred_tracks", "gt_dets", "pred_dets")


class TrackingEvaluator:
    """Runs trackeval's HOTA, CLEAR and Identity on every (video, category) once; `summary`
    combines any subset of videos (classes detection-averaged), `class_averaged` gives the
    class-averaged numbers, `per_class` each category's, `per_video` each video's."""

    def __init__(self, gt: GtSource | GroundTruth, predictions: PredSource | list[Track],
                 score_threshold: float = DEFAULT_SCORE_THRESHOLD, progress: bool = False
                 ) -> None:
        if not 0.0 <= score_threshold <= 1.0:
            raise ValueError(f"score_threshold must be in [0, 1], got {score_threshold}")
        self.gt = load_ground_truth(gt)
        self.predictions = load_predictions(predictions, self.gt)
        self.score_threshold = score_threshold
        quiet = {"THRESHOLD": 0.5, "PRINT_CONFIG": False}
        self._metrics = {"HOTA": HOTA(), "CLEAR": CLEAR(quiet), "Identity": Identity(quiet)}
        by_video: dict[int, list[Track]] = {vid: [] for vid in self.gt.videos}
        for p in self.predictions:
            if p.score >= score_threshold:
                by_video[p.video_id].append(p)
        self.tracker_tracks = by_video
        self.categories = list(self.gt.categories)
        empty = sequence_data(1, [], []).as_trackeval()
        self._empty = {name: m.eval_sequence(empty) for name, m in self._metrics.items()}
        # a class with nothing in any of the videos combines to this, however many videos
        self._empty_combined = {name: m.combine_sequences({0: self._empty[name]})
                                for name, m in self._metrics.items()}
        self._raw: dict[int, dict[int, dict[str, dict]]] = {}
        self.counts: dict[int, dict[int, dict[str, int]]] = {}
        with paused_gc():
            self._evaluate_sequences(by_video, progress)

    def _evaluate_sequences(self, by_video: dict[int, list[Track]], progress: bool) -> None:
        """trackeval's eval_sequence on every (video, category) with something in it."""
        for vid, video in tqdm(self.gt.videos.items(), desc="tracking metrics",
                               disable=not progress, leave=False):
            self._raw[vid], self.counts[vid] = {}, {}
            for cid in {t.category_id for t in self.gt.tracks_by_video[vid] + by_video[vid]}:
                data = sequence_data(
                    video.length, [g for g in self.gt.tracks_by_video[vid] if g.category_id == cid],
                    [p for p in by_video[vid] if p.category_id == cid])
                td = data.as_trackeval()
                self._raw[vid][cid] = {name: m.eval_sequence(td)
                                       for name, m in self._metrics.items()}
                self.counts[vid][cid] = dict(zip(_COUNT_KEYS, (
                    data.num_gt_ids, data.num_tracker_ids, data.num_gt_dets,
                    data.num_tracker_dets), strict=True))

    def _ids(self, video_ids: Iterable[int] | None) -> list[int]:
        ids = list(self.gt.videos) if video_ids is None else list(video_ids)
        unknown = [v for v in ids if v not in self._raw]
        if unknown:
            raise ValueError(f"video_ids {unknown} are not in the ground truth")
        if not ids:
            raise ValueError("video_ids is empty")
        return ids

    def _per_class_raw(self, ids: list[int]) -> dict[str, dict[int, dict]]:
        """metric -> category -> that category's sequences combined over `ids`."""
        present = {cid for v in ids for cid in self._raw[v]}
        return {name: {cid: m.combine_sequences({v: self._raw[v].get(cid, self._empty)[name]
                                                 for v in ids})
                       if cid in present else self._empty_combined[name]
                       for cid in self.categories}
                for name, m in self._metrics.items()}

    def _counts(self, ids: list[int], cid: int | None = None) -> dict[str, int]:
        return {key: sum(c[key] for v in ids for k, c in self.counts[v].items()
                         if cid is None or k == cid) for key in _COUNT_KEYS}

    def summary(self, video_ids: Iterable[int] | None = None) -> dict[str, float]:
        """Metrics over `video_ids` (default all): per class, then detection-averaged over
        classes, as trackeval's `cls_comb_det_av`."""
        ids = self._ids(video_ids)
        per_class = self._per_class_raw(ids)
        combined = {name: m.combine_classes_det_averaged(per_class[name])
                    for name, m in self._metrics.items()}
        return {**_flatten(combined["HOTA"], combined["CLEAR"], combined["Identity"]),
                **self._counts(ids)}

    def class_averaged(self, video_ids: Iterable[int] | None = None) -> dict[str, float]:
        """trackeval's `cls_comb_cls_av` over `video_ids`: HOTA, MOTSA, IDF1 ... are means over
        all the dataset's categories (those with nothing in the videos count as 0); counts
        (IDSW, TP, ...) are sums, as in `summary`."""
        ids = self._ids(video_ids)
        per_class = self._per_class_raw(ids)
        combined = {name: m.combine_classes_class_averaged(per_class[name])
                    for name, m in self._metrics.items()}
        return {**_flatten(combined["HOTA"], combined["CLEAR"], combined["Identity"]),
                **self._counts(ids)}

    def per_class(self, video_ids: Iterable[int] | None = None) -> dict[int, dict[str, float]]:
        """Each category's metrics over `video_ids` (default all)."""
        ids = self._ids(video_ids)
        per_class = self._per_class_raw(ids)
        return {cid: {**_flatten(per_class["HOTA"][cid], per_class["CLEAR"][cid],
                                 per_class["Identity"][cid]), **self._counts(ids, cid)}
                for cid in self.categories}

    def per_video(self) -> dict[int, dict[str, float]]:
        """Each video's metrics on its own."""
        return {vid: self.summary([vid]) for vid in self.gt.videos}


def evaluate_tracking(gt: GtSource | GroundTruth, predictions: PredSource | list[Track],
                      score_threshold: float = DEFAULT_SCORE_THRESHOLD,
                      video_ids: Iterable[int] | None = None) -> dict[str, float]:
    """HOTA, DetA, AssA, MOTSA, IDF1, IDSW (and their parts) of the predictions scoring at least
    `score_threshold`, over `video_ids` (default all). See the module docstring for how the
    inputs are chosen. Raises ValueError naming the entry for malformed inputs."""
    return TrackingEvaluator(gt, predictions, score_threshold).summary(video_ids)
