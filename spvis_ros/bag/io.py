"""Reading and writing rosbag2 bags without a ROS install (rosbags + mcap), and raw CDR helpers.

Reading (`iter_messages`, `read_images`, `bag_topics`) accepts:

- a rosbag2 directory (``metadata.yaml`` + ``*.mcap`` or ``*.db3``), as written by ``ros2 bag``,
  rosbags or `spvis-bag`;
- a directory without ``metadata.yaml`` holding one storage file (a recording that was killed
  before it could write its metadata);
- a bare ``.mcap`` file (any writer: ``ros2 bag``, the ``mcap`` / ``mcap-ros2-support``
  libraries, Foxglove; messages CDR-encoded with a ``ros2msg`` schema) or ``.db3`` file.

Errors: every failure raises `BagError`, whose text names the file and says how many messages
were read before it. The readers are generators: what was read before the error has already been
yielded, so a caller keeps it (``read_images(path)`` yields what it could, then raises
``BagError("<path>: ...; read N messages before the error")``).

Truncated MCAP files (a recorder killed mid-write: no footer, no summary section) cannot be
opened by rosbags; they are read by scanning the records from the start with the ``mcap``
library's stream reader, in file order (which is write order), up to the last complete record,
and then `BagError` is raised. A truncated or corrupt sqlite3 file yields the rows sqlite can
still read, then raises.

Types: a typestore of ROS 2 kilted's standard messages plus ``spvis_msgs`` registered from the
``.msg`` files (`typestore`); bags that carry definitions of other types get those registered
when read. Images are decoded with `spvis_ros.image_conversion` (every ROS encoding, JPEG/PNG).
"""

from __future__ import annotations

import functools
import importlib
import os
import sqlite3
import struct
import sys
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPES = (IMAGE_TYPE, COMPRESSED_TYPE)
INSTANCES_TYPE = "spvis_msgs/msg/InstanceArray"
STORAGES = ("mcap", "sqlite3")
_STORAGE_SUFFIX = {".mcap": "mcap", ".db3": "sqlite3"}


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
    """One serialized message: its topic, type ("pkg/msg/Name"), log time (ns) and CDR bytes."""

    topic: str
    msgtype: str
    log_time_ns: int
    data: bytes


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


# --------------------------------------------------------------------------------------------
# Types
# --------------------------------------------------------------------------------------------
def _msg_dirs() -> list[Path]:
    """Where spvis_msgs' .msg files may be: the source tree, then installed share/ dirs."""
    dirs = [Path(__file__).resolve().parents[2] / "msg" / "msg"]
    prefixes = [sys.prefix, *os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)]
    dirs += [Path(p) / "share" / "spvis_msgs" / "msg" for p in prefixes if p]
    return dirs


@functools.cache
def typestore() -> Any:
    """The rosbags typestore used everywhere here: ROS 2 kilted + spvis_msgs (from .msg files).

    Raises:
        BagError: spvis_msgs' .msg files cannot be found.
    """
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    for folder in _msg_dirs():
        files = sorted(folder.glob("*.msg"))
        if files:
            types: dict[str, Any] = {}
            for path in files:
                types.update(get_types_from_msg(path.read_text(), f"spvis_msgs/msg/{path.stem}"))
            store.register(types)
            return store
    raise BagError("cannot find spvis_msgs' .msg files (looked in "
                   f"{', '.join(str(d) for d in _msg_dirs())})")


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


