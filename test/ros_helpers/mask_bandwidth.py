"""Measure the InstanceArray size (serialized CDR bytes) and encoding time of the two mask
encodings, mono8 crops and COCO RLE, for typical frames.

    .venv/bin/python test/ros_helpers/mask_bandwidth.py [--width 640 --height 480 --instances 10]

The masks are filled shapes drawn with OpenCV (ellipses, boxes, polygons, rings; 30-200 px),
the smooth outlines the model's upsampled masks have. Used by test_masks.py (sizes only) and
quoted in docs/ros.md.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class Measurement:
    encoding: str
    bytes: int
    encode_ms: float


def shapes(width: int, height: int, count: int, seed: int = 0) -> np.ndarray:
    """(count, H, W) bool masks of random filled shapes."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((count, height, width), np.uint8)
    for k in range(count):
        size = int(rng.integers(30, 200))
        cx, cy = int(rng.integers(size // 2, width - size // 2)), int(
            rng.integers(size // 2, height - size // 2))
        kind = k % 4
        if kind == 0:
            cv2.ellipse(masks[k], (cx, cy), (size // 2, int(size * rng.uniform(0.3, 0.5))),
                        float(rng.uniform(0, 180)), 0, 360, 1, -1)
        elif kind == 1:
            cv2.rectangle(masks[k], (cx - size // 2, cy - size // 3),
                          (cx + size // 2, cy + size // 3), 1, -1)
        elif kind == 2:
            angles = np.sort(rng.uniform(0, 2 * np.pi, 7))
            radii = rng.uniform(0.25, 0.5, 7) * size
            pts = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], 1)
            cv2.fillPoly(masks[k], [pts.astype(np.int32)], 1)
        else:
            cv2.circle(masks[k], (cx, cy), size // 2, 1, -1)
            cv2.circle(masks[k], (cx, cy), size // 4, 0, -1)
    return masks.astype(bool)


def measure(width: int = 640, height: int = 480, count: int = 10, seed: int = 0,
            repeats: int = 5) -> list[Measurement]:
    """Serialized size and median encode time of one InstanceArray per encoding."""
    from rclpy.serialization import serialize_message
    from std_msgs.msg import Header

    from spvis_model.instances import Instances
    from spvis_ros import messages

    masks = shapes(width, height, count, seed)
    boxes = []
    for m in masks:
        ys, xs = np.nonzero(m)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    inst = Instances(ids=np.arange(1, count + 1), labels=np.zeros(count, np.int64),
                     label_names=["thing"] * count, scores=np.full(count, 0.9, np.float32),
                     boxes=np.array(boxes, np.float32), masks=masks,
                     visibility=np.ones(count, np.float32), first_seen=np.zeros(count))
    index = np.arange(count)
    out = []
    for encoding in ("mono8", "rle"):
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            msg = messages.instance_array(inst, index, Header(), encoding)
            times.append(time.perf_counter() - t0)
        out.append(Measurement(encoding, len(serialize_message(msg)),
                               1e3 * sorted(times)[len(times) // 2]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--instances", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    print(f"{args.width}x{args.height}, {args.instances} instances, {args.seeds} frames")
    rows: dict[str, list[Measurement]] = {}
    for seed in range(args.seeds):
        for m in measure(args.width, args.height, args.instances, seed):
            rows.setdefault(m.encoding, []).append(m)
    for encoding, ms in rows.items():
        sizes = [m.bytes for m in ms]
        print(f"{encoding:6s} bytes/frame median {int(np.median(sizes)):8d} "
              f"(min {min(sizes)}, max {max(sizes)}), encode "
              f"{np.median([m.encode_ms for m in ms]):.2f} ms")


if __name__ == "__main__":
    main()
