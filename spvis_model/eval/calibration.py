"""Does a score mean what it says? Track-level reliability of predictions, and a Platt fit.

A prediction (one track of a video) is a *hit* when it matches a ground-truth track of its
category at video IoU >= 0.5, matching greedily by score within each (video, category) as
YouTube-VIS AP does at that threshold (a ground-truth track is matched at most once; crowd
tracks are left out). A calibrated score is the probability of a hit, so `score_threshold` 0.5
publishes the tracks that are more likely right than wrong.

    scores, hits = track_outcomes(gt, predictions)
    rel = reliability(scores, hits)                  # bins, hit rate per bin, ECE
    a, b = fit_platt(scores, hits)                   # p = sigmoid(a * logit(s) + b)
    calibrate(scores, (a, b))

The model applies the fitted (a, b) to its published scores (`tracker.score_calibration`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from spvis_model.eval.data import GroundTruth, GtSource, PredSource, Track, load_ground_truth
from spvis_model.eval.data import load_predictions as _load_predictions

HIT_IOU = 0.5
_EPS = 1e-6


def track_outcomes(gt: GtSource | GroundTruth, predictions: PredSource | list[Track],
                   iou: float = HIT_IOU) -> tuple[np.ndarray, np.ndarray]:
    """(scores (P,) float64, hits (P,) bool) of every prediction (see the module docstring)."""
    from spvis_model.eval.ytvis import video_iou

    gt = load_ground_truth(gt)
    preds = _load_predictions(predictions, gt) if predictions else []
    units: dict[tuple[int, int], list[Track]] = defaultdict(list)
    for p in preds:
        units[(p.video_id, p.category_id)].append(p)
    scores, hits = [], []
    for (vid, cid), unit in units.items():
        gts = [g for g in gt.tracks_by_video[vid] if g.category_id == cid and not g.iscrowd]
        dts = sorted(unit, key=lambda d: -d.score)
        ious = video_iou(dts, gts) if gts else np.zeros((len(dts), 0))
        taken = np.zeros(len(gts), dtype=bool)
        for k, d in enumerate(dts):
            row = np.where(taken, -1.0, ious[k]) if gts else np.zeros(0)
            j = int(np.argmax(row)) if row.size else -1
            hit = j >= 0 and row[j] >= iou
            if hit:
                taken[j] = True
            scores.append(d.score)
            hits.append(hit)
    return np.asarray(scores, dtype=np.float64), np.asarray(hits, dtype=bool)


@dataclass
class Reliability:
    """Hit rate against score in equal-width bins.

    Attributes:
        edges: (B+1,) bin edges over [0, 1].
        count: (B,) predictions per bin; mean_score: (B,) their mean score (NaN if empty);
            hit_rate: (B,) their fraction of hits (NaN if empty).
        ece: expected calibration error, sum_b count_b/N * |hit_rate_b - mean_score_b|.
        n: number of predictions.
    """

    edges: np.ndarray
    count: np.ndarray
    mean_score: np.ndarray
    hit_rate: np.ndarray
    ece: float
    n: int

    def as_json(self) -> dict[str, Any]:
        def clean(a: np.ndarray) -> list[float | None]:
            return [None if not np.isfinite(v) else float(v) for v in a]

        return {"edges": [float(e) for e in self.edges], "count": [int(c) for c in self.count],
                "mean_score": clean(self.mean_score), "hit_rate": clean(self.hit_rate),
                "ece": self.ece, "n": self.n}


def reliability(scores: Sequence[float] | np.ndarray, hits: Sequence[bool] | np.ndarray,
                bins: int = 10) -> Reliability:
    """Bin predictions by score (the last bin includes 1.0); see `Reliability`."""
    s = np.asarray(scores, dtype=np.float64)
    h = np.asarray(hits, dtype=bool)
    if s.shape != h.shape:
        raise ValueError(f"reliability: scores {s.shape} and hits {h.shape} differ in shape")
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(s, edges[1:-1], right=False), 0, bins - 1)
    count = np.bincount(idx, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_score = np.bincount(idx, weights=s, minlength=bins) / count
        hit_rate = np.bincount(idx, weights=h.astype(float), minlength=bins) / count
    n = int(s.size)
    gap = np.where(count > 0, np.abs(hit_rate - mean_score), 0.0)
    ece = float((count * gap).sum() / n) if n else 0.0
    return Reliability(edges, count, mean_score, hit_rate, ece, n)


def _logit(s: np.ndarray) -> np.ndarray:
    s = np.clip(s, _EPS, 1 - _EPS)
    return np.log(s / (1 - s))


def calibrate(scores: np.ndarray | Sequence[float],
              params: Sequence[float]) -> np.ndarray:
    """sigmoid(a * logit(s) + b) for params (a, b); (1, 0) is the identity."""
    a, b = float(params[0]), float(params[1])
    z = a * _logit(np.asarray(scores, dtype=np.float64)) + b
    return 1.0 / (1.0 + np.exp(-z))


def fit_platt(scores: np.ndarray | Sequence[float], hits: np.ndarray | Sequence[bool],
              l2: float = 1e-3, iterations: int = 100) -> tuple[float, float]:
    """Logistic regression of hits on logit(score) (Newton steps with a backtracking line
    search, a small L2 on a - 1 and b so that a degenerate set stays near the identity).
    Returns (a, b).

    Plain Newton steps diverge when the scores sit in a narrow band of logits (measured: a =
    1203, b = 391 on a validation set of 64 tracks); each step is therefore halved until the
    penalised negative log-likelihood decreases.

    Raises:
        ValueError: fewer than 2 predictions, or all hits / all misses.
    """
    x = _logit(np.asarray(scores, dtype=np.float64))
    y = np.asarray(hits, dtype=np.float64)
    if x.size < 2 or y.min() == y.max():
        raise ValueError(f"fit_platt: needs hits and misses, got {int(y.sum())} hits in "
                         f"{x.size} predictions")
    prior = np.array([1.0, 0.0])
    design = np.stack([x, np.ones_like(x)], 1)
    penalty = l2 * x.size

    def objective(t: np.ndarray) -> float:
        z = design @ t
        return float(np.sum(np.logaddexp(0.0, z) - y * z)
                     + 0.5 * penalty * np.sum((t - prior) ** 2))

    theta = prior.copy()
    value = objective(theta)
    for _ in range(iterations):
        p = 0.5 * (1.0 + np.tanh(0.5 * (design @ theta)))  # sigmoid without overflow
        grad = design.T @ (p - y) + penalty * (theta - prior)
        hess = (design * (p * (1 - p))[:, None]).T @ design + penalty * np.eye(2)
        step = np.linalg.solve(hess, grad)
        scale = 1.0
        while scale > 1e-10:
            candidate = theta - scale * step
            new_value = objective(candidate)
            if new_value <= value:
                break
            scale *= 0.5
        else:
            break  # no decrease along the Newton direction: at the optimum (to precision)
        theta, improved = candidate, value - new_value
        value = new_value
        if np.abs(scale * step).max() < 1e-10 or improved < 1e-12:
            break
    return float(theta[0]), float(theta[1])
