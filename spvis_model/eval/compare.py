"""Is one results list's AP really higher than another's on the same videos? A paired
jackknife over videos.

YouTube-VIS AP is a statistic of the whole set (precision-recall over every video's tracks),
not a mean of per-video numbers, so its sampling noise cannot be read off per-video scores.
The jackknife gives it: drop one video at a time, recompute both APs on the rest, and the
spread of the leave-one-out differences estimates the standard error of the difference,

    SE = sqrt((n − 1) / n · Σ_i (Δ_(i) − mean(Δ_(·)))²),

paired because both lists are scored on the same subsets, so what the videos share (an easy
set, a hard set) cancels. On 10–20 synthetic videos the SE of an AP difference between two
checkpoints is typically 0.01–0.03 (docs/model.md); a lead under about two SEs is noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from spvis_model.eval.data import GroundTruth, GtSource, PredSource, Track, load_ground_truth
from spvis_model.eval.ytvis import YTVISEvaluator


@dataclass(frozen=True)
class PairedDifference:
    """metric(a) − metric(b) over the same videos.

    Attributes:
        metric: the summary key compared ("AP", "AP50", ...).
        a, b: the metric of each results list over all the videos.
        delta: a − b.
        se: jackknife standard error of delta (0 for a single video).
        videos: how many videos the ground truth has.
    """

    metric: str
    a: float
    b: float
    delta: float
    se: float
    videos: int

    @property
    def z(self) -> float:
        """delta / se (inf for a nonzero delta with se 0, 0 for no difference)."""
        if self.se > 0:
            return self.delta / self.se
        return 0.0 if self.delta == 0 else math.copysign(math.inf, self.delta)

    def describe(self) -> str:
        return (f"{self.metric} {self.a:.3f} vs {self.b:.3f}: {self.delta:+.3f} ± {self.se:.3f} "
                f"(jackknife SE, {self.videos} videos)")


def paired_jackknife(gt: GtSource | GroundTruth, a: PredSource | list[Track],
                     b: PredSource | list[Track], metric: str = "AP") -> PairedDifference:
    """The difference metric(a) − metric(b) and its jackknife standard error (module
    docstring), over every video of the ground truth.

    Raises:
        ValueError: for an unknown metric, ground truth without a (non-crowd) track, or
            malformed inputs (from the evaluator, naming the entry).
    """
    gt = load_ground_truth(gt)
    ev_a, ev_b = YTVISEvaluator(gt, a), YTVISEvaluator(gt, b)
    if not any(not t.iscrowd for t in gt.tracks):
        raise ValueError("ground truth: no video has a (non-crowd) track; AP is undefined")
    videos = sorted(gt.videos)
    full_a, full_b = ev_a.summary(videos), ev_b.summary(videos)
    if metric not in full_a:
        raise ValueError(f"metric = {metric!r}: must be one of {sorted(full_a)}")
    n = len(videos)
    if n < 2:
        d = full_a[metric] - full_b[metric]
        return PairedDifference(metric, full_a[metric], full_b[metric], d, 0.0, n)
    loo = []
    for i in range(n):
        rest = videos[:i] + videos[i + 1:]
        loo.append(ev_a.summary(rest)[metric] - ev_b.summary(rest)[metric])
    mean = sum(loo) / n
    se = math.sqrt((n - 1) / n * sum((d - mean) ** 2 for d in loo))
    return PairedDifference(metric, full_a[metric], full_b[metric],
                            full_a[metric] - full_b[metric], se, n)
