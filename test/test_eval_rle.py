"""Bulk RLE checks (spvis_model.eval.rle) against the one-at-a-time decoder and pycocotools."""

from __future__ import annotations

import numpy as np
import pytest
from eval_cases import dataset, gt_ann, pred, rle, two_object_scene, uncompressed, video
from pycocotools import mask as mask_utils

from spvis_model.eval import evaluate, load_ground_truth
from spvis_model.eval import rle as bulk


def _random_masks(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    out = []
    for _ in range(n):
        h, w = (int(v) for v in rng.integers(1, 60, size=2))
        m = rng.random((h, w)) < rng.random()
        kind = rng.random()
        if kind < 0.15:
            m[:] = False
        elif kind < 0.25:
            m[:] = True
        elif kind < 0.4:
            m[:, : w // 2] = rng.random() < 0.5  # long runs: several characters per run
        out.append(m)
    return out


def _corrupt(rng: np.random.Generator, counts: bytes) -> bytes:
    kind = int(rng.integers(5))
    b = bytearray(counts)
    if kind == 0:
        return bytes(b[:-1])  # truncated: usually ends inside a run or covers too few pixels
    if kind == 1:
        b[int(rng.integers(len(b)))] = int(rng.integers(0, 256))  # any byte, maybe off-alphabet
    elif kind == 2:
        b.insert(int(rng.integers(len(b) + 1)), int(rng.integers(48, 112)))  # an extra char
    elif kind == 3:
        return b""
    else:
        return b"0" + bytes(rng.integers(80, 112, 8).astype(np.uint8)) + b"0"  # 9-char run
    return bytes(b)


@pytest.fixture(params=[1 << 16, 97, 5], ids=["one chunk", "small chunks", "tiny chunks"])
def chunk(request, monkeypatch):
    monkeypatch.setattr(bulk, "_CHUNK_ITEMS", request.param)
    return request.param


def test_compressed_bulk_check_agrees_with_single_decoder(chunk):
    rng = np.random.default_rng(1)
    masks = _random_masks(rng, 800)
    strings = [mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))["counts"]
               for m in masks]
    pixels = [m.size for m in masks]
    result = bulk.check_compressed(strings, pixels)
    assert result.first_bad == -1
    assert result.areas.tolist() == [int(m.sum()) for m in masks]
    bad = list(strings)
    for i in rng.choice(len(bad), 120, replace=False).tolist():
        bad[i] = _corrupt(rng, bad[i])
    pixels[7] += 1  # a size that the runs do not cover
    verdicts = [bulk.compressed_problem(s, n) == "" for s, n in zip(bad, pixels, strict=True)]
    assert not all(verdicts)
    # The bulk check finds the first string the single decoder rejects, wherever it is.
    for start in range(0, len(bad), 40):
        part, part_px = bad[start:], pixels[start:]
        expected = next((i for i, ok in enumerate(verdicts[start:]) if not ok), -1)
        assert bulk.check_compressed(part, part_px).first_bad == expected


def test_uncompressed_bulk_check_and_encoding_match_pycocotools(chunk):
    rng = np.random.default_rng(2)
    masks = _random_masks(rng, 600)
    lists = [uncompressed(m)["counts"] for m in masks]
    result, strings = bulk.check_uncompressed(lists, [m.size for m in masks])
    assert result.first_bad == -1
    assert result.areas.tolist() == [int(m.sum()) for m in masks]
    expected = [mask_utils.frPyObjects({"size": list(m.shape), "counts": c}, *m.shape)["counts"]
                for m, c in zip(masks, lists, strict=True)]
    assert strings == expected  # byte for byte pycocotools' encoding
    runs = [5, 100000, 3, 2**31, 7, 1, 0, 0, 4]  # multi-character values and zero runs
    result, strings = bulk.check_uncompressed([runs], [sum(runs)])
    assert strings == [mask_utils.frPyObjects({"size": [1, sum(runs)], "counts": runs}, 1,
                                              sum(runs))["counts"]]


