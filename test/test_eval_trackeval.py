"""Tracking metrics against trackeval's own YouTube-VIS reader and Evaluator, on random data.

Each case is written to a temporary folder in the layout `trackeval.datasets.YouTubeVIS` reads
and scored by `trackeval.Evaluator` (HOTA, CLEAR, Identity); `TrackingEvaluator` with
score_threshold 0 (the reader keeps every prediction) must give the same numbers, for the
detection-averaged and the class-averaged combination of the classes.

The cases are small but have what makes a single all-class pass differ from trackeval's class by
class evaluation: several categories in a video, objects of one class absent in frames where
another class is present, category flips, ID swaps, fragmented tracks, duplicate tracks on one
object (competing matches, ties), crowd annotations, frames whose mask is given but empty, and
annotation ids out of file order (trackeval numbers ground-truth ids by annotation id).
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from eval_cases import dataset, gt_ann, pred, video

from spvis_model.eval.tracking import TrackingEvaluator

H, W = 16, 20
N_SEEDS = 30
KEYS = {  # spvis key -> (trackeval metric, field); HOTA-family fields are means over alpha
    "HOTA": ("HOTA", "HOTA"), "DetA": ("HOTA", "DetA"), "AssA": ("HOTA", "AssA"),
    "LocA": ("HOTA", "LocA"), "MOTSA": ("CLEAR", "MOTA"), "MOTSP": ("CLEAR", "MOTP"),
    "IDSW": ("CLEAR", "IDSW"), "Frag": ("CLEAR", "Frag"), "MT": ("CLEAR", "MT"),
    "PT": ("CLEAR", "PT"), "ML": ("CLEAR", "ML"), "TP": ("CLEAR", "CLR_TP"),
    "FN": ("CLEAR", "CLR_FN"), "FP": ("CLEAR", "CLR_FP"), "IDF1": ("Identity", "IDF1"),
    "IDTP": ("Identity", "IDTP"), "IDFN": ("Identity", "IDFN"), "IDFP": ("Identity", "IDFP"),
}


def _box(rng: np.random.Generator, y: int, x: int, h: int, w: int) -> np.ndarray:
    """(H, W) bool: rows y:y+h, columns x:x+w (clipped), sometimes with a ragged right edge."""
    m = np.zeros((H, W), dtype=bool)
    y0, y1, x0, x1 = max(y, 0), min(max(y + h, 0), H), max(x, 0), min(max(x + w, 0), W)
    m[y0:y1, x0:x1] = True
    if x1 > x0 and y1 > y0 and rng.random() < 0.3:
        m[y0:y1, x1 - 1] &= rng.random(y1 - y0) < 0.5
    return m


def random_case(seed: int) -> tuple[dict, list[dict]]:
    """A small random dataset and results list (see the module docstring)."""
    rng = np.random.default_rng(seed)
    n_cat = int(rng.integers(2, 4))
    ann_ids = rng.permutation(np.arange(1, 1000)).tolist()  # ids out of file order
    videos, anns, preds = [], [], []
    for vid in range(1, int(rng.integers(1, 4)) + 1):
        length = int(rng.integers(3, 9))
        videos.append(video(vid, length, H, W))
        objects = []
        for _ in range(int(rng.integers(1, 5))):
            cat = int(rng.integers(1, n_cat + 1))
            y, x = int(rng.integers(-2, H - 4)), int(rng.integers(-2, W - 4))
            h, w = int(rng.integers(3, 9)), int(rng.integers(3, 9))
            vy, vx = int(rng.integers(-1, 2)), int(rng.integers(-1, 3))
            masks: list[np.ndarray | None] = []
            for t in range(length):
                r = rng.random()
                if r < 0.2:
                    masks.append(None)  # absent
                elif r < 0.25:
                    masks.append(np.zeros((H, W), dtype=bool))  # given but empty
                else:
                    masks.append(_box(rng, y + vy * t, x + vx * t, h, w))
            crowd = int(rng.random() < 0.1)
            anns.append(gt_ann(ann_ids.pop(), vid, cat, masks, iscrowd=crowd))
            objects.append((cat, masks))
        tracks: list[tuple[int, list]] = []
        for true_cat, masks in objects:
            if rng.random() < 0.15:
                continue  # missed
            noisy = [None if m is None or rng.random() < 0.15
                     else np.roll(m, int(rng.integers(-2, 3)), axis=int(rng.integers(0, 2)))
                     for m in masks]
            cat = int(rng.integers(1, n_cat + 1)) if rng.random() < 0.2 else true_cat  # flip
            if rng.random() < 0.25 and length > 2:  # fragmented: two ids over one object
                cut = int(rng.integers(1, length))
                tracks.append((cat, noisy[:cut] + [None] * (length - cut)))
                tracks.append((cat, [None] * cut + noisy[cut:]))
            else:
                tracks.append((cat, noisy))
        for k in range(len(tracks)):  # duplicates: a second id on the same object
            if rng.random() < 0.2:
                cat, masks = tracks[k]
                shift = int(rng.integers(0, 2))
                tracks.append((cat, [None if m is None or rng.random() < 0.3
                                     else np.roll(m, shift, axis=1) for m in masks]))
        same = [i for i, (c, _) in enumerate(tracks) for j, (c2, _) in enumerate(tracks)
                if i < j and c == c2]
        if same and rng.random() < 0.5:  # an ID swap between two tracks of one class
            i = same[0]
            j = next(j for j, (c, _) in enumerate(tracks) if j > i and c == tracks[i][0])
            cut = int(rng.integers(1, length))
            a, b = tracks[i][1], tracks[j][1]
            tracks[i] = (tracks[i][0], a[:cut] + b[cut:])
            tracks[j] = (tracks[j][0], b[:cut] + a[cut:])
        for _ in range(int(rng.integers(0, 3))):  # false positives, some empty masks
            cat = int(rng.integers(1, n_cat + 1))
            y, x = int(rng.integers(0, H - 3)), int(rng.integers(0, W - 3))
            tracks.append((cat, [None if rng.random() < 0.3 else
                                 np.zeros((H, W), bool) if rng.random() < 0.1 else
                                 _box(rng, y, x, 4, 5) for _ in range(length)]))
        for cat, masks in tracks:
            if any(m is not None for m in masks):
                preds.append(pred(vid, cat, float(rng.uniform(0.05, 1.0)), masks))
    return dataset(videos, anns, n_cat), preds


def write_trackeval_layout(root: Path, gt: dict, preds: list[dict]) -> None:
    """trackeval's YouTube-VIS reader wants gt/youtube_vis_<split>/x.json (with height, width
    and areas on every annotation) and trackers/youtube_vis_<split>/<name>/data/x.json."""
    gt = json.loads(json.dumps(gt))
    sizes = {v["id"]: (v["height"], v["width"]) for v in gt["videos"]}
    for ann in gt["annotations"]:
        ann["height"], ann["width"] = sizes[ann["video_id"]]
    (root / "gt" / "youtube_vis_test").mkdir(parents=True)
    (root / "gt" / "youtube_vis_test" / "gt.json").write_text(json.dumps(gt))
    data = root / "trackers" / "youtube_vis_test" / "ours" / "data"
    data.mkdir(parents=True)
    (data / "results.json").write_text(json.dumps(preds))


def trackeval_results(root: Path, gt: dict, preds: list[dict]) -> dict:
    """trackeval's COMBINED_SEQ results (per class and the two class combinations)."""
    import trackeval

    write_trackeval_layout(root, gt, preds)
    evaluator = trackeval.Evaluator({
        "USE_PARALLEL": False, "PRINT_RESULTS": False, "PRINT_CONFIG": False,
        "TIME_PROGRESS": False, "OUTPUT_SUMMARY": False, "OUTPUT_DETAILED": False,
        "PLOT_CURVES": False, "LOG_ON_ERROR": None, "BREAK_ON_ERROR": True,
        "DISPLAY_LESS_PROGRESS": True})
    ds = trackeval.datasets.YouTubeVIS({
        "GT_FOLDER": f"{root / 'gt'}/", "TRACKERS_FOLDER": f"{root / 'trackers'}/",
        "SPLIT_TO_EVAL": "test", "PRINT_CONFIG": False, "OUTPUT_FOLDER": str(root / "out")})
    metrics = [trackeval.metrics.HOTA(), trackeval.metrics.CLEAR({"PRINT_CONFIG": False}),
               trackeval.metrics.Identity({"PRINT_CONFIG": False})]
    with contextlib.redirect_stdout(io.StringIO()):
        res, _ = evaluator.evaluate([ds], metrics)
    return res["YouTubeVIS"]["ours"]["COMBINED_SEQ"]


