"""Writing rosbag2 bags without a ROS install (rosbags): `BagWriter` (MCAP or sqlite3 storage)
and `image_cdr` (reproducible CDR bytes of image messages).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from spvis_ros.bag.base import (
    COMPRESSED_TYPE,
    IMAGE_TYPE,
    STORAGE_SUFFIX,
    STORAGES,
    BagError,
    register_installed,
    typestore,
)

__all__ = ["BagWriter", "image_cdr"]


class BagWriter:
    """A rosbag2 (version 9) being written, MCAP or sqlite3 storage.

    ``with BagWriter(path) as bag: bag.add_topic("/cam0/image", IMAGE_TYPE);
    bag.write("/cam0/image", t_ns, cdr_bytes)``. Closing writes ``metadata.yaml``; leaving the
    block by an exception still closes (what was written stays readable).
    """

    def __init__(self, path: str | Path, storage: str = "mcap", overwrite: bool = False) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer

        if storage not in STORAGES:
            raise BagError(f"storage = {storage!r}: must be one of {list(STORAGES)}")
        self.path = Path(path)
        if self.path.exists():
            if not overwrite:
                raise BagError(f"{self.path}: exists already (choose another --out, or "
                               "--overwrite)")
            _remove_bag(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        self._writer = Writer(self.path, version=9, storage_plugin=plugin)
        self._writer.open()
        self._conns: dict[str, Any] = {}
        self.counts: dict[str, int] = {}

    def add_topic(self, topic: str, msgtype: str) -> None:
        if msgtype not in typestore().fielddefs and not register_installed(msgtype):
            raise BagError(f"{self.path}: unknown message type {msgtype!r} for {topic!r} (not a "
                           "kilted or spvis_msgs type, no installed .msg definition)")
        self._conns[topic] = self._writer.add_connection(topic, msgtype, typestore=typestore())
        self.counts[topic] = 0

    def write(self, topic: str, log_time_ns: int, data: bytes) -> None:
        self._writer.write(self._conns[topic], int(log_time_ns), data)
        self.counts[topic] += 1

    def close(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()

    def __enter__(self) -> BagWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _remove_bag(path: Path) -> None:
    """Delete a bag we are about to overwrite: a rosbag2 directory (only its own files)."""
    if path.is_dir():
        for child in path.iterdir():
            if child.is_file() and (child.suffix in STORAGE_SUFFIX
                                    or child.name == "metadata.yaml"):
                child.unlink()
            else:
                raise BagError(f"{path}: not removing a directory holding {child.name!r}")
        path.rmdir()
    else:
        path.unlink()


def image_cdr(msg: Any) -> bytes:
    """Serialize an rclpy sensor_msgs Image / CompressedImage with rosbags' CDR (alignment
    padding zeroed, so a bag's bytes are reproducible; rclpy's serializer leaves heap bytes
    there)."""
    store = typestore()
    types = store.types
    header = types["std_msgs/msg/Header"](
        stamp=types["builtin_interfaces/msg/Time"](sec=msg.header.stamp.sec,
                                                   nanosec=msg.header.stamp.nanosec),
        frame_id=msg.header.frame_id)
    data = np.frombuffer(bytes(msg.data), np.uint8)
    if hasattr(msg, "encoding"):
        obj = types[IMAGE_TYPE](header=header, height=msg.height, width=msg.width,
                                encoding=msg.encoding, is_bigendian=msg.is_bigendian,
                                step=msg.step, data=data)
        return bytes(store.serialize_cdr(obj, IMAGE_TYPE))
    obj = types[COMPRESSED_TYPE](header=header, format=msg.format, data=data)
    return bytes(store.serialize_cdr(obj, COMPRESSED_TYPE))
