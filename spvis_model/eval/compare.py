"""How much of an AP is the videos' luck? Jackknife standard errors over videos: of one
results list's AP, and of the difference between two lists on the same videos (paired).

YouTube-VIS AP is a statistic of the whole set (precision-recall over every video's tracks),
not a mean of per-video numbers, so its sampling noise cannot be read off per-video scores.
The jackknife gives it: drop one video at a time, recompute both APs on the rest, and the
spread of the leave-one-out differences estimates the standard error of the difference,

    SE = sqrt((n − 1) / n · Σ_i (Δ_(i) − mean(Δ_(·)))²),

paired because both lists are scored on the same subsets, so what the videos share (an easy
set, a hard set) cancels. On 10–20 synthetic videos the SE of an AP difference between two
checkpoints is typically 0.01–0.03 (docs/model.md); a lead under about two SEs is noise.
Above `MAX_GROUPS` videos, groups of videos are left out instead of single ones (the grouped
jackknife, the same formula over the groups), so a 300-video set costs 20 summaries, not 300.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from spvis_model.eval.data import GroundTruth, GtSource, PredSource, Track, load_ground_truth
from spvis_model.eval.ytvis import SUMMARY_KEYS, YTVISEvaluator


def jackknife_se(values: Sequence[float]) -> float:
    """Standard error from the n leave-one-out (or leave-one-group-out) values θ_(i):
    sqrt((n − 1) / n · Σ (θ_(i) − mean)²); 0 for fewer than two values."""
    n = len(values)
    if n < 2:
        return 0.0
    mean = sum(values) / n
    return math.sqrt((n - 1) / n * sum((v - mean) ** 2 for v in values))


MAX_GROUPS = 20
"""Above this many videos the jackknife leaves out groups of videos (the grouped, delete-d
jackknife), so its cost stays at 20 summaries on a YouTube-VIS-sized set."""


def video_groups(videos: Sequence[int], max_groups: int = MAX_GROUPS) -> list[list[int]]:
    """The sorted videos dealt round-robin into min(n, max_groups) groups (one video per
    group up to max_groups videos: the plain jackknife)."""
    videos = sorted(videos)
    g = min(len(videos), max_groups)
    return [videos[k::g] for k in range(g)]


def leave_one_out(ev: YTVISEvaluator, videos: Sequence[int],
                  max_groups: int = MAX_GROUPS) -> list[dict[str, float]]:
    """`ev.summary` of `videos` without each group of `video_groups` in turn (needs two
    videos or more)."""
    groups = video_groups(videos, max_groups)
    out = []
    for k in range(len(groups)):
        rest = sorted(v for j, grp in enumerate(groups) if j != k for v in grp)
        out.append(ev.summary(rest))
    return out


def ap_standard_errors(ev: YTVISEvaluator, max_groups: int = MAX_GROUPS
                       ) -> dict[str, float | None]:
    """{summary key: jackknife SE over the evaluator's videos} for AP, AP50, ... AR10: how far
    the number would move on other videos of the same kind. None where it is undefined (one
    video, or a key that is -1, "no ground truth in that setting", on some subset). Costs
    min(videos, max_groups) summaries."""
    videos = sorted(ev.gt.videos)
    if len(videos) < 2:
        return {k: None for k in SUMMARY_KEYS}
    loo = leave_one_out(ev, videos, max_groups)
    out: dict[str, float | None] = {}
    for k in SUMMARY_KEYS:
        values = [row[k] for row in loo]
        out[k] = None if min(values) < 0 else jackknife_se(values)
    return out


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
    d = full_a[metric] - full_b[metric]
    if n < 2:
        return PairedDifference(metric, full_a[metric], full_b[metric], d, 0.0, n)
    loo = [ra[metric] - rb[metric]
           for ra, rb in zip(leave_one_out(ev_a, videos), leave_one_out(ev_b, videos),
                             strict=True)]
    return PairedDifference(metric, full_a[metric], full_b[metric], d, jackknife_se(loo), n)
