"""Reading bags without a ROS install (rosbags, plus the mcap library for broken MCAP files).

Accepted inputs (`iter_messages`, `read_images`, `bag_topics`, `bag_info`):

- a rosbag2 directory (``metadata.yaml`` + ``*.mcap`` or ``*.db3``), as written by ``ros2 bag``,
  rosbags or `spvis-bag`;
- a directory without ``metadata.yaml`` holding one storage file (a recording that was killed
  before it could write its metadata);
- a bare ``.mcap`` file (any writer: ``ros2 bag``, the ``mcap`` / ``mcap-ros2-support``
  libraries, Foxglove; messages CDR-encoded with a ``ros2msg`` schema) or ``.db3`` file.

Messages are read from the storage files' own topic lists. The QoS profiles, type hashes and
counts in ``metadata.yaml`` never filter messages (rosbags matches metadata and storage topics
field by field, QoS included, and reads nothing when they differ: rosbag2's older test bags, or
an edited depth). The metadata's counts are checked instead: when a topic yields fewer messages
than the metadata (or the MCAP index) lists, `iter_messages` raises `BagError` after yielding
what it read.

Errors: every failure raises `BagError`, whose text names the file and says how many messages
were read before it. The readers are generators: what was read before the error has already
been yielded, so a caller keeps it.

Truncated MCAP files (a recorder killed mid-write: no footer, no summary section) cannot be
opened by rosbags; they are read by scanning the records from the start with the ``mcap``
library's stream reader (`_scan_mcap`, the one scanner for messages and for topic lists), in
file order (which is write order), up to the last complete record, and then `BagError` is
raised. A truncated or corrupt sqlite3 file yields the rows sqlite can still read, then raises.
"""

from __future__ import annotations

import heapq
import sqlite3
import struct
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spvis_ros.bag.base import (
    IMAGE_TYPES,
    STORAGE_SUFFIX,
    BagError,
    BagMessage,
    BagWarning,
    ImageFrame,
    deserialize,
    register_definition,
    stamp_ns,
)
from spvis_ros.transports import by_msgtype

__all__ = ["BagInfo", "bag_info", "bag_topics", "decode_image", "image_topics",
           "iter_messages", "pick_image_topic", "pick_topic", "read_images", "topic_counts"]


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


def _describe(exc: BaseException) -> str:
    """One line: the exception's type and the first line of its text."""
    text = (str(exc).strip().splitlines() or [""])[0].strip() or type(exc).__name__
    return text if text.startswith(type(exc).__name__) else f"{type(exc).__name__}: {text}"


def _target(path: Path) -> tuple[Path, list[Path]]:
    """(what rosbags opens, the storage files for a stream scan fallback)."""
    if not path.exists():
        raise BagError(f"{path}: no such bag (file or rosbag2 directory)")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in STORAGE_SUFFIX)
        _check_not_empty(files)
        if (path / "metadata.yaml").is_file():
            return path, files
        if len(files) == 1:
            return files[0], files
        raise BagError(f"{path}: not a rosbag2 directory (no metadata.yaml and "
                       f"{len(files)} .mcap/.db3 files)")
    if path.suffix not in STORAGE_SUFFIX:
        raise BagError(f"{path}: unknown bag file type {path.suffix!r} (expected a rosbag2 "
                       "directory, .mcap or .db3)")
    _check_not_empty([path])
    return path, [path]


def _check_not_empty(files: list[Path]) -> None:
    for f in files:
        if f.is_file() and f.stat().st_size == 0:
            raise BagError(f"{f}: empty file (0 bytes: a recorder killed before it wrote "
                           "anything?); read 0 messages before the error")