def disagreements(ours: dict, ref: dict) -> list[str]:
    """Keys where spvis (flat dict) and trackeval (per-metric dicts) differ by more than 1e-9."""
    out = []
    for key, (metric, field) in KEYS.items():
        value = float(np.mean(ref[metric][field]))
        if abs(float(ours[key]) - value) > 1e-9:
            out.append(f"{key}: spvis {ours[key]!r}, trackeval {value!r}")
    return out


@pytest.mark.parametrize("seed", range(N_SEEDS))
def test_tracking_metrics_equal_trackevals_youtube_vis_reader(tmp_path, seed):
    gt, preds = random_case(seed)
    ref = trackeval_results(tmp_path, gt, preds)
    ours = TrackingEvaluator(gt, preds, score_threshold=0.0)
    assert disagreements(ours.summary(), ref["cls_comb_det_av"]) == []
    assert disagreements(ours.class_averaged(), ref["cls_comb_cls_av"]) == []
    names = {c["id"]: c["name"] for c in gt["categories"]}
    for cid, row in ours.per_class().items():
        assert disagreements(row, ref[names[cid]]) == [], names[cid]


def test_random_cases_have_what_the_comparison_is_for():
    """The generator does produce the situations listed in the module docstring."""
    seen = {"swaps": 0, "crowd": 0, "empty": 0, "multi-class videos": 0}
    for seed in range(N_SEEDS):
        gt, preds = random_case(seed)
        ours = TrackingEvaluator(gt, preds, score_threshold=0.0).summary()
        seen["swaps"] += ours["IDSW"] > 0
        seen["crowd"] += any(a["iscrowd"] for a in gt["annotations"])
        seen["empty"] += any(s is not None and s["counts"] == [H * W]
                             for a in gt["annotations"] for s in a["segmentations"])
        seen["multi-class videos"] += any(
            len({a["category_id"] for a in gt["annotations"] if a["video_id"] == v["id"]}) > 1
            for v in gt["videos"])
    assert all(n >= 3 for n in seen.values()), seen
