"""Benchmark: the node end to end, and its own overhead apart from the model.

1. Overhead (in this process, no model): per frame, converting the incoming sensor_msgs/Image
   (rgb8 and bgr8) or CompressedImage (JPEG) to RGB, building the InstanceArray (10 instances with
   cropped masks) and publishing it on a real topic; compared with the model's `step` time.
2. End to end (the node in its own process, a driver here, loopback, unique domain): frames
   are published with their wall-clock time as header stamp; latency = receipt of `instances`
   minus that stamp (both processes share the clock). Lock-step (one frame in flight) for the
   latency; then frames published as fast as the driver can for the throughput (best-effort
   input, newest frame wins: dropped frames are counted by the node).

    python bench/node.py                       # tiny and lite0 at 640x480 and 1280x720, CPU
    python bench/node.py --presets tiny --sizes 640x480 --device cuda

Weights are random (timing does not depend on them), saved to a temporary checkpoint.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rclpy
import torch
from rclpy.context import Context
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from spvis_msgs.msg import InstanceArray

from spvis_model.config import preset
from spvis_model.instances import Instances
from spvis_model.model import SPVIS
from spvis_model.tracker.geometry import masks_to_boxes
from spvis_ros import messages
from spvis_ros.dds import use_default_profile
from spvis_ros.image_conversion import compressed_to_rgb, image_to_rgb, rgb_to_compressed

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test" / "ros_helpers"))
from node_harness import Driver, NodeProcess, rgb_image, unique_domain


def median_ms(fn, repeats: int = 20) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def fake_instances(h: int, w: int, n: int = 10) -> Instances:
    rng = np.random.default_rng(0)
    masks = np.zeros((n, h, w), bool)
    for i in range(n):
        y, x = rng.integers(0, h // 2), rng.integers(0, w // 2)
        masks[i, y:y + h // 4, x:x + w // 5] = True
    return Instances(ids=np.arange(1, n + 1), labels=np.zeros(n, np.int64),
                     label_names=["object"] * n, scores=np.full(n, 0.9, np.float32),
                     boxes=masks_to_boxes(torch.from_numpy(masks)).numpy(), masks=masks,
                     visibility=np.ones(n, np.float32), first_seen=np.zeros(n))


def overhead(size: tuple[int, int], model: SPVIS) -> dict:
    w, h = size
    rgb = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    msg = rgb_image(rgb, 1.0)
    bgr = rgb_image(rgb[:, :, ::-1].copy(), 1.0)
    bgr.encoding = "bgr8"
    jpeg = rgb_to_compressed(rgb, msg.header, fmt="jpeg")
    inst = fake_instances(h, w)
    index = np.arange(len(inst))
    ctx = Context()
    rclpy.init(context=ctx, domain_id=unique_domain())
    node = Node("bench_overhead", context=ctx)
    pub = node.create_publisher(InstanceArray, "instances",
                                QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    out = {
        "convert_rgb8_ms": median_ms(lambda: image_to_rgb(msg)),
        "convert_bgr8_ms": median_ms(lambda: image_to_rgb(bgr)),
        "convert_jpeg_ms": median_ms(lambda: compressed_to_rgb(jpeg)),
        "build_instances_ms": median_ms(lambda: messages.instance_array(inst, index, msg.header)),
        "publish_instances_ms": median_ms(
            lambda: pub.publish(messages.instance_array(inst, index, msg.header))),
    }
    node.destroy_node()
    rclpy.shutdown(context=ctx)
    state = model.init_state()

    def step() -> None:
        nonlocal state
        state, _ = model.step(state, rgb, time.time())
    out["model_step_ms"] = median_ms(step, repeats=5)
    out["overhead_ms"] = out["convert_rgb8_ms"] + out["publish_instances_ms"]
    return out


def end_to_end(checkpoint: Path, size: tuple[int, int], device: str, frames: int) -> dict:
    w, h = size
    domain = unique_domain()
    with tempfile.TemporaryDirectory() as tmp:
        node = NodeProcess(domain, Path(tmp) / "node.log", {
            "checkpoint": str(checkpoint), "cameras": "[cam0]", "device": device,
            "input_reliability": "reliable", "input_depth": "1", "score_threshold": "0.0"})
        try:
            node.wait_for_log("spvis: ", timeout=120)
            driver = Driver(domain, ["cam0"])
            driver.wait_connected()
            rng = np.random.default_rng(0)
            rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            latencies = []
            for _ in range(frames):
                now = time.time()
                out = driver.send("cam0", rgb_image(rgb, now), timeout=60)
                if out is not None:
                    latencies.append(time.time() - now)
            # Throughput: publish back to back for a while, count outputs.
            driver.received["cam0"].clear()
            t0 = time.time()
            sent = 0
            while time.time() - t0 < max(3.0, 3 * statistics.median(latencies)):
                driver.pubs["cam0"].publish(rgb_image(rgb, time.time()))
                sent += 1
                driver.executor.spin_once(timeout_sec=0.0)
            driver.spin_until(lambda: False, 2 * statistics.median(latencies))
            elapsed = time.time() - t0
            got = len(driver.received["cam0"])
            driver.close()
        finally:
            node.stop()
    return {"latency_ms_median": 1e3 * statistics.median(latencies),
            "latency_ms_p90": 1e3 * float(np.percentile(latencies, 90)),
            "throughput_fps": got / elapsed, "published": sent, "answered": got}


def main() -> None:
    use_default_profile()  # this process plays the camera: large images need the SHM profile
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "lite0"])
    parser.add_argument("--sizes", nargs="+", default=["640x480", "1280x720"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--frames", type=int, default=15)
    args = parser.parse_args()
    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else \
        f"CPU, {torch.get_num_threads()} threads"
    print(f"spvis node on {where}; random weights; median over {args.frames} lock-step frames")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.presets:
            torch.manual_seed(0)
            model = SPVIS(preset(name), pretrained_backbone=False).eval()
            ckpt = Path(tmp) / f"{name}.pt"
            model.save(ckpt)
            model = model.to(args.device)
            for size_text in args.sizes:
                size = tuple(int(v) for v in size_text.split("x"))
                o = overhead(size, model)
                e = end_to_end(ckpt, size, args.device, args.frames)
                print(f"[{name} {size_text}] overhead {o['overhead_ms']:.2f} ms (convert rgb8 "
                      f"{o['convert_rgb8_ms']:.2f}, bgr8 {o['convert_bgr8_ms']:.2f}, jpeg "
                      f"{o['convert_jpeg_ms']:.2f}; build {o['build_instances_ms']:.2f}, "
                      f"build+publish {o['publish_instances_ms']:.2f}) vs model step "
                      f"{o['model_step_ms']:.1f} ms = "
                      f"{100 * o['overhead_ms'] / o['model_step_ms']:.1f}%"
                      f" | end to end: latency {e['latency_ms_median']:.1f} ms (p90 "
                      f"{e['latency_ms_p90']:.1f}), throughput {e['throughput_fps']:.1f} fps "
                      f"({e['answered']} of {e['published']} published frames answered)",
                      flush=True)


if __name__ == "__main__":
    main()
