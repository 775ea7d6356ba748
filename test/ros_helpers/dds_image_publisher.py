"""Publish N best-effort ``sensor_msgs/Image`` messages (helper process for the DDS profile test).

Usage: ``python dds_image_publisher.py TOPIC [--count N] [--rate HZ] [--width W] [--height H]
[--match-timeout S] [--settle S] [--apply-default-profile]``.

``--apply-default-profile`` calls ``spvis_ros.dds.use_default_profile()`` on ``os.environ``
before ``rclpy.init()`` (the in-process way a node applies the shipped profile).

Waits (at most ``--match-timeout`` s) until a subscription is matched, then ``--settle`` seconds
more so the reader side has matched the writer too (a best-effort reader drops samples from a
writer it has not matched yet), then publishes ``--count`` rgb8 images at ``--rate`` Hz with
``header.frame_id = "seq<i>"``. Prints one JSON line on stdout:
``{"matched": bool, "match_s": float|null, "published": int, "publish_ms_median": float|null,
"cpu_s": float}`` (``cpu_s``: process CPU time when done publishing).
Domain, discovery and Fast DDS settings come from the environment (``ROS_DOMAIN_ID``,
``ROS_AUTOMATIC_DISCOVERY_RANGE``, ``FASTDDS_DEFAULT_PROFILES_FILE``, ...). Exit status 0 when
it published, 3 when no subscription was matched in time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np
import rclpy
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image


def make_image(width: int, height: int) -> Image:
    """An rgb8 image, ``height x width x 3`` bytes, with a deterministic byte pattern."""
    msg = Image()
    msg.width = width
    msg.height = height
    msg.encoding = "rgb8"
    msg.is_bigendian = 0
    msg.step = width * 3
    pattern = (np.arange(height * width * 3, dtype=np.uint32) % 251).astype(np.uint8)
    msg.data = pattern.tobytes()
    return msg


def main() -> int:
    """Run the publisher; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("topic")
    parser.add_argument("--count", type=int, default=30)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--match-timeout", type=float, default=10.0)
    parser.add_argument("--settle", type=float, default=0.5)
    parser.add_argument("--apply-default-profile", action="store_true")
    args = parser.parse_args()

    if args.apply_default_profile:
        from spvis_ros.dds import use_default_profile

        print(f"profile {use_default_profile()}", file=sys.stderr, flush=True)

    msg = make_image(args.width, args.height)
    rclpy.init()
    result: dict = {"matched": False, "match_s": None, "published": 0, "publish_ms_median": None}
    try:
        node = rclpy.create_node("spvis_dds_image_publisher")
        qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.BEST_EFFORT
        )
        pub = node.create_publisher(Image, args.topic, qos)
        t0 = time.monotonic()
        while time.monotonic() - t0 < args.match_timeout:
            if pub.get_subscription_count() > 0:
                result["matched"] = True
                result["match_s"] = round(time.monotonic() - t0, 3)
                break
            time.sleep(0.02)
        if not result["matched"]:
            print(json.dumps(result), flush=True)
            return 3
        time.sleep(args.settle)
        period = 1.0 / args.rate
        next_t = time.monotonic()
        publish_ms = []
        for i in range(args.count):
            msg.header.frame_id = f"seq{i}"
            msg.header.stamp = node.get_clock().now().to_msg()
            t = time.perf_counter()
            pub.publish(msg)
            publish_ms.append((time.perf_counter() - t) * 1e3)
            result["published"] = i + 1
            next_t += period
            time.sleep(max(0.0, next_t - time.monotonic()))
        result["publish_ms_median"] = round(statistics.median(publish_ms), 2)
        result["cpu_s"] = round(time.process_time(), 2)
        # Give the transport a moment to hand over the last sample before the participant goes.
        time.sleep(0.3)
        node.destroy_node()
    finally:
        rclpy.try_shutdown()
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
