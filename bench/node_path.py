"""Benchmark: the node's per-frame work without DDS, for one camera and for several batched.

Per frame, what the node's worker does between receiving a message and publishing: convert the
sensor_msgs/Image (rgb8) to RGB (`spvis_ros.image_conversion`), `SPVIS.step` (or one
`SPVIS.step_batch` over the newest frame of every camera), then build the InstanceArray (RLE
masks) and the vision_msgs Detection2DArray (`spvis_ros.messages`). No rclpy, no publishing:
only the message classes are needed (on a GPU machine without ROS, gpu_check.sh puts the
generated Python message modules on the path).

Reports median / p90 / p99 per frame of each part and of the whole, and for N cameras the
aggregate frames per second against one camera (the batching goal: 4 cameras >= 3x one).
Each camera sees its own synthetic video (`spvis_model.data.synthetic`, preset "easy": the
shapes the shipped model was trained on). Weights are random and seeded, or a checkpoint's
(``--checkpoint``: the shipped lite0 finds the shapes, so the message building has instances
to convert); every instance the tracker outputs is converted (score threshold 0, at most 50).

    python bench/node_path.py --device cuda --preset lite0 --precision bfloat16 --cameras 1 4
    python bench/node_path.py --device cuda --checkpoint spvis_model/weights/spvis_lite0.pt \
        --precision bfloat16 --capture eager graphs
    python bench/node_path.py --device cpu --preset tiny --size 160x120 --frames 5
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from spvis_model.config import preset
from spvis_model.data.synthetic import generate_video
from spvis_model.data.synthetic import preset as video_preset
from spvis_model.model import SPVIS
from spvis_ros import messages
from spvis_ros.image_conversion import image_to_rgb


def camera_clip(n: int, w: int, h: int, camera: int) -> list[np.ndarray]:
    """n RGB frames (h, w, 3) uint8 of synthetic video `camera` (moving, occluding shapes)."""
    cfg = dataclasses.replace(video_preset("easy"), width=w, height=h, frames=n, seed=11)
    return generate_video(cfg, camera)[0]


def rgb8(rgb: np.ndarray, stamp: float) -> Image:
    msg = Image(height=rgb.shape[0], width=rgb.shape[1], encoding="rgb8", is_bigendian=0,
                step=rgb.shape[1] * 3, data=np.ascontiguousarray(rgb).tobytes())
    msg.header = Header(frame_id="camera", stamp=messages.seconds_to_time(stamp))
    return msg


def stats(times: list[float]) -> dict:
    a = np.asarray(times)
    return {"median_ms": float(np.median(a) * 1e3), "p90_ms": float(np.percentile(a, 90) * 1e3),
            "p99_ms": float(np.percentile(a, 99) * 1e3), "n": int(a.size)}


def run(model: SPVIS, clips: list[list[np.ndarray]], device: str) -> dict:
    """All cameras' frames through the node-equivalent path; one camera: `step`, several: one
    `step_batch` per frame time."""
    n_cam = len(clips)
    msgs = [[rgb8(f, 0.1 * t + 100 * c) for t, f in enumerate(clip)]
            for c, clip in enumerate(clips)]
    states = [model.init_state() for _ in clips]
    parts: dict[str, list[float]] = {"convert": [], "model": [], "messages": [], "total": []}
    published = 0

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    for t in range(len(clips[0])):
        sync()
        t0 = time.perf_counter()
        rgbs = [image_to_rgb(msgs[c][t]) for c in range(n_cam)]
        t1 = time.perf_counter()
        stamps = [0.1 * t + 100 * c for c in range(n_cam)]
        if n_cam == 1:
            states[0], inst = model.step(states[0], rgbs[0], stamps[0])
            results = [inst]
        else:
            out = model.step_batch(states, rgbs, stamps)
            states = [s for s, _ in out]
            results = [i for _, i in out]
        t2 = time.perf_counter()
        for c, inst in enumerate(results):
            index = messages.select(inst, 0.0, 50, [])
            messages.instance_array(inst, index, msgs[c][t].header, "rle")
            messages.detection_array(inst, index, msgs[c][t].header, f"cam{c}", "{camera}/")
            published += len(index)
        sync()
        t3 = time.perf_counter()
        if t >= 2:  # warm-up frames (and, with capture, the capture itself) are left out
            for key, v in (("convert", t1 - t0), ("model", t2 - t1), ("messages", t3 - t2),
                           ("total", t3 - t0)):
                parts[key].append(v)
    out = {k: stats(v) for k, v in parts.items()}
    out["cameras"] = n_cam
    out["aggregate_fps"] = n_cam / (out["total"]["median_ms"] / 1e3)
    out["instances_published"] = published
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--preset", default="lite0", help="random seeded weights")
    parser.add_argument("--checkpoint", default=None, help="instead of --preset")
    parser.add_argument("--precision", default="float32",
                        choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--size", default="640x480", help="camera image WIDTHxHEIGHT")
    parser.add_argument("--frames", type=int, default=40, help="frames per camera (+2 warm-up)")
    parser.add_argument("--cameras", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--capture", nargs="+", default=["eager"],
                        choices=["eager", "graphs", "compile"])
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("bench/node_path.py: --device cuda asked for, but torch sees no CUDA device")
    w, h = (int(v) for v in args.size.split("x"))
    if args.checkpoint:
        model = SPVIS.from_checkpoint(args.checkpoint, device=args.device).eval()
    else:
        torch.manual_seed(0)
        model = SPVIS(preset(args.preset), pretrained_backbone=False).to(args.device).eval()
    if args.precision != "float32":
        model.set_precision(args.precision)
    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    name = model.cfg.name + (f" ({args.checkpoint})" if args.checkpoint else " (random)")
    print(f"node-equivalent path (no DDS) on {where}: {name} {args.precision}, "
          f"{w}x{h}, {args.frames} frames per camera", flush=True)
    results = []
    for mode in args.capture:
        model.capture(mode)
        base = None
        for n_cam in args.cameras:
            clips = [camera_clip(args.frames + 2, w, h, c) for c in range(n_cam)]
            r = run(model, clips, args.device.split(":")[0])
            r.update(capture=mode, model_name=name, precision=args.precision, size=[w, h])
            if n_cam == 1:
                base = r["aggregate_fps"]
            r["vs_one_camera"] = r["aggregate_fps"] / base if base else None
            results.append(r)
            ratio = f", {r['vs_one_camera']:.2f}x one camera" if base and n_cam > 1 else ""
            print(f"[{mode}] {n_cam} camera(s): per frame time median {r['total']['median_ms']:.2f}"
                  f" ms (p99 {r['total']['p99_ms']:.2f}; convert {r['convert']['median_ms']:.2f},"
                  f" model {r['model']['median_ms']:.2f}, messages "
                  f"{r['messages']['median_ms']:.2f}) -> {r['aggregate_fps']:.1f} frames/s"
                  f"{ratio}", flush=True)
            if args.json:
                Path(args.json).write_text(json.dumps(results, indent=1))
        if mode != "eager" and model.segment_graphs is not None:
            print(model.segment_graphs.describe(), flush=True)
    model.capture("eager")


if __name__ == "__main__":
    main()
