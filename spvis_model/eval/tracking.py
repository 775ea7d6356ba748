"""Tracking metrics (HOTA, DetA, AssA, MOTSA, IDF1, ID switches) on YouTube-VIS style inputs.

The metric maths is trackeval's (`HOTA`, `CLEAR`, `Identity` classes, unchanged); this module
builds the per-frame inputs those classes take:

- **Tracker output** = the predictions whose score is >= `score_threshold` (default 0.5). A
  YouTube-VIS results list usually holds many low-score hypotheses per video, which AP tolerates
  but a tracker would not publish; the threshold plays the role of the node's publish threshold.
  Each kept prediction is one tracker id. Frames where its mask is None or empty are frames
  where the track is absent.
- **Ground truth** = the non-crowd annotations; each is one gt id, present in the frames where
  its mask is non-empty. Crowd annotations are left out (trackeval's CLEAR/Identity/HOTA have
  no ignore regions), so a prediction on a crowd region counts as a false positive.
- **Similarity** at frame t = mask IoU between every present gt and tracker mask, set to 0 for
  pairs of different categories (class-aware matching). Summing the counts of all classes this
  way equals trackeval's detection-averaged class combination (`cls_comb_det_av`).
- One video is one sequence; sequences are combined with each metric's `combine_sequences`
  (sums of counts; AssA weighted by TP), for the whole set and for any subset (buckets).

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


def _relabel(tracks: list[Track]) -> tuple[list[Track], np.ndarray]:
    """Keep tracks present in at least one frame; return them and their presence (N, T)."""
    kept = [t for t in tracks if t.present.any()]
    if not kept:
        return [], np.zeros((0, 0), dtype=bool)
    return kept, np.stack([t.present for t in kept])


def sequence_data(length: int, gt_tracks: list[Track], tracker_tracks: list[Track]
                  ) -> SequenceData:
    """Build trackeval's input for one video from its gt and tracker tracks (see module doc)."""
    gts, g_present = _relabel([g for g in gt_tracks if not g.iscrowd])
    trks, p_present = _relabel(tracker_tracks)
    g_cat = np.array([g.category_id for g in gts], dtype=np.int64)
    p_cat = np.array([p.category_id for p in trks], dtype=np.int64)
    gt_ids, trk_ids, sims = [], [], []
    for t in range(length):
        gi = np.flatnonzero(g_present[:, t]) if gts else np.zeros(0, dtype=np.int64)
        pi = np.flatnonzero(p_present[:, t]) if trks else np.zeros(0, dtype=np.int64)
        sim = np.zeros((gi.size, pi.size))
        if gi.size and pi.size:
            iou = np.asarray(mask_utils.iou([trks[j].rles[t] for j in pi],
                                            [gts[i].rles[t] for i in gi],
                                            [0] * gi.size), dtype=np.float64)
            sim = iou.T * (g_cat[gi][:, None] == p_cat[pi][None, :])
        gt_ids.append(gi.astype(np.int64))
        trk_ids.append(pi.astype(np.int64))
        sims.append(sim)
    return SequenceData(
        num_timesteps=length, gt_ids=gt_ids, tracker_ids=trk_ids, similarity_scores=sims,
        num_gt_ids=len(gts), num_tracker_ids=len(trks),
        num_gt_dets=int(g_present.sum()), num_tracker_dets=int(p_present.sum()))


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


class TrackingEvaluator:
    """Runs trackeval's HOTA, CLEAR and Identity on every video once; `summary` combines any
    subset of videos, `per_video` reports each video alone."""

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
        self.counts: dict[int, dict[str, int]] = {}
        self._raw: dict[int, dict[str, dict]] = {}
        for vid, video in tqdm(self.gt.videos.items(), desc="tracking metrics",
                               disable=not progress, leave=False):
            data = sequence_data(video.length, self.gt.tracks_by_video[vid], by_video[vid])
            td = data.as_trackeval()
            self._raw[vid] = {name: m.eval_sequence(td) for name, m in self._metrics.items()}
            self.counts[vid] = {"gt_tracks": data.num_gt_ids, "pred_tracks": data.num_tracker_ids,
                                "gt_dets": data.num_gt_dets, "pred_dets": data.num_tracker_dets}

    def summary(self, video_ids: Iterable[int] | None = None) -> dict[str, float]:
        """Metrics over `video_ids` (default all), sequences combined as trackeval does."""
        ids = list(self.gt.videos) if video_ids is None else list(video_ids)
        unknown = [v for v in ids if v not in self._raw]
        if unknown:
            raise ValueError(f"video_ids {unknown} are not in the ground truth")
        if not ids:
            raise ValueError("video_ids is empty")
        combined = {name: m.combine_sequences({v: self._raw[v][name] for v in ids})
                    for name, m in self._metrics.items()}
        out = _flatten(combined["HOTA"], combined["CLEAR"], combined["Identity"])
        for key in ("gt_tracks", "pred_tracks", "gt_dets", "pred_dets"):
            out[key] = sum(self.counts[v][key] for v in ids)
        return out

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
