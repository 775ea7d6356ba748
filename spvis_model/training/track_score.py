"""Stage 2's track-score model: learn how likely a published track is to be right from what the
tracker knows online, its running detection score and how many frames it has matched.

The segmenter scores each detection on its own; a track seen once with a 0.98 detection is,
at 1-2 fps, more often a false detection than a track seen twenty times at 0.9 (docs/model.md).
`fit_track_score` fits P(track right) = sigmoid(b + w_s logit(score) + w_h log(hits)) by
logistic regression on every published frame of every track of training videos, each track
weighted once, labelled right when its video IoU with a ground-truth track of its category is
>= 0.5. The weights go into `TrackerConfig.score_model` (spvis_model.tracker.publish.track_score).

    tracks = collect_track_frames(model, cache, "data/eval/train_s2/annotations.json")
    weights = fit_track_score(tracks)            # [b, w_s, w_h]

A result file scores a track by the mean of its per-frame track scores. Fitted per frame on
training videos, that mean is not calibrated on other videos (too high for wrong tracks:
ECE 0.10-0.13 on the validation sets). `calibrate_track_score` refits the score model's
logit scale and offset on validation tracks so that the mean itself is the probability that
the track is right (bench/calibrate.py --target track):

    weights = calibrate_track_score(val_tracks, weights)   # [a b + c, a w_s, a w_h]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from spvis_model.eval.calibration import HIT_IOU

if TYPE_CHECKING:
    from spvis_model.feature_cache import FeatureCache
    from spvis_model.model import SPVIS


@dataclass
class TrackFrames:
    """One published track of a video.

    Attributes:
        video_id: the dataset's video id; track_id: the tracker's id.
        score: (T,) float64 the track's running detection score on each frame it was published.
        hits: (T,) int64 its matched frames so far on those frames.
        iou: video IoU with the best ground-truth track of its category (0 if none).
    """

    video_id: int
    track_id: int
    score: np.ndarray
    hits: np.ndarray
    iou: float

    @property
    def right(self) -> bool:
        return self.iou >= HIT_IOU


def collect_track_frames(model: SPVIS, cache: FeatureCache, data: str | Path,
                         overrides: dict | None = None) -> list[TrackFrames]:
    """Run the model's PGT tracker (its configuration, `overrides` applied, without a score
    model and without calibration: the raw running scores) over the cached segmenter outputs
    of the videos of `data`, and return every published track with its per-frame running
    score and hits and its video IoU (see the module docstring)."""
    from spvis_model.ablation import make_variant
    from spvis_model.eval.data import load_ground_truth, load_predictions
    from spvis_model.eval.results import results_from_tracks
    from spvis_model.eval.runner import category_mapping, known_classes
    from spvis_model.eval.ytvis import video_iou
    from spvis_model.tracker.methods import METHODS

    settings = {"score_model": [], "score_calibration": [1.0, 0.0], **(overrides or {})}
    variant = make_variant(model, "pgt", settings)
    gt = load_ground_truth(data)
    mapping = category_mapping(model.class_names, gt.categories, str(data))
    heads = model.segmenter.decoder
    cache.check_model(model)
    out: list[TrackFrames] = []
    with torch.no_grad():
        for vid in cache.video_ids:
            video = cache.video(vid)
            images = cache.frames(vid) if variant.tracker.cfg.mask_refine != "none" else None
            state = variant.tracker.init_state(model.device)
            frames, rows = [], {}
            for t in range(len(video)):
                feats = video.features(t, heads, model.device)
                state, step = METHODS[variant.association](
                    variant.tracker, state, feats, float(video.stamps[t]), heads,
                    variant.settings)
                inst = known_classes(model.postprocess(
                    step, video.geometry, variant.tracker.cfg,
                    frame=images[t] if images is not None else None), mapping)
                frames.append(inst)
                slot_of = dict(zip(step.ids.tolist(), step.slots.tolist(), strict=True))
                for tid in inst.ids.tolist():
                    slot = slot_of[tid]
                    rows.setdefault(tid, []).append((float(state.score[slot]),
                                                     int(state.hits[slot])))
            results = results_from_tracks(vid, frames, mapping)
            # results_from_tracks lists tracks in order of first appearance, as `rows` holds them.
            preds = load_predictions(results, gt) if results else []
            gts = gt.tracks_by_video[vid]
            iou = video_iou(preds, gts) if preds and gts else np.zeros((len(preds), 0))
            if len(preds) != len(rows):
                raise RuntimeError(f"video {vid}: {len(preds)} results for {len(rows)} tracks")
            for k, (tid, track_rows) in enumerate(rows.items()):
                same = [j for j, g in enumerate(gts) if g.category_id == preds[k].category_id]
                arr = np.asarray(track_rows, dtype=np.float64)
                out.append(TrackFrames(int(vid), int(tid), arr[:, 0], arr[:, 1].astype(np.int64),
                                       float(max((iou[k, j] for j in same), default=0.0))))
    return out


def features(score: np.ndarray | torch.Tensor, hits: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(T, 2) float64 [logit(score), log(hits)], clamped as `track_score` (which applies the
    fitted weights to them in the tracker) clamps them."""
    s = torch.as_tensor(score, dtype=torch.float64).clamp(1e-4, 1 - 1e-4)
    h = torch.as_tensor(hits, dtype=torch.float64).clamp_min(1)
    return torch.stack([torch.logit(s), h.log()], dim=-1)