@pytest.mark.parametrize(("change", "problem"), [
    (lambda c: c.__setitem__(0, float(c[0])), "must be integers"),  # same sum, a float
    (lambda c: c.__setitem__(0, "3"), "must be integers"),
    (lambda c: c.__setitem__(0, None), "must be integers"),
    (lambda c: c.__setitem__(slice(None), [*c[:-1], c[-1] - 1, True]), "must be integers"),
    (lambda c: c.__setitem__(1, c[1] + 1), "cover"),
    (lambda c: c.__setitem__(slice(None), [-1, c[0] + 1, *c[1:]]), "negative count -1"),
    (lambda c: c.__setitem__(slice(None), []), "cover 0 pixels"),
    (lambda c: c.__setitem__(0, 2**70), "run of 1180591620717411303424 pixels"),
    # int64 sums wrap: two runs of 2**63 - 1 and the rest "add up" to the frame
    (lambda c: c.__setitem__(slice(None), [2**63 - 1, 2**63 - 1, sum(c) + 2]),
     "run of 9223372036854775807 pixels, more than the frame's"),
])
def test_uncompressed_bulk_check_rejects(chunk, change, problem):
    rng = np.random.default_rng(3)
    masks = _random_masks(rng, 50)
    lists = [uncompressed(m)["counts"] for m in masks]
    pixels = [m.size for m in masks]
    change(lists[31])
    assert bulk.check_uncompressed(lists, pixels)[0].first_bad == 31
    assert problem in bulk.uncompressed_problem(lists[31], pixels[31])
    assert bulk.check_uncompressed(lists[:31], pixels[:31])[0].first_bad == -1


def test_first_bad_mask_in_file_order_is_named():
    # A bad uncompressed RLE in annotation 0 and a bad compressed one in annotation 1: the
    # message names annotation 0 (the file order), whatever order they are checked in.
    a, b = two_object_scene(3)
    gt = dataset([video(1, 3)], [gt_ann(1, 1, 1, a), gt_ann(2, 1, 1, b)])
    gt["annotations"][0]["segmentations"][2]["counts"][0] += 1
    gt["annotations"][1]["segmentations"][1] = {**rle(b[1]), "counts": "0~"}
    with pytest.raises(ValueError, match=r"gt annotations\[0\] \(id=1, video_id=1\)"
                                         r"\.segmentations\[2\]: uncompressed RLE counts cover"):
        load_ground_truth(gt)
    gt["annotations"][0]["segmentations"][2] = uncompressed(a[2])
    with pytest.raises(ValueError, match=r"gt annotations\[1\] .*\.segmentations\[1\]: "
                                         r"malformed compressed RLE: .*outside"):
        load_ground_truth(gt)


def test_overflowing_uncompressed_runs_are_refused_naming_entry_and_frame():
    a, _ = two_object_scene(2)
    gt = dataset([video(1, 2)], [gt_ann(1, 1, 1, a)])
    n = a[1].size
    wrapping = {"size": list(a[1].shape), "counts": [2**63 - 1, 2**63 - 1, n + 2]}
    bad = pred(1, 1, 0.9, a)
    bad["segmentations"][1] = wrapping
    with pytest.raises(ValueError, match=r"predictions\[0\] \(video_id=1\)\.segmentations\[1\]: "
                                         rf"uncompressed RLE has a run of {2**63 - 1} pixels, "
                                         rf"more than the frame's {n}"):
        evaluate(gt, [bad])
    gt["annotations"][0]["segmentations"][1] = wrapping
    with pytest.raises(ValueError, match=r"gt annotations\[0\] .*\.segmentations\[1\]: "
                                         "uncompressed RLE has a run of"):
        load_ground_truth(gt)


def test_bytes_counts_and_polygons_are_checked_too():
    a, _ = two_object_scene(2)
    gt = dataset([video(1, 2)], [gt_ann(1, 1, 1, a)])
    good = pred(1, 1, 0.9, a)
    as_bytes = {**good, "segmentations": [{"size": s["size"], "counts": s["counts"].encode()}
                                          for s in good["segmentations"]]}
    assert evaluate(gt, [as_bytes]) == evaluate(gt, [good])
    as_bytes["segmentations"][1]["counts"] = b"1h"
    with pytest.raises(ValueError, match=r"predictions\[0\] .*segmentations\[1\]: malformed "
                                         "compressed RLE: counts string ends inside a run"):
        evaluate(gt, [as_bytes])
