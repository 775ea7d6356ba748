"""The node's `batch_cameras` worker path, in this process: the newest frame of every camera
through one `step_batch`, each camera's instances and state as with one camera at a time; a
camera whose frame fails alone is rejected and reset alone; a camera of another size steps
alone."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import rclpy
from rclpy.context import Context
from synthetic_clip import crossing_clip

sys.path.insert(0, str(Path(__file__).resolve().parent / "ros_helpers"))
from node_harness import rgb_image, unique_domain

from spvis_ros.node import SpvisNode

pytestmark = pytest.mark.ros
CAMERAS = ["a", "b", "c"]


def make_node(checkpoint: Path, batch: bool) -> tuple[SpvisNode, Context, list]:
    ctx = Context()
    args = ["--ros-args", "-p", f"checkpoint:={checkpoint}", "-p", "device:=cpu",
            "-p", "autostart:=false", "-p", f"cameras:=[{','.join(CAMERAS)}]",
            "-p", f"batch_cameras:={'true' if batch else 'false'}"]
    rclpy.init(args=args, context=ctx, domain_id=unique_domain())
    node = SpvisNode(context=ctx)
    published: list = []
    node._publish = lambda stream, header, rgb, inst, p: published.append((stream.name, inst))
    node.model = node._load_model()
    return node, ctx, published


def close(node: SpvisNode, ctx: Context) -> None:
    node.destroy_node()
    rclpy.shutdown(context=ctx)


def test_batched_worker_equals_one_camera_at_a_time(trained_tiny, tmp_path):
    ckpt = tmp_path / "tiny.pt"
    trained_tiny.save(ckpt)
    frames, _ = crossing_clip(6)
    other, _ = crossing_clip(6, seed=3)
    bad = rgb_image(frames[0], 0.0)
    bad.data = bad.data[:-5]  # truncated: dropped with a log line, counted as rejected
    batched, ctx_b, out_b = make_node(ckpt, batch=True)
    single, ctx_s, out_s = make_node(ckpt, batch=False)
    try:
        assert batched.params.batch_cameras and not single.params.batch_cameras
        for t in range(6):
            msgs = [rgb_image(frames[t], 0.2 * t), rgb_image(frames[::-1][t], 3.0 + 0.2 * t),
                    rgb_image(other[t][:48] if t >= 3 else other[t], 9.0 + 0.2 * t)]
            if t == 2:
                msgs[1] = bad
            streams_b = [batched.streams[c] for c in CAMERAS]
            batched._process_batch([(s, m, 0.0) for s, m in zip(streams_b, msgs, strict=True)])
            for c, m in zip(CAMERAS, msgs, strict=True):
                single._process(single.streams[c], m, 0.0)
        assert [name for name, _ in out_b] != []
        by_cam_b = {c: [i for n, i in out_b if n == c] for c in CAMERAS}
        by_cam_s = {c: [i for n, i in out_s if n == c] for c in CAMERAS}
        for c in CAMERAS:
            assert len(by_cam_b[c]) == len(by_cam_s[c]), c
            for got, want in zip(by_cam_b[c], by_cam_s[c], strict=True):
                assert np.array_equal(got.ids, want.ids) and np.array_equal(got.masks, want.masks)
                np.testing.assert_allclose(got.scores, want.scores, atol=1e-6, rtol=0)
        assert batched.streams["b"].stats.rejected == single.streams["b"].stats.rejected == 1
        # camera c's frames shrink at t = 3: its tracks are reset (ids go on), no frame is lost
        for node in (batched, single):
            c_stats = node.streams["c"].stats
            assert (c_stats.rejected, c_stats.resets) == (0, 1)
        assert len(by_cam_b["c"]) == 6
        assert sum(len(i) for i in by_cam_b["a"]) > 0
        for c in CAMERAS:
            assert int(batched.streams[c].state.next_id) == int(single.streams[c].state.next_id)
    finally:
        close(batched, ctx_b)
        close(single, ctx_s)
