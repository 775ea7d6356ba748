"""Reading and writing rosbag2 bags without a ROS install: one import for all of it.

The code lives in `spvis_ros.bag.base` (BagError, BagMessage, ImageFrame, the typestore, raw
CDR helpers), `spvis_ros.bag.reader` (iter_messages, read_images, bag_topics, bag_info, ...;
the MCAP fallback for broken files) and `spvis_ros.bag.writer` (BagWriter, image_cdr); this
module re-exports them so ``from spvis_ros.bag.io import ...`` keeps working.
"""

from __future__ import annotations

from spvis_ros.bag.base import (
    COMPRESSED_TYPE,
    DETECTIONS_TYPE,
    IMAGE_TYPE,
    IMAGE_TYPES,
    INSTANCES_TYPE,
    STORAGES,
    BagError,
    BagMessage,
    BagWarning,
    ImageFrame,
    deserialize,
    header_stamp_ns,
    ns_to_seconds,
    rclpy_type,
    register_definition,
    register_installed,
    stamp_ns,
    typestore,
)
from spvis_ros.bag.reader import (
    BagInfo,
    bag_info,
    bag_topics,
    decode_image,
    image_topics,
    iter_messages,
    pick_image_topic,
    read_images,
    topic_counts,
)
from spvis_ros.bag.writer import BagWriter, image_cdr

__all__ = [
    "COMPRESSED_TYPE", "DETECTIONS_TYPE", "IMAGE_TYPE", "IMAGE_TYPES", "INSTANCES_TYPE",
    "STORAGES", "BagError", "BagInfo", "BagMessage", "BagWarning", "BagWriter", "ImageFrame",
    "bag_info", "bag_topics", "decode_image", "deserialize", "header_stamp_ns", "image_cdr",
    "image_topics", "iter_messages", "ns_to_seconds", "pick_image_topic", "rclpy_type",
    "read_images", "register_definition", "register_installed", "stamp_ns", "topic_counts",
    "typestore",
]
