"""Builders for small YouTube-VIS style ground truth and results (shared by test_eval_*.py)."""

from __future__ import annotations

from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

H, W = 40, 50


def box(y0: int, y1: int, x0: int, x1: int, h: int = H, w: int = W) -> np.ndarray:
    """(h, w) bool mask, True on rows y0:y1 and columns x0:x1."""
    m = np.zeros((h, w), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def rle(mask: np.ndarray | None) -> dict[str, Any] | None:
    """Compressed COCO RLE with str counts (what results files carry)."""
    if mask is None:
        return None
    r = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(r["size"]), "counts": r["counts"].decode("ascii")}


def uncompressed(mask: np.ndarray | None) -> dict[str, Any] | None:
    """Uncompressed COCO RLE (what YouTube-VIS ground truth carries): column-major runs,
    starting with a run of zeros."""
    if mask is None:
        return None
    flat = mask.astype(np.uint8).flatten(order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate(([0], change, [flat.size]))
    runs = np.diff(bounds).tolist()
    if flat[0] == 1:
        runs = [0, *runs]
    return {"size": list(mask.shape), "counts": runs}


def video(vid: int, length: int, h: int = H, w: int = W, **extra: Any) -> dict[str, Any]:
    return {"id": vid, "width": w, "height": h, "length": length,
            "file_names": [f"v{vid}/{t:05d}.png" for t in range(length)], **extra}


def gt_ann(ann_id: int, vid: int, cat: int, masks: list[np.ndarray | None],
           iscrowd: int = 0, **extra: Any) -> dict[str, Any]:
    return {"id": ann_id, "video_id": vid, "category_id": cat, "iscrowd": iscrowd,
            "segmentations": [uncompressed(m) for m in masks],
            "areas": [None if m is None else int(m.sum()) for m in masks],
            "bboxes": [None] * len(masks), **extra}


def pred(vid: int, cat: int, score: float, masks: list[np.ndarray | None]) -> dict[str, Any]:
    return {"video_id": vid, "category_id": cat, "score": score,
            "segmentations": [rle(m) for m in masks]}


def dataset(videos: list[dict], annotations: list[dict], n_categories: int = 2
            ) -> dict[str, Any]:
    return {"videos": videos, "annotations": annotations,
            "categories": [{"id": c, "name": f"class{c}"} for c in range(1, n_categories + 1)]}


def two_object_scene(length: int = 6) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Two disjoint objects moving right one pixel a frame: masks of object A and object B."""
    a = [box(5, 15, 5 + t, 15 + t) for t in range(length)]
    b = [box(22, 34, 20 + t, 32 + t) for t in range(length)]
    return a, b