def _metadata_problem(target: Path) -> str | None:
    """Why a rosbag2 directory's metadata.yaml cannot be used (None: it parses, or `target`
    is a storage file)."""
    import yaml

    meta = target / "metadata.yaml"
    if not target.is_dir() or not meta.is_file():
        return None
    try:
        data = yaml.safe_load(meta.read_text(encoding="utf-8", errors="replace"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        return f"{meta} is not valid YAML{where}"
    if not isinstance(data, dict) or "rosbag2_bagfile_information" not in data:
        return f"{meta} has no rosbag2_bagfile_information"
    return None


def _open_rosbags(target: Path) -> Any:
    from rosbags.rosbag2 import Reader

    reader = Reader(target)
    reader.open()
    return reader


def _single_mcap(files: list[Path]) -> Path | None:
    """The storage file to scan when rosbags cannot open the bag (only a lone MCAP can be)."""
    return files[0] if len(files) == 1 and files[0].suffix == ".mcap" else None


def _msgdef(conn: Any) -> str:
    """The ros2msg definition a rosbags connection recorded ("" if none)."""
    from rosbags.interfaces import MessageDefinitionFormat

    msgdef = getattr(conn, "msgdef", None)
    if msgdef is None or msgdef.format != MessageDefinitionFormat.MSG:
        return ""
    return str(msgdef.data or "")


def _register_connections(connections: Iterable[Any]) -> None:
    for conn in connections:
        if conn.msgdef is not None and getattr(conn.msgdef, "data", ""):
            register_definition(conn.msgtype, conn.msgdef.data)


def _scan_mcap(path: Path, topics: set[str] | None, *, messages: bool = True
               ) -> Iterator[tuple[str, str, BagMessage | None]]:
    """Scan an MCAP file record by record (no index needed), in file order.

    Yields ``(topic, type, None)`` for each channel as it appears and, with `messages`,
    ``(topic, type, message)`` for each message of `topics` (None = all). Raises at the first
    bad record (after yielding everything before it)."""
    from mcap.records import Channel, DataEnd, Footer, Message, Schema
    from mcap.stream_reader import StreamReader

    schemas: dict[int, tuple[str, str]] = {}
    channels: dict[int, tuple[str, str, str]] = {}
    with path.open("rb") as f:
        for record in StreamReader(f, skip_magic=False).records:
            if isinstance(record, Schema):
                text = record.data.decode("utf-8", "replace") \
                    if record.encoding == "ros2msg" else ""
                schemas[record.id] = (record.name, text)
                if text:
                    register_definition(record.name, text)
            elif isinstance(record, Channel):
                if record.message_encoding != "cdr":
                    raise BagError(f"{path}: channel {record.topic!r} has message encoding "
                                   f"{record.message_encoding!r}; only cdr is supported")
                name, text = schemas.get(record.schema_id, ("", ""))
                channels[record.id] = (record.topic, name, text)
                yield record.topic, name, None
            elif isinstance(record, Message):
                if not messages:
                    return  # channels precede their messages: the topic list is complete
                topic, msgtype, text = channels[record.channel_id]
                if topics is None or topic in topics:
                    yield topic, msgtype, BagMessage(topic, msgtype, int(record.log_time),
                                                     bytes(record.data), text)
            elif isinstance(record, (DataEnd, Footer)):
                return


def _storage_messages(reader: Any, wanted: set[str] | None
                      ) -> Iterator[tuple[Any, int, bytes]]:
    """(connection, log time, data) of every message of `wanted` topics, read with each storage
    file's own connections (metadata.yaml's QoS or hashes never filter; see module docstring).
    """
    from rosbags.rosbag2.reader import DirectoryReader

    storage = reader.storage
    if not isinstance(storage, DirectoryReader):
        conns = [c for c in reader.connections if wanted is None or c.topic in wanted]
        if conns:
            yield from reader.messages(connections=conns)
        return
    decompress = None
    if storage.metadata.compression_mode == "message":
        from zstandard import ZstdDecompressor

        decompress = ZstdDecompressor().decompress
    parts = []
    for part in storage.storages:
        conns = [c for c in part.connections if wanted is None or c.topic in wanted]
        if conns:
            parts.append(part.messages(conns))
    # A split bag's files can overlap in time and be listed in any order: merge by log time.
    for conn, t, data in heapq.merge(*parts, key=lambda m: m[1]):
        yield conn, t, decompress(data) if decompress is not None else data


def iter_messages(path: str | Path, topics: Iterable[str] | None = None, *,
                  check_counts: bool = True) -> Iterator[BagMessage]:
    """Every message of the bag (optionally only `topics`), in log-time order (the files of a
    split bag merged by log time; file order for a truncated MCAP, see the module docstring).

    With `check_counts`, a topic that yields fewer messages than the bag's metadata or index
    lists raises BagError at the end (naming the topics and both counts).

    Raises:
        BagError: the bag cannot be opened, breaks while being read, or has fewer messages
            than it lists; the text names the file and the number of messages read before.
    """
    path = Path(path)
    wanted = set(topics) if topics is not None else None
    errors = _read_errors()
    target, files = _target(path)
    count = 0
    try:
        reader = _open_rosbags(target)
    except errors as exc:
        mcap = _single_mcap(files)
        if mcap is None:
            raise BagError(f"{path}: cannot open bag: {_describe(exc)}; read 0 messages before "
                           "the error") from exc
        try:
            for _, _, msg in _scan_mcap(mcap, wanted):
                if msg is not None:
                    count += 1
                    yield msg
        except errors as scan_exc:
            raise BagError(
                f"{path}: truncated or corrupt MCAP ({_describe(scan_exc)}; its index could not "
                f"be read either: {_metadata_problem(target) or _describe(exc)}); read {count} "
                "messages before the error", count) from scan_exc
        problem = _metadata_problem(target)
        if problem is not None:
            warnings.warn(f"{path}: {problem}; read all {count} messages of {mcap.name} by "
                          "scanning it", BagWarning, stacklevel=2)
        else:
            warnings.warn(f"{path}: the MCAP index is unreadable ({_describe(exc)}), but the "
                          f"data section is complete: read all {count} messages by scanning",
                          BagWarning, stacklevel=2)
        return
    per_topic: dict[str, int] = {}
    try:
        _register_connections(reader.connections)
        listed = _counts(reader)
        for conn, t, data in _storage_messages(reader, wanted):
            count += 1
            per_topic[conn.topic] = per_topic.get(conn.topic, 0) + 1
            yield BagMessage(conn.topic, conn.msgtype, int(t), bytes(data), _msgdef(conn))
    except errors as exc:
        raise BagError(f"{path}: error while reading: {_describe(exc)}; read {count} messages "
                       "before the error", count) from exc
    finally:
        reader.close()
    if check_counts:
        short = {t: (per_topic.get(t, 0), n) for t, n in listed.items()
                 if (wanted is None or t in wanted) and per_topic.get(t, 0) < n}
        if short:
            detail = ", ".join(f"{t}: {got} of {n}" for t, (got, n) in sorted(short.items()))
            raise BagError(f"{path}: read fewer messages than the bag lists ({detail}); read "
                           f"{count} messages before the error", count)


def _counts(reader: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for conn in reader.connections:
        counts[conn.topic] = counts.get(conn.topic, 0) + int(conn.msgcount)
    return counts


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
        mcap = _single_mcap(files)
        if mcap is None:
            raise BagError(f"{path}: cannot open bag: {_describe(exc)}; read 0 messages before "
                           "the error") from exc
        out: dict[str, str] = {}
        try:
            for topic, msgtype, _ in _scan_mcap(mcap, None, messages=False):
                out[topic] = msgtype
        except errors as scan_exc:
            if not out:
                raise BagError(f"{path}: truncated or corrupt MCAP with no readable channel "
                               f"({_describe(scan_exc)}); read 0 messages before the "
                               "error") from scan_exc
        return out
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
        return _counts(reader)
    finally:
        reader.close()


@dataclass
class BagInfo:
    """What `spvis-bag info` prints: topics with types and counts, and the time range.

    start_ns / end_ns: log times of the first and the last message (None for an empty or
    unreadable bag); counts: None per topic when the bag lists none (a truncated MCAP, where
    they come from a scan instead and `scanned` is True)."""

    path: Path
    topics: dict[str, str]
    counts: dict[str, int | None] = field(default_factory=dict)
    start_ns: int | None = None
    end_ns: int | None = None
    storage: str = ""
    scanned: bool = False

    @property
    def duration_s(self) -> float:
        if self.start_ns is None or self.end_ns is None:
            return 0.0
        return (self.end_ns - self.start_ns) / 1e9

    def text(self) -> str:
        import datetime

        def when(ns: int | None) -> str:
            if ns is None:
                return "?"
            t = datetime.datetime.fromtimestamp(ns / 1e9, tz=datetime.timezone.utc)
            return f"{t.isoformat(timespec='milliseconds')} ({ns / 1e9:.3f} s)"

        total = sum(n for n in self.counts.values() if n is not None)
        lines = [f"bag: {self.path} ({self.storage or '?'}{', scanned' if self.scanned else ''})",
                 f"messages: {total}",
                 f"duration: {self.duration_s:.3f} s",
                 f"start: {when(self.start_ns)}",
                 f"end:   {when(self.end_ns)}"]
        for topic, msgtype in sorted(self.topics.items()):
            n = self.counts.get(topic)
            lines.append(f"{topic}  {msgtype}  {'?' if n is None else n} messages")
        return "\n".join(lines)


def bag_info(path: str | Path) -> BagInfo:
    """Topics, counts and time range of a bag: from its metadata / index, or from a scan of a
    truncated MCAP (what could be read).

    Raises:
        BagError: as `bag_topics`.
    """
    path = Path(path)
    topics = bag_topics(path)
    target, files = _target(path)
    storage = ",".join(sorted({STORAGE_SUFFIX[f.suffix] for f in files})) or ""
    try:
        reader = _open_rosbags(target)
    except _read_errors():
        info = BagInfo(path, topics, dict.fromkeys(topics, 0), storage=storage, scanned=True)
        try:
            for msg in iter_messages(path, check_counts=False):
                info.counts[msg.topic] = (info.counts.get(msg.topic) or 0) + 1
                info.start_ns = msg.log_time_ns if info.start_ns is None else min(
                    info.start_ns, msg.log_time_ns)
                info.end_ns = max(info.end_ns or msg.log_time_ns, msg.log_time_ns)
        except BagError:
            pass  # a truncated file: what was read is what it holds
        return info
    try:
        counts: dict[str, int | None] = dict(_counts(reader))
        total = reader.message_count
        start = reader.start_time if total else None
        # rosbags' end_time is one past the last message's log time.
        end = reader.end_time - 1 if total else None
        return BagInfo(path, topics, counts, start, end, storage)
    finally:
        reader.close()


def image_topics(path: str | Path) -> dict[str, str]:
    """{topic: type} of the bag's sensor_msgs Image / CompressedImage topics."""
    return {t: m for t, m in bag_topics(path).items() if m in IMAGE_TYPES}


def pick_topic(path: str | Path, candidates: dict[str, str], topic: str | None, what: str,
               hint: str) -> str:
    """`topic` if it is one of `candidates` ({topic: type}), else the only candidate.

    Raises:
        BagError: no such topic, no candidate, or several (named, with `hint` on how to choose).
    """
    if topic is not None:
        if topic not in candidates:
            raise BagError(f"{path}: no {what} topic {topic!r} ({what} topics: "
                           f"{sorted(candidates) or 'none'})")
        return topic
    if len(candidates) != 1:
        raise BagError(f"{path}: {'no' if not candidates else 'several'} {what} topics "
                       f"({sorted(candidates)}); {hint}")
    return next(iter(candidates))


def pick_image_topic(path: str | Path, topic: str | None) -> str:
    """`topic` if given (checked), else the bag's only image topic (`pick_topic`)."""
    return pick_topic(path, image_topics(path), topic, "image", "give the topic")


def decode_image(msg: BagMessage, max_pixels: int | None = None) -> tuple[Any, np.ndarray]:
    """(the deserialized message, its (H, W, 3) uint8 RGB pixels), decoded by the transport of
    its type (`spvis_ros.transports`).

    Raises:
        ValueError: not an image type; ImageConversionError (a ValueError): bad pixels.
    """
    from spvis_ros.image_conversion import DEFAULT_MAX_PIXELS

    transport = by_msgtype(msg.msgtype)
    obj = deserialize(msg.data, msg.msgtype, msg.msgdef)
    limit = DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
    return obj, transport.decode(obj, max_pixels=limit)


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