def deserialize(data: bytes, msgtype: str) -> Any:
    """CDR bytes -> a rosbags message object (fields as attributes, arrays as numpy)."""
    return typestore().deserialize_cdr(data, msgtype)


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


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------
def _read_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "this bag is broken" (not a bug in the caller)."""
    import apsw
    from rosbags.rosbag2 import ReaderError
    from rosbags.typesys.base import TypesysError

    errors: list[type[BaseException]] = [ReaderError, TypesysError, OSError, ValueError,
                                         struct.error, IndexError, KeyError, EOFError,
                                         sqlite3.Error, apsw.Error, RuntimeError]
    try:
        from mcap.exceptions import McapError

        errors.append(McapError)
    except ImportError:
        pass
    return tuple(errors)


def _storage_files(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.suffix in _STORAGE_SUFFIX)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if text.startswith(type(exc).__name__) else f"{type(exc).__name__}: {text}"


def _target(path: Path) -> tuple[Path, list[Path]]:
    """(what rosbags opens, the storage files for a stream scan fallback)."""
    if not path.exists():
        raise BagError(f"{path}: no such bag (file or rosbag2 directory)")
    if path.is_dir():
        files = _storage_files(path)
        if (path / "metadata.yaml").is_file():
            return path, files
        if len(files) == 1:
            return files[0], files
        raise BagError(f"{path}: not a rosbag2 directory (no metadata.yaml and "
                       f"{len(files)} .mcap/.db3 files)")
    if path.suffix not in _STORAGE_SUFFIX:
        raise BagError(f"{path}: unknown bag file type {path.suffix!r} (expected a rosbag2 "
                       "directory, .mcap or .db3)")
    return path, [path]


def _open_rosbags(target: Path) -> Any:
    from rosbags.rosbag2 import Reader

    reader = Reader(target)
    reader.open()
    return reader


def _register_connections(connections: Iterable[Any]) -> None:
    for conn in connections:
        if conn.msgdef is not None and getattr(conn.msgdef, "data", ""):
            register_definition(conn.msgtype, conn.msgdef.data)


def _stream_mcap(path: Path, topics: set[str] | None) -> Iterator[BagMessage]:
    """Scan an MCAP file record by record (no index needed); raises at the first bad record."""
    from mcap.records import Channel, DataEnd, Footer, Message, Schema
    from mcap.stream_reader import StreamReader

    schemas: dict[int, tuple[str, str]] = {}
    channels: dict[int, tuple[str, str]] = {}
    with path.open("rb") as f:
        for record in StreamReader(f, skip_magic=False).records:
            if isinstance(record, Schema):
                schemas[record.id] = (record.name, record.data.decode("utf-8", "replace"))
                if record.encoding == "ros2msg":
                    register_definition(record.name, schemas[record.id][1])
            elif isinstance(record, Channel):
                name = schemas.get(record.schema_id, ("", ""))[0]
                if record.message_encoding != "cdr":
                    raise BagError(f"{path}: channel {record.topic!r} has message encoding "
                                   f"{record.message_encoding!r}; only cdr is supported")
                channels[record.id] = (record.topic, name)
            elif isinstance(record, Message):
                topic, msgtype = channels[record.channel_id]
                if topics is None or topic in topics:
                    yield BagMessage(topic, msgtype, int(record.log_time), bytes(record.data))
            elif isinstance(record, (DataEnd, Footer)):
                return


def iter_messages(path: str | Path, topics: Iterable[str] | None = None
                  ) -> Iterator[BagMessage]:
    """Every message of the bag (optionally only `topics`), in log-time order (file order for a
    truncated MCAP, see the module docstring).

    Raises:
        BagError: the bag cannot be opened or breaks while being read; the text names the file
            and the number of messages read before the error.
    """
    path = Path(path)
    wanted = set(topics) if topics is not None else None
    errors = _read_errors()
    target, files = _target(path)
    count = 0
    try:
        reader = _open_rosbags(target)
    except errors as exc:
        mcaps = [f for f in files if f.suffix == ".mcap"]
        if len(mcaps) != 1 or len(files) != 1:
            raise BagError(f"{path}: cannot open bag: {_describe(exc)}; read 0 messages before "
                           "the error") from exc
        try:
            for msg in _stream_mcap(mcaps[0], wanted):
                count += 1
                yield msg
        except errors as scan_exc:
            raise BagError(
                f"{path}: truncated or corrupt MCAP ({_describe(scan_exc)}; its index could not "
                f"be read either: {_describe(exc)}); read {count} messages before the error",
                count) from scan_exc
        warnings.warn(f"{path}: the MCAP index is unreadable ({_describe(exc)}), but the data "
                      f"section is complete: read all {count} messages by scanning",
                      BagWarning, stacklevel=2)
        return
    try:
        _register_connections(reader.connections)
        conns = [c for c in reader.connections if wanted is None or c.topic in wanted]
        if conns:
            for conn, t, data in reader.messages(connections=conns):
                count += 1
                yield BagMessage(conn.topic, conn.msgtype, int(t), bytes(data))
    except errors as exc:
        raise BagError(f"{path}: error while reading: {_describe(exc)}; read {count} messages "
                       "before the error", count) from exc
    finally:
        reader.close()


def bag_topics(path: str | Path) -> dict[str, str]:
    """{topic: message type} of a bag (a truncated MCAP: the channels seen in a scan).

    Raises:
        BagError: as `iter_messages`, when not even the topic list can be read.
    """
    path = Path(path)
    errors = _read_errors()
    target, files = _target(path)
    try:
        reader = _open_rosbags(target)
    except errors as exc:
        mcaps = [f for f in files if f.suffix == ".mcap"]
        if len(mcaps) != 1 or len(files) != 1:
            raise BagError(f"{path}: cannot open bag: {_describe(exc)}; read 0 messages before "
                           "the error") from exc
        return _scan_topics(path, mcaps[0])
    try:
        return {c.topic: c.msgtype for c in reader.connections}
    finally:
        reader.close()


def topic_counts(path: str | Path) -> dict[str, int] | None:
    """{topic: message count} from the bag's metadata or index (None when it has none, e.g. a
    truncated MCAP)."""
    try:
        target, _ = _target(Path(path))
        reader = _open_rosbags(target)
    except (BagError, *_read_errors()):
        return None
    try:
        counts: dict[str, int] = {}
        for conn in reader.connections:
            counts[conn.topic] = counts.get(conn.topic, 0) + int(conn.msgcount)
        return counts
    finally:
        reader.close()


def _scan_topics(path: Path, mcap: Path) -> dict[str, str]:
    from mcap.records import Channel, Message, Schema
    from mcap.stream_reader import StreamReader

    schemas: dict[int, str] = {}
    out: dict[str, str] = {}
    try:
        with mcap.open("rb") as f:
            for record in StreamReader(f, skip_magic=False).records:
                if isinstance(record, Schema):
                    schemas[record.id] = record.name
                elif isinstance(record, Channel):
                    out[record.topic] = schemas.get(record.schema_id, "")
                elif isinstance(record, Message) and out:
                    break  # channels precede their messages; good enough for a topic list
    except _read_errors() as exc:
        if not out:
            raise BagError(f"{path}: truncated or corrupt MCAP with no readable channel "
                           f"({_describe(exc)}); read 0 messages before the error") from exc
    return out


def image_topics(path: str | Path) -> dict[str, str]:
    """{topic: type} of the bag's sensor_msgs Image / CompressedImage topics."""
    return {t: m for t, m in bag_topics(path).items() if m in IMAGE_TYPES}


