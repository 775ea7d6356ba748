"""Bag data types and message types: `BagError`, `BagMessage`, `ImageFrame`, the typestore
(ROS 2 kilted + spvis_msgs + vision_msgs from their .msg files), rclpy classes by name, raw CDR
helpers (header stamps without deserializing).
"""

from __future__ import annotations

import functools
import importlib
import os
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spvis_ros.transports import IMAGE_TYPES, TRANSPORTS

IMAGE_TYPE = TRANSPORTS["raw"].msgtype
COMPRESSED_TYPE = TRANSPORTS["compressed"].msgtype
INSTANCES_TYPE = "spvis_msgs/msg/InstanceArray"
DETECTIONS_TYPE = "vision_msgs/msg/Detection2DArray"
STORAGES = ("mcap", "sqlite3")
STORAGE_SUFFIX = {".mcap": "mcap", ".db3": "sqlite3"}
# Interface packages whose .msg files the typestore registers (source tree first, then installs).
_OWN_PACKAGES = {"spvis_msgs": ("msg", "msg"), "vision_msgs": ("ros_deps", "vision_msgs", "msg")}

__all__ = ["COMPRESSED_TYPE", "DETECTIONS_TYPE", "IMAGE_TYPE", "IMAGE_TYPES", "INSTANCES_TYPE",
           "STORAGES", "BagError", "BagMessage", "BagWarning", "ImageFrame", "deserialize",
           "header_stamp_ns", "ns_to_seconds", "rclpy_type", "register_definition",
           "register_installed", "stamp_ns", "store_for", "typestore"]


class BagError(RuntimeError):
    """A bag that cannot be read or written; the text names the file (and, when reading, how
    many messages were read before the error). `read` is that count."""

    def __init__(self, message: str, read: int = 0) -> None:
        super().__init__(message)
        self.read = read


class BagWarning(UserWarning):
    """A bag read completely despite damage (e.g. an MCAP whose index is unreadable)."""


@dataclass(frozen=True)
class BagMessage:
    """One serialized message: its topic, type ("pkg/msg/Name"), log time (ns) and CDR bytes,
    and the ros2msg definition its bag recorded for the type ("" when it recorded none)."""

    topic: str
    msgtype: str
    log_time_ns: int
    data: bytes
    msgdef: str = ""


@dataclass(frozen=True)
class ImageFrame:
    """One decoded image message. `stamp_ns` is its header stamp, `index` its position among the
    messages read from its topic, `rgb` (H, W, 3) uint8."""

    topic: str
    index: int
    stamp_ns: int
    log_time_ns: int
    frame_id: str
    rgb: np.ndarray



def _msg_dirs(package: str = "spvis_msgs") -> list[Path]:
    """Where the .msg files of one of our interface packages may be: the source tree, then
    installed share/ dirs (sys.prefix, AMENT_PREFIX_PATH)."""
    dirs = [Path(__file__).resolve().parents[2].joinpath(*_OWN_PACKAGES[package])]
    prefixes = [sys.prefix, *os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)]
    dirs += [Path(p) / "share" / package / "msg" for p in prefixes if p]
    return dirs


@functools.cache
def typestore() -> Any:
    """The rosbags typestore used everywhere here: ROS 2 kilted + spvis_msgs and vision_msgs
    (from their .msg files).

    Raises:
        BagError: spvis_msgs' .msg files cannot be found (vision_msgs is optional).
    """
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    for package in ("vision_msgs", "spvis_msgs"):
        for folder in _msg_dirs(package):
            files = sorted(folder.glob("*.msg"))
            if files:
                types: dict[str, Any] = {}
                for path in files:
                    types.update(get_types_from_msg(path.read_text(),
                                                    f"{package}/msg/{path.stem}"))
                store.register(types)
                break
        else:
            if package == "spvis_msgs":
                raise BagError("cannot find spvis_msgs' .msg files (looked in "
                               f"{', '.join(str(d) for d in _msg_dirs(package))})")
    return store


def register_definition(msgtype: str, msgdef: str) -> bool:
    """Register `msgtype` (and the types its definition embeds) from a ros2msg definition text
    as bags carry it; False if it was already known or cannot be parsed."""
    from rosbags.typesys import get_types_from_msg
    from rosbags.typesys.base import TypesysError

    store = typestore()
    if msgtype in store.fielddefs or not msgdef:
        return False
    try:
        store.register(get_types_from_msg(msgdef, msgtype))
    except (TypesysError, ValueError):
        return False
    return msgtype in store.fielddefs


