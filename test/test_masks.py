"""Masks on the wire (`spvis_ros.masks`): COCO compressed RLE equal to pycocotools both ways,
the mono8 crop, decoding errors, and which encoding is cheaper at 640x480 with 10 instances."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from spvis_ros.masks import (
    MASK_MONO8,
    MASK_RLE,
    MaskError,
    counts_to_string,
    decode_rle,
    encode_mask,
    encode_rle,
    full_masks,
    instance_crop,
    string_to_counts,
)

sys.path.insert(0, str(Path(__file__).parent / "ros_helpers"))
from mask_bandwidth import measure, shapes


def _coco(mask: np.ndarray) -> str:
    return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode()


def _coco_decode(text: str, h: int, w: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.decode({"size": [h, w], "counts": text.encode()}).astype(bool)


@pytest.mark.parametrize("seed", range(4))
def test_rle_equals_pycocotools_both_ways(seed):
    rng = np.random.default_rng(seed)
    for t in range(150):
        h, w = (int(v) for v in rng.integers(1, 70, 2))
        if t % 3 == 0:
            yy, xx = np.mgrid[:h, :w]
            m = (yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (min(h, w) / 2.5) ** 2
        else:
            m = rng.random((h, w)) < rng.random()
        text = encode_rle(m)
        assert text == _coco(m)
        assert np.array_equal(decode_rle(text, h, w), m)
        assert np.array_equal(_coco_decode(text, h, w), m)


def test_full_image_shapes_and_edge_cases():
    for m in shapes(640, 480, 10, seed=3):
        assert encode_rle(m) == _coco(m)
    assert encode_rle(np.zeros((0, 0), bool)) == ""
    assert encode_rle(np.ones((3, 4), bool)) == _coco(np.ones((3, 4), bool))
    big = [0, 5_000_000, 3, 2**31 - 1, 1, 7, 123456789, 2**31 - 1, 0, 1]
    assert string_to_counts(counts_to_string(big)) == big


def test_decoding_errors_name_the_problem():
    with pytest.raises(MaskError, match="runs add up to 12 pixels, the 3x5 box has 15"):
        decode_rle(encode_rle(np.ones((3, 4), bool)), 3, 5)
    with pytest.raises(MaskError, match="character ' ' at 1"):
        decode_rle("0 ", 1, 1)
    with pytest.raises(MaskError, match="ends inside a run"):
        decode_rle("P", 1, 1)  # 'P' - 48 = 0x20: a continuation bit, then nothing


class _Box:
    def __init__(self, x, y, w, h):
        self.x_offset, self.y_offset, self.width, self.height = x, y, w, h


class _Inst:
    def __init__(self, box, mask=b"", mask_rle="", id_=1):
        self.bbox, self.mask, self.mask_rle, self.id = box, mask, mask_rle, id_


class _Array:
    def __init__(self, width, height, encoding, instances):
        self.width, self.height, self.mask_encoding, self.instances = (width, height, encoding,
                                                                      instances)


def test_encode_and_decode_instances_in_both_encodings():
    crop = np.zeros((4, 6), bool)
    crop[1:3, 2:5] = True
    mono, rle = encode_mask(crop, MASK_MONO8)
    assert rle == "" and mono == (crop.astype(np.uint8) * 255).tobytes()
    empty, text = encode_mask(crop, MASK_RLE)
    assert empty == b"" and text == _coco(crop)
    box = _Box(3, 2, 6, 4)
    assert np.array_equal(instance_crop(_Inst(box, mask=mono), MASK_MONO8), crop)
    assert np.array_equal(instance_crop(_Inst(box, mask_rle=text), MASK_RLE), crop)
    arr = _Array(10, 8, MASK_RLE, [_Inst(box, mask_rle=text, id_=7)])
    (full,) = full_masks(arr)
    assert full.shape == (8, 10) and np.array_equal(full[2:6, 3:9], crop) and full.sum() == 6
    with pytest.raises(MaskError, match=r"instance 0 \(id 7\): box 6x4 at \(3, 2\) leaves the "
                                        r"8x8 image"):
        full_masks(_Array(8, 8, MASK_RLE, [_Inst(box, mask_rle=text, id_=7)]))
    with pytest.raises(MaskError, match=r"instance 0 \(id 1\): mask has 3 bytes, box 6x4"):
        full_masks(_Array(10, 8, MASK_MONO8, [_Inst(box, mask=b"abc")]))
    with pytest.raises(MaskError, match="mask_encoding = 5"):
        encode_mask(crop, 5)


@pytest.mark.ros
def test_rle_is_the_cheaper_default_at_640x480_with_10_instances():
    """Serialized InstanceArray bytes per frame (docs/ros.md quotes the numbers of
    test/ros_helpers/mask_bandwidth.py): RLE must be much smaller, so it is the default."""
    from spvis_ros.params import SPECS

    for seed in range(3):
        sizes = {m.encoding: m.bytes for m in measure(640, 480, 10, seed, repeats=1)}
        assert sizes["rle"] * 10 < sizes["mono8"], sizes
    assert SPECS["mask_encoding"].default == "rle"