def pick_image_topic(path: str | Path, topic: str | None) -> str:
    """`topic` if given (checked), else the bag's only image topic.

    Raises:
        BagError: no such topic, no image topic, or several (name them, ask for one).
    """
    images = image_topics(path)
    if topic is not None:
        if topic not in images:
            raise BagError(f"{path}: no image topic {topic!r} (image topics: "
                           f"{sorted(images) or 'none'})")
        return topic
    if len(images) != 1:
        raise BagError(f"{path}: {'no' if not images else 'several'} image topics "
                       f"({sorted(images)}); give the topic")
    return next(iter(images))


def decode_image(msg: BagMessage, max_pixels: int | None = None) -> tuple[Any, np.ndarray]:
    """(the deserialized message, its (H, W, 3) uint8 RGB pixels)."""
    from spvis_ros.image_conversion import DEFAULT_MAX_PIXELS, compressed_to_rgb, image_to_rgb

    limit = DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
    obj = deserialize(msg.data, msg.msgtype)
    if msg.msgtype == COMPRESSED_TYPE:
        return obj, compressed_to_rgb(obj, max_pixels=limit)
    if msg.msgtype == IMAGE_TYPE:
        return obj, image_to_rgb(obj, max_pixels=limit)
    raise ValueError(f"topic {msg.topic!r} has type {msg.msgtype!r}, not an image type")


def read_images(path: str | Path, topic: str | None = None) -> Iterator[ImageFrame]:
    """Decode the images of one topic (default: the bag's only image topic), in bag order.

    Raises:
        BagError: as `iter_messages`; also for a message that does not decode (naming its
            index, topic and log time); what was read before has been yielded.
    """
    from spvis_ros.image_conversion import ImageConversionError

    topic = pick_image_topic(path, topic)
    for index, msg in enumerate(iter_messages(path, [topic])):
        try:
            obj, rgb = decode_image(msg)
        except (ImageConversionError, ValueError, struct.error, IndexError) as exc:
            raise BagError(f"{path}: message {index} on {topic} (log time {msg.log_time_ns} ns) "
                           f"does not decode: {_describe(exc)}; read {index} messages before the "
                           "error", index) from exc
        yield ImageFrame(topic, index, stamp_ns(obj.header.stamp), msg.log_time_ns,
                         str(obj.header.frame_id), rgb)


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------
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
            if child.is_file() and (child.suffix in _STORAGE_SUFFIX
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
