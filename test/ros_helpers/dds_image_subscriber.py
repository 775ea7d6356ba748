"""Count best-effort ``sensor_msgs/Image`` deliveries (helper process for the DDS profile test).

Usage: ``python dds_image_subscriber.py TOPIC [--expect N] [--depth D] [--timeout S]
[--grace S]``.

Subscribes with best-effort reliability and keep-last ``--depth``. Prints ``matched`` on stderr
once a publisher is matched. Stops when ``--expect`` images arrived, when ``--grace`` seconds
have passed after stdin reached end-of-file (the test closes it when the publisher is done), or
after ``--timeout`` seconds in all. Each image is checked (size, ``step``, encoding, a few bytes
of the publisher's pattern); a bad one counts as ``corrupt``, not as received. Prints one JSON
line on stdout: ``{"received": int, "corrupt": int, "seqs": [int, ...], "latency_ms_median":
float|null, "matched": bool, "cpu_s": float}`` (latency from the header stamp, both processes on
one host; ``cpu_s``: this process's CPU time).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time

import rclpy
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image


def main() -> int:
    """Run the subscriber; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("topic")
    parser.add_argument("--expect", type=int, default=30)
    parser.add_argument("--depth", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=25.0)
    parser.add_argument("--grace", type=float, default=1.0)
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    args = parser.parse_args()

    size = args.width * args.height * 3
    probes = [0, 1, 250, 251, size // 2, size - 1]
    stdin_closed = threading.Event()

    def _watch_stdin() -> None:
        sys.stdin.read()
        stdin_closed.set()

    threading.Thread(target=_watch_stdin, daemon=True).start()

    seqs: list[int] = []
    corrupt = 0
    latencies: list[float] = []
    rclpy.init()
    matched = False
    try:
        node = rclpy.create_node("spvis_dds_image_subscriber")

        def _on_image(msg: Image) -> None:
            nonlocal corrupt
            now_ns = node.get_clock().now().nanoseconds
            data = msg.data
            ok = (
                msg.width == args.width
                and msg.height == args.height
                and msg.encoding == "rgb8"
                and msg.step == args.width * 3
                and len(data) == size
                and all(data[i] == i % 251 for i in probes)
                and msg.header.frame_id.startswith("seq")
            )
            if not ok:
                corrupt += 1
                return
            seqs.append(int(msg.header.frame_id[3:]))
            stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            latencies.append((now_ns - stamp_ns) / 1e6)

        qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=args.depth,
            reliability=ReliabilityPolicy.BEST_EFFORT,
        )
        sub = node.create_subscription(Image, args.topic, _on_image, qos)
        t0 = time.monotonic()
        closed_at: float | None = None
        while time.monotonic() - t0 < args.timeout and len(seqs) < args.expect:
            rclpy.spin_once(node, timeout_sec=0.05)
            if not matched and sub.get_publisher_count() > 0:
                matched = True
                print("matched", file=sys.stderr, flush=True)
            if stdin_closed.is_set():
                closed_at = closed_at if closed_at is not None else time.monotonic()
                if time.monotonic() - closed_at > args.grace:
                    break
        node.destroy_node()
    finally:
        rclpy.try_shutdown()
    print(
        json.dumps(
            {
                "received": len(seqs),
                "corrupt": corrupt,
                "seqs": seqs,
                "latency_ms_median": round(statistics.median(latencies), 2) if latencies else None,
                "matched": matched,
                "cpu_s": round(time.process_time(), 2),
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
