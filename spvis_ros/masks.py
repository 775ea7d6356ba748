"""Instance masks on the wire: the cropped mono8 bytes and COCO's compressed RLE, both ways.

``InstanceArray.mask_encoding`` says which field of each Instance holds the mask (the other is
empty):

- ``MASK_MONO8`` (0): ``mask`` = ``bbox.height * bbox.width`` bytes, row-major, 255 inside;
- ``MASK_RLE`` (1): ``mask_rle`` = the COCO compressed RLE string (what pycocotools writes in
  ``"counts"``) of the same ``bbox.height x bbox.width`` crop: run lengths in column-major
  order starting with a run of zeros, each stored as the difference to the run two before
  (from the fourth run on) in 5-bit groups, 6 bits per character with a continuation bit,
  offset by 48 (ASCII '0').

Pure numpy; no ROS, no pycocotools (tests check equality with pycocotools both ways). Works on
rclpy messages and on rosbags' deserialized ones alike.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MASK_MONO8 = 0
MASK_RLE = 1
ENCODINGS = {"mono8": MASK_MONO8, "rle": MASK_RLE}


class MaskError(ValueError):
    """A mask that does not decode (size or RLE does not match its box); the text says which."""


def rle_counts(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool -> COCO run lengths (column-major, first run = zeros, may be 0), int64."""
    flat = np.ascontiguousarray(np.asarray(mask, bool).T).reshape(-1)
    if flat.size == 0:
        return np.zeros(0, np.int64)
    starts = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], starts, [flat.size]))
    counts = np.diff(bounds)
    if flat[0]:
        counts = np.concatenate(([0], counts))
    return counts.astype(np.int64)


def counts_to_string(counts: np.ndarray | list[int]) -> str:
    """COCO run lengths -> COCO's compressed string (pycocotools' ``rleToString``), vectorised:
    each value (from the fourth on: its difference to the value two before) is written in
    5-bit groups, least significant first, with bit 0x20 set on all but the last group (the
    last is the first whose remaining value is 0, or -1 when its 0x10 bit is set), plus 48."""
    values = np.asarray(counts, np.int64).reshape(-1)
    if values.size == 0:
        return ""
    x = values.copy()
    x[3:] -= values[1:-2]
    groups = 7  # 35 bits: run lengths and their differences stay below 2**31 (H * W)
    shifts = 5 * np.arange(groups, dtype=np.int64)
    chunks = (x[:, None] >> shifts) & 0x1F  # arithmetic shift: sign kept
    rest = x[:, None] >> (shifts + 5)
    more = np.where(chunks & 0x10, rest != -1, rest != 0)
    # Group j is written when every group before it said "more".
    written = np.ones_like(more)
    written[:, 1:] = np.cumprod(more[:, :-1], axis=1).astype(bool)
    chars = (chunks | (more * 0x20)) + 48
    return chars[written].astype(np.uint8).tobytes().decode("ascii")


def string_to_counts(text: str) -> list[int]:
    """COCO's compressed string -> run lengths (pycocotools' ``rleFrString``).

    Raises MaskError for characters outside the alphabet or a group cut short."""
    counts: list[int] = []
    pos = 0
    while pos < len(text):
        x = 0
        k = 0
        more = True
        while more:
            if pos >= len(text):
                raise MaskError(f"mask_rle ends inside a run (after {len(counts)} runs)")
            c = ord(text[pos]) - 48
            if not 0 <= c < 64:
                raise MaskError(f"mask_rle has character {text[pos]!r} at {pos}: not COCO RLE")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            pos += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def encode_rle(mask: np.ndarray) -> str:
    """(H, W) bool crop -> COCO compressed RLE string ("" for an empty crop)."""
    return counts_to_string(rle_counts(mask))


def decode_rle(text: str, height: int, width: int) -> np.ndarray:
    """COCO compressed RLE string of an (H, W) crop -> (H, W) bool.

    Raises MaskError when the runs do not add up to ``height * width``."""
    counts = string_to_counts(text)
    total = height * width
    if any(c < 0 for c in counts) or sum(counts) != total:
        raise MaskError(f"mask_rle runs add up to {sum(counts)} pixels, the {height}x{width} box "
                        f"has {total}")
    values = np.zeros(len(counts), bool)
    values[1::2] = True
    flat = np.repeat(values, counts)
    return flat.reshape(width, height).T.copy()


def encode_mask(crop: np.ndarray, encoding: int) -> tuple[bytes, str]:
    """(H, W) bool crop -> (``mask`` bytes, ``mask_rle`` string) for ``encoding``."""
    if encoding == MASK_RLE:
        return b"", encode_rle(crop)
    if encoding == MASK_MONO8:
        return (np.asarray(crop, bool).astype(np.uint8) * 255).tobytes(), ""
    raise MaskError(f"mask_encoding = {encoding!r}: must be {MASK_MONO8} (mono8) or "
                    f"{MASK_RLE} (rle)")


def instance_crop(inst: Any, encoding: int) -> np.ndarray:
    """The (bbox.height, bbox.width) bool crop of one Instance message (rclpy or rosbags).

    Raises MaskError naming the size mismatch or a bad RLE."""
    h, w = int(inst.bbox.height), int(inst.bbox.width)
    if encoding == MASK_RLE:
        text = str(inst.mask_rle)
        if not text and h * w == 0:
            return np.zeros((h, w), bool)
        return decode_rle(text, h, w)
    if encoding != MASK_MONO8:
        raise MaskError(f"mask_encoding = {encoding!r}: must be {MASK_MONO8} (mono8) or "
                        f"{MASK_RLE} (rle)")
    data = np.frombuffer(bytes(inst.mask), np.uint8) if not isinstance(inst.mask, np.ndarray) \
        else np.asarray(inst.mask, np.uint8).reshape(-1)
    if data.size != h * w:
        raise MaskError(f"mask has {data.size} bytes, box {w}x{h} needs {h * w}")
    return data.reshape(h, w) > 0


def full_masks(arr: Any) -> list[np.ndarray]:
    """Full-frame (height, width) bool masks of every Instance of an InstanceArray.

    Raises MaskError naming the instance (index and id) whose mask or box is wrong."""
    encoding = int(getattr(arr, "mask_encoding", MASK_MONO8))
    height, width = int(arr.height), int(arr.width)
    out = []
    for k, inst in enumerate(arr.instances):
        b = inst.bbox
        x0, y0, bw, bh = int(b.x_offset), int(b.y_offset), int(b.width), int(b.height)
        if x0 + bw > width or y0 + bh > height:
            raise MaskError(f"instance {k} (id {int(inst.id)}): box {bw}x{bh} at ({x0}, {y0}) "
                            f"leaves the {width}x{height} image")
        try:
            crop = instance_crop(inst, encoding)
        except MaskError as exc:
            raise MaskError(f"instance {k} (id {int(inst.id)}): {exc}") from None
        full = np.zeros((height, width), bool)
        full[y0:y0 + bh, x0:x0 + bw] = crop
        out.append(full)
    return out
