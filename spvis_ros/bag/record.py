"""`spvis-bag record`: write what arrives on live topics into a rosbag2 (MCAP by default).

Each topic's type is taken from the ROS graph (its publishers), waiting up to ``--wait-topics``
seconds for them; spvis_msgs and vision_msgs types come from the typestore of
`spvis_ros.bag.base` and other installed interface packages from their ``share/<pkg>/msg``
files. Messages are received
serialized (``raw=True``) and written as they are, with the receive time (system clock, ns) as
the log time, like ``ros2 bag record``; header stamps stay inside the messages.

QoS: RELIABLE when every publisher of the topic offers it (the node's outputs do), else
BEST_EFFORT; history depth 1000, so bursts are not lost. ``--qos`` overrides.

The recording starts when every subscription is matched with a publisher; the line
``recording N topics: ...`` on stdout says so (start `play` after it). It stops after
``--count`` messages (all topics together), after ``--duration`` seconds, or on SIGINT /
SIGTERM, whichever comes first, and always closes the bag properly (metadata.yaml, MCAP index).
A recorder killed with SIGKILL loses what it had not yet written out: rosbags' MCAP writer holds
each chunk in memory until it reaches 1 MiB (fixed; its API offers no chunk size or flush), so
a small recording leaves an empty file; what did reach the file (complete chunks, no index) the
readers here still read (`spvis_ros.bag.reader`).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from spvis_ros.bag.base import BagError, rclpy_type
from spvis_ros.bag.play import QOS_CHOICES, RosSession, qos_profile
from spvis_ros.bag.writer import BagWriter


class RecordError(RuntimeError):
    """Recording cannot start (topic not found, not matched, bad option); the text says why."""


@dataclass
class RecordOptions:
    """See the module docstring."""

    topics: list[str]
    duration: float | None = None
    count: int | None = None
    storage: str = "mcap"
    wait_topics: float = 10.0
    qos: str | None = None
    depth: int = 1000
    overwrite: bool = False
    domain_id: int | None = None

    def check(self) -> None:
        if not self.topics:
            raise RecordError("--topics: give at least one topic")
        if self.duration is not None and not self.duration > 0:
            raise RecordError(f"--duration = {self.duration}: must be > 0")
        if self.count is not None and self.count <= 0:
            raise RecordError(f"--count = {self.count}: must be > 0")
        if self.qos is not None and self.qos not in QOS_CHOICES:
            raise RecordError(f"--qos = {self.qos!r}: must be one of {list(QOS_CHOICES)}")
        if self.wait_topics < 0:
            raise RecordError(f"--wait-topics = {self.wait_topics}: must be >= 0")


@dataclass
class RecordReport:
    """What was recorded: per-topic counts, types, seconds, why it stopped."""

    bag: Path
    counts: dict[str, int] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    stopped_by: str = ""

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def text(self) -> str:
        per = ", ".join(f"{t}: {n}" for t, n in self.counts.items())
        return (f"recorded {self.total} messages ({per}) in {self.seconds:.2f} s into "
                f"{self.bag}; stopped by {self.stopped_by}")


def _publisher_info(session: RosSession, topic: str) -> list:
    return session.node.get_publishers_info_by_topic(session.node.resolve_topic_name(topic))


def record(out: str | Path, options: RecordOptions,
           ready: Callable[[str], None] | None = None) -> RecordReport:
    """Record `options.topics` into the bag `out` (see the module docstring).

    `ready` is called with the "recording ..." line once every subscription is matched.

    Raises:
        RecordError: a topic has no publisher within `wait_topics`, or a bad option.
        BagError: the bag cannot be written (exists, unknown type).
    """
    from rclpy.qos import ReliabilityPolicy

    options.check()
    out = Path(out)
    stop = threading.Event()
    reason = ["signal"]
    previous: dict[int, object] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    session = RosSession("spvis_bag_recorder", options.domain_id)
    writer: BagWriter | None = None
    report = RecordReport(out)
    try:
        infos: dict[str, list] = {}

        def all_published() -> bool:
            for t in options.topics:
                infos[t] = _publisher_info(session, t)
            return all(infos[t] for t in options.topics) or stop.is_set()

        if not session.spin_until(all_published, options.wait_topics) or stop.is_set():
            missing = [t for t in options.topics if not infos.get(t)]
            raise RecordError(f"no publisher on {missing} after {options.wait_topics:g} s "
                              "(is the node running? the topic names must be exact)")
        writer = BagWriter(out, options.storage, overwrite=options.overwrite)
        subs = []

        def on_message(topic: str, data: bytes) -> None:
            if writer is None or stop.is_set():
                return
            writer.write(topic, time.time_ns(), data)
            report.counts[topic] += 1
            if options.count is not None and report.total >= options.count:
                reason[0] = f"count ({options.count})"
                stop.set()

        for topic in options.topics:
            msgtype = infos[topic][0].topic_type
            report.types[topic] = msgtype
            report.counts[topic] = 0
            writer.add_topic(topic, msgtype)
            if options.qos is not None:
                reliable = options.qos == "reliable"
            else:
                reliable = all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE
                               for i in infos[topic])
            subs.append(session.node.create_subscription(
                rclpy_type(msgtype), topic, lambda data, t=topic: on_message(t, data),
                qos_profile(reliable, options.depth), raw=True))
        if not session.spin_until(lambda: all(s.get_publisher_count() > 0 for s in subs)
                                  or stop.is_set(), max(options.wait_topics, 1.0)):
            raise RecordError(f"subscriptions to {options.topics} did not match a publisher "
                              f"within {max(options.wait_topics, 1.0):g} s (QoS mismatch? try "
                              "--qos best_effort)")
        line = (f"recording {len(options.topics)} topics: "
                + ", ".join(f"{t} ({report.types[t]})" for t in options.topics))
        if ready is not None:
            ready(line)
        start = time.monotonic()
        deadline = start + options.duration if options.duration is not None else None
        while not stop.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                reason[0] = f"duration ({options.duration:g} s)"
                break
            session.executor.spin_once(timeout_sec=0.05)
        report.stopped_by = reason[0]
        report.seconds = time.monotonic() - start
    finally:
        # Callbacks only run inside spin_once on this thread, so none can be writing now.
        if writer is not None:
            w, writer = writer, None
            w.close()
        session.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
    return report


def print_ready(line: str) -> None:
    print(line, flush=True)


__all__ = ["BagError", "RecordError", "RecordOptions", "RecordReport", "print_ready", "record"]
