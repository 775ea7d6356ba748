"""Error breakdown (spvis_model.eval.errors): hand-worked cases, and its place in the report."""

from __future__ import annotations

import json

import pytest
from eval_cases import box, dataset, gt_ann, pred, two_object_scene, video

from spvis_model.cli import main
from spvis_model.eval import load_ground_truth, load_predictions
from spvis_model.eval.errors import error_breakdown, match_frames
from spvis_model.eval.report import run_evaluation

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _scene() -> tuple[dict, list[dict]]:
    """Video 1 (6 frames, 2 fps): A and B (class 1) move right, C (class 2) sits still.
    Video 2 (3 frames, no fps): a crowd region D (class 1) and E (class 2).

    Predictions (index: what it is):
      0: A in frames 2-3 (class 1)            -> A is first found 2 frames late
      1: A in frames 4-5 (class 1)            -> A is covered by 2 ids: fragmented
      2: B in frames 1-5 but class 2          -> class flip on B; 2 matches nothing of class 2
      3: an empty corner in frame 0 (class 1) -> one-frame, false positive
      4: exactly C, class 1, score 0.3        -> below the 0.5 threshold: not tracker output
      5: 54 px inside B (144 px) in frame 3   -> IoU 0.375 < 0.5: one-frame, false positive
      6: exactly D (crowd), class 1           -> matches a crowd region: not a false positive
      7: E in frames 1-2 (class 2)            -> E found 1 frame late (no fps: no seconds)
    """
    a, b = two_object_scene(6)
    b[0] = None  # B appears in frame 1
    c = [box(30, 38, 2, 10)] * 4 + [None, None]
    d = [box(5, 15, 5, 15)] * 3
    e = [box(22, 34, 20, 32)] * 3
    gt = dataset([video(1, 6, fps=2.0), video(2, 3)],
                 [gt_ann(1, 1, 1, a), gt_ann(2, 1, 1, b), gt_ann(3, 1, 2, c),
                  gt_ann(4, 2, 1, d, iscrowd=1), gt_ann(5, 2, 2, e)])
    none6 = [None] * 6
    preds = [
        pred(1, 1, 0.9, [None, None, a[2], a[3], None, None]),
        pred(1, 1, 0.8, [None, None, None, None, a[4], a[5]]),
        pred(1, 2, 0.7, b),
        pred(1, 1, 0.6, [box(0, 4, 40, 50), *none6[1:]]),
        pred(1, 1, 0.3, c),
        pred(1, 1, 0.55, [*none6[:3], box(22, 28, 23, 32), *none6[4:]]),
        pred(2, 1, 0.9, d),
        pred(2, 2, 0.8, [None, e[1], e[2]]),
    ]
    return gt, preds


def _breakdown(score_threshold: float = 0.5):
    gt, preds = _scene()
    truth = load_ground_truth(gt)
    return error_breakdown(truth, load_predictions(preds, truth), score_threshold)


def test_per_ground_truth_track():
    rows = {g.ann_id: g for g in _breakdown().gt_tracks}
    a, b, c, d, e = (rows[k] for k in (1, 2, 3, 4, 5))
    assert (a.covering, a.fragmented, a.class_flip, a.missed) == ((0, 1), True, False, False)
    assert (a.first_frame, a.first_detected_frame, a.frames_to_first_detection) == (0, 2, 2)
    assert a.seconds_to_first_detection == pytest.approx(1.0)  # 2 frames at 2 fps
    assert (b.covering, b.covering_categories, b.class_flip, b.fragmented) == \
        ((2,), (2,), True, False)
    assert (b.first_frame, b.frames_to_first_detection, b.seconds_to_first_detection) == \
        (1, 0, 0.0)
    assert (c.covering, c.missed, c.frames_to_first_detection) == ((), True, None)
    assert d.iscrowd and d.covering == (6,)
    assert (e.frames_to_first_detection, e.seconds_to_first_detection) == (1, None)
    assert (a.covered_frames, b.covered_frames, c.covered_frames, e.covered_frames) == (4, 5, 0, 2)


def test_per_tracker_track():
    rows = {p.index: p for p in _breakdown().tracker_tracks}
    assert sorted(rows) == [0, 1, 2, 3, 5, 6, 7]  # 4 scores below 0.5
    assert [i for i, p in rows.items() if p.one_frame] == [3, 5]
    assert [i for i, p in rows.items() if p.false_positive] == [2, 3, 5]
    assert rows[2].matched == (1,)  # B (annotation index 1), of another category
    assert rows[6].matched == (3,) and not rows[6].false_positive  # the crowd region


