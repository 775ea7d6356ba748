"""YouTube-VIS AP: hand-worked cases, the video IoU, area split, crowds, subsets, bad input."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from eval_cases import H, W, box, dataset, gt_ann, pred, rle, two_object_scene, uncompressed, video

from spvis_model.eval import (
    evaluate,
    evaluate_tracking,
    load_ground_truth,
    load_predictions,
    run_evaluation,
    video_iou,
    ytvis,
)
from spvis_model.eval.data import decode_compressed_counts
from spvis_model.eval.ytvis import YTVISEvaluator, mask_areas

approx = pytest.approx


def test_perfect_predictions_give_ap_1():
    a, b = two_object_scene(6)
    b[2] = None  # object B is absent in frame 2 (ground truth and prediction agree)
    gt = dataset([video(1, 6), video(2, 3)],
                 [gt_ann(1, 1, 1, a), gt_ann(2, 1, 2, b), gt_ann(3, 2, 1, a[:3])])
    preds = [pred(1, 1, 0.9, a), pred(1, 2, 0.8, b), pred(2, 1, 0.7, a[:3])]
    out = evaluate(gt, preds)
    for key in ("AP", "AP50", "AP75", "APs", "AR1", "AR10"):
        assert out[key] == approx(1.0), key
    # every track is small (< 128² px): no ground truth in the medium and large ranges
    assert out["APm"] == -1.0
    assert out["APl"] == -1.0


def test_higher_scored_wrong_prediction_gives_ap_half():
    a, b = two_object_scene(4)
    gt = dataset([video(1, 4)], [gt_ann(1, 1, 1, a)])
    preds = [pred(1, 1, 0.9, b), pred(1, 1, 0.6, a)]  # top score is on the wrong object
    out = evaluate(gt, preds)
    # At every IoU threshold the ranked list is [FP, TP] with 1 ground truth:
    #   after rank 1: recall 0,   precision 0/1
    #   after rank 2: recall 1.0, precision 1/2
    # COCOeval makes precision monotone from the right (p[i] = max(p[i], p[i+1])), so the
    # precision at rank 1 becomes 0.5 too. Each of the 101 recall points r = 0, .01, ..., 1 takes
    # the precision at the first rank whose recall >= r: r = 0 -> rank 1 (0.5), r > 0 -> rank 2
    # (0.5). The mean of 101 values of 0.5 is 0.5, at all 10 thresholds: AP = 0.5.
    assert out["AP"] == approx(0.5)
    assert out["AP50"] == approx(0.5)
    assert out["AR1"] == 0.0  # with one detection allowed only the wrong one is kept
    assert out["AR10"] == 1.0


def test_two_videos_one_miss_gives_51_of_101():
    a, b = two_object_scene(3)
    gt = dataset([video(1, 3), video(2, 3)], [gt_ann(1, 1, 1, a), gt_ann(2, 2, 1, a)])
    preds = [pred(1, 1, 0.9, a), pred(2, 1, 0.8, b)]  # video 1 right, video 2 wrong object
    # Ranked [TP, FP] with 2 ground truths: recall .5 at precision 1, then recall .5 at
    # precision .5. Recall points 0 ... .50 (51 of 101) read precision 1; recall points above
    # .5 are never reached and read 0. AP = 51/101.
    assert evaluate(gt, preds)["AP"] == approx(51 / 101)
    ev = YTVISEvaluator(gt, preds)
    per_video = ev.per_video()
    assert per_video[1]["AP"] == approx(1.0)
    assert per_video[2]["AP"] == 0.0


def _iou_062_case() -> tuple[dict, list[dict], list]:
    # frame 0: gt = pred = 40 px                  -> |∩| 40, |∪| 40
    # frame 1: gt 40 px, pred 22 px inside it     -> |∩| 22, |∪| 40
    # frame 2: no gt, pred 20 px                  -> |∩| 0,  |∪| 20 (only one side: adds)
    # video IoU = (40 + 22) / (40 + 40 + 20) = 0.62. (Mean of per-frame IoUs would be 0.52,
    # and dropping frame 2 from the union would give 0.775: both give other APs.)
    g = [box(0, 4, 0, 10), box(0, 4, 0, 10), None]
    d = [box(0, 4, 0, 10), box(0, 2, 0, 10) | box(2, 3, 0, 2), box(10, 12, 0, 10)]
    assert [int(m.sum()) if m is not None else 0 for m in d] == [40, 22, 20]
    gt = dataset([video(1, 3)], [gt_ann(1, 1, 1, g)])
    return gt, [pred(1, 1, 0.8, d)], d


def test_video_iou_062_gives_ap_03():
    gt, preds, _ = _iou_062_case()
    truth = load_ground_truth(gt)
    iou = video_iou(load_predictions(preds, truth), truth.tracks)
    assert iou.shape == (1, 1)
    assert iou[0, 0] == approx(0.62, abs=1e-12)
    out = evaluate(gt, preds)
    # IoU 0.62 passes thresholds .50, .55, .60 (AP 1 each) and fails the other 7 (AP 0):
    # AP = 3/10.
    assert out["AP"] == approx(0.3)
    assert out["AP50"] == approx(1.0)
    assert out["AP75"] == 0.0


@pytest.mark.parametrize("strategy", ["merge", "iou"])
def test_video_iou_matches_brute_force_on_random_masks(monkeypatch, strategy):
    # Both ways of computing the intersections (one merge per pair and frame, or one iou call
    # per frame) must give the exact counts.
    monkeypatch.setattr(ytvis, "_MERGE_US", 0.0 if strategy == "merge" else 1e9)
    rng = np.random.default_rng(3)
    length = 5

    def track() -> list:
        return [None if rng.random() < 0.3 else rng.random((H, W)) < rng.uniform(0.1, 0.6)
                for _ in range(length)]

    gts_m = [track() for _ in range(3)]
    dts_m = [track() for _ in range(4)]
    gt = dataset([video(1, length)], [gt_ann(i + 1, 1, 1, m) for i, m in enumerate(gts_m)])
    truth = load_ground_truth(gt)
    dts = load_predictions([pred(1, 1, 0.5, m) for m in dts_m], truth)
    got = video_iou(dts, truth.tracks)
    zero = np.zeros((H, W), bool)
    for i, dm in enumerate(dts_m):
        for j, gm in enumerate(gts_m):
            inter = sum(int(((d if d is not None else zero) & (g if g is not None else zero)).sum())
                        for d, g in zip(dm, gm, strict=True))
            union = sum(int(((d if d is not None else zero) | (g if g is not None else zero)).sum())
                        for d, g in zip(dm, gm, strict=True))
            assert got[i, j] == approx(inter / union, abs=1e-12)


def test_area_is_mean_over_annotated_frames():
    h = w = 140
    big = box(0, 130, 0, 130, h, w)  # 16900 px
    less = box(0, 125, 0, 130, h, w)  # 16250 px
    # mean over annotated frames: (16900 + 16250) / 2 = 16575 > 128² = 16384 -> medium.
    # (Counting the absent frame as 0 would give 11050 -> small.)
    masks = [big, None, less]
    gt = dataset([video(1, 3, h, w)], [gt_ann(1, 1, 1, masks)])
    out = evaluate(gt, [pred(1, 1, 0.9, masks)])
    assert out["APm"] == approx(1.0)
    assert out["APs"] == -1.0
    assert out["APl"] == -1.0
    # 110 x 110 = 12100 px: small under YouTube-VIS (< 128²), medium under COCO (> 96²).
    mid = [box(0, 110, 0, 110, h, w)] * 3
    out = evaluate(dataset([video(1, 3, h, w)], [gt_ann(1, 1, 1, mid)]), [pred(1, 1, 0.9, mid)])
    assert (out["APs"], out["APm"]) == (approx(1.0), -1.0)
    # The official API takes the ground-truth area from the JSON `areas` field.
    ann = gt["annotations"][0]
    ann["areas"] = [100, None, 100]
    out = evaluate(gt, [pred(1, 1, 0.9, masks)])
    assert out["APs"] == approx(1.0)
    assert out["APm"] == -1.0


def test_crowd_ground_truth_is_ignored_not_a_false_positive():
    a, b = two_object_scene(3)
    gt = dataset([video(1, 3)], [gt_ann(1, 1, 1, a), gt_ann(2, 1, 1, b, iscrowd=1)])
    # The highest-scored prediction sits on the crowd region: it is ignored, not a FP.
    preds = [pred(1, 1, 0.95, b), pred(1, 1, 0.9, a)]
    assert evaluate(gt, preds)["AP"] == approx(1.0)
    no_crowd = dataset([video(1, 3)], [gt_ann(1, 1, 1, a)])
    assert evaluate(no_crowd, preds)["AP"] == approx(0.5)


def test_uncompressed_and_compressed_predictions_agree():
    gt, preds, d = _iou_062_case()
    as_uncompressed = [{**preds[0], "segmentations": [uncompressed(m) for m in d]}]
    assert evaluate(gt, as_uncompressed) == evaluate(gt, preds)


def test_paths_and_subsets(tmp_path):
    a, _ = two_object_scene(3)
    gt = dataset([video(1, 3), video(2, 3)], [gt_ann(1, 1, 1, a), gt_ann(2, 2, 1, a)])
    preds = [pred(1, 1, 0.9, a)]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "pred.json").write_text(json.dumps(preds))
    out = evaluate(tmp_path / "gt.json", str(tmp_path / "pred.json"))
    assert out["AR10"] == approx(0.5)  # one of two tracks found
    assert evaluate(gt, preds, video_ids=[1])["AP"] == approx(1.0)
    assert evaluate(gt, preds, video_ids=[2])["AP"] == 0.0
    with pytest.raises(ValueError, match=r"video_ids \[7\]"):
        evaluate(gt, preds, video_ids=[7])


def test_compressed_counts_decoder_agrees_with_pycocotools():
    rng = np.random.default_rng(0)
    for _ in range(100):
        h, w = rng.integers(1, 40, size=2)
        m = rng.random((h, w)) < rng.random()
        runs = decode_compressed_counts(rle(m)["counts"].encode())
        expected = uncompressed(m)["counts"]
        assert runs.tolist() == expected
        assert int(runs.sum()) == h * w


@pytest.fixture
def small_gt() -> dict:
    a, _ = two_object_scene(3)
    return dataset([video(5, 3)], [gt_ann(1, 5, 1, a)])


def _good(a: list) -> dict:
    return pred(5, 1, 0.5, a)


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda p: p.update(video_id=99), r"predictions\[1\] \(video_id=99\).*video_id 99 is not"),
    (lambda p: p.update(category_id=7), r"predictions\[1\] \(video_id=5\).*category_id 7"),
    (lambda p: p["segmentations"].pop(), r"predictions\[1\] .*segmentations has 2 frames.* 3"),
    (lambda p: p.update(score="high"), r"predictions\[1\] .*score must be a number"),
    (lambda p: p.pop("score"), r"predictions\[1\] .*missing field 'score'"),
    (lambda p: p["segmentations"][1].update(counts="0" * 5 + "~~"),
     r"predictions\[1\] .*segmentations\[1\]: malformed compressed RLE: .*outside"),
    (lambda p: p["segmentations"][1].update(counts=p["segmentations"][1]["counts"][:-1] + "h"),
     r"segmentations\[1\]: malformed compressed RLE: counts string ends inside a run"),
    (lambda p: p["segmentations"][0].update(counts="22"),
     r"segmentations\[0\]: malformed compressed RLE: .*cover 4 pixels, size says 2000"),
    (lambda p: p["segmentations"][2].update(size=[W, H]),
     r"segmentations\[2\]\.size must be \[height, width\] = \[40, 50\]"),
    (lambda p: p["segmentations"][2].update(counts=[5, 3]),
     r"segmentations\[2\]: uncompressed RLE counts cover 8 pixels"),
    (lambda p: p["segmentations"].__setitem__(0, "abc"),
     r"segmentations\[0\] must be an RLE dict, polygons or None, got str"),
    (lambda p: p["segmentations"][1].update(counts=p["segmentations"][1]["counts"][:-1] + "é"),
     r"predictions\[1\] \(video_id=5\)\.segmentations\[1\]: malformed compressed RLE: "
     r"counts string has a non-ASCII character 'é' at position \d+"),
])
def test_bad_predictions_name_the_entry(small_gt, mutate, message):
    a, _ = two_object_scene(3)
    bad = _good(a)
    mutate(bad)
    with pytest.raises(ValueError, match=message):
        evaluate(small_gt, [_good(a), bad])


def test_non_ascii_counts_are_refused_not_replaced():
    # 'é' was encoded as '?', itself a valid RLE character, and the mask scored.
    from spvis_model.eval.data import to_rle

    good = rle(box(15, 25, 0, 3))
    assert good["counts"].startswith("?")  # a first run of 15 zeros
    bad = {**good, "counts": "é" + good["counts"][1:]}
    with pytest.raises(ValueError, match=r"^x: malformed compressed RLE: counts string has a "
                                         r"non-ASCII character 'é' at position 0$"):
        to_rle(bad, H, W, "x")
    gt = dataset([video(1, 1)], [gt_ann(1, 1, 1, [box(15, 25, 0, 3)])])
    with pytest.raises(ValueError, match=r"predictions\[0\] \(video_id=1\)\.segmentations\[0\]: "
                                         r"malformed compressed RLE: .*non-ASCII character 'é'"):
        evaluate(gt, [{"video_id": 1, "category_id": 1, "score": 0.9, "segmentations": [bad]}])


def test_bad_ground_truth_names_the_entry(small_gt):
    small_gt["annotations"][0]["segmentations"].append(None)
    with pytest.raises(ValueError, match=r"gt annotations\[0\] \(id=1, video_id=5\)"
                                         r"\.segmentations has 4 frames, video 5 has 3"):
        evaluate(small_gt, [])
    with pytest.raises(ValueError, match=r"gt videos\[0\] \(id=1\): length is 3 but file_names"):
        evaluate({**small_gt, "videos": [{**video(1, 3), "file_names": ["x"]}]}, [])
    with pytest.raises(FileNotFoundError, match="ground-truth file not found"):
        evaluate("/nonexistent/gt.json", [])


def test_polygon_ground_truth_is_rasterised_like_pycocotools():
    gt = dataset([video(1, 2)], [{"id": 1, "video_id": 1, "category_id": 1, "iscrowd": 0,
                                  "segmentations": [[[2, 2, 12, 2, 12, 12, 2, 12]], None]}])
    truth = load_ground_truth(gt)
    track = truth.tracks[0]
    assert track.frame_areas.tolist()[1] == 0
    assert 90 <= track.frame_areas[0] <= 121  # a 10 x 10 square, boundary pixels per COCO rules
    assert track.avg_area == track.frame_areas[0]  # no `areas` field: mask areas are used
    same = {"size": [H, W], "counts": track.rles[0]["counts"].decode("ascii")}
    out = evaluate(gt, [{"video_id": 1, "category_id": 1, "score": 0.9,
                         "segmentations": [same, None]}])
    assert out["AP"] == approx(1.0)
    with pytest.raises(ValueError, match=r"segmentations\[0\]: polygons must be"):
        evaluate({**gt, "annotations": [{**gt["annotations"][0],
                                         "segmentations": [[[1, 2, 3]], None]}]}, [])


@pytest.mark.parametrize(("value", "message"), [
    (201, r"coordinate 2 \(x\) = 201 is outside \[-200, 200\] \(4 x the 40x50 frame's width\)"),
    (-1e12, r"coordinate 2 \(x\) = -1000000000000\.0 is outside \[-200, 200\]"),
    (3e9, r"coordinate 2 \(x\) = 3000000000\.0 is outside"),
    (1e30, r"coordinate 2 \(x\) = 1e\+30 is outside"),
    (float("inf"), r"coordinate 2 \(x\) must be finite, got inf"),
    (float("nan"), r"coordinate 2 \(x\) must be finite, got nan"),  # crashed pycocotools
])
def test_polygon_coordinates_must_be_finite_and_near_the_frame(value, message):
    # NaN segfaulted pycocotools' frPyObjects and huge values ran until killed.
    gt = dataset([video(1, 2)], [{"id": 1, "video_id": 1, "category_id": 1, "iscrowd": 0,
                                  "segmentations": [[[2, 2, 12, 2, 12, 12]], None]}])
    polygon = [[2, 2, 200, 2, 12, -160]]  # on the bound: accepted
    preds = [{"video_id": 1, "category_id": 1, "score": 0.9, "segmentations": [polygon, None]}]
    evaluate(gt, preds)
    preds[0]["segmentations"][0] = [[2, 2, value, 2, 12, 12]]
    with pytest.raises(ValueError, match=r"predictions\[0\] \(video_id=1\)\.segmentations\[0\]: "
                                         r"polygon 0 " + message):
        evaluate(gt, preds)
    gt["annotations"][0]["segmentations"][1] = [[1, 1, 5, 1, 5, value]]
    with pytest.raises(ValueError, match=r"gt annotations\[0\] .*segmentations\[1\]: polygon 0 "
                                         r"coordinate 5 \(y\)"):
        evaluate(gt, [])


def test_tracks_longer_than_255_frames():
    """pycocotools' `area` raises OverflowError on a list of more than 255 masks (a uint8
    somewhere): a 30 fps bag longer than 8.5 s used to crash `spvis eval`. 300 frames, ground
    truth uncompressed and compressed, predictions compressed and uncompressed, through loading,
    AP, the tracking metrics and the whole report."""
    n = 300
    h, w = 24, 30
    a = [box(2, 10, t % 20, t % 20 + 8, h, w) for t in range(n)]
    b = [None if t % 7 == 0 else box(14, 22, 20 - t % 20, 30 - t % 20, h, w) for t in range(n)]
    gt = dataset([video(1, n, h, w, fps=30.0)], [gt_ann(1, 1, 1, a), gt_ann(2, 1, 2, b)])
    gt["annotations"][1]["segmentations"] = [rle(m) for m in b]  # compressed ground truth
    preds = [pred(1, 1, 0.9, a), {**pred(1, 2, 0.8, b),
                                   "segmentations": [uncompressed(m) for m in b]}]
    truth = load_ground_truth(gt)
    tracks = load_predictions(preds, truth)
    expected_a = [int(m.sum()) for m in a]
    expected_b = [0 if m is None else int(m.sum()) for m in b]
    assert truth.tracks[0].frame_areas.tolist() == expected_a
    assert truth.tracks[1].frame_areas.tolist() == expected_b
    assert [t.frame_areas.tolist() for t in tracks] == [expected_a, expected_b]
    assert mask_areas([r for r in tracks[0].rles if r is not None]).tolist() == expected_a
    assert evaluate(gt, preds)["AP"] == approx(1.0)
    out = evaluate_tracking(gt, preds)
    assert (out["TP"], out["FN"], out["FP"], out["IDSW"]) == (n + n - 43, 0, 0, 0)
    assert out["HOTA"] == approx(1.0)
    results = run_evaluation(gt, preds)
    assert results["errors"]["summary"]["gt_tracks"] == 2
    assert results["errors"]["summary"]["frames_to_first_detection_max"] == 0.0


def test_cocoeval_shortcuts_give_cocoevals_numbers():
    """`_VideoCOCOeval` skips empty (video, category) units in `evaluate` and accumulates only
    the categories with ground truth. Stock `COCOeval.evaluate` over every category must give
    the same stats, for all videos and for each video alone."""
    from pycocotools.cocoeval import COCOeval

    class Stock(ytvis._VideoCOCOeval):
        def __init__(self, index: YTVISEvaluator, video_ids: list[int]) -> None:
            super().__init__(index, video_ids)
            self.params.catIds = sorted(index.gt.categories)

        evaluate = COCOeval.evaluate

    rng = np.random.default_rng(8)
    videos, anns, preds = [], [], []
    for vid in range(1, 7):
        length = int(rng.integers(2, 5))
        videos.append(video(vid, length))
        for _ in range(int(rng.integers(0, 3))):
            y, x, s = int(rng.integers(0, 25)), int(rng.integers(0, 35)), int(rng.integers(4, 14))
            masks = [None if rng.random() < 0.2 else box(y, y + s, x, x + s) for _ in range(length)]
            masks[0] = box(y, y + s, x, x + s)
            cat = int(rng.integers(1, 4))  # category 4 never has ground truth
            anns.append(gt_ann(len(anns) + 1, vid, cat, masks, iscrowd=int(rng.random() < 0.1)))
            for _ in range(int(rng.integers(0, 3))):
                preds.append(pred(vid, cat if rng.random() < 0.7 else 4,
                                  float(rng.uniform(0, 1)),
                                  [None if m is None else np.roll(m, int(rng.integers(-3, 4)), 1)
                                   for m in masks]))
        preds.append(pred(vid, int(rng.integers(1, 5)), float(rng.uniform(0, 1)),
                          [box(0, 5, 0, 5)] * length))  # a false positive
    gt = {**dataset(videos, anns), "categories": [{"id": c, "name": f"c{c}"} for c in range(1, 5)]}
    ev = YTVISEvaluator(gt, preds)
    for ids in [list(ev.gt.videos), *[[v] for v in ev.gt.videos]]:
        stock = Stock(ev, ids)
        with contextlib.redirect_stdout(io.StringIO()):
            stock.evaluate()
            stock.accumulate()
            stock.summarize()
        assert list(ev.summary(ids).values()) == [float(v) for v in stock.stats[:8]], ids
