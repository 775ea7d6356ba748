"""Receive one ``spvis_msgs/InstanceArray`` and print it as JSON (helper process for ROS tests).

Usage: ``python subscriber.py TOPIC [--timeout S]``.
Exit status 0 and one JSON line on stdout (``sample_msgs.from_msg`` of the first message
received); exit status 3 and nothing on stdout if no message arrives within ``--timeout``
seconds. Domain / discovery come from the environment (``ROS_DOMAIN_ID``,
``ROS_AUTOMATIC_DISCOVERY_RANGE``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sample_msgs import from_msg
from spvis_msgs.msg import InstanceArray

EXIT_TIMEOUT = 3


def main() -> int:
    """Run the subscriber; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("topic")
    parser.add_argument("--timeout", type=float, default=15.0)
    args = parser.parse_args()

    received: list[Any] = []
    rclpy.init()
    try:
        node = rclpy.create_node("spvis_test_subscriber")
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        node.create_subscription(InstanceArray, args.topic, received.append, qos)
        deadline = time.monotonic() + args.timeout
        while rclpy.ok() and not received and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
        node.destroy_node()
    finally:
        rclpy.try_shutdown()
    if not received:
        print(f"no message on {args.topic} within {args.timeout} s", file=sys.stderr)
        return EXIT_TIMEOUT
    print(json.dumps(from_msg(received[0])), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
