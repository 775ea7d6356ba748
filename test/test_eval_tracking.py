"""Tracking metrics (trackeval on our similarity inputs), breakdowns, and results_from_tracks."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math

import numpy as np
import pytest
from eval_cases import H, W, box, dataset, gt_ann, pred, rle, two_object_scene, video

from spvis_model.eval import (
    FrameOutput,
    evaluate,
    evaluate_tracking,
    load_ground_truth,
    results_from_tracks,
)
from spvis_model.eval.breakdown import fps_bucket, occlusion_bucket, video_occlusion
from spvis_model.eval.tracking import TrackingEvaluator

approx = pytest.approx


def _scene(length: int = 6) -> tuple[dict, list, list]:
    a, b = two_object_scene(length)
    return dataset([video(1, length)], [gt_ann(1, 1, 1, a), gt_ann(2, 1, 1, b)]), a, b


def test_perfect_tracking():
    gt, a, b = _scene()
    out = evaluate_tracking(gt, [pred(1, 1, 0.9, a), pred(1, 1, 0.8, b)])
    for key in ("HOTA", "DetA", "AssA", "MOTSA", "IDF1"):
        assert out[key] == approx(1.0), key
    assert out["IDSW"] == 0
    assert (out["gt_dets"], out["pred_dets"], out["TP"]) == (12, 12, 12)


def test_swapped_ids_half_way():
    gt, a, b = _scene(6)
    # Tracker id 1 follows A for frames 0-2 then B for 3-5; id 2 the other way round.
    swapped = [pred(1, 1, 0.9, a[:3] + b[3:]), pred(1, 1, 0.8, b[:3] + a[3:])]
    out = evaluate_tracking(gt, swapped)
    # Detection is perfect (every mask is exact) ...
    assert out["DetA"] == approx(1.0)
    # ... but each object changes tracker id once: 2 ID switches.
    assert out["IDSW"] == 2
    # MOTSA = (TP - FP - IDSW) / gt dets = (12 - 0 - 2) / 12.
    assert out["MOTSA"] == approx(10 / 12)
    # AssA: every matched pair (gt g, tracker k) shares 3 frames; g has 3 more frames with the
    # other id and k 3 more frames on the other object: A = 3 / (3 + 3 + 3) = 1/3 at every alpha.
    assert out["AssA"] == approx(1 / 3)
    assert out["HOTA"] == approx(math.sqrt(1 / 3))
    # IDF1: the best one-to-one id mapping keeps 3 of 6 frames per object: IDTP = 6 of 12 gt and
    # 12 predicted detections -> 2*6 / (12 + 12) = 0.5.
    assert out["IDF1"] == approx(0.5)
    perfect = evaluate_tracking(gt, [pred(1, 1, 0.9, a), pred(1, 1, 0.8, b)])
    assert out["AssA"] < perfect["AssA"]
    assert out["IDF1"] < perfect["IDF1"]


def _mask_iou(d: np.ndarray, g: np.ndarray) -> float:
    union = int((d | g).sum())
    return int((d & g).sum()) / union if union else 0.0


def _brute_force_idf1(gts: list[tuple[int, list]], trks: list[tuple[int, list]]) -> float:
    """IDF1 by trying every one-to-one mapping of gt ids to tracker ids (or to nothing).

    IDTP of a pair = frames where both are present, same category, mask IoU >= 0.5."""
    def pair_tp(g: tuple[int, list], k: tuple[int, list]) -> int:
        if g[0] != k[0]:
            return 0
        return sum(1 for gm, km in zip(g[1], k[1], strict=True)
                   if gm is not None and km is not None and _mask_iou(km, gm) >= 0.5)

    n_gt = sum(m is not None for _, ms in gts for m in ms)
    n_trk = sum(m is not None for _, ms in trks for m in ms)
    slots = list(range(len(trks))) + [None] * len(gts)
    best = 0
    for perm in itertools.permutations(slots, len(gts)):
        best = max(best, sum(pair_tp(gts[i], trks[k]) for i, k in enumerate(perm)
                             if k is not None))
    return 2 * best / (n_gt + n_trk)


def test_idf1_agrees_with_brute_force():
    rng = np.random.default_rng(11)
    length = 5

    def moving(y: int, x: int, size: int, cat: int, absent: set[int]) -> tuple[int, list]:
        return cat, [None if t in absent else box(y, y + size, x + 2 * t, x + 2 * t + size)
                     for t in range(length)]

    gts = [moving(2, 2, 8, 1, {3}), moving(20, 5, 10, 1, set()), moving(5, 30, 7, 2, {0, 1})]
    trks = [
        # follows gt 0, jittered, and jumps onto gt 1 for the last two frames
        (1, [gts[0][1][0], np.roll(gts[0][1][1], 1, 0), gts[0][1][2], gts[1][1][3],
             gts[1][1][4]]),
        # follows gt 1, misses frame 2, and takes over gt 0 in the last frame
        (1, [gts[1][1][0], gts[1][1][1], None, None, gts[0][1][4]]),
        # gt 2 (category 2): too small in frame 2 (IoU < 0.5), exact afterwards
        (2, [None, None, box(5, 8, 34, 41), gts[2][1][3], gts[2][1][4]]),
        # a false positive with random pixels
        (1, [rng.random((H, W)) < 0.02 for _ in range(length)]),
    ]
    gt = dataset([video(1, length)], [gt_ann(i + 1, 1, c, ms) for i, (c, ms) in enumerate(gts)])
    preds = [pred(1, c, 0.9, ms) for c, ms in trks]
    ours = evaluate_tracking(gt, preds)
    expected = _brute_force_idf1(gts, trks)
    # By hand: 12 gt and 16 predicted detections; the best mapping pairs gt0-trk0 (frames 0-2),
    # gt1-trk1 (frames 0-1), gt2-trk2 (frames 3-4): IDTP = 7, IDF1 = 14 / 28.
    assert expected == approx(0.5)
    assert ours["IDF1"] == approx(expected)


def test_classes_are_scored_one_at_a_time():
    """Class 1's tracker misses frame 1, where only class 2 has a detection. trackeval's
    YouTube-VIS reader scores each class alone: for class 1, frame 1 has no tracker detection,
    which CLEAR skips without ending the track, so there is no fragmentation. One pass over both
    classes (similarity zeroed across classes) would process frame 1, end the track and count
    a fragmentation when it is matched again in frame 2."""
    a, b = two_object_scene(3)
    gt = dataset([video(1, 3)], [gt_ann(1, 1, 1, a), gt_ann(2, 1, 2, b)])
    out = evaluate_tracking(gt, [pred(1, 1, 0.9, [a[0], None, a[2]]), pred(1, 2, 0.9, b)])
    assert (out["Frag"], out["IDSW"], out["TP"], out["FN"]) == (0, 0, 5, 1)
    ev = TrackingEvaluator(gt, [pred(1, 1, 0.9, [a[0], None, a[2]]), pred(1, 2, 0.9, b)])
    per_class = ev.per_class()
    assert per_class[1]["MOTSA"] == approx(2 / 3) and per_class[2]["MOTSA"] == approx(1.0)
    # class-averaged: the mean of the two classes' MOTSA; detection-averaged: 5 of 6 found
    assert ev.class_averaged()["MOTSA"] == approx((2 / 3 + 1.0) / 2)
    assert out["MOTSA"] == approx(5 / 6)


def test_crowd_tracks_and_empty_masks_count_as_trackeval_counts_them():
    """trackeval's reader treats a crowd annotation as an ordinary object for HOTA/CLEAR/
    Identity, and any given segmentation, even an empty mask, as a detection."""
    a, b = two_object_scene(4)
    empty = np.zeros((H, W), dtype=bool)
    gt = dataset([video(1, 4)], [gt_ann(1, 1, 1, a), gt_ann(2, 1, 1, b, iscrowd=1)])
    out = evaluate_tracking(gt, [pred(1, 1, 0.9, a), pred(1, 1, 0.8, [b[0], b[1], None, empty])])
    # the crowd track is ground truth: 8 gt detections; the empty mask is an unmatched detection
    assert (out["gt_dets"], out["TP"], out["FN"], out["FP"]) == (8, 6, 2, 1)
    assert out["pred_dets"] == 7


def test_score_threshold_and_categories_choose_the_tracker_output():
    gt, a, b = _scene(4)
    fp = [box(30, 38, 40, 48)] * 4
    base = [pred(1, 1, 0.9, a), pred(1, 1, 0.8, b)]
    assert evaluate_tracking(gt, [*base, pred(1, 1, 0.4, fp)])["FP"] == 0  # below 0.5: dropped
    assert evaluate_tracking(gt, [*base, pred(1, 1, 0.4, fp)], score_threshold=0.3)["FP"] == 4
    # The right masks with the wrong category never match.
    wrong_cat = evaluate_tracking(gt, [pred(1, 2, 0.9, a), pred(1, 2, 0.8, b)])
    assert (wrong_cat["TP"], wrong_cat["FP"], wrong_cat["FN"]) == (0, 8, 8)
    with pytest.raises(ValueError, match="score_threshold must be in"):
        evaluate_tracking(gt, base, score_threshold=1.5)


def test_per_video_and_subsets_combine_counts():
    a, b = two_object_scene(4)
    gt = dataset([video(1, 4), video(2, 4)], [gt_ann(1, 1, 1, a), gt_ann(2, 2, 1, b)])
    preds = [pred(1, 1, 0.9, a)]  # video 2's object is missed
    ev = TrackingEvaluator(gt, preds)
    per = ev.per_video()
    assert per[1]["MOTSA"] == approx(1.0)
    assert per[2]["MOTSA"] == 0.0
    assert per[2]["FN"] == 4
    assert ev.summary()["MOTSA"] == approx(0.5)  # (4 - 0 - 0) / 8


def test_frame_rate_and_occlusion_buckets():
    a, _ = two_object_scene(5)
    gapped = [a[0], a[1], None, None, a[4]]  # span 5 frames, absent in 2 -> 0.4
    gt = dataset(
        [video(1, 5, fps=30.0), video(2, 5, timestamps=[0.0, 0.125, 0.25, 0.375, 0.5]),
         video(3, 5), video(4, 5)],
        [gt_ann(1, 1, 1, a), gt_ann(2, 2, 1, gapped),
         gt_ann(3, 3, 1, a, occlusion=[0.0, 0.1, None, 0.2, 0.1])])
    truth = load_ground_truth(gt)
    assert truth.videos[2].fps == approx(8.0)  # 4 intervals in 0.5 s
    assert [fps_bucket(truth.videos[v]) for v in (1, 2, 3)] == \
        ["fps >= 20", "fps < 10", "fps unknown"]
    assert video_occlusion(truth, 1) == 0.0
    assert video_occlusion(truth, 2) == approx(0.4)
    assert video_occlusion(truth, 3) == approx(0.1)  # mean of the per-frame values given
    assert video_occlusion(truth, 4) is None
    assert [occlusion_bucket(video_occlusion(truth, v)) for v in (1, 2, 3, 4)] == \
        ["none", "high", "low", "no gt"]
    bad = json.loads(json.dumps(gt))
    bad["annotations"][2]["occlusion"][0] = 2.0
    with pytest.raises(ValueError, match=r"annotations\[2\] \(id=3, video_id=3\)\.occlusion\[0\]"):
        load_ground_truth(bad)
    bad = json.loads(json.dumps(gt))
    bad["videos"][1]["timestamps"] = [0.0, 0.2, 0.1, 0.3, 0.4]
    with pytest.raises(ValueError, match=r"videos\[1\] \(id=2\)\.timestamps must not decrease"):
        load_ground_truth(bad)


def _frame(ids: list[int], labels: list[int], scores: list[float], masks: list[np.ndarray]
           ) -> FrameOutput:
    stack = np.stack(masks) if masks else np.zeros((0, H, W), dtype=bool)
    return FrameOutput(np.array(ids, dtype=np.int64), np.array(labels, dtype=np.int64),
                       np.array(scores, dtype=np.float32), stack)


def test_results_from_tracks():
    a, b = two_object_scene(3)
    frames = [
        _frame([7, 3], [1, 0], [0.9, 0.5], [a[0], b[0]]),
        _frame([3], [0], [0.7], [b[1]]),
        _frame([3, 7], [0, 0], [0.6, 0.3], [b[2], a[2]]),
    ]
    category_ids = [10, 20]  # label 0 -> category 10, label 1 -> category 20
    out = results_from_tracks(4, frames, category_ids)
    assert [r["video_id"] for r in out] == [4, 4]
    track7, track3 = out  # order of first appearance
    # track 7: label 1 with score 0.9, label 0 with 0.3 -> score-weighted majority is label 1
    assert track7["category_id"] == 20
    assert track7["score"] == approx((0.9 + 0.3) / 2)
    assert track7["segmentations"][1] is None
    assert isinstance(track7["segmentations"][0]["counts"], str)
    assert track7["segmentations"][2] == rle(a[2])
    assert track3["category_id"] == 10
    assert track3["score"] == approx((0.5 + 0.7 + 0.6) / 3)
    # The output is a valid results list: against matching ground truth AP is 1.
    gt = {"videos": [video(4, 3)], "categories": [{"id": 10, "name": "x"}, {"id": 20, "name": "y"}],
          "annotations": [gt_ann(1, 4, 20, [a[0], None, a[2]]), gt_ann(2, 4, 10, b)]}
    assert evaluate(gt, out)["AP"] == approx(1.0)


def test_results_rank_tracks_by_track_scores_when_frames_carry_them():
    from spvis_model.instances import Instances

    a, b = two_object_scene(2)

    def inst(ids, labels, scores, track, masks):
        n = len(ids)
        return Instances(ids=np.array(ids, np.int64), labels=np.array(labels, np.int64),
                         label_names=["x"] * n, scores=np.array(scores, np.float32),
                         boxes=np.zeros((n, 4), np.float32), masks=np.stack(masks),
                         visibility=np.ones(n, np.float32), first_seen=np.zeros(n),
                         track_scores=None if track is None else np.array(track, np.float32))

    frames = [inst([1, 2], [0, 1], [0.9, 0.4], [0.2, 0.7], [a[0], b[0]]),
              inst([1, 2], [1, 1], [0.9, 0.6], [0.3, 0.8], [a[1], b[1]])]
    one, two = results_from_tracks(1, frames, [10, 20])
    # The result score is the mean track score; the category still follows per-frame scores
    # (track 1: label 0 and label 1 both at 0.9 -> the smaller label).
    assert one["score"] == approx(0.25) and two["score"] == approx(0.75)
    assert one["category_id"] == 10 and two["category_id"] == 20
    plain = results_from_tracks(1, [dataclasses.replace(f, track_scores=None) for f in frames],
                                [10, 20])
    assert [r["score"] for r in plain] == [approx(0.9), approx(0.5)]
    bad = dataclasses.replace(frames[0], track_scores=np.array([0.1, np.nan], np.float32))
    with pytest.raises(ValueError, match=r"frames\[0\]\.track_scores must be finite"):
        results_from_tracks(1, [bad], [10, 20])


def test_results_from_tracks_rejects_bad_frames():
    a, b = two_object_scene(2)
    with pytest.raises(ValueError, match=r"frames\[1\]\.labels must be in \[0, 2\)"):
        results_from_tracks(1, [_frame([1], [0], [0.5], [a[0]]), _frame([1], [2], [0.5], [a[1]])],
                            [10, 20])
    with pytest.raises(ValueError, match=r"frames\[0\]\.ids has duplicates"):
        results_from_tracks(1, [_frame([1, 1], [0, 0], [0.5, 0.5], [a[0], b[0]])], [10])
    with pytest.raises(ValueError, match=r"frames\[0\]\.scores must have shape \(1,\)"):
        results_from_tracks(1, [FrameOutput(np.array([1]), np.array([0]), np.array([0.5, 0.1]),
                                            a[0][None])], [10])
    small = np.zeros((1, 8, 8), dtype=bool)
    with pytest.raises(ValueError, match=r"frames\[1\]\.masks are \(8, 8\), earlier frames"):
        results_from_tracks(1, [_frame([1], [0], [0.5], [a[0]]),
                                FrameOutput(np.array([1]), np.array([0]), np.array([0.5]), small)],
                            [10])
