"""Writing rosbag2 bags without a ROS install (rosbags): `BagWriter` (MCAP or sqlite3 storage)
and `image_cdr` (reproducible CDR bytes of image messages).
"""

from __future__ import annotations

import contextlib
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
    bag.write("/cam0/image", t_ns, cdr_bytes)``. Closing writes ``metadata.yaml``.

    Without `atomic`, leaving the block by an exception still closes (what was written stays
    readable: a recording keeps what it got). With `atomic` the bag is written under a hidden
    folder beside `path` (``.<name>.partial/<name>``) and moved to `path` only when the block
    ends normally (an existing bag is replaced then, with `overwrite`); on an exception it is
    deleted, so a failed write leaves nothing that looks like a bag.

    Raises:
        BagError: bad storage, `path` exists (without `overwrite`) or is not a bag, or the
            file system refuses (the OS error's text and the path).
    """

    def __init__(self, path: str | Path, storage: str = "mcap", overwrite: bool = False,
                 atomic: bool = False) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer

        if storage not in STORAGES:
            raise BagError(f"storage = {storage!r}: must be one of {list(STORAGES)}")
        self.path = Path(path)
        self._writer: Any = None
        self._partial: Path | None = None
        if self.path.exists() or self.path.is_symlink():
            if not overwrite:
                raise BagError(f"{self.path}: exists already (choose another --out, or "
                               "--overwrite)")
            _check_removable(self.path)
            if not atomic:
                _remove_bag(self.path)
        target = self.path
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if atomic:
                self._partial = self.path.parent / f".{self.path.name}.partial"
                _discard(self._partial)  # left by a killed earlier run
                self._partial.mkdir()
                target = self._partial / self.path.name
            plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
            self._writer = Writer(target, version=9, storage_plugin=plugin)
            self._writer.open()
        except OSError as exc:
            if self._partial is not None:
                _discard(self._partial)
            raise BagError(f"{self.path}: cannot write the bag: "
                           f"{exc.strerror or exc} ({exc.filename or target})") from exc
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
        """Finish the bag (metadata.yaml); an atomic bag is moved to its path."""
        if self._writer is not None:
            writer, self._writer = self._writer, None
            try:
                writer.close()
                if self._partial is not None:
                    if self.path.exists() or self.path.is_symlink():
                        _remove_bag(self.path)
                    (self._partial / self.path.name).rename(self.path)
                    self._partial.rmdir()
                    self._partial = None
            except OSError as exc:
                self.discard()
                raise BagError(f"{self.path}: cannot finish the bag: {exc.strerror or exc} "
                               f"({exc.filename or self.path})") from exc

    def discard(self) -> None:
        """Stop writing; an atomic bag is deleted (a plain one is closed, keeping its data)."""
        writer, self._writer = self._writer, None
        if writer is not None:
            from rosbags.rosbag2 import WriterError

            # The bag is being thrown away: a failure to finish it changes nothing.
            with contextlib.suppress(WriterError, OSError, ValueError):
                writer.close()
        if self._partial is not None:
            _discard(self._partial)
            self._partial = None

    def __enter__(self) -> BagWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None and self._partial is not None:
            self.discard()
        else:
            self.close()


def _check_removable(path: Path) -> None:
    """Raise BagError unless `path` is a bag we may replace: a rosbag2 directory holding only
    storage files and metadata.yaml, or a bare .mcap / .db3 file."""
    if path.is_dir() and not path.is_symlink():
        for child in path.iterdir():
            if not (child.is_file() and (child.suffix in STORAGE_SUFFIX
                                         or child.name == "metadata.yaml")):
                raise BagError(f"{path}: not removing a directory holding {child.name!r}")
    elif path.suffix not in STORAGE_SUFFIX:
        raise BagError(f"{path}: exists and is not a bag (not a rosbag2 directory, .mcap or "
                       ".db3); not replacing it")


def _remove_bag(path: Path) -> None:
    """Delete a bag we are about to overwrite (`_check_removable` first)."""
    _check_removable(path)
    if path.is_dir() and not path.is_symlink():
        for child in path.iterdir():
            child.unlink()
        path.rmdir()
    else:
        path.unlink()


def _discard(partial: Path) -> None:
    """Delete a hidden ``.<name>.partial`` folder of an atomic write (its bag folder and the
    files the writer put there)."""
    if not partial.is_dir():
        return
    for bag in partial.iterdir():
        if bag.is_dir():
            for child in bag.iterdir():
                child.unlink()
            bag.rmdir()
        else:
            bag.unlink()
    partial.rmdir()


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
