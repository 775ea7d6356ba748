"""bench/segmenter_recall.py on the shipped model: object-frames are grouped by how many
objects of their class are in view, and the counts agree with the ground truth."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from pycocotools import mask as mask_utils

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

from eval_sets import EvalSet, ensure_cache, ensure_dataset  # noqa: E402
from segmenter_recall import Recall, set_recall  # noqa: E402

from spvis_model.model import SPVIS  # noqa: E402
from spvis_model.weights import default_checkpoint  # noqa: E402


def test_groups_add_up_and_found_never_exceeds_any_query():
    rec = Recall()
    rec.add(1, 150, True, True, False)
    rec.add(2, 500, True, False, True)
    rec.add(5, 5000, False, False, True)
    assert [c.n for c in rec.by_crowding.values()] == [1, 1, 1]
    assert [c.n for c in rec.by_area.values()] == [1, 1, 0, 1]
    total = rec.total()
    assert (total.n, total.any_query, total.found, total.merged) == (3, 2, 1, 2)
    assert "| 3+ | 1 |" in rec.markdown()


def test_same_class_crowd_counts_match_the_ground_truth(tmp_path):
    # One class per video: every object shares the frame with the others of its class.
    s = EvalSet("recall_test", "val", "heldout",
                {"videos": 2, "frames": 3, "objects": [3, 3], "class_pool": 1, "seed": 5})
    model = SPVIS.from_checkpoint(default_checkpoint())
    model.eval()
    cache = ensure_cache(model, s, tmp_path / "data", tmp_path / "cache", progress=False)
    data = ensure_dataset(s, tmp_path / "data")
    with torch.no_grad():
        rec = set_recall(model, cache, data, score_min=0.3, min_area=100)
    anns = json.loads(data.read_text())["annotations"]
    expected = {1: 0, 2: 0, 3: 0}
    for video in json.loads(data.read_text())["videos"]:
        mine = [a for a in anns if a["video_id"] == video["id"]]
        for t in range(video["length"]):
            seen = [a for a in mine if a["segmentations"][t] is not None
                    and mask_utils.area(_rle(a["segmentations"][t])) > 0]
            for a in seen:
                if mask_utils.area(_rle(a["segmentations"][t])) >= 100:
                    expected[min(len(seen), 3)] += 1
    assert {k: c.n for k, c in rec.by_crowding.items()} == expected
    assert sum(expected.values()) > 0
    for c in list(rec.by_crowding.values()) + list(rec.by_area.values()):
        assert c.found <= c.any_query <= c.n and c.merged <= c.n - c.found
    assert rec.by_crowding[1].merged == 0  # nothing to merge with


def _rle(seg: dict) -> dict:
    counts = seg["counts"]
    return {"size": seg["size"], "counts": counts.encode() if isinstance(counts, str) else counts}
