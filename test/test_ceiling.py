"""Re-association by the ground truth (spvis_model.eval.ceiling) on hand-made tracks, and
bench/ap_ladder.py on the shipped model."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from spvis_model.eval.ceiling import reassociate
from spvis_model.eval.data import load_ground_truth, load_predictions
from spvis_model.eval.ytvis import evaluate

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

H = W = 16
A = (0, 0)     # object A's top-left corner: an 6x6 square
B = (8, 8)     # object B's


def _rle(corner: tuple[int, int] | None, size: int = 6) -> dict | None:
    if corner is None:
        return None
    m = np.zeros((H, W), np.uint8, order="F")
    m[corner[0]:corner[0] + size, corner[1]:corner[1] + size] = 1
    rle = mask_utils.encode(m)
    rle["counts"] = rle["counts"].decode()
    return rle


def _dataset() -> dict:
    video = {"id": 1, "width": W, "height": H, "length": 4,
             "file_names": [f"{t}.jpg" for t in range(4)]}
    anns = [{"id": i + 1, "video_id": 1, "category_id": 1, "iscrowd": 0,
             "segmentations": [_rle(c)] * 4} for i, c in enumerate((A, B))]
    return {"videos": [video], "annotations": anns,
            "categories": [{"id": 1, "name": "disk"}]}


def _pred(corners: list[tuple[int, int] | None], score: float, size: int = 6) -> dict:
    return {"video_id": 1, "category_id": 1, "score": score,
            "segmentations": [_rle(c, size) for c in corners]}


def test_swapped_ids_are_an_association_loss_and_a_part_a_left_over():
    gt = load_ground_truth(_dataset())
    preds = [_pred([A, A, B, B], 0.9),                 # swaps object at frame 2
             _pred([B, B, A, A], 0.8),
             _pred([A, None, None, None], 0.95, size=2)]  # a 2x2 part of A: IoU 1/9
    as_run = evaluate(gt, load_predictions(preds, gt))
    redo = reassociate(gt, load_predictions(preds, gt))
    assert len(redo.objects_only) == 2
    for entry in redo.objects_only:
        # One object per track now: the same corner in every frame.
        corners = {mask_utils.decode(s).nonzero()[0].min() for s in entry["segmentations"]}
        assert len(corners) == 1
        assert entry["score"] == pytest.approx(0.85)
    assert redo.leftover_tracks == 1
    assert redo.leftover_frames == {"duplicate": 0, "part": 1, "background": 0}
    objects = evaluate(gt, load_predictions(redo.objects_only, gt))
    with_left = evaluate(gt, load_predictions(redo.reassociated, gt))
    assert objects["AP"] == pytest.approx(1.0)
    assert as_run["AP"] < with_left["AP"] <= objects["AP"]


def test_duplicates_and_background_are_told_apart():
    gt = load_ground_truth(_dataset())
    preds = [_pred([A] * 4, 0.9), _pred([B] * 4, 0.9),
             _pred([A, A, None, None], 0.7),           # a second mask on A: duplicate
             _pred([None, None, None, (10, 0)], 0.6, size=4)]  # on nothing
    redo = reassociate(gt, load_predictions(preds, gt))
    assert redo.leftover_frames == {"duplicate": 2, "part": 0, "background": 1}
    assert redo.leftover_tracks == 2
    with pytest.raises(ValueError, match="iou = 0"):
        reassociate(gt, load_predictions(preds, gt), iou=0.0)


def test_ap_ladder_on_the_shipped_model(tmp_path, capsys, monkeypatch):
    import ap_ladder
    from eval_sets import EvalSet, ensure_cache, ensure_dataset

    from spvis_model.model import SPVIS
    from spvis_model.weights import default_checkpoint

    s = EvalSet("ladder_test", "val", "heldout", {"videos": 2, "frames": 4, "seed": 3})
    model = SPVIS.from_checkpoint(default_checkpoint())
    model.eval()
    cache = ensure_cache(model, s, tmp_path / "data", tmp_path / "cache", progress=False)
    data = ensure_dataset(s, tmp_path / "data")
    gt = load_ground_truth(data)
    with torch.no_grad():
        oracle = ap_ladder.query_oracle(model, cache, gt, data, 0.3)
    assert 0 < len(oracle) <= len(gt.tracks)
    # Every mask of an oracle entry lies on one object of its video (IoU >= 0.5), and no
    # object-frame is given two masks.
    used = set()
    for e in oracle:
        objects = gt.tracks_by_video[e["video_id"]]
        for t, seg in enumerate(e["segmentations"]):
            if seg is None:
                continue
            ious = [mask_utils.iou([seg], [o.rles[t]], [0])[0, 0] if o.rles[t] else 0.0
                    for o in objects]
            best = int(np.argmax(ious))
            assert ious[best] >= 0.5
            assert (e["video_id"], best, t) not in used
            used.add((e["video_id"], best, t))
    monkeypatch.setattr(ap_ladder, "load_sets", lambda: {"ladder_test": s})
    assert ap_ladder.main(["--sets", "ladder_test", "--data-root", str(tmp_path / "data"),
                           "--cache-root", str(tmp_path / "cache")]) == 0
    out = capsys.readouterr().out
    for rung in ("as run", "re-associated", "objects only", "query oracle"):
        assert f"| {rung} |" in out
    assert "left-over tracks:" in out