def test_summary_totals_by_hand():
    errors = _breakdown()
    one = errors.summary([1])
    assert one == {
        "gt_tracks": 3, "detected_gt_tracks": 2, "missed_gt_tracks": 1,
        "fragmented_gt_tracks": 1, "class_flips": 1, "covering_ids_mean": 1.5,
        "tracker_tracks": 5, "one_frame_tracks": 2, "false_positive_tracks": 3,
        "frames_to_first_detection_mean": 1.0, "frames_to_first_detection_median": 1.0,
        "frames_to_first_detection_max": 2.0, "seconds_to_first_detection_mean": 0.5,
        "seconds_to_first_detection_median": 0.5,
        # A: 6 frames, covered in 2-5 (4); B: frames 1-5, all covered by prediction 2 (5);
        # C: 4 frames, none (prediction 4 is below the threshold)
        "object_frames": 15, "covered_object_frames": 9, "coverage": pytest.approx(0.6),
        # every track follows at most one object (2 follows only B)
        "multi_object_tracks": 0, "other_object_frames": 0, "object_matches_of_multi": 0}
    every = errors.summary()
    # + E (delay 1, no seconds); the crowd region D is not counted; + predictions 6 and 7
    assert (every["gt_tracks"], every["detected_gt_tracks"], every["tracker_tracks"]) == (4, 3, 7)
    assert every["frames_to_first_detection_mean"] == pytest.approx(1.0)  # (2 + 0 + 1) / 3
    assert every["seconds_to_first_detection_mean"] == pytest.approx(0.5)  # video 1 only
    assert every["false_positive_tracks"] == 3


def test_score_threshold_chooses_the_tracker_output():
    # At 0.25, prediction 4 (exactly C, but class 1) joins: C is covered, with a class flip.
    rows = {g.ann_id: g for g in _breakdown(0.25).gt_tracks}
    assert rows[3].covering == (4,) and rows[3].class_flip and not rows[3].missed
    with pytest.raises(ValueError, match="score_threshold must be in"):
        _breakdown(1.5)


def test_match_needs_iou_at_least_one_half():
    a, _ = two_object_scene(1)
    half = box(5, 10, 5, 15)  # 50 of A's 100 pixels: IoU exactly 0.5
    less = box(5, 10, 5, 14)  # 45 px: IoU 0.45
    truth = load_ground_truth(dataset([video(1, 1)], [gt_ann(1, 1, 1, a)]))
    trks = load_predictions([pred(1, 1, 0.9, [half]), pred(1, 1, 0.9, [less])], truth)
    assert match_frames(truth.tracks, trks, 1)[0, :, 0].tolist() == [True, False]


def test_report_has_the_breakdown(tmp_path, capsys):
    gt, preds = _scene()
    results = run_evaluation(gt, preds)
    assert results["errors"]["summary"] == _breakdown().summary()
    rows = {r["video_id"]: r for r in results["per_video"]}
    assert rows[1]["errors"] == _breakdown().summary([1])
    assert results["buckets"]["fps"]["fps < 10"]["errors"] == _breakdown().summary([1])
    gt_path, pred_path = tmp_path / "gt.json", tmp_path / "pred.json"
    gt_path.write_text(json.dumps(gt))
    pred_path.write_text(json.dumps(preds))
    out = tmp_path / "out"
    assert main(["eval", "--gt", str(gt_path), "--pred", str(pred_path), "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["errors"]["summary"]["class_flips"] == 1
    assert len(metrics["errors"]["gt_tracks"]) == 5
    report = (out / "report.md").read_text()
    for needle in ("## Error breakdown (tracker output: score >= 0.5)",
                   "| fragmented | 1 |", "| class flips | 1 |", "| false-positive tracks | 3 |",
                   "| one-frame tracks | 2 |", "mean 1, median 1, max 2 (mean 0.50 s",
                   "| 1 | 2 (id 3) | class2 | 4 | none | - | missed |",
                   "| 1 | 1 (id 2) | class1 | 5 | predictions[2] | class2 | class flip |",
                   "| 1 | 0 (id 1) | class1 | 6 | predictions[0], predictions[1] | class1 | "
                   "2 ids, found 2 frames late |",
                   "![Error breakdown](errors.png)"):
        assert needle in report, needle
    # worst first: the missed track, then the class flip, then the fragmented one
    assert report.index("| missed |") < report.index("| class flip |") < \
        report.index("2 ids, found")
    data = (out / "errors.png").read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 5000
    capsys.readouterr()


def test_multi_object_tracks_count_an_id_handed_to_another_object():
    """One id on A in frames 0-3, then on B in frames 4-5 (a re-identification of the wrong
    object), a second one on B alone, a third one on the crowd region only."""
    a, b = two_object_scene(6)
    d = [box(30, 38, 30, 38)] * 6
    truth = load_ground_truth(dataset([video(1, 6)], [gt_ann(1, 1, 1, a), gt_ann(2, 1, 1, b),
                                                      gt_ann(3, 1, 1, d, iscrowd=1)]))
    handed = [a[0], a[1], a[2], a[3], b[4], b[5]]
    trks = load_predictions([pred(1, 1, 0.9, handed), pred(1, 1, 0.8, b),
                             pred(1, 1, 0.7, d)], truth)
    rows = {p.index: p for p in error_breakdown(truth, trks, 0.5).tracker_tracks}
    assert (rows[0].objects, rows[0].object_matches, rows[0].other_object_frames,
            rows[0].multi_object) == (2, 6, 2, True)
    assert (rows[1].objects, rows[1].other_object_frames, rows[1].multi_object) == (1, 0, False)
    assert (rows[2].objects, rows[2].multi_object) == (0, False)  # crowd matches do not count
    summary = error_breakdown(truth, trks, 0.5).summary()
    assert (summary["multi_object_tracks"], summary["other_object_frames"],
            summary["object_matches_of_multi"]) == (1, 2, 6)