def register_installed(msgtype: str) -> bool:
    """Register `msgtype` from an installed ``share/<pkg>/msg/<Name>.msg`` (sys.prefix or
    AMENT_PREFIX_PATH); True if it is known afterwards."""
    store = typestore()
    if msgtype in store.fielddefs:
        return True
    pkg, _, name = msgtype.partition("/msg/")
    prefixes = [sys.prefix, *os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)]
    for prefix in filter(None, prefixes):
        path = Path(prefix) / "share" / pkg / "msg" / f"{name}.msg"
        if path.is_file():
            return register_definition(msgtype, path.read_text())
    return False


def rclpy_type(msgtype: str) -> type:
    """The rclpy message class of "pkg/msg/Name" (imports pkg.msg).

    Raises:
        BagError: the type is malformed or its Python package is not installed.
    """
    pkg, sep, name = msgtype.partition("/msg/")
    if not sep or not pkg or not name:
        raise BagError(f"message type {msgtype!r} is not of the form pkg/msg/Name")
    try:
        return getattr(importlib.import_module(f"{pkg}.msg"), name)
    except (ImportError, AttributeError) as exc:
        raise BagError(f"message type {msgtype!r}: cannot import {pkg}.msg.{name} ({exc}); is "
                       f"its interface package installed?") from exc


def store_for(msgtype: str, msgdef: str = "") -> Any:
    """The typestore that reads `msgtype` as a bag recorded it: the shared `typestore()` when
    the bag's definition `msgdef` agrees with it for the type and every type it embeds (or is
    empty or unparseable), else a store of that definition's own. A recording made with an
    older spvis_msgs (e.g. without ``Instance.track_score``) then still reads, with the fields
    it has."""
    from rosbags.typesys import get_types_from_msg
    from rosbags.typesys.base import TypesysError

    store = typestore()
    if not msgdef:
        return store
    try:
        types = get_types_from_msg(msgdef, msgtype)
    except (TypesysError, ValueError):
        return store
    if all(store.fielddefs.get(name) == value for name, value in types.items()):
        return store
    return _store_of(msgtype, msgdef)


@functools.lru_cache(maxsize=16)
def _store_of(msgtype: str, msgdef: str) -> Any:
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    store.register(get_types_from_msg(msgdef, msgtype))
    return store


def deserialize(data: bytes, msgtype: str, msgdef: str = "") -> Any:
    """CDR bytes -> a rosbags message object (fields as attributes, arrays as numpy), read
    with the definition the bag recorded when it differs from ours (`store_for`).

    Raises:
        ValueError: the bytes are not a `msgtype` (truncated, corrupt, another definition).
    """
    from rosbags.serde.errors import SerdeError

    try:
        return store_for(msgtype, msgdef).deserialize_cdr(data, msgtype)
    except SerdeError as exc:
        raise ValueError(f"{len(data)} bytes do not deserialize as {msgtype}: {exc}") from exc


def header_stamp_ns(data: bytes | memoryview) -> int:
    """Header stamp (ns) of a serialized message whose first field is std_msgs/Header.

    Reads the 4-byte encapsulation (plain CDR or XCDR2, little- or big-endian), then
    ``int32 sec, uint32 nanosec``.

    Raises:
        ValueError: fewer than 12 bytes or an unknown encapsulation.
    """
    raw = bytes(data[:12])
    if len(raw) < 12:
        raise ValueError(f"serialized message of {len(data)} bytes has no header stamp")
    if raw[0] == 0 and raw[1] in (0x01, 0x07):
        sec, nsec = struct.unpack_from("<iI", raw, 4)
    elif raw[0] == 0 and raw[1] in (0x00, 0x06):
        sec, nsec = struct.unpack_from(">iI", raw, 4)
    else:
        raise ValueError(f"unknown CDR encapsulation {raw[:4].hex()}")
    return sec * 1_000_000_000 + nsec


def stamp_ns(stamp: Any) -> int:
    """builtin_interfaces/Time (rclpy or rosbags) -> integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ns_to_seconds(ns: int) -> float:
    """Nanoseconds -> seconds, computed as the node does (``sec + nanosec * 1e-9``)."""
    sec, nsec = divmod(int(ns), 1_000_000_000)
    return sec + nsec * 1e-9

