"""Deterministic sample ``spvis_msgs/InstanceArray`` content shared by the ROS message tests.

A sample is a plain JSON-able dict (so a subprocess can print what it received and the test can
compare it field by field), with converters to and from rclpy messages and rosbags messages.
Floats are chosen exactly representable in float32 so equality survives serialization.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import RegionOfInterest
from spvis_msgs.msg import Instance, InstanceArray
from std_msgs.msg import Header

Sample = dict[str, Any]

MSGTYPE = "spvis_msgs/msg/InstanceArray"


def _mask(rng: random.Random, height: int, width: int) -> list[int]:
    """Random binary mask (0 or 255 per pixel), row-major, ``height * width`` bytes."""
    return [255 if rng.random() < 0.5 else 0 for _ in range(height * width)]


def make_sample(seed: int, big_mask: bool = False) -> Sample:
    """Build a reproducible InstanceArray description with two instances.

    The first instance has a full mask (``big_mask`` makes it 200x300 = 60 kB, enough to need
    several transport fragments); the second is an occluded track with an empty box and mask.
    ``seed`` changes stamps, ids, names and mask bits so a stale or fabricated message is caught.
    """
    rng = random.Random(seed)
    height, width = (200, 300) if big_mask else (5, 7)
    return {
        "header": {
            "stamp": {
                "sec": 1_700_000_000 + rng.randrange(10_000),
                "nanosec": rng.randrange(10**9),
            },
            "frame_id": f"camera_{seed}_optical",
        },
        "width": 640,
        "height": 480,
        "mask_encoding": 0,  # InstanceArray.MASK_MONO8
        "instances": [
            {
                # Above 2**63: checks the field really is an unsigned 64-bit integer.
                "id": 2**63 + rng.randrange(1000),
                "class_id": 3,
                "class_name": "person",
                "score": 0.875,
                "track_score": 0.5,
                "visibility": 0.625,
                "bbox": {
                    "x_offset": 11,
                    "y_offset": 13,
                    "height": height,
                    "width": width,
                    "do_rectify": False,
                },
                "mask": _mask(rng, height, width),
                "mask_rle": "",
                "first_seen": {"sec": 1_699_999_990, "nanosec": rng.randrange(10**9)},
            },
            {
                "id": rng.randrange(1, 1000),
                "class_id": -1,
                "class_name": f"unknown_{rng.randrange(100)}",
                "score": 0.25,
                "track_score": 0.125,
                "visibility": 0.0,
                "bbox": {
                    "x_offset": 0,
                    "y_offset": 0,
                    "height": 0,
                    "width": 0,
                    "do_rectify": False,
                },
                "mask": [],
                "mask_rle": "",
                "first_seen": {"sec": 1_699_999_000, "nanosec": 0},
            },
        ],
    }


def to_rclpy(sample: Sample) -> InstanceArray:
    """Convert a sample dict into an rclpy ``spvis_msgs.msg.InstanceArray``."""
    hdr = sample["header"]
    return InstanceArray(
        header=Header(stamp=Time(**hdr["stamp"]), frame_id=hdr["frame_id"]),
        width=sample["width"],
        height=sample["height"],
        mask_encoding=sample["mask_encoding"],
        instances=[
            Instance(
                id=inst["id"],
                class_id=inst["class_id"],
                class_name=inst["class_name"],
                score=inst["score"],
                track_score=inst["track_score"],
                visibility=inst["visibility"],
                bbox=RegionOfInterest(**inst["bbox"]),
                mask=bytes(inst["mask"]),
                mask_rle=inst["mask_rle"],
                first_seen=Time(**inst["first_seen"]),
            )
            for inst in sample["instances"]
        ],
    )


def _time_dict(stamp: Any) -> dict[str, int]:
    """``builtin_interfaces/Time`` (rclpy or rosbags) to a dict."""
    return {"sec": int(stamp.sec), "nanosec": int(stamp.nanosec)}


def from_msg(msg: Any) -> Sample:
    """Convert an InstanceArray (rclpy or rosbags object) back into a sample dict."""
    return {
        "header": {"stamp": _time_dict(msg.header.stamp), "frame_id": str(msg.header.frame_id)},
        "width": int(msg.width),
        "height": int(msg.height),
        "mask_encoding": int(msg.mask_encoding),
        "instances": [
            {
                "id": int(inst.id),
                "class_id": int(inst.class_id),
                "class_name": str(inst.class_name),
                "score": float(inst.score),
                "track_score": float(inst.track_score),
                "visibility": float(inst.visibility),
                "bbox": {
                    "x_offset": int(inst.bbox.x_offset),
                    "y_offset": int(inst.bbox.y_offset),
                    "height": int(inst.bbox.height),
                    "width": int(inst.bbox.width),
                    "do_rectify": bool(inst.bbox.do_rectify),
                },
                "mask": list(bytes(inst.mask)),
                "mask_rle": str(inst.mask_rle),
                "first_seen": _time_dict(inst.first_seen),
            }
            for inst in msg.instances
        ],
    }


def to_rosbags(sample: Sample, typestore: Any) -> Any:
    """Convert a sample dict into a rosbags message object of ``typestore`` (types registered)."""
    types = typestore.types
    time_t = types["builtin_interfaces/msg/Time"]
    header_t = types["std_msgs/msg/Header"]
    roi_t = types["sensor_msgs/msg/RegionOfInterest"]
    instance_t = types["spvis_msgs/msg/Instance"]
    array_t = types[MSGTYPE]
    hdr = sample["header"]
    return array_t(
        header=header_t(stamp=time_t(**hdr["stamp"]), frame_id=hdr["frame_id"]),
        width=sample["width"],
        height=sample["height"],
        mask_encoding=sample["mask_encoding"],
        instances=[
            instance_t(
                id=inst["id"],
                class_id=inst["class_id"],
                class_name=inst["class_name"],
                score=inst["score"],
                track_score=inst["track_score"],
                visibility=inst["visibility"],
                bbox=roi_t(**inst["bbox"]),
                mask=np.array(inst["mask"], dtype=np.uint8),
                mask_rle=inst["mask_rle"],
                first_seen=time_t(**inst["first_seen"]),
            )
            for inst in sample["instances"]
        ],
    )
