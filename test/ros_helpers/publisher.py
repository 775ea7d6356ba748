"""Publish a sample ``spvis_msgs/InstanceArray`` repeatedly (helper process for the ROS tests).

Usage: ``python publisher.py TOPIC SEED [--big-mask] [--duration S] [--period S]``.
Publishes ``make_sample(SEED)`` every ``--period`` seconds (reliable QoS) until ``--duration``
elapses or the process is terminated. Domain / discovery come from the environment
(``ROS_DOMAIN_ID``, ``ROS_AUTOMATIC_DISCOVERY_RANGE``). Prints ``matched`` on stderr when the
first subscriber is discovered, and exits 0.
"""

from __future__ import annotations

import argparse
import sys
import time

import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sample_msgs import make_sample, to_rclpy
from spvis_msgs.msg import InstanceArray


def main() -> int:
    """Run the publisher; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("topic")
    parser.add_argument("seed", type=int)
    parser.add_argument("--big-mask", action="store_true")
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--period", type=float, default=0.05)
    args = parser.parse_args()

    msg = to_rclpy(make_sample(args.seed, big_mask=args.big_mask))
    rclpy.init()
    try:
        node = rclpy.create_node("spvis_test_publisher")
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        pub = node.create_publisher(InstanceArray, args.topic, qos)
        deadline = time.monotonic() + args.duration
        matched = False
        while rclpy.ok() and time.monotonic() < deadline:
            if not matched and pub.get_subscription_count() > 0:
                matched = True
                print("matched", file=sys.stderr, flush=True)
            pub.publish(msg)
            rclpy.spin_once(node, timeout_sec=args.period)
        node.destroy_node()
    finally:
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