def fit_track_score(tracks: Sequence[TrackFrames], l2: float = 1e-2) -> list[float]:
    """Logistic regression of `TrackFrames.right` on `features`, every frame of a track
    weighted 1 / its frames (each track counts once), an L2 penalty `l2` on the standardised
    weights. Returns [b, w_s, w_h] on the unstandardised features."""
    tracks = [t for t in tracks if len(t.score)]
    if not tracks or len({t.right for t in tracks}) < 2:
        raise ValueError(f"fit_track_score needs right and wrong tracks, got {len(tracks)} "
                         f"tracks, {sum(t.right for t in tracks)} right")
    x = torch.cat([features(t.score, t.hits) for t in tracks])
    y = torch.cat([torch.full((len(t.score),), float(t.right), dtype=torch.float64)
                   for t in tracks])
    w = torch.cat([torch.full((len(t.score),), 1.0 / len(t.score), dtype=torch.float64)
                   for t in tracks])
    w = w / w.sum()
    mu, sd = x.mean(0), x.std(0).clamp_min(1e-6)
    z = (x - mu) / sd
    p = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([p], max_iter=500, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        logits = p[0] + z @ p[1:]
        loss = (w * torch.nn.functional.binary_cross_entropy_with_logits(
            logits, y, reduction="none")).sum() + l2 * (p[1:] ** 2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    p = p.detach()
    weights = p[1:] / sd
    bias = p[0] - (weights * mu).sum()
    return [float(bias), float(weights[0]), float(weights[1])]


def _track_logits(tracks: Sequence[TrackFrames], weights: Sequence[float]) -> list[torch.Tensor]:
    b, w_s, w_h = (float(x) for x in weights)
    return [b + features(t.score, t.hits) @ torch.tensor([w_s, w_h], dtype=torch.float64)
            for t in tracks]


def mean_track_scores(tracks: Sequence[TrackFrames], weights: Sequence[float]) -> np.ndarray:
    """(P,) float64 each track's result-file score under score model `weights`: the mean of
    its per-frame track scores (what `results_from_tracks` computes from the tracker's)."""
    return np.array([float(torch.sigmoid(z).mean()) for z in _track_logits(tracks, weights)])


def calibrate_track_score(tracks: Sequence[TrackFrames], weights: Sequence[float],
                          l2: float = 1e-3) -> list[float]:
    """Refit the scale a and offset c of a score model's logit on `tracks` (validation videos)
    so that each track's mean per-frame score, mean_t sigmoid(a z_t + c) with z_t =
    b + w_s logit(score_t) + w_h log(hits_t), is the probability that it is right: minimises
    the tracks' binary cross-entropy (each track once) + l2 * P * ((a - 1)^2 + c^2), the
    penalty keeping a small or one-sided set near the identity. Returns the score model
    [a b + c, a w_s, a w_h] (the same form: the tracker needs no new parameter).

    Raises:
        ValueError: fewer than 2 tracks with frames, or all right / all wrong.
    """
    tracks = [t for t in tracks if len(t.score)]
    if len(tracks) < 2 or len({t.right for t in tracks}) < 2:
        raise ValueError(f"calibrate_track_score needs right and wrong tracks, got "
                         f"{len(tracks)} tracks, {sum(t.right for t in tracks)} right")
    logits = _track_logits(tracks, weights)
    y = torch.tensor([float(t.right) for t in tracks], dtype=torch.float64)
    p = torch.tensor([1.0, 0.0], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([p], max_iter=500, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        mean = torch.stack([torch.sigmoid(p[0] * z + p[1]).mean() for z in logits])
        mean = mean.clamp(1e-9, 1 - 1e-9)
        loss = torch.nn.functional.binary_cross_entropy(mean, y, reduction="sum") \
            + l2 * len(tracks) * ((p[0] - 1) ** 2 + p[1] ** 2)
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    a, c = (float(v) for v in p.detach())
    b, w_s, w_h = (float(x) for x in weights)
    return [a * b + c, a * w_s, a * w_h]
